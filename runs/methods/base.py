"""The Method plug-in: what a stylize method resolves before any work and builds in each shard.

A method is one module in runs/methods/ defining `METHOD`, an instance of a `Method` subclass; the
registry (runs/methods/__init__.py) finds it. `resolve` runs once per run, in the flow: it checks
the style (or blend), finds the versions and the artworks, and returns a `Resolved`: the style
label and model version label recorded in the manifest and the output keys, and the `Source`
the shards load. `build` runs in each shard (a thread or a Dask worker, maybe another machine):
it loads what the source names and returns a `Built` engine. Versions are pinned in the source,
so every shard builds the same thing.

Helpers shared by the methods (blends, artwork checks, the inference engine) are here too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, get_type_hints

import torch
from torch import nn

from infra.registry import ModelCard
from infra.settings import Settings
from runs import context
from runs.keys import is_image_key
from styleops.errors import InvalidInputError
from styleops.inference.color import ColorPreserving
from styleops.inference.engine import InferenceEngine
from styleops.inference.onnx_backend import chosen_backend
from styleops.losses.perceptual import LossWeights

ARTWORK_SIZE = 512  # artworks' longer side (px) for AdaIN statistics, Gatys targets and metrics
MIN_ARTWORK_SIDE = 32


@dataclass(frozen=True)
class Source:
    """What the shards of a run load, pinned by `resolve`; it travels inside each shard's
    `runs.shard.ShardJob` (pickled, to Dask workers too; to_dict/from_dict give its JSON form for
    summaries). Unused fields stay None."""

    family: str  # the registry family of the model ('per-style', 'inverse', ...), or the method's name
    name: str | None = None  # the model's name in its family
    version: str | None = None  # its version, 'v0003'
    blend: Mapping[str, float] | None = None  # style -> weight, summing to 1 (multi-style, adain)
    artworks: Mapping[str, tuple[str, ...]] | None = None  # style -> its artwork keys (adain)
    artwork_key: str | None = None  # the one artwork (gatys)
    bank: str | None = None  # the patch bank version of `style` (swap)
    style: str | None = None  # the style whose bank is used (swap)

    @property
    def model_ref(self) -> str:
        """'<family>/<name>/<version>' (lineage)."""
        return f"{self.family}/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as plain JSON values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "blend":
                value = dict(value)
            elif f.name == "artworks":
                value = {k: list(v) for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Source:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"a source has no field {', '.join(unknown)}")
        values = dict(d)
        if values.get("artworks") is not None:
            values["artworks"] = {k: tuple(v) for k, v in values["artworks"].items()}
        if values.get("blend") is not None:
            values["blend"] = dict(values["blend"])
        return cls(**values)

    @classmethod
    def coerce(cls, source: Source | Mapping[str, Any] | None) -> Source | None:
        """A Source from a Source, its dict (a task parameter) or None."""
        return source if source is None or isinstance(source, Source) else cls.from_dict(source)


@dataclass(frozen=True)
class Resolved:
    """A stylize run's style label, model version label and what the shards load."""

    style: str
    model_version: str
    source: Source
    # Older model_version labels whose outputs for this style are bit-identical (a multi-style
    # version that only added or retrained other styles): their `ok` rows still count as done.
    still_current: tuple[str, ...] = ()


@dataclass
class Built:
    """A shard's stylizer: a `styleops.inference.stream.StylizeEngine`, plus lineage
    (recorded in each manifest row's params_json) and what the metrics compare against."""

    engine: Any
    model_sha256: str | None
    metrics_artwork_key: str | None  # None: no style metrics (upscale: there is no artwork)
    lineage: dict[str, Any]
    metrics_weights: LossWeights = field(default_factory=LossWeights)
    metrics_style_size: int = ARTWORK_SIZE


def knob(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """One parameter of a method, as a field of its `Options`: the default, the help of its
    `styleops stylize --<name>` option, and a check returning what is wrong (None: fine)."""
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True)
class Options:
    """A method's parameters: subclasses add `knob` fields (alpha, iterations, ...). Each becomes a
    field of `runs.spec.StylizeParams` (hashed into params_hash for the methods that declare it), a
    `styleops stylize` option, and a check run before any work. No field: a method of no options."""

    def check(self) -> None:
        """InvalidInputError for the first knob whose check fails ('alpha must be in [0, 1], got 1.5')."""
        for f in fields(self):
            check = f.metadata.get("check")
            problem = check(getattr(self, f.name)) if check is not None else None
            if problem:
                raise InvalidInputError(f"{f.name} {problem}, got {getattr(self, f.name)!r}")


