"""What a stylize run uses for each method: resolved once before any work, built in each shard.

| method      | style                      | model_version (manifest, output keys)  | loads                                  |
|-------------|----------------------------|----------------------------------------|----------------------------------------|
| per-style   | model name                 | `v0003`                                | per-style/<style>                      |
| multi-style | style or blend of the card | `<model>/v0002`                        | multi-style/<model>                    |
| swap        | one artwork style          | `<model>/v0001+bank-v0002`             | inverse/<model>, newest banks/<style>  |
| adain       | style or blend of styles   | `<model>/v0001+art-<8 hex>`            | adain/<model>, artwork/<style>/*       |
| gatys       | one artwork style          | `gatys+art-<8 hex>`                    | the style's first artwork (by key)     |

`art-<8 hex>` identifies the artworks' keys and etags, so new artwork bytes mean new outputs.
Every input's sha256 also goes into the manifest's params_json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from infra.registry import ModelNotFoundError
from infra.settings import Settings
from styleops.color import ColorPreserving
from styleops.errors import InvalidInputError
from styleops.gatys import GatysConfig, GatysEngine
from styleops.imageio import resize_max_side, to_float
from styleops.infer import InferenceEngine
from styleops.losses import LossWeights
from styleops.models.arbitrary import AdaINStylizer, SwapStylizer
from styleops.ops import PatchBank
from tasks import banks, common

METHODS = ("per-style", "multi-style", "swap", "adain", "gatys")
DEFAULT_MODEL = {"multi-style": "collection", "swap": "default", "adain": "default"}
ARTWORK_SIZE = 512  # artworks' longer side (px) for AdaIN statistics, Gatys targets and metrics
MIN_ARTWORK_SIDE = 32


@dataclass(frozen=True)
class Resolved:
    """A stylize run's style label, model version label and what the shards load (JSON-able)."""

    style: str
    model_version: str
    source: dict[str, Any]
    # Older model_version labels whose outputs for this style are bit-identical (a multi-style
    # version that only added or retrained other styles): their `ok` rows still count as done.
    still_current: tuple[str, ...] = ()


@dataclass
class Built:
    """A shard's stylizer: an engine with prepare()/stylize_prepared()/batch_size, plus lineage."""

    engine: Any
    model_sha256: str | None
    metrics_artwork_key: str
    lineage: dict[str, Any]
    metrics_weights: LossWeights = field(default_factory=LossWeights)
    metrics_style_size: int = ARTWORK_SIZE


class Conditioned(torch.nn.Module):
    """A multi-style network with its style weights fixed: plain `net(x)` for the engine."""

    def __init__(self, net: torch.nn.Module, weights: list[float]) -> None:
        super().__init__()
        self.net, self.weights = net, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.weights)


def parse_blend(blend: str) -> dict[str, float]:
    """'wave=0.7,udnie=0.3' -> {'wave': 0.7, 'udnie': 0.3} normalized to sum 1; ValueError if malformed,
    negative, repeated or all zero."""
    weights: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in blend.split(","))):
        name, sep, value = part.partition("=")
        try:
            w = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"blend entry {part!r} is not name=weight") from None
        if not name.strip() or name.strip() in weights or not w >= 0 or w == float("inf"):
            raise ValueError(f"blend entry {part!r}: need a new style name and a finite weight >= 0")
        weights[name.strip()] = w
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"blend {blend!r} has no positive weight")
    return {k: v / total for k, v in weights.items()}


def blend_label(weights: dict[str, float]) -> str:
    """Canonical label (recorded as the manifest's style): one name, or 'a=0.700,b=0.300'."""
    live = {k: v for k, v in weights.items() if v > 0}
    return next(iter(live)) if len(live) == 1 else ",".join(f"{k}={v:.3f}" for k, v in sorted(live.items()))


def checked_blend(style: str, card: dict[str, Any], model_ref: str) -> dict[str, float]:
    """`parse_blend(style)` with every name checked against a multi-style card's styles."""
    known = [s["name"] for s in card["styles"]]
    blend = parse_blend(style)
    unknown = sorted(set(blend) - set(known))
    if unknown:
        raise InvalidInputError(f"multi-style/{model_ref} has no style {', '.join(unknown)}; it has {', '.join(known)}")
    return blend


