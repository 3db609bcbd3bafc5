"""cyclegan: one direction of a CycleGAN model (Zhu et al. 2017; `styleops train-cyclegan`).

style: the model's name in the `cyclegan` family; one version holds both generators and
`direction` (AtoB | BtoA, hashed into params_hash) picks one. Deterministic (eval mode, no
dropout); no style metrics."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from runs import context
from runs.methods.base import Options, Params, knob
from runs.methods.pix2pix import Pix2Pix
from styleops.models.translation import DIRECTIONS, OneDirection


def _a_direction(value: str) -> str | None:
    return None if value in DIRECTIONS else f"must be one of {', '.join(DIRECTIONS)}"


@dataclass(frozen=True)
class CycleGANOptions(Options):
    direction: str = knob("AtoB", "AtoB (the model's G) or BtoA (its F)", _a_direction)


class CycleGAN(Pix2Pix):
    name = "cyclegan"
    rank = 80
    family = context.CYCLEGAN
    options = CycleGANOptions
    summary = "a CycleGAN generator, `style` names the model, --direction AtoB|BtoA (`styleops train-cyclegan`)"

    def generator(self, net: nn.Module, params: Params) -> nn.Module:
        return OneDirection(net, self.options_of(params).direction)  # type: ignore[arg-type] - a CycleGenerators (checked in build)


METHOD = CycleGAN()
