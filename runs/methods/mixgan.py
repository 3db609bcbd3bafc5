"""mixgan: a MIXGAN generator (Hao et al. 2018; `styleops train-mixgan`): the photo's content,
encoded and mixture-decoded in the style of the style domain it was trained on.

style: the model's name in the `mixgan` family; model_version: 'v0003'. Deterministic (eval
mode, no sampling at inference: the photo's own code is decoded); no style metrics."""

from __future__ import annotations

from runs import context
from runs.methods.pix2pix import Pix2Pix


class MIXGAN(Pix2Pix):
    name = "mixgan"
    rank = 90
    family = context.MIXGAN
    summary = "a MIXGAN generator, `style` names the model (`styleops train-mixgan`)"


METHOD = MIXGAN()