def resolve(method: str, style: str, version: str | None, model: str | None = None) -> Resolved:
    """Check the style/blend and resolve versions (None/'production', 'latest', 'v0003'); unknown
    names, missing banks and undecodable or tiny artworks fail here, before any work."""
    reg = common.registry()
    model = model or DEFAULT_MODEL.get(method)
    if method == "per-style":
        v = reg.resolve(common.PER_STYLE, style, version)
        return Resolved(style, v, {"family": common.PER_STYLE, "name": style, "version": v})
    if method == "multi-style":
        v = reg.resolve(common.MULTI_STYLE, model, version)
        card = reg.card(common.MULTI_STYLE, model, v)
        blend = checked_blend(style, card, f"{model}/{v}")
        older = tuple(f"{model}/{u}" for u in unchanged_ancestors(card, blend))
        return Resolved(blend_label(blend), f"{model}/{v}", {"family": common.MULTI_STYLE, "name": model, "version": v, "blend": blend}, older)
    if method == "adain":
        blend = parse_blend(style)
        artworks = {name: _checked_artworks(name) for name in blend}
        v = reg.resolve("adain", model, version)
        ident = _identity([art for found in artworks.values() for art in found])
        keys = {name: [key for key, _etag in found] for name, found in artworks.items()}
        return Resolved(blend_label(blend), f"{model}/{v}+art-{ident}", {"family": "adain", "name": model, "version": v, "blend": blend, "artworks": keys})
    if method in ("swap", "gatys"):
        if "," in style or "=" in style:
            raise InvalidInputError(f"--method {method} takes one style, not a blend ({style!r}); blends: --method adain or multi")
        if method == "gatys":
            first = _checked_artworks(style)[0]
            return Resolved(style, f"gatys+art-{_identity([first])}", {"family": "gatys", "artwork_key": first[0]})
        try:
            bank_v = banks.resolve_bank(style, "latest")  # a bank is a pure function of the artwork: the newest one
        except ModelNotFoundError:
            raise InvalidInputError(f"no patch bank for style {style!r}: upload its artwork to artwork/{style}/ and run `styleops build-banks`") from None
        v = reg.resolve("inverse", model, version)
        return Resolved(style, f"{model}/{v}+bank-{bank_v}", {"family": "inverse", "name": model, "version": v, "bank": bank_v})
    raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def trained_in(card: dict[str, Any]) -> dict[str, str]:
    """style -> the version whose training last changed its parameters (multi-style cards)."""
    return {s["name"]: s.get("trained_in") or card["version"] for s in card["styles"]}


def unchanged_ancestors(card: dict[str, Any], blend: dict[str, float]) -> list[str]:
    """Versions up the card's parent chain that give the same outputs for `blend` (every blended
    style trained in the same version, so shared weights and its scale/shift are identical)."""
    reg, mine, found = common.registry(), trained_in(card), []
    parent = card.get("parent_version")
    while parent:
        up = reg.card(common.MULTI_STYLE, card["name"], parent)
        theirs = trained_in(up)
        if any(theirs.get(name) != mine[name] for name in blend):
            break
        found.append(parent)
        parent = up.get("parent_version")
    return found


def _checked_artworks(style: str) -> list[tuple[str, str]]:
    """(key, etag) of every image under artwork/<style>/, each decoded and size-checked."""
    st = common.store()
    found = [(i.key, i.etag) for i in st.list(f"artwork/{style}/") if common.is_image_key(i.key)]
    if not found:
        raise InvalidInputError(f"no artwork for style {style!r}: upload images to artwork/{style}/")
    for key, _ in found:
        pixels, _sha = common.artwork_pixels(st, key)  # ImageError (clear) for undecodable bytes
        if min(pixels.shape[-2:]) < MIN_ARTWORK_SIDE:
            raise InvalidInputError(f"artwork {key} is {pixels.shape[-1]}x{pixels.shape[-2]} px: too small (at least {MIN_ARTWORK_SIDE} px a side)")
    return sorted(found)


