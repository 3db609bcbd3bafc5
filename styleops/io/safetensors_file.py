"""safetensors files, read safely: only safetensors is ever parsed (no pickle), so bytes fetched
from storage cannot run code. Bytes that are not safetensors (a PyTorch .pt/.pth/.ckpt pickle or
zip checkpoint, whatever the file name) are refused with an InvalidInputError that says what they
look like, before anything parses them. Headers are written canonically (sorted keys), so equal
tensors and metadata give equal bytes and sha256.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load
from torch import Tensor

from styleops.errors import InvalidInputError

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
        return (
            f"{what}: it is {kind}; pickles can run code when loaded and are never read "
            "(convert the weights to .safetensors)"
        )
    return what


def load_state_dict(blob: bytes, *, source: str = "weights") -> dict[str, Tensor]:
    """The tensors of safetensors bytes; InvalidInputError (naming `source`) for anything else."""
    read_metadata(blob, source=source)
    try:
        return load(blob)
    except SafetensorError as exc:
        raise InvalidInputError(f"{_refusal(blob, source)} ({exc})") from exc


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
    return dict(read_header(blob, source).get("__metadata__") or {})


def read_header(blob: bytes, source: str) -> dict[str, Any]:
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
