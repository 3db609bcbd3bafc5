"""gatys: optimization of each image against one artwork (Gatys et al. 2016); slow, for a few hero
images.

style: one artwork style; model_version 'gatys+art-<8 hex>' (the style's first artwork, by key,
and its etag); no model; `iterations`, `optimizer` and `levels` are hashed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from infra.settings import Settings
from runs import context
from runs.methods import base
from runs.methods.base import Built, Method, OnIteration, Options, Params, Resolved, Source, knob
from styleops.errors import InvalidInputError
from styleops.inference.gatys import GatysConfig, GatysEngine
from styleops.io.images import to_float


@dataclass(frozen=True)
class GatysOptions(Options):
    iterations: int = knob(300, "optimizer iterations per level")
    optimizer: str = knob("lbfgs", "lbfgs | adam")
    levels: int = knob(1, "coarse-to-fine levels (2 = half size first)")

    def check(self) -> None:
        if self.iterations < 1 or self.optimizer not in ("lbfgs", "adam") or not 1 <= self.levels <= 4:
            raise InvalidInputError(
                "gatys needs iterations >= 1, optimizer lbfgs|adam and levels 1-4; "
                f"got {self.iterations}, {self.optimizer!r}, {self.levels}"
            )


class Gatys(Method):
    name = "gatys"
    rank = 50
    options = GatysOptions
    summary = "Gatys optimization: any artwork, slow (--iterations, --optimizer, --levels)"

    def steps_per_image(self, params: Any) -> int:
        opts: GatysOptions = self.options_of(params)
        return opts.iterations * opts.levels

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        first = base.checked_artworks(base.one_style(self.name, style))[0]
        return Resolved(
            style, f"gatys+art-{base.artworks_identity([first])}", Source(family=self.name, artwork_key=first[0])
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
        opts: GatysOptions = self.options_of(params)
        art, sha = context.artwork_pixels(context.store(), key, settings)
        cfg = GatysConfig(iterations=opts.iterations, optimizer=opts.optimizer, style_size=base.ARTWORK_SIZE)
        enc = context.encoder(cfg.loss.layers, device, settings)
        gatys = GatysEngine(
            enc,
            to_float(art),
            cfg,
            max_side=params.max_side,
            levels=opts.levels,
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
                    "levels": opts.levels,
                },
            },
        )


METHOD = Gatys()