def _identity(artworks: list[tuple[str, str]]) -> str:
    return common.stable_hash(sorted(artworks), n=8)


def build(method: str, style: str, source: dict[str, Any], *, params: Any, device: torch.device, settings: Settings, batch_size: int | None = None, on_iteration: Callable[[int, float], None] | None = None) -> Built:
    """The stylizer of a resolved run (`params`: the run's StylizeParams), on `device`, with the
    run's colour preservation. `on_iteration(i, loss)`: Gatys progress, per image."""
    reg, st = common.registry(), common.store()

    def engine(model: nn.Module) -> InferenceEngine:
        model = ColorPreserving(model, params.color) if params.color != "none" else model
        return InferenceEngine(model, device=device, batch_size=batch_size, max_side=params.max_side, compile=settings.compile and device.type == "cuda", tile_size=settings.tile_size)

    if method in ("per-style", "multi-style"):
        net, card = common.load_model(reg, source["family"], source["name"], source["version"])
        lineage = {"model": f"{source['family']}/{source['name']}/{source['version']}", "model_sha256": card["weights_sha256"]}
        loss_dict = card.get("loss") or card["train_config"]["loss"]  # absolute weights (calibrated ones since 0.2)
        if method == "per-style":
            art_key = card["artwork_key"]
        else:
            known = [s["name"] for s in card["styles"]]
            blend = source["blend"]
            net = Conditioned(net, [blend.get(k, 0.0) for k in known])
            main = card["styles"][known.index(max(blend, key=blend.__getitem__))]
            art_key, loss_dict = main["artwork_key"], main.get("loss", loss_dict)
        loss = LossWeights(**loss_dict)
        return Built(engine(net), card["weights_sha256"], art_key, lineage, loss, card["train_config"]["style_size"])

    if method == "gatys":
        key = source["artwork_key"]
        art, sha = common.artwork_pixels(st, key, settings)
        cfg = GatysConfig(iterations=params.iterations, optimizer=params.optimizer, style_size=ARTWORK_SIZE)
        enc = common.encoder(cfg.loss.layers, device, settings)
        gatys = GatysEngine(enc, to_float(art), cfg, max_side=params.max_side, levels=params.levels, color=params.color, progress=on_iteration)
        return Built(gatys, None, key, {"artwork": {"key": key, "sha256": sha}, "gatys": {"iterations": cfg.iterations, "optimizer": cfg.optimizer, "init": cfg.init, "seed": cfg.seed, "levels": params.levels}})

    decoder, card = common.load_model(reg, source["family"], source["name"], source["version"])
    enc = common.encoder((decoder.from_layer,), device, settings)
    lineage: dict[str, Any] = {"decoder": f"{source['family']}/{source['name']}/{source['version']}", "decoder_sha256": card["weights_sha256"]}
    if method == "swap":
        bank, bank_card = banks.load_bank(style, source["bank"])
        lineage["bank"] = {"version": source["bank"], "sha256": bank_card["weights_sha256"], "artworks": bank_card["artworks"], "patches": len(bank)}
        model = SwapStylizer(enc.to(device), decoder.to(device), _bank_on(bank, device))
        return Built(engine(model), card["weights_sha256"], bank_card["artworks"][0]["key"], lineage)
    blend, images, weights, arts = source["blend"], [], [], []
    for name, keys in source["artworks"].items():
        for key in keys:
            pixels, sha = common.artwork_pixels(st, key, settings)
            images.append(resize_max_side(to_float(pixels), ARTWORK_SIZE)[None].to(device))
            weights.append(blend[name] / len(keys))
            arts.append({"key": key, "sha256": sha, "weight": round(weights[-1], 6)})
    lineage.update(artworks=arts, alpha=params.alpha)
    model = AdaINStylizer(enc.to(device), decoder.to(device), images, weights, alpha=params.alpha)
    return Built(engine(model), card["weights_sha256"], max(arts, key=lambda a: a["weight"])["key"], lineage)


def _bank_on(bank: PatchBank, device: torch.device) -> PatchBank:
    """The bank's tensors moved to `device` once (not per chunk per image)."""
    return replace(bank, patches=bank.patches.to(device), norms=bank.norms.to(device))

