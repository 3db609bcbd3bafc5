"""What a run works with, from settings: the store, registry and manifest handles, the VGG loss
network and registered models (cached per process), artwork pixels, short stable hashes.

No Prefect here: the ring logs through `log` (the `styleops` logger) or a logger passed in."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from infra.manifest import ManifestTable
from infra.registry import ModelCard, ModelRegistry
from infra.settings import Settings, get_settings
from infra.store import ObjectStore
from styleops import families
from styleops.errors import InvalidInputError
from styleops.io.adain_weights import load_adain_encoder
from styleops.io.images import decode_image
from styleops.io.magenta_weights import MagentaWeights, load_magenta
from styleops.io.serialize import from_safetensors
from styleops.io.weights import load_encoder
from styleops.models.normalised_vgg import NormalisedVGG19
from styleops.models.vgg import VGGEncoder

# Registry families of the trained feed-forward models (a method may load from one of them);
# declared once, in styleops.families.
PER_STYLE = families.PER_STYLE.name
MULTI_STYLE = families.MULTI_STYLE.name
SUPER_RESOLUTION = families.SUPER_RESOLUTION.name
PIX2PIX = families.PIX2PIX.name
CYCLEGAN = families.CYCLEGAN.name
MIXGAN = families.MIXGAN.name
INVERSE = families.INVERSE.name
ADAIN = families.ADAIN.name

Logger = logging.Logger | logging.LoggerAdapter
log: logging.Logger = logging.getLogger("styleops")


def store(settings: Settings | None = None, *, writable: tuple[str, ...] | None = None) -> ObjectStore:
    """The bucket from settings; `writable` restricts writes to the prefixes the caller owns."""
    return ObjectStore.from_settings(settings or get_settings(), writable_prefixes=writable)


def registry(settings: Settings | None = None) -> ModelRegistry:
    return ModelRegistry(store(settings, writable=("models/", "registry/")))


def manifest(settings: Settings | None = None) -> ManifestTable:
    return ManifestTable(store(settings, writable=("manifest/",)))


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of the canonical JSON of `obj` (params hashes, work-dir names)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


_encoder_lock = threading.Lock()


@lru_cache(maxsize=4)
def _encoder(weights: str | None, layers: tuple[str, ...], cache_dir: str, device: str) -> VGGEncoder:
    return load_encoder(weights, layers, cache_dir=Path(cache_dir)).to(device)


def encoder(layers: tuple[str, ...], device: torch.device, settings: Settings | None = None) -> VGGEncoder:
    """The VGG loss network (cached per process: it is ~60 MB)."""
    s = settings or get_settings()
    with _encoder_lock:
        return _encoder(str(s.vgg_weights) if s.vgg_weights else None, layers, str(s.cache_dir), str(device))


@lru_cache(maxsize=4)
def _adain_encoder(path: str | None, layers: tuple[str, ...], cache_dir: str, device: str) -> NormalisedVGG19:
    return load_adain_encoder(layers, Path(path) if path else None, cache_dir=Path(cache_dir)).to(device)


def encoder_for(arch: str, layers: tuple[str, ...], device: torch.device, settings: Settings | None = None) -> Any:
    """The encoder a decoder of `arch` inverts (cached per process): 'vgg16' the VGG16 loss network
    (`encoder`), 'vgg19' AdaIN's normalised VGG19 (`styleops.io.adain_weights`)."""
    if arch not in ("vgg16", "vgg19"):
        raise InvalidInputError(f"encoder must be vgg16 (the loss network) or vgg19 (AdaIN's), got {arch!r}")
    if arch == "vgg16":
        return encoder(layers, device, settings)
    s = settings or get_settings()
    with _encoder_lock:
        return _adain_encoder(str(s.adain_weights) if s.adain_weights else None, layers, str(s.cache_dir), str(device))


_magenta_lock = threading.Lock()


@lru_cache(maxsize=2)
def _magenta(path: str | None, cache_dir: str) -> MagentaWeights:
    return load_magenta(Path(path) if path else None, cache_dir=Path(cache_dir))


def magenta(settings: Settings | None = None) -> MagentaWeights:
    """Magenta's pretrained transformer and style predictor, on the CPU in eval mode (cached per
    process; callers copy them to their device). WeightsNotFoundError names `styleops weights install`."""
    s = settings or get_settings()
    with _magenta_lock:
        return _magenta(str(s.magenta_weights) if s.magenta_weights else None, str(s.cache_dir))


_models: dict[tuple[str, str, str, str], tuple[torch.nn.Module, ModelCard]] = {}
_models_lock = threading.Lock()


def load_model(reg: ModelRegistry, family: str, name: str, version: str) -> tuple[torch.nn.Module, ModelCard]:
    """(network in eval mode, card) for a registered version; cached per process."""
    key = (reg.store.bucket, family, name, version)
    with _models_lock:
        if key not in _models:
            card = reg.card(family, name, version)
            _models[key] = (from_safetensors(reg.weights_bytes(family, name, version)), card)
        return _models[key]


def artwork_pixels(st: ObjectStore, key: str, settings: Settings | None = None) -> tuple[torch.Tensor, str]:
    """(uint8 [3, H, W], sha256) of an artwork in the store; one over the byte cap is refused from
    its Content-Length, before its body is read."""
    s = settings or get_settings()
    got = st.get(key, max_bytes=s.max_image_bytes)
    return decode_image(got.data, max_pixels=s.max_image_pixels, max_bytes=s.max_image_bytes).pixels, got.sha256