@dataclass(frozen=True)
class Knob:
    """A knob as the registry sees it: its name, Python type, default and help, per method."""

    name: str
    type: Any
    default: Any
    help: str


def knobs_of(options: type[Options]) -> list[Knob]:
    """The knobs an Options class declares, in order, with their resolved types."""
    hints = get_type_hints(options)
    return [Knob(f.name, hints[f.name], f.default, f.metadata.get("help", "")) for f in fields(options)]


def in_unit_interval(value: float) -> str | None:
    """A knob check: `value` in [0, 1]."""
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def paint_scale_knob() -> Any:
    """The `scale` knob of the decoder methods (swap, AdaIN): None, the decoder's own (its
    `paint_scale`), is left out of the params hash (runs.spec.UNHASHED_VALUES)."""
    return knob(
        None,
        "paint at this multiple of the output size, then shrink (finer strokes, more of the photo's shapes); "
        "1-4, default the decoder's own (1.5 for AdaIN's pretrained VGG19 decoder, else 1)",
        lambda v: None if v is None or 1.0 <= v <= 4.0 else "must be in [1, 4]",
    )


def paint_scale(decoder: Any, asked: float | None, lineage: dict[str, Any]) -> float:
    """The scale a decoder method paints at: `asked` (its `scale` knob), else the decoder's own
    `paint_scale`; recorded in `lineage` when not 1 (rows of before keep their lineage)."""
    scale = decoder.paint_scale if asked is None else asked
    if scale != 1.0:
        lineage["scale"] = scale
    return scale


class Params(Protocol):
    """What every method reads of a run's settings (runs.spec.StylizeParams); its own knobs it reads
    through `Method.options_of`."""

    @property
    def max_side(self) -> int | None: ...
    @property
    def color(self) -> str: ...


OnIteration = Callable[[int, float], None]


class Method(ABC):
    """A stylize method. Subclasses set the class attributes and implement resolve and build."""

    name: ClassVar[str]  # recorded as the manifest's `method`, e.g. per-style
    aliases: ClassVar[tuple[str, ...]] = ()  # other names the CLI takes, e.g. ("multi",)
    family: ClassVar[str | None] = None  # the registry family of the model it loads (None: no model)
    default_model: ClassVar[str | None] = (
        None  # the model name when none is given (families with many styles per model)
    )
    takes_blend: ClassVar[bool] = False  # `style` may be a blend 'wave=0.7,udnie=0.3' (the CLI's --blend)
    options: ClassVar[type[Options]] = Options  # its parameters (knobs), with defaults, help and checks
    summary: ClassVar[str] = ""  # one line for the CLI's help
    rank: ClassVar[int] = 100  # where it is listed (--method's help, the registry's order): lower first

    @property
    def hashed(self) -> tuple[str, ...]:
        """The StylizeParams fields it reads besides max_side/format/quality/color/upscale: its
        knobs, hashed into params_hash. (A plug-in may set this class attribute to hash a knob
        another method declares.)"""
        return tuple(f.name for f in fields(self.options))

    def options_of(self, params: Any) -> Any:
        """Its `Options` as set in `params` (a StylizeParams, or anything with those attributes)."""
        return self.options(**{f.name: getattr(params, f.name) for f in fields(self.options)})

    @abstractmethod
    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        """Check the style (or blend) and resolve versions (None/'production', 'latest', 'v0003');
        unknown names, missing inputs, undecodable or tiny artworks fail here, before any work."""

    @abstractmethod
    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        """The stylizer of a resolved run on `device`, with the run's colour preservation.
        `on_iteration(i, loss)`: progress of optimization methods, per image."""

    def pinned(self, model_version: str) -> tuple[str | None, str | None]:
        """The model and version that resolve to this model version label again (a label its
        `resolve` made: 'v0003', '<model>/v0001+bank-v0002', ...): what a rerun passes as --model
        and --version. (None, None) for a method of no registry model."""
        if self.family is None:
            return None, None
        model, _, version = model_version.split("+", 1)[0].rpartition("/")
        return (model or None) if self.default_model is not None else None, version or None

    def steps_per_image(self, params: Any) -> int:
        """Optimization steps per image, for a progress bar of `on_iteration` (0: feed-forward)."""
        return 0

    def metrics_artwork(self, source: Source) -> str | None:
        """The artwork key the per-image metrics of a resolved run will compare with, where it is
        known before `build` (a model's card names it); None: none, or checked by `resolve`."""
        return None

    def source_for(self, style: str, model_version: str) -> Source:
        """The source of a run known only by its style and model version label (a shard called
        without one); methods whose label does not name everything they load refuse."""
        raise InvalidInputError(f"method {self.name!r} needs the source its resolve() found")

    @property
    def cli_name(self) -> str:
        """The shortest name the CLI takes (its first alias, else its name)."""
        return min((self.name, *self.aliases), key=len)

    def __repr__(self) -> str:
        return f"<method {self.name}>"


