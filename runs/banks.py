"""Style-swap patch banks (Chen & Schmidt 2016) in the registry: family "bank", one name per style.

A style's bank holds the 3x3 patches (stride 1) of the `settings.bank_layer` features of every
artwork under artwork/<style>/, each artwork resized to `settings.bank_style_size` px on its
longer side first, at most `settings.bank_max_patches` of them (evenly subsampled beyond). It is
stored at banks/<style>/<version>/weights.safetensors (PatchBank.to_bytes) with its card: the
artworks (key, sha256), the build parameters and the encoder weights' identity. A rebuild with
the same inputs is skipped ("unchanged").
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from infra.registry import BANK, ModelNotFoundError, ModelRegistry, family_prefix
from infra.settings import Settings, get_settings
from infra.version import code_version
from runs import context
from runs.keys import is_image_key, style_from_artwork_key
from styleops.device import resolve_device
from styleops.errors import ImageError, InvalidInputError
from styleops.io.adain_weights import ENCODER_FILE as ADAIN_ENCODER_FILE
from styleops.io.images import resize_max_side, to_float
from styleops.io.weights import resolve_weights_file
from styleops.ops import PatchBank, build_patch_bank

PATCH_SIZE = 3
STRIDE = 1
_SPEC_FIELDS = ("artworks", "layer", "patch_size", "stride", "style_size", "max_patches", "encoder")


def bank_registry(settings: Settings | None = None) -> ModelRegistry:
    """A registry whose store may write only the banks and the registry table."""
    return ModelRegistry(context.store(settings, writable=(family_prefix(BANK), "registry/")))


@lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def encoder_identity(settings: Settings | None = None, arch: str = "vgg16") -> dict[str, Any]:
    """The weights the encoder of `arch` loads: {"arch", "weights" (file name), "sha256"}; for
    torchvision's ImageNet download (no local file) weights is "torchvision-imagenet", sha256 None."""
    s = settings or get_settings()
    if arch == "vgg19":
        path: Path | None = Path(s.adain_weights or s.cache_dir / ADAIN_ENCODER_FILE)
    else:
        path = resolve_weights_file(s.vgg_weights, cache_dir=s.cache_dir)
    if path is None or not Path(path).is_file():
        return {"arch": arch, "weights": "torchvision-imagenet", "sha256": None}
    stat = Path(path).stat()
    return {
        "arch": arch,
        "weights": Path(path).name,
        "sha256": _file_sha256(str(path), stat.st_size, stat.st_mtime_ns),
    }


def latest_card(reg: ModelRegistry, style: str) -> dict[str, Any] | None:
    """The card of the newest bank of `style`, None if it has none."""
    try:
        return reg.card(BANK, style, reg.resolve(BANK, style, "latest"))
    except ModelNotFoundError:
        return None


def list_artworks(prefix: str = "artwork/") -> dict[str, list[str]]:
    """{style: sorted image keys} of the artwork/<style>/<file> images under `prefix`."""
    found: dict[str, list[str]] = {}
    for info in context.store().list(prefix):
        if is_image_key(info.key):
            found.setdefault(style_from_artwork_key(info.key), []).append(info.key)
    if not found:
        raise InvalidInputError(
            f"no artwork images under {context.store().uri(prefix)} (expected artwork/<style>/<file>)"
        )
    return {style: sorted(keys) for style, keys in sorted(found.items())}


