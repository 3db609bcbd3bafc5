"""adain: adaptive instance normalization (Huang & Belongie 2017): the photo's VGG features take
the artworks' channel statistics, decoded by an AdaIN decoder.

style: a style or a blend of artwork/<style>/ folders; model_version '<model>/v0001+art-<8 hex>'
(default model 'default'; the hex identifies the artworks' keys and etags, so new artwork bytes
mean new outputs); loads adain/<model>/<version> and every artwork of the blend; `alpha`;
`palette` (default on): the decoded output takes the blend's RGB palette (docs/quality.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runs import context
from runs.methods import base
from runs.methods.base import DecoderMethod, Decoding, Options, Params, Resolved, Source, knob
from styleops.inference.arbitrary import AdaINStylizer
from styleops.io.images import resize_max_side, to_float


@dataclass(frozen=True)
class AdaINOptions(Options):
    alpha: float = knob(1.0, "content-style trade-off, 0 (the decoded photo) to 1 (full style)", base.in_unit_interval)
    palette: bool = knob(True, "give the decoded output the artwork's RGB palette (mean and covariance)")
    scale: float | None = base.paint_scale_knob()


class AdaIN(DecoderMethod):
    name = "adain"
    rank = 40
    family = context.ADAIN
    default_model = "default"
    takes_blend = True
    options = AdaINOptions
    summary = "AdaIN: any artwork or blend of artworks, one decoder (--alpha, --palette, --scale)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        model = model or self.default_model
        art = base.artworks_of(style)
        v = context.registry().resolve(self.family, model, version)
        decoder, _card = context.load_model(context.registry(), self.family, model, v)
        # the encoder it inverts (AdaIN's VGG19 is installed apart): WeightsNotFoundError here, before any work
        context.encoder_for(decoder.arch, (decoder.from_layer,), torch.device("cpu"))
        return Resolved(
            art.label,
            f"{model}/{v}+art-{art.identity}",
            Source(family=self.family, name=model, version=v, blend=art.blend, artworks=art.keys),
        )

    def stylizer(self, source: Source, params: Params, parts: Decoding) -> tuple[nn.Module, str]:
        opts: AdaINOptions = self.options_of(params)
        pixels, weights, arts = zip(*base.weighted_artworks(source, parts.settings), strict=True)
        images = [resize_max_side(to_float(p), base.ARTWORK_SIZE)[None].to(parts.device) for p in pixels]
        parts.lineage.update(artworks=list(arts), alpha=opts.alpha)
        scale = base.paint_scale(parts.decoder, opts.scale, parts.lineage)
        model = AdaINStylizer(
            parts.encoder.to(parts.device),
            parts.decoder.to(parts.device),
            images,
            list(weights),
            alpha=opts.alpha,
            palette=base.wants_palette(opts.palette, params),
            scale=scale,
        )
        return model, base.heaviest(list(arts))


METHOD = AdaIN()