# ---- shared by the methods ----------------------------------------------------------------------
def engine(
    model: nn.Module, params: Params, device: torch.device, settings: Settings, batch_size: int | None
) -> InferenceEngine:
    """The feed-forward inference engine of `model`, with the run's colour preservation."""
    model = ColorPreserving(model, params.color) if params.color != "none" else model
    return InferenceEngine(
        model,
        device=device,
        batch_size=batch_size,
        max_side=params.max_side,
        compile=settings.compile is True and device.type == "cuda",  # runs.shard.should_compile decided "auto"
        backend=chosen_backend(settings.backend, device),
        onnx_cache=settings.onnx_cache_dir,
        tile_size=settings.tile_size,
    )


def wants_palette(palette: bool, params: Params) -> bool:
    """Swap and AdaIN end at the artwork's palette (their `palette` knob) unless asked not to, or
    asked to keep the photo's colours (`color`), which wins."""
    return palette and params.color == "none"


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


def blend_label(weights: Mapping[str, float]) -> str:
    """Canonical label (recorded as the manifest's style): one name, or 'a=0.700,b=0.300'."""
    live = {k: v for k, v in weights.items() if v > 0}
    return next(iter(live)) if len(live) == 1 else ",".join(f"{k}={v:.3f}" for k, v in sorted(live.items()))


def one_style(method: str, style: str) -> str:
    """`style`, refused when it is a blend (methods that take one style)."""
    if "," in style or "=" in style:
        from runs import methods  # the registry, which imports the method modules

        blending = " or ".join(m.cli_name for m in methods.all_methods() if m.takes_blend)
        raise InvalidInputError(
            f"--method {method} takes one style, not a blend ({style!r}); blends: --method {blending}"
        )
    return style


def missing_metrics_artwork(key: str) -> InvalidInputError:
    """The error for an artwork the per-image metrics need that is not in the store (an imported
    model whose artwork was never uploaded), with the remedies."""
    return InvalidInputError(
        f"the per-image metrics compare each output with the model's artwork {key}, which is not in "
        f"{context.store().uri()}: upload it (`styleops upload <folder> {key.rsplit('/', 1)[0]}/`) or add --no-metrics"
    )


def resolve_checked(method: Method, style: str, version: str | None, model: str | None, metrics: bool) -> Resolved:
    """`method.resolve(...)`, and with `metrics` the artwork the per-image metrics will need, where
    the method knows it before building, checked to be in the store: what a run checks before any
    work (the CLI before a flow run exists, the flow's resolve task in deployments)."""
    resolved = method.resolve(style, version, model)
    key = method.metrics_artwork(resolved.source) if metrics else None
    if key is not None and not context.store().exists(key):
        raise missing_metrics_artwork(key)
    return resolved


def checked_artworks(style: str) -> list[tuple[str, str]]:
    """(key, etag) of every image under artwork/<style>/, each decoded and size-checked, sorted."""
    st = context.store()
    found = [(i.key, i.etag) for i in st.list(f"artwork/{style}/") if is_image_key(i.key)]
    if not found:
        raise InvalidInputError(f"no artwork for style {style!r}: upload images to artwork/{style}/")
    for key, _ in found:
        pixels, _sha = context.artwork_pixels(st, key)  # ImageError (clear) for undecodable bytes
        if min(pixels.shape[-2:]) < MIN_ARTWORK_SIDE:
            raise InvalidInputError(
                f"artwork {key} is {pixels.shape[-1]}x{pixels.shape[-2]} px: "
                f"too small (at least {MIN_ARTWORK_SIDE} px a side)"
            )
    return sorted(found)


def artworks_identity(artworks: list[tuple[str, str]]) -> str:
    """8 hex of the artworks' (key, etag) pairs: new artwork bytes, new model version label."""
    return context.stable_hash(sorted(artworks), n=8)


