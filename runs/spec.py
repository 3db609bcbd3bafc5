"""What a stylize run is asked to do: the output settings that are hashed (`StylizeParams`) and
the whole, checked request (`RunSpec`), built once by the flow and read by everything after it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any

import torch

from runs import methods
from runs.context import PER_STYLE, SUPER_RESOLUTION, stable_hash
from runs.keys import catalog_prefix
from styleops.errors import InvalidInputError
from styleops.inference.color import COLOR_MODES
from styleops.io.images import encode_image

# Hashed fields added after outputs existed, with the value that renders as before: that value is
# left out of the hash, so those outputs keep their keys (swap and AdaIN had no palette step; their
# `scale` None is the decoder's own paint scale, which its model version names; swap matched raw
# features and decoded the swapped ones alone: normalise False, swap_weight 1).
UNHASHED_VALUES: dict[str, Any] = {"palette": False, "scale": None, "normalise": False, "swap_weight": 1.0}
_NONE = object()


@dataclass(frozen=True)
class _Shared:
    """What every method reads of a run's output settings."""

    method: str = PER_STYLE  # a registered method's name (runs.methods.names())
    max_side: int | None = 1024
    format: str = "jpeg"
    quality: int = 90
    color: str = "none"  # none | luminance | histogram (styleops.inference.color.preserve_colors)


def _post_init(self: Any) -> None:
    """A method's alias ('multi') becomes its name and the format is lowercased, so that a spec
    given as JSON (a deployment's parameters) hashes as the same call from the CLI would."""
    known = methods.find(self.method)
    object.__setattr__(self, "method", known.name if known is not None else self.method)
    object.__setattr__(self, "format", self.format.lower())
    object.__setattr__(self, "upscale", None if self.upscale in (None, "") else str(self.upscale))


def _to_dict(self: Any) -> dict[str, Any]:
    """What is hashed: the shared settings (colour when not 'none', upscale when set) and the
    knobs the method declares (`Method.hashed`), but a knob at its `UNHASHED_VALUES` value."""
    d: dict[str, Any] = {
        "method": self.method,
        "max_side": self.max_side,
        "format": self.format,
        "quality": self.quality,
    }
    if self.color != "none":
        d["color"] = self.color
    if self.upscale is not None:
        d["upscale"] = self.upscale
    method = methods.find(self.method)
    for name in method.hashed if method is not None else ():
        if UNHASHED_VALUES.get(name, _NONE) != getattr(self, name):
            d[name] = getattr(self, name)
    return d


def _hash(self: Any) -> str:
    return stable_hash(self.to_dict())


StylizeParams: Any = make_dataclass(
    "StylizeParams",
    [
        *((f.name, f.type, field(default=f.default)) for f in fields(_Shared)),
        *((k.name, k.type, field(default=k.default)) for k in methods.knobs().values()),
        # Super-resolution after the method, in the same shard: '4' or a model name as asked, then
        # the pinned 'super-resolution/<name>/<version>' the flow resolved (runs.methods.upscale).
        ("upscale", str | None, field(default=None)),
    ],
    frozen=True,
    namespace={"__module__": __name__, "__post_init__": _post_init, "to_dict": _to_dict, "hash": property(_hash)},
)
StylizeParams.__doc__ = """Everything besides the model that changes an output's bytes (hashed into params_hash):
the settings every method shares (max_side, format, quality, color, upscale) and one field per knob
of the registered methods (`runs.methods.knobs()`: alpha, palette, iterations, ...; each method
declares its own in its `Options`, so adding one is one line in its module).

Only the fields that apply are hashed (colour when not 'none', and the knobs the method declares),
so adding options never changes the hash of existing runs."""
SETTINGS = frozenset(f.name for f in fields(StylizeParams))  # RunSpec.create's keywords that go to params


def params_from_dict(d: Mapping[str, Any]) -> Any:
    """The StylizeParams whose `to_dict()` is `d` (a manifest row's params_json; other keys are
    ignored): a knob of the method that `d` leaves out is at its UNHASHED_VALUES value, others at
    their defaults."""
    given = {k: v for k, v in d.items() if k in SETTINGS}
    method = methods.find(given.get("method", PER_STYLE))
    for name in method.hashed if method is not None else ():
        if name not in given and name in UNHASHED_VALUES:
            given[name] = UNHASHED_VALUES[name]
    return StylizeParams(**given)


