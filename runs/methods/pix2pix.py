"""pix2pix: a Pix2Pix U-Net generator (Isola et al. 2017) trained on pairs (`styleops train-pix2pix`).

style: the model's name in the `pix2pix` family; model_version: 'v0003'. Deterministic: the
generator runs in eval mode (dropout off), so reruns give identical bytes. No style metrics
(there is no artwork): the manifest's losses stay empty."""

from __future__ import annotations

import torch
from torch import nn

from infra.settings import Settings
from runs import context
from runs.methods.base import Built, NamedModel, OnIteration, Params, Resolved, Source, engine, one_style
from styleops.errors import InvalidInputError


class Pix2Pix(NamedModel):
    name = "pix2pix"
    rank = 70
    family = context.PIX2PIX
    summary = "a Pix2Pix generator, `style` names the model (`styleops train-pix2pix`)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        one_style(self.name, style)
        have = context.registry().names(self.family)
        if style not in have:
            listed = ", ".join(have) or f"none yet: `styleops train-{self.name}`"
            raise InvalidInputError(f"no {self.family} model {style!r}; registered: {listed}")
        return super().resolve(style, version)

    def generator(self, net: nn.Module, params: Params) -> nn.Module:
        """The image-to-image module the engine runs."""
        return net

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        net, card = context.load_model(context.registry(), source.family, str(source.name), str(source.version))
        if card.get("architecture") != _ARCHITECTURE[self.family]:
            raise InvalidInputError(f"{source.model_ref} is a {card.get('architecture')}, not a {self.family} model")
        lineage = {"model": source.model_ref, "model_sha256": card["weights_sha256"]}
        return Built(
            engine(self.generator(net, params), params, device, settings, batch_size),
            card["weights_sha256"],
            None,
            lineage,
        )


_ARCHITECTURE = {context.PIX2PIX: "UNetGenerator", context.CYCLEGAN: "CycleGenerators", context.MIXGAN: "MixGenerator"}

METHOD = Pix2Pix()
