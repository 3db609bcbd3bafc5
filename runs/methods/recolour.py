"""recolour: the photo given the artwork's RGB palette, nothing else (linear colour transfer:
the artwork's RGB mean and covariance, `styleops.models.palette`). Milliseconds an image on a CPU,
no model, no brushwork: a colour grade of a catalog, and the baseline the painting methods are
measured against (docs/quality.md).

style: a style or a blend of artwork/<style>/ folders (a blend mixes the palettes); model_version
'palette+art-<8 hex of the artworks' keys and etags>'; `strength` (default 1): 1 the artwork's
palette, 0 the photo's own colours (hashed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from infra.settings import Settings
from runs import context
from runs.methods.base import (
    ARTWORK_SIZE,
    Built,
    Method,
    OnIteration,
    Options,
    Params,
    Resolved,
    Source,
    artworks_identity,
    blend_label,
    checked_artworks,
    engine,
    in_unit_interval,
    knob,
    parse_blend,
)
from styleops.io.images import resize_max_side, to_float
from styleops.models.palette import PaletteMatch, blend_palettes, palette_of


@dataclass(frozen=True)
class RecolourOptions(Options):
    strength: float = knob(1.0, "1 the artwork's palette, 0 the photo's own colours", in_unit_interval)


class Recolour(nn.Module):
    """x [N, 3, H, W] in [0, 1] -> x with the palette's RGB mean and covariance (`PaletteMatch`
    of the photo with itself: tiled runs match the whole image once, as untiled ones do)."""

    def __init__(self, palette: PaletteMatch) -> None:
        super().__init__()
        self.palette = palette

    def forward(self, x: Tensor) -> Tensor:
        return self.palette(x, x)


class RecolourMethod(Method):
    name = "recolour"
    rank = 110  # after magenta (100)
    takes_blend = True
    options = RecolourOptions
    summary = "the artwork's colours only (no brushwork): a fast colour grade (--strength)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        blend = parse_blend(style)
        artworks = {name: checked_artworks(name) for name in blend}
        keys = {name: tuple(key for key, _etag in found) for name, found in artworks.items()}
        ident = artworks_identity([art for found in artworks.values() for art in found])
        return Resolved(
            blend_label(blend), f"palette+art-{ident}", Source(family=self.name, blend=blend, artworks=keys)
        )

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        st, blend = context.store(), source.blend or {}
        palettes, weights, arts = [], [], []
        for name, keys in (source.artworks or {}).items():
            for key in keys:
                pixels, sha = context.artwork_pixels(st, key, settings)
                palettes.append(palette_of(resize_max_side(to_float(pixels), ARTWORK_SIZE)))
                weights.append(blend[name] / len(keys))
                arts.append({"key": key, "sha256": sha, "weight": round(weights[-1], 6)})
        strength = self.options_of(params).strength
        model = Recolour(PaletteMatch(blend_palettes(palettes, weights), alpha=strength)).to(device)
        return Built(
            engine(model, params, device, settings, batch_size),
            None,
            max(arts, key=lambda a: a["weight"])["key"],
            {"artworks": arts, "strength": strength},
        )


METHOD = RecolourMethod()
