"""Style swap (Chen & Schmidt 2016): replace each content patch by its most similar artwork patch.

Correlating the content features with the *normalized* artwork patches (as conv filters) gives,
at every position, a score proportional to the cosine similarity (the content patch's own norm
is the same for all candidates, so it is not needed for the argmax). The argmax one-hot map,
transposed-convolved with the *raw* patches and divided by how many patches overlap each
position, is the swapped feature map. The bank is scanned in chunks keeping a running max and
argmax, so peak memory grows with chunk_size x H x W, not with the bank size P.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError


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


def build_patch_bank(style_features: Tensor | Sequence[Tensor], patch_size: int = 3, stride: int = 1, *, max_patches: int | None = None) -> PatchBank:
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
        raise InvalidInputError(f"style feature maps must be [1, C, H, W] with one C, got {[tuple(m.shape) for m in maps]}")
    parts = []
    for m in maps:
        if m.shape[-2] < patch_size or m.shape[-1] < patch_size:
            raise InvalidInputError(f"style feature map {tuple(m.shape[-2:])} is smaller than a {patch_size}x{patch_size} patch: the artwork is too small")
        cols = F.unfold(m.float(), patch_size, stride=stride)  # [B, C*k*k, L]
        parts.append(cols.transpose(1, 2).reshape(-1, m.shape[1], patch_size, patch_size))
    patches = torch.cat(parts)
    if max_patches is not None and len(patches) > max_patches:
        patches = patches[torch.linspace(0, len(patches) - 1, max_patches).round().long()]
    patches = patches.half()
    return PatchBank(patches, patches.float().flatten(1).norm(dim=1), patch_size, stride)


def style_swap(content_features: Tensor, bank: PatchBank, *, chunk_size: int = 2048, eps: float = 1e-8) -> Tensor:
    """[N, C, H, W] content features -> [N, C, H, W] swapped features (fp32), in two chunked passes."""
    if content_features.dim() != 4 or content_features.shape[1] != bank.channels:
        raise InvalidInputError(f"content features {tuple(content_features.shape)} do not match a bank of {bank.channels} channels")
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
    out = torch.zeros_like(x)
    for start in range(0, len(bank), chunk_size):  # pass 2: paste the chosen raw patches
        raw = bank.patches[start : start + chunk_size].to(device).float()
        one_hot = (arg - start == torch.arange(len(raw), device=device)[None, :, None, None]).float()
        out += F.conv_transpose2d(one_hot, raw)
    overlaps = F.conv_transpose2d(torch.ones_like(best), torch.ones(1, 1, k, k, device=device))
    return out / overlaps