def build_bank(
    style: str,
    artwork_keys: list[str],
    force: bool = False,
    log: context.Logger = context.log,
    encoder: str | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """Build and register the patch bank of `style` from its artworks, unless the newest bank
    was built from the same artwork bytes with the same parameters and encoder (and not `force`).
    `encoder` ('vgg16' | 'vgg19') and `layer` default to settings.bank_encoder and bank_layer.

    Returns {"style", "version", "status": "unchanged"} or {"style", "version", "status": "built", "patches"}.
    """
    settings = get_settings()
    arch, layer = encoder or settings.bank_encoder, layer or settings.bank_layer
    keys = sorted(set(artwork_keys))
    if not keys:
        raise InvalidInputError(f"no artworks given for the bank of {style!r}")
    strays = [k for k in keys if style_from_artwork_key(k) != style]
    if strays:
        raise InvalidInputError(f"artworks {strays} are not under artwork/{style}/")
    st, reg = context.store(), bank_registry(settings)
    arts = []
    for key in keys:
        try:
            arts.append(context.artwork_pixels(st, key, settings))
        except ImageError as exc:
            raise type(exc)(f"artwork {key}: {exc}") from exc
    spec = {
        "artworks": [{"key": key, "sha256": sha} for key, (_, sha) in zip(keys, arts, strict=True)],
        "layer": layer,
        "patch_size": PATCH_SIZE,
        "stride": STRIDE,
        "style_size": settings.bank_style_size,
        "max_patches": settings.bank_max_patches,
        "encoder": encoder_identity(settings, arch),
    }
    previous = latest_card(reg, style)
    if previous is not None and not force and {k: previous.get(k) for k in _SPEC_FIELDS} == spec:
        log.info("bank of %s: %s is up to date (%d artworks)", style, previous["version"], len(keys))
        return {"style": style, "version": previous["version"], "status": "unchanged"}

    device = resolve_device(settings.device)
    enc = context.encoder_for(arch, (layer,), device, settings)
    maps = []
    for key, (pixels, _) in zip(keys, arts, strict=True):
        image = resize_max_side(to_float(pixels), settings.bank_style_size).unsqueeze(0).to(device)
        with torch.no_grad():
            features = enc(image)[layer].cpu()
        h, w = features.shape[-2:]
        if h < PATCH_SIZE or w < PATCH_SIZE:
            raise InvalidInputError(
                f"artwork {key} is too small for a style-swap bank: {tuple(pixels.shape[-2:])} px gives "
                f"{h}x{w} {layer} features, less than a {PATCH_SIZE}x{PATCH_SIZE} patch"
            )
        maps.append(features)
    total = sum(((m.shape[-2] - PATCH_SIZE) // STRIDE + 1) * ((m.shape[-1] - PATCH_SIZE) // STRIDE + 1) for m in maps)
    try:
        bank = build_patch_bank(maps, PATCH_SIZE, STRIDE, max_patches=settings.bank_max_patches)
    except InvalidInputError as exc:
        raise InvalidInputError(f"bank of {style} from {keys}: {exc}") from exc
    card = {
        **spec,
        "n_patches": len(bank),
        "total_patches": total,
        "subsampled": len(bank) < total,
        "channels": bank.channels,
        "metrics": {"n_patches": len(bank)},
        "code_version": code_version(),
    }
    version = reg.register(BANK, style, bank.to_bytes({"style": style, "layer": layer}), card)
    log.info(
        "registered bank/%s %s: %d patches of %d%s from %d artworks (%.1f MB)",
        style,
        version.version,
        len(bank),
        total,
        " (subsampled)" if card["subsampled"] else "",
        len(keys),
        version.size / 1e6,
    )
    return {"style": style, "version": version.version, "status": "built", "patches": len(bank)}


def promote_bank_if_first(style: str, version: str) -> bool:
    """Promote bank `version` of `style` when none is in production yet; True if it did.
    (tasks.training.promote_if_first_task writes through context.registry(), scoped to models/.)"""
    reg = bank_registry()
    if reg.production(BANK, style) is not None:
        return False
    reg.promote(BANK, style, version, reason="first bank")
    return True


def resolve_bank(style: str, version: str | None = None) -> str:
    """None or "production" -> the promoted bank; "latest" -> the newest; "vNNNN" -> checked."""
    return context.registry().resolve(BANK, style, version)


def bank_versions(style: str) -> list[str]:
    """The bank versions of `style`, oldest first; InvalidInputError naming the remedy when none."""
    versions = context.registry().version_ids(BANK, style)
    if not versions:
        raise InvalidInputError(
            f"no patch bank for style {style!r}: upload its artwork to artwork/{style}/ and run `styleops build-banks`"
        )
    return versions


def resolve_bank_for(style: str, versions: list[str], arch: str, layer: str, decoder: str) -> str:
    """The newest of `versions` (`bank_versions`) built with encoder `arch` at `layer` (what the
    inverse network `decoder` inverts), reading cards newest first until one matches;
    InvalidInputError naming the build-banks command otherwise."""
    reg = context.registry()
    for version in reversed(versions):
        card = reg.card(BANK, style, version)
        if card.get("layer") == layer and (card.get("encoder") or {}).get("arch", "vgg16") == arch:
            return version
    raise InvalidInputError(
        f"no patch bank of style {style!r} at {arch} {layer}, which {decoder} decodes: "
        f"run `styleops build-banks --encoder {arch} --layer {layer}`"
    )


_banks: OrderedDict[tuple[str, str, str], tuple[PatchBank, dict[str, Any]]] = OrderedDict()
_banks_lock = threading.Lock()
_MAX_CACHED_BANKS = 4  # a full bank is ~75 MB


def load_bank(style: str, version: str) -> tuple[PatchBank, dict[str, Any]]:
    """(bank on the CPU, card) of a registered version, its bytes checked against the card;
    cached per process (the few most recently used)."""
    reg = context.registry()
    key = (reg.store.bucket, style, version)
    with _banks_lock:
        if key in _banks:
            _banks.move_to_end(key)
            return _banks[key]
        card = reg.card(BANK, style, version)
        bank, _ = PatchBank.from_bytes(reg.weights_bytes(BANK, style, version))
        if (bank.patch_size, bank.stride) != (card["patch_size"], card["stride"]) or len(bank) != card["n_patches"]:
            raise InvalidInputError(f"bank/{style} {version}: the weights do not match the card")
        _banks[key] = (bank, card)
        while len(_banks) > _MAX_CACHED_BANKS:
            _banks.popitem(last=False)
        return _banks[key]
