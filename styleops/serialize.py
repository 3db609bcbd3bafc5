"""Model weights as safetensors bytes, with the constructor config in the header metadata.

Only safetensors is ever read (no pickle), so weights fetched from storage cannot run code. Bytes
that are not safetensors (a PyTorch .pt/.pth/.ckpt pickle or zip checkpoint, whatever its file name)
are refused with an InvalidInputError that says what they look like, before anything parses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.decoder import VGGDecoder
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.transformer import TransformerNet

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def sniff_non_safetensors(blob: bytes) -> str | None:
    """What `blob` looks like if it is clearly not safetensors (a pickle, a zip checkpoint), else None."""
    head = bytes(blob[:4])
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch torch.save checkpoint: .pt/.pth/.ckpt holding pickles)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]}; e.g. a legacy PyTorch .pt/.pth/.ckpt checkpoint)"
    return None


def _refusal(blob: bytes, source: str) -> str:
    kind = sniff_non_safetensors(blob)
    what = f"{source}: not a safetensors file"
    if kind is not None:
        return f"{what}: it is {kind}; pickles can run code when loaded and are never read (convert the weights to .safetensors)"
    return what


def load_state_dict(blob: bytes, *, source: str = "weights") -> dict[str, Tensor]:
    """The tensors of safetensors bytes; InvalidInputError (naming `source`) for anything else."""
    read_metadata(blob, source=source)
    try:
        return load(blob)
    except SafetensorError as exc:
        raise InvalidInputError(f"{_refusal(blob, source)} ({exc})") from exc


_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "TransformerNet": TransformerNet,
    "MultiStyleTransformerNet": MultiStyleTransformerNet,
    "VGGDecoder": VGGDecoder,
}


def to_safetensors(state_dict: Mapping[str, Tensor], architecture: str, config: Mapping[str, object]) -> bytes:
    """Serialize weights; `architecture` and `config` let `from_safetensors` rebuild the module."""
    if architecture not in _ARCHITECTURES:
        raise InvalidInputError(f"unknown architecture {architecture!r}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = save(tensors, metadata={"architecture": architecture, "config": json.dumps(dict(config), sort_keys=True)})
    return canonical_safetensors(blob)


def canonical_safetensors(blob: bytes) -> bytes:
    """The same file with its JSON header's keys sorted, so equal weights give equal bytes (and sha256).

    safetensors writes `__metadata__` from a Rust HashMap, whose order changes from process to
    process: the same weights saved twice gave two different files about half the time. Offsets
    are relative to the end of the header, so rewriting it (padded with spaces to 8 bytes) is safe."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


def read_metadata(blob: bytes, *, source: str = "weights") -> dict[str, str]:
    """The safetensors header metadata (architecture, config JSON); InvalidInputError for non-safetensors."""
    return dict(_read_header(blob, source).get("__metadata__") or {})


def _read_header(blob: bytes, source: str) -> dict[str, Any]:
    """The whole safetensors JSON header (tensor names -> dtype, shape, offsets; and __metadata__)."""
    if sniff_non_safetensors(blob) is not None:
        raise InvalidInputError(_refusal(blob, source))
    if len(blob) < 8:
        raise InvalidInputError(f"{_refusal(blob, source)} (too short)")
    n = int.from_bytes(blob[:8], "little")
    if n <= 0 or n > _MAX_HEADER or 8 + n > len(blob):
        raise InvalidInputError(f"{_refusal(blob, source)} (bad header length)")
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{_refusal(blob, source)} (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise InvalidInputError(f"{_refusal(blob, source)} (header is not a JSON object)")
    return header


def from_safetensors(blob: bytes, *, source: str = "weights") -> nn.Module:  # TransformerNet, MultiStyleTransformerNet or VGGDecoder
    """Rebuild the module saved by `to_safetensors`, in eval mode, on the CPU."""
    header = _read_header(blob, source)
    meta = dict(header.get("__metadata__") or {})
    cls = _ARCHITECTURES.get(meta.get("architecture", ""))
    if cls is None:
        raise InvalidInputError(f"{source}: weights name an unknown architecture {meta.get('architecture')!r}")
    # The config comes from the file: build the module on the meta device first (no memory) and
    # compare its tensor shapes with the file's, so a crafted config cannot make us allocate.
    try:
        config = json.loads(meta.get("config", "{}"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        if issubclass(cls, TransformerNet):
            config.setdefault("output", "direct")  # files written before the output parameterization existed
        with torch.device("meta"):
            skeleton = cls(**config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{source}: invalid {meta['architecture']} config in the weights header: {exc}") from exc
    expected = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: v.get("shape") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    if expected != stored:
        missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
        wrong = sorted(k for k in expected.keys() & stored.keys() if expected[k] != stored[k])
        raise InvalidInputError(f"{source}: weights do not fit {meta['architecture']}({config}): missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    model = cls(**config)
    try:
        model.load_state_dict(load(blob))
    except (SafetensorError, RuntimeError) as exc:
        raise InvalidInputError(f"weights do not fit {meta['architecture']}: {exc}") from exc
    return model.eval()
