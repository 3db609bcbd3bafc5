"""Training set-ups the tests share: small enough to train in seconds on the CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from styleops.losses.perceptual import LossWeights
from styleops.training.engine import TrainConfig

# The style loss on the first two VGG blocks only: a two-layer encoder is enough.
SHALLOW_STYLE = LossWeights(style_layers={"relu1_2": 1.0, "relu2_2": 1.0})

# 8 steps of 2 crops at 64 px, a net 8 channels wide with one residual block, no warm-up, a
# checkpoint every 2 steps and a log line every step.
SMALL_TRAIN = TrainConfig(
    steps=8,
    batch_size=2,
    image_size=64,
    style_size=64,
    channels=8,
    n_residual=1,
    lr=5e-3,
    checkpoint_every=2,
    log_every=1,
    warmup_steps=0,
)


def small_train(**changes: Any) -> TrainConfig:  # noqa: ANN401 - TrainConfig's fields
    """`SMALL_TRAIN` with `changes` (TrainConfig fields)."""
    return replace(SMALL_TRAIN, **changes)
