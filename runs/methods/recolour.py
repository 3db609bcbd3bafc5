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
from runs.methods import base
from runs.methods.base import Built, Method, OnIteration, Options, Params, Resolved, Source, knob
from styleops.io.images import resize_max_side, to_float
from styleops.models.palette import PaletteMatch, blend_palettes, palette_of


@dataclass(frozen=True)
class RecolourOptions(Options):
    strength: float = knob(1.0, "1 the artwork's palette, 0 the photo's own colours", base.in_unit_interval)


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
        art = base.artworks_of(style)
        return Resolved(
            art.label, f"palette+art-{art.identity}", Source(family=self.name, blend=art.blend, artworks=art.keys)
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
        pixels, weights, arts = zip(*base.weighted_artworks(source, settings), strict=True)
        palettes = [palette_of(resize_max_side(to_float(p), base.ARTWORK_SIZE)) for p in pixels]
        strength = self.options_of(params).strength
        model = Recolour(PaletteMatch(blend_palettes(palettes, list(weights)), alpha=strength)).to(device)
        return Built(
            base.engine(model, params, device, settings, batch_size),
            None,
            base.heaviest(list(arts)),
            {"artworks": list(arts), "strength": strength},
        )


METHOD = RecolourMethod()
