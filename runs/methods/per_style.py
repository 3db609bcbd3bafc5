"""per-style: a feed-forward network trained for one artwork (Johnson et al. 2016).

style: the model's name (the style); model_version: 'v0003'; loads per-style/<style>/<version>."""

from __future__ import annotations

from torch import nn

from infra.registry import ModelCard, ModelNotFoundError
from runs import context
from runs.methods.base import NamedModel, Resolved, Source, StyleNetwork
from styleops.errors import InvalidInputError
from styleops.losses.perceptual import LossWeights


class PerStyle(StyleNetwork, NamedModel):
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

    def conditioned(self, net: nn.Module, card: ModelCard, source: Source) -> tuple[nn.Module, str, LossWeights]:
        loss = LossWeights(
            **(card.get("loss") or card["train_config"]["loss"])
        )  # absolute weights (calibrated ones since 0.2)
        return net, card["artwork_key"], loss


METHOD = PerStyle()
