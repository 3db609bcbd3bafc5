"""Model weights as safetensors bytes, with the constructor config in the header metadata; the
architectures `from_safetensors` may rebuild are the families' (`styleops.families`). The file
format itself, read without pickle: `styleops.io.safetensors_file`."""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from styleops import families
from styleops.errors import InvalidInputError
from styleops.io.safetensors_file import canonical_safetensors, read_header
from styleops.models.transformer import TransformerNet


def to_safetensors(state_dict: Mapping[str, Tensor], architecture: str, config: Mapping[str, object]) -> bytes:
    """Serialize weights; `architecture` and `config` let `from_safetensors` rebuild the module."""
    if architecture not in families.architectures():
        raise InvalidInputError(f"unknown architecture {architecture!r}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = save(tensors, metadata={"architecture": architecture, "config": json.dumps(dict(config), sort_keys=True)})
    return canonical_safetensors(blob)


def from_safetensors(blob: bytes, *, source: str = "weights") -> nn.Module:
    """Rebuild the module saved by `to_safetensors` (one of `styleops.families.architectures()`),
    in eval mode, on the CPU."""
    header = read_header(blob, source)
    meta = dict(header.get("__metadata__") or {})
    cls = families.architectures().get(meta.get("architecture", ""))
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
        raise InvalidInputError(
            f"{source}: invalid {meta['architecture']} config in the weights header: {exc}"
        ) from exc
    expected = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: v.get("shape") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    if expected != stored:
        missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
        wrong = sorted(k for k in expected.keys() & stored.keys() if expected[k] != stored[k])
        raise InvalidInputError(
            f"{source}: weights do not fit {meta['architecture']}({config}): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    model = cls(**config)
    try:
        model.load_state_dict(load(blob))
    except (SafetensorError, RuntimeError) as exc:
        raise InvalidInputError(f"weights do not fit {meta['architecture']}: {exc}") from exc
    return model.eval()
