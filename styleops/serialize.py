"""Model weights as safetensors bytes, with the constructor config in the header metadata.

Only safetensors is ever read (no pickle), so weights fetched from storage cannot run code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.decoder import VGGDecoder
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.transformer import TransformerNet

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
    return save(tensors, metadata={"architecture": architecture, "config": json.dumps(dict(config), sort_keys=True)})


def read_metadata(blob: bytes) -> dict[str, str]:
    """The safetensors header metadata (architecture, config JSON)."""
    if len(blob) < 8:
        raise InvalidInputError("not a safetensors blob (too short)")
    n = int.from_bytes(blob[:8], "little")
    if n <= 0 or 8 + n > len(blob):
        raise InvalidInputError("not a safetensors blob (bad header length)")
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError("not a safetensors blob (header is not JSON)") from exc
    return dict(header.get("__metadata__", {}))


def from_safetensors(blob: bytes) -> nn.Module:  # TransformerNet, MultiStyleTransformerNet or VGGDecoder
    """Rebuild the module saved by `to_safetensors`, in eval mode, on the CPU."""
    meta = read_metadata(blob)
    cls = _ARCHITECTURES.get(meta.get("architecture", ""))
    if cls is None:
        raise InvalidInputError(f"weights name an unknown architecture {meta.get('architecture')!r}")
    model = cls(**json.loads(meta.get("config", "{}")))
    try:
        model.load_state_dict(load(blob))
    except (SafetensorError, RuntimeError) as exc:
        raise InvalidInputError(f"weights do not fit {meta['architecture']}: {exc}") from exc
    return model.eval()
