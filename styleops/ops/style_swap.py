"""Style swap (Chen & Schmidt 2016): replace each content patch by its most similar artwork patch.

Correlating the content features with the *normalized* artwork patches (as conv filters) gives,
at every position, a score proportional to the cosine similarity (the content patch's own norm
is the same for all candidates, so it is not needed for the argmax). The argmax one-hot map,
transposed-convolved with the *raw* patches and divided by how many patches overlap each
position, is the swapped feature map. The bank is scanned in chunks keeping a running max and
argmax, so peak memory grows with chunk_size x H x W, not with the bank size P.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError
from styleops.io.safetensors_file import canonical_safetensors


@dataclass(frozen=True)
class PatchBank:
    """Artwork patches for style swap.

    patches: [P, C, k, k] raw patches, stored fp16; norms: [P] fp32 L2 norms of the patches.
    """

    patches: Tensor
    norms: Tensor
    patch_size: int
    stride: int

    def __len__(self) -> int:
        return self.patches.shape[0]

    @property
    def channels(self) -> int:
        return self.patches.shape[1]

    def to_bytes(self, metadata: dict[str, str] | None = None) -> bytes:
        """A safetensors file: tensors `patches` (fp16 [P, C, k, k]) and `norms` (fp32 [P]);
        `patch_size` and `stride` in its metadata (strings), next to the caller's `metadata`."""
        extra = dict(metadata or {})
        reserved = sorted(set(extra) & set(_BANK_META))
        if reserved:
            raise InvalidInputError(f"metadata keys {reserved} are reserved for the bank itself")
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in extra.items()):
            raise InvalidInputError("safetensors metadata keys and values must be strings")
        tensors = {
            "patches": self.patches.detach().to("cpu", torch.float16).contiguous(),
            "norms": self.norms.detach().to("cpu", torch.float32).contiguous(),
        }
        _check_bank_tensors(tensors["patches"], tensors["norms"], self.patch_size, self.stride)
        return canonical_safetensors(  # same bank, same bytes (and sha256)
            safetensors.torch.save(
                tensors, metadata={**extra, "patch_size": str(self.patch_size), "stride": str(self.stride)}
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[PatchBank, dict[str, str]]:
        """(bank on the CPU, the caller's metadata) from `to_bytes` output; InvalidInputError for
        anything else (not safetensors, missing or extra tensors, wrong dtypes or shapes)."""
        try:
            tensors = safetensors.torch.load(bytes(data))
            metadata = _safetensors_metadata(data)
        except (safetensors.SafetensorError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidInputError(f"not a patch bank safetensors file: {exc}") from exc
        if set(tensors) != {"patches", "norms"}:
            raise InvalidInputError(f"a patch bank holds tensors ['norms', 'patches'], got {sorted(tensors)}")
        missing = [k for k in _BANK_META if k not in metadata]
        if missing:
            raise InvalidInputError(f"patch bank metadata lacks {missing}")
        try:
            patch_size, stride = (int(metadata[k]) for k in _BANK_META)
        except ValueError as exc:
            raise InvalidInputError(f"patch bank patch_size/stride must be integers: {exc}") from exc
        _check_bank_tensors(tensors["patches"], tensors["norms"], patch_size, stride)
        extra = {k: v for k, v in metadata.items() if k not in _BANK_META}
        return cls(tensors["patches"], tensors["norms"], patch_size, stride), extra


_BANK_META = ("patch_size", "stride")


def _check_bank_tensors(patches: Tensor, norms: Tensor, patch_size: int, stride: int) -> None:
    if patch_size < 1 or stride < 1:
        raise InvalidInputError(f"patch_size and stride must be >= 1, got {patch_size} and {stride}")
    if patches.dtype != torch.float16 or norms.dtype != torch.float32:
        raise InvalidInputError(f"patches must be float16 and norms float32, got {patches.dtype} and {norms.dtype}")
    if (
        patches.dim() != 4
        or patches.shape[0] < 1
        or patches.shape[1] < 1
        or tuple(patches.shape[2:]) != (patch_size, patch_size)
    ):
        raise InvalidInputError(f"patches must be [P >= 1, C, {patch_size}, {patch_size}], got {tuple(patches.shape)}")
    if tuple(norms.shape) != (patches.shape[0],):
        raise InvalidInputError(f"norms must be [{patches.shape[0]}] (one per patch), got {tuple(norms.shape)}")


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length past the end of the data")
    header = json.loads(bytes(data[8 : 8 + n]))
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("__metadata__ must map strings to strings")
    return meta


def build_patch_bank(
    style_features: Tensor | Sequence[Tensor], patch_size: int = 3, stride: int = 1, *, max_patches: int | None = None
) -> PatchBank:
    """Patches of one or more artwork feature maps [1, C, H, W] (default layer relu3_1).

    max_patches: keep at most this many, evenly spaced over the bank (documented subsampling
    for huge artworks). Raises InvalidInputError for maps smaller than a patch or mixed channels.
    """
    maps = [style_features] if isinstance(style_features, Tensor) else list(style_features)
    if not maps:
        raise InvalidInputError("no style feature maps given")
    if patch_size < 1 or stride < 1:
        raise InvalidInputError("patch_size and stride must be >= 1")
    channels = {m.shape[1] for m in maps}
    if len(channels) != 1 or any(m.dim() != 4 for m in maps):
        raise InvalidInputError(
            f"style feature maps must be [1, C, H, W] with one C, got {[tuple(m.shape) for m in maps]}"
        )
    parts = []
    for m in maps:
        if m.shape[-2] < patch_size or m.shape[-1] < patch_size:
            raise InvalidInputError(
                f"style feature map {tuple(m.shape[-2:])} is smaller than a {patch_size}x{patch_size} patch: "
                "the artwork is too small"
            )
        cols = F.unfold(m.float(), patch_size, stride=stride)  # [B, C*k*k, L]
        parts.append(cols.transpose(1, 2).reshape(-1, m.shape[1], patch_size, patch_size))
    patches = torch.cat(parts)
    if max_patches is not None and len(patches) > max_patches:
        patches = patches[torch.linspace(0, len(patches) - 1, max_patches).round().long()]
    patches = patches.half()
    return PatchBank(patches, patches.float().flatten(1).norm(dim=1), patch_size, stride)


def bank_statistics(bank: PatchBank, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """The channel-wise mean and std [1, C, 1, 1] (fp32) of the artwork features a bank was cut
    from, read at its patches' centres (with stride 1, every position but a border of k // 2)."""
    k = bank.patch_size // 2
    centres = bank.patches[:, :, k, k].float()  # [P, C]
    std = (centres.var(0, unbiased=False) + eps).sqrt()  # as styleops.ops.mean_std
    return centres.mean(0)[None, :, None, None], std[None, :, None, None]


def style_swap(content_features: Tensor, bank: PatchBank, *, chunk_size: int = 512, eps: float = 1e-8) -> Tensor:
    """[N, C, H, W] content features -> [N, C, H, W] swapped features (fp32): the bank scanned in
    chunks for each position's best patch, then the chosen patches pasted (overlaps averaged)."""
    if content_features.dim() != 4 or content_features.shape[1] != bank.channels:
        raise InvalidInputError(
            f"content features {tuple(content_features.shape)} do not match a bank of {bank.channels} channels"
        )
    k = bank.patch_size
    n, _, h, w = content_features.shape
    if h < k or w < k:
        raise InvalidInputError(f"content features {h}x{w} are smaller than a {k}x{k} patch")
    x = content_features.float()
    device = x.device
    best = torch.full((n, 1, h - k + 1, w - k + 1), -torch.inf, device=device)
    arg = torch.zeros((n, 1, h - k + 1, w - k + 1), dtype=torch.long, device=device)
    for start in range(0, len(bank), chunk_size):  # pass 1: running max / argmax of the scores
        raw = bank.patches[start : start + chunk_size].to(device).float()
        scores = F.conv2d(x, raw / (bank.norms[start : start + chunk_size].to(device) + eps)[:, None, None, None])
        value, index = scores.max(dim=1, keepdim=True)
        better = value > best
        best = torch.where(better, value, best)
        arg = torch.where(better, index + start, arg)
    # pass 2: paste the chosen raw patches (a gather, then fold sums the overlaps)
    cols = bank.patches.flatten(1).to(device)[arg.flatten(1)]  # [N, L, C*k*k] in the bank's fp16
    out = F.fold(cols.transpose(1, 2).float(), (h, w), k)
    overlaps = F.fold(torch.ones(1, k * k, cols.shape[1], device=device), (h, w), k)
    return out / overlaps