@dataclass(frozen=True)
class RunSpec:
    """One stylize run as asked: which catalog, style (or blend), which model and version (None:
    production), the output settings with the method (`params`), and how the work is cut and where
    it runs. The `stylize-catalog` flow's one parameter: JSON in a deployment, for example
    {"catalog": "demo", "style": "monet", "params": {"method": "per-style", "max_side": 512}}."""

    catalog: str
    style: str
    model: str | None = None  # multi-style: the model (default 'collection'); swap/adain: the decoder ('default')
    version: str | None = None  # None/'production', 'latest' or 'v0003'
    params: StylizeParams = StylizeParams()
    shard_size: int = 64
    batch_size: int | None = None
    metrics: bool = True
    metrics_sample: float = 1.0  # the share of images measured (a fixed subset: `in_sample`)
    retry_failed: bool = False
    repair: bool = False
    dask_address: str | None = None
    dask_workers: int | None = None

    @property
    def method(self) -> str:
        """The registered method's name (`params.method`)."""
        return self.params.method

    @classmethod
    def create(
        cls, catalog: str, style: str, *, model: str | None = None, version: str | None = None, **settings: Any
    ) -> RunSpec:
        """A spec from flat keyword settings (the CLI's options): StylizeParams' fields (method,
        max_side, format, ..., every method's knobs) go to `params`, the rest (shard_size, metrics,
        ...) to the spec; nothing is checked yet (`check`)."""
        asked = {k: v for k, v in settings.items() if k in SETTINGS}  # upscale 4 becomes '4' in __post_init__
        run = {k: v for k, v in settings.items() if k not in SETTINGS}
        return cls(catalog=catalog, style=style, model=model, version=version, params=StylizeParams(**asked), **run)

    def cli_args(self) -> list[str]:
        """The `styleops stylize` options that ask for this spec: catalog, method, style or blend,
        model, version, then the output settings and the method's knobs that differ from their
        defaults (switches last, as --no-palette). Run settings (shards, Dask) are left out."""
        defaults, p, method = StylizeParams(), self.params, methods.find(self.params.method)
        hashed = method.hashed if method is not None else ()
        args = ["--catalog", self.prefix.strip("/").removeprefix("catalog/")]
        args += ["--method", method.cli_name if method is not None else p.method] if p.method != defaults.method else []
        args += ["--blend" if "=" in self.style else "--style", self.style]
        args += ["--model", self.model] if self.model else []
        args += ["--version", self.version] if self.version else []
        changed = [
            (f.name.replace("_", "-"), getattr(p, f.name))
            for f in fields(p)
            if f.name not in ("method", "upscale")
            and (f.name not in methods.knobs() or f.name in hashed)
            and getattr(p, f.name) not in (None, getattr(defaults, f.name))  # no option asks for None
        ]
        args += [x for name, value in changed if not isinstance(value, bool) for x in (f"--{name}", str(value))]
        args += [f"--{'' if value else 'no-'}{name}" for name, value in changed if isinstance(value, bool)]
        return args + (["--upscale", p.upscale] if p.upscale is not None else [])

    def with_upscaler(self, ref: str) -> RunSpec:
        """This spec with `params.upscale` pinned to `ref` ('super-resolution/<name>/<version>')."""
        return replace(self, params=replace(self.params, upscale=ref))

    @property
    def prefix(self) -> str:
        """catalog/<set>/"""
        return catalog_prefix(self.catalog)

    def check(self) -> RunSpec:
        """Fail before any work when the settings are unusable; returns the spec."""
        p = self.params
        encode_image(torch.zeros(3, 2, 2, dtype=torch.uint8), p.format, quality=p.quality)
        methods.get(p.method)  # InvalidInputError listing the registered methods
        if p.max_side is not None and p.max_side < 16:
            raise InvalidInputError(f"max_side must be >= 16 pixels, got {p.max_side}")
        if p.color not in COLOR_MODES:
            raise InvalidInputError(f"colour preservation must be one of {', '.join(COLOR_MODES)}, got {p.color!r}")
        for method in methods.all_methods():  # every knob given is checked, whichever method reads it
            method.options_of(p).check()
        if p.upscale is not None and methods.get(p.method).family == SUPER_RESOLUTION:
            raise InvalidInputError(
                "--upscale chains super-resolution after a stylization; --method upscale runs it alone"
            )
        if self.shard_size < 1:
            raise InvalidInputError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 0.0 < self.metrics_sample <= 1.0:
            raise InvalidInputError(f"metrics_sample must be in (0, 1], got {self.metrics_sample}")
        self.prefix  # noqa: B018 - ValueError for a catalog that is not a set name
        return self
