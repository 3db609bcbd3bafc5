"""adain: adaptive instance normalization (Huang & Belongie 2017): the photo's VGG features take
the artworks' channel statistics, decoded by an AdaIN decoder.

style: a style or a blend of artwork/<style>/ folders; model_version '<model>/v0001+art-<8 hex>'
(default model 'default'; the hex identifies the artworks' keys and etags, so new artwork bytes
mean new outputs); loads adain/<model>/<version> and every artwork of the blend; `alpha`;
`palette` (default on): the decoded output takes the blend's RGB palette (docs/quality.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

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
    wants_palette,
)
from styleops.inference.arbitrary import AdaINStylizer
from styleops.io.images import resize_max_side, to_float


@dataclass(frozen=True)
class AdaINOptions(Options):
    alpha: float = knob(1.0, "content-style trade-off, 0 (the decoded photo) to 1 (full style)", in_unit_interval)
    palette: bool = knob(True, "give the decoded output the artwork's RGB palette (mean and covariance)")


class AdaIN(Method):
    name = "adain"
    rank = 40
    family = context.ADAIN
    default_model = "default"
    takes_blend = True
    options = AdaINOptions
    summary = "AdaIN: any artwork or blend of artworks, one decoder (--alpha, --palette)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        model = model or self.default_model
        blend = parse_blend(style)
        artworks = {name: checked_artworks(name) for name in blend}
        v = context.registry().resolve(self.family, model, version)
        ident = artworks_identity([art for found in artworks.values() for art in found])
        keys = {name: tuple(key for key, _etag in found) for name, found in artworks.items()}
        return Resolved(
            blend_label(blend),
            f"{model}/{v}+art-{ident}",
            Source(family=self.family, name=model, version=v, blend=blend, artworks=keys),
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
        decoder, card = context.load_model(context.registry(), source.family, source.name, source.version)
        enc = context.encoder((decoder.from_layer,), device, settings)
        opts: AdaINOptions = self.options_of(params)
        st, blend = context.store(), source.blend or {}
        images, weights, arts = [], [], []
        for name, keys in (source.artworks or {}).items():
            for key in keys:
                pixels, sha = context.artwork_pixels(st, key, settings)
                images.append(resize_max_side(to_float(pixels), ARTWORK_SIZE)[None].to(device))
                weights.append(blend[name] / len(keys))
                arts.append({"key": key, "sha256": sha, "weight": round(weights[-1], 6)})
        lineage: dict[str, Any] = {
            "decoder": source.model_ref,
            "decoder_sha256": card["weights_sha256"],
            "artworks": arts,
            "alpha": opts.alpha,
        }
        model = AdaINStylizer(
            enc.to(device),
            decoder.to(device),
            images,
            weights,
            alpha=opts.alpha,
            palette=wants_palette(opts.palette, params),
        )
        return Built(
            engine(model, params, device, settings, batch_size),
            card["weights_sha256"],
            max(arts, key=lambda a: a["weight"])["key"],
            lineage,
        )


METHOD = AdaIN()
