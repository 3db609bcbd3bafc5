"""What a stylize run is asked to do: the output settings that are hashed (`StylizeParams`) and
the whole, checked request (`RunSpec`), built once by the flow and read by everything after it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from runs import methods
from runs.context import PER_STYLE, SUPER_RESOLUTION, stable_hash
from runs.keys import catalog_prefix
from styleops.errors import InvalidInputError
from styleops.inference.color import COLOR_MODES
from styleops.io.images import encode_image
from styleops.models.translation import DIRECTIONS

# Hashed fields added after outputs existed, with the value that renders as before: that value is
# left out of the hash, so those outputs keep their keys (swap and AdaIN had no palette step).
UNHASHED_VALUES: dict[str, Any] = {"palette": False}
_NONE = object()


@dataclass(frozen=True)
class StylizeParams:
    """Everything besides the model that changes an output's bytes (hashed into params_hash).

    Only the fields that apply are hashed (colour when not 'none', and the fields the method
    declares in `Method.hashed`: alpha for AdaIN, the optimizer settings for Gatys), so adding
    options never changes the hash of existing runs.
    """

    method: str = PER_STYLE  # a registered method's name (runs.methods.names())
    max_side: int | None = 1024
    format: str = "jpeg"
    quality: int = 90
    color: str = "none"  # none | luminance | histogram (styleops.inference.color.preserve_colors)
    alpha: float = 1.0  # adain: 1 = full style, 0 = the decoded photo
    palette: bool = True  # swap, adain: the decoded output takes the artwork's RGB palette (PaletteMatch)
    iterations: int = 300  # gatys: optimizer iterations per level
    optimizer: str = "lbfgs"  # gatys: lbfgs | adam
    levels: int = 1  # gatys: coarse-to-fine levels (1 = the output size only)
    direction: str = "AtoB"  # cyclegan: which of the model's two generators (AtoB | BtoA)
    # Super-resolution after the method, in the same shard: '4' or a model name as asked, then the
    # pinned 'super-resolution/<name>/<version>' the flow resolved (runs.methods.upscale).
    upscale: str | None = None

    def __post_init__(self) -> None:
        """A method's alias ('multi') becomes its name and the format is lowercased, so that a spec
        given as JSON (a deployment's parameters) hashes as the same call from the CLI would."""
        known = methods.find(self.method)
        object.__setattr__(self, "method", known.name if known is not None else self.method)
        object.__setattr__(self, "format", self.format.lower())
        object.__setattr__(self, "upscale", None if self.upscale in (None, "") else str(self.upscale))

    def to_dict(self) -> dict[str, Any]:
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

    @property
    def hash(self) -> str:
        return stable_hash(self.to_dict())


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
        cls,
        catalog: str,
        style: str,
        *,
        method: str = PER_STYLE,
        model: str | None = None,
        version: str | None = None,
        max_side: int | None = 1024,
        format: str = "jpeg",
        quality: int = 90,
        color: str = "none",
        alpha: float = 1.0,
        palette: bool = True,
        iterations: int = 300,
        optimizer: str = "lbfgs",
        levels: int = 1,
        direction: str = "AtoB",
        upscale: str | int | None = None,
        **run: Any,
    ) -> RunSpec:
        """A spec from flat keyword settings (the CLI's options); nothing is checked yet (`check`)."""
        params = StylizeParams(
            method=method,
            max_side=max_side,
            format=format,
            quality=quality,
            color=color,
            alpha=alpha,
            palette=palette,
            iterations=iterations,
            optimizer=optimizer,
            levels=levels,
            direction=direction,
            upscale=None if upscale is None else str(upscale),
        )
        return cls(catalog=catalog, style=style, model=model, version=version, params=params, **run)

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
        if not 0.0 <= p.alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in [0, 1], got {p.alpha}")
        if p.iterations < 1 or p.optimizer not in ("lbfgs", "adam") or not 1 <= p.levels <= 4:
            raise InvalidInputError(
                "gatys needs iterations >= 1, optimizer lbfgs|adam and levels 1-4; "
                f"got {p.iterations}, {p.optimizer!r}, {p.levels}"
            )
        if p.direction not in DIRECTIONS:
            raise InvalidInputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {p.direction!r}")
        if p.upscale is not None and methods.get(p.method).family == SUPER_RESOLUTION:
            raise InvalidInputError(
                "--upscale chains super-resolution after a stylization; --method upscale runs it alone"
            )
        if self.shard_size < 1:
            raise InvalidInputError(f"shard_size must be >= 1, got {self.shard_size}")
        self.prefix  # noqa: B018 - ValueError for a catalog that is not a set name
        return self
