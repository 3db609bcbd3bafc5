"""gatys: optimization of each image against one artwork (Gatys et al. 2016); slow, for a few hero
images.

style: one artwork style; model_version 'gatys+art-<8 hex>' (the style's first artwork, by key,
and its etag); no model; `iterations`, `optimizer` and `levels` are hashed."""

from __future__ import annotations

import torch

from infra.settings import Settings
from runs import context
from runs.methods.base import (
    ARTWORK_SIZE,
    Built,
    Method,
    OnIteration,
    Params,
    Resolved,
    Source,
    artworks_identity,
    checked_artworks,
    one_style,
)
from styleops.inference.gatys import GatysConfig, GatysEngine
from styleops.io.images import to_float


class Gatys(Method):
    name = "gatys"
    rank = 50
    hashed = ("iterations", "optimizer", "levels")
    summary = "Gatys optimization: any artwork, slow (--iterations, --optimizer, --levels)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        first = checked_artworks(one_style(self.name, style))[0]
        return Resolved(
            style, f"gatys+art-{artworks_identity([first])}", Source(family=self.name, artwork_key=first[0])
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
        key = source.artwork_key
        assert key is not None
        art, sha = context.artwork_pixels(context.store(), key, settings)
        cfg = GatysConfig(iterations=params.iterations, optimizer=params.optimizer, style_size=ARTWORK_SIZE)
        enc = context.encoder(cfg.loss.layers, device, settings)
        gatys = GatysEngine(
            enc,
            to_float(art),
            cfg,
            max_side=params.max_side,
            levels=params.levels,
            color=params.color,
            progress=on_iteration,
        )
        return Built(
            gatys,
            None,
            key,
            {
                "artwork": {"key": key, "sha256": sha},
                "gatys": {
                    "iterations": cfg.iterations,
                    "optimizer": cfg.optimizer,
                    "init": cfg.init,
                    "seed": cfg.seed,
                    "levels": params.levels,
                },
            },
        )


METHOD = Gatys()
