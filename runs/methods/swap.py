"""swap: style swap (Chen & Schmidt 2016): the photo's VGG patches swapped for the nearest patches
of the style's bank, decoded by an inverse network.

style: one artwork style (artwork/<style>/); model_version: '<model>/v0001+bank-v0002' (default
model 'default'); loads inverse/<model>/<version> and the newest banks/<style> (a bank is a pure
function of the artwork); `palette` (default on): the decoded output takes the RGB palette of the
bank's artworks, read at the bytes the bank was built from (docs/quality.md); `normalise` (default
on) and `swap_weight` (default 0.3): the photo's features take the artwork's channel statistics
before matching, and 70% of them are kept beside 30% swapped patches (measured in docs/quality.md;
off and 1 are the paper's swap, and the outputs made before these knobs existed)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from infra.settings import Settings
from runs import banks, context
from runs.methods import base
from runs.methods.base import DecoderMethod, Decoding, Options, Params, Resolved, Source, knob
from styleops.errors import InvalidInputError
from styleops.inference.arbitrary import SwapStylizer
from styleops.io.images import resize_max_side, to_float
from styleops.models.palette import Palette, blend_palettes, palette_of
from styleops.ops import PatchBank


@dataclass(frozen=True)
class SwapOptions(Options):
    palette: bool = knob(True, "give the decoded output the artwork's RGB palette (mean and covariance)")
    scale: float | None = base.paint_scale_knob()
    normalise: bool = knob(
        True,
        "match patches after giving the photo's features the artwork's channel statistics (AdaIN): by shape, "
        "not tone; off: Chen & Schmidt's matching on the raw features",
    )
    swap_weight: float = knob(
        0.3,
        "share of the swapped artwork patches in the decoded features, the rest the photo's own (normalised) "
        "features: 1 = a pure swap (fewer of the photo's shapes), 0 = AdaIN",
        base.in_unit_interval,
    )


class Swap(DecoderMethod):
    name = "swap"
    rank = 30
    family = context.INVERSE
    default_model = "default"
    options = SwapOptions
    summary = (
        "style swap: any artwork with a patch bank (`styleops build-banks`), one inverse network (--palette, --scale)"
    )

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        model = model or self.default_model
        base.one_style(self.name, style)
        bank_versions = banks.bank_versions(style)  # InvalidInputError when the style has none
        v = context.registry().resolve(self.family, model, version)
        decoder, _card = context.load_model(context.registry(), self.family, model, v)
        # a bank is a pure function of the artwork and encoder: the newest one the inverse network decodes
        bank_v = banks.resolve_bank_for(
            style, bank_versions, decoder.arch, decoder.from_layer, f"{self.family}/{model}/{v}"
        )
        context.encoder_for(decoder.arch, (decoder.from_layer,), torch.device("cpu"))  # installed? (vgg19)
        return Resolved(
            style,
            f"{model}/{v}+bank-{bank_v}",
            Source(family=self.family, name=model, version=v, bank=bank_v, style=style),
        )

    def stylizer(self, source: Source, params: Params, parts: Decoding) -> tuple[nn.Module, str]:
        bank, bank_card = banks.load_bank(source.style, source.bank)
        parts.lineage["bank"] = {
            "version": source.bank,
            "sha256": bank_card["weights_sha256"],
            "artworks": bank_card["artworks"],
            "patches": len(bank),
        }
        opts: SwapOptions = self.options_of(params)
        palette = (
            bank_palette(bank_card["artworks"], parts.settings) if base.wants_palette(opts.palette, params) else None
        )
        scale = base.paint_scale(parts.decoder, opts.scale, parts.lineage)
        model = SwapStylizer(
            parts.encoder.to(parts.device),
            parts.decoder.to(parts.device),
            _bank_on(bank, parts.device),
            palette=palette,
            scale=scale,
            normalise=opts.normalise,
            swap_weight=opts.swap_weight,
        )
        return model, bank_card["artworks"][0]["key"]


def bank_palette(artworks: list[dict[str, Any]], settings: Settings) -> Palette:
    """The mean RGB palette of the bank's artworks at base.ARTWORK_SIZE; refused when an artwork's bytes
    are no longer those the bank was built from (rebuild the bank: `styleops build-banks`)."""
    st, palettes = context.store(), []
    for art in artworks:
        pixels, sha = context.artwork_pixels(st, art["key"], settings)
        if sha != art["sha256"]:
            raise InvalidInputError(
                f"{art['key']} changed since its patch bank was built (sha256 {sha[:12]}, bank {art['sha256'][:12]}): "
                "run `styleops build-banks`"
            )
        palettes.append(palette_of(resize_max_side(to_float(pixels), base.ARTWORK_SIZE)))
    return blend_palettes(palettes, [1.0] * len(palettes))


def _bank_on(bank: PatchBank, device: torch.device) -> PatchBank:
    """The bank's tensors moved to `device` once (not per chunk per image)."""
    return replace(bank, patches=bank.patches.to(device), norms=bank.norms.to(device))


METHOD = Swap()
