"""per-style: a feed-forward network trained for one artwork (Johnson et al. 2016).

style: the model's name (the style); model_version: 'v0003'; loads per-style/<style>/<version>."""

from __future__ import annotations

import torch

from infra.registry import ModelNotFoundError
from infra.settings import Settings
from runs import context
from runs.methods.base import Built, NamedModel, OnIteration, Params, Resolved, Source, engine
from styleops.errors import InvalidInputError
from styleops.losses.perceptual import LossWeights


class PerStyle(NamedModel):
    name = "per-style"
    rank = 10
    family = context.PER_STYLE
    summary = "a network trained for the style (`styleops train-style`)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        try:
            return super().resolve(style, version)
        except ModelNotFoundError:
            known = context.registry().names(self.family)
            if style in known:
                raise  # the style is known; its version is not (the message names the versions)
            raise InvalidInputError(
                f"no per-style model for style {style!r}; "
                + (f"styles: {', '.join(known)}" if known else "none trained yet")
                + f" (`styleops train-style`; --method magenta paints any artwork/{style}/ without training)"
            ) from None

    def metrics_artwork(self, source: Source) -> str | None:
        return context.registry().card(self.family, source.name, source.version)["artwork_key"]

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        net, card = context.load_model(context.registry(), source.family, source.name, source.version)
        lineage = {"model": source.model_ref, "model_sha256": card["weights_sha256"]}
        loss = LossWeights(
            **(card.get("loss") or card["train_config"]["loss"])
        )  # absolute weights (calibrated ones since 0.2)
        return Built(
            engine(net, params, device, settings, batch_size),
            card["weights_sha256"],
            card["artwork_key"],
            lineage,
            loss,
            card["train_config"]["style_size"],
        )


METHOD = PerStyle()