@dataclass(frozen=True)
class Artworks:
    """A style or a blend of artwork/<style>/ folders, checked (`checked_artworks`): the blend's
    weights, each style's artwork keys, and the 8-hex identity of their keys and etags."""

    blend: dict[str, float]
    keys: dict[str, tuple[str, ...]]
    identity: str

    @property
    def label(self) -> str:
        return blend_label(self.blend)


def artworks_of(style: str) -> Artworks:
    """The checked artworks of a style or blend 'wave=0.7,udnie=0.3' (methods that paint any artwork)."""
    blend = parse_blend(style)
    found = {name: checked_artworks(name) for name in blend}
    keys = {name: tuple(key for key, _etag in arts) for name, arts in found.items()}
    return Artworks(blend, keys, artworks_identity([art for arts in found.values() for art in arts]))


def weighted_artworks(source: Source, settings: Settings) -> list[tuple[torch.Tensor, float, dict[str, Any]]]:
    """Each artwork `source` pins, read from the store: (uint8 [3, H, W] pixels, its weight: its
    style's share of the blend split evenly over the style's artworks, its lineage record
    {"key", "sha256", "weight" (rounded)})."""
    st, blend, out = context.store(), source.blend or {}, []
    for name, keys in (source.artworks or {}).items():
        for key in keys:
            pixels, sha = context.artwork_pixels(st, key, settings)
            w = blend[name] / len(keys)
            out.append((pixels, w, {"key": key, "sha256": sha, "weight": round(w, 6)}))
    return out


def heaviest(arts: list[dict[str, Any]]) -> str:
    """The key of the artwork of largest weight (what the per-image metrics compare with)."""
    return str(max(arts, key=lambda a: a["weight"])["key"])


class StyleNetwork(Method):
    """A method that runs one registered feed-forward style network (per-style, multi-style):
    `build` loads it with its card; `conditioned` says what runs and what metrics compare with."""

    @abstractmethod
    def conditioned(self, net: nn.Module, card: ModelCard, source: Source) -> tuple[nn.Module, str, LossWeights]:
        """What runs for `source` (the network, or it conditioned on the blend), the artwork key the
        metrics compare with and the loss weights they use (the style's training loss)."""

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        """The `conditioned` network through `engine`; lineage names the model and its weights'
        sha256; metrics at the style size the card's network trained at."""
        net, card = context.load_model(context.registry(), source.family, source.name, source.version)
        net, artwork_key, loss = self.conditioned(net, card, source)
        return Built(
            engine(net, params, device, settings, batch_size),
            card["weights_sha256"],
            artwork_key,
            {"model": source.model_ref, "model_sha256": card["weights_sha256"]},
            loss,
            card["train_config"]["style_size"],
        )


@dataclass
class Decoding:
    """What a `DecoderMethod.stylizer` builds on: the registered decoder and the VGG encoder it
    inverts (not yet moved to `device`), the shard's device and settings, and the lineage so far
    (the decoder and its weights' sha256), which the stylizer extends."""

    encoder: nn.Module
    decoder: Any
    device: torch.device
    settings: Settings
    lineage: dict[str, Any]


class DecoderMethod(Method):
    """A method that decodes VGG features with a registered decoder (adain, swap): `build` loads the
    decoder and the encoder it inverts; `stylizer` makes the run's model around them."""

    @abstractmethod
    def stylizer(self, source: Source, params: Params, parts: Decoding) -> tuple[nn.Module, str]:
        """The model on `parts.device` (its settings recorded in `parts.lineage`) and the key of the
        artwork the metrics compare with."""

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        """The `stylizer`'s model through `engine`, with the decoder's weights' sha256 and lineage."""
        decoder, card = context.load_model(context.registry(), source.family, source.name, source.version)
        enc = context.encoder_for(decoder.arch, (decoder.from_layer,), device, settings)
        lineage: dict[str, Any] = {"decoder": source.model_ref, "decoder_sha256": card["weights_sha256"]}
        model, artwork_key = self.stylizer(source, params, Decoding(enc, decoder, device, settings, lineage))
        return Built(engine(model, params, device, settings, batch_size), card["weights_sha256"], artwork_key, lineage)


class NamedModel(Method):
    """A method whose style names one registry model of its family (per-style, pix2pix, upscale, ...):
    model_version is the version, 'v0003'."""

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        v = context.registry().resolve(str(self.family), style, version)
        return Resolved(style, v, Source(family=self.family, name=style, version=v))

    def source_for(self, style: str, model_version: str) -> Source:
        return self.resolve(style, model_version).source
