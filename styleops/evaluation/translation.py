"""Checks and scores of translation generators (Pix2Pix, CycleGAN).

`collapse_check` is the gate against the failures users report with GANs: a generator whose
outputs do not depend on its input (mode collapse: every photo becomes the same picture), and
one that returns its input unchanged (CycleGAN's "generator does nothing"). Units: images in
[0, 1]; distances are mean absolute differences per pixel and channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MIN_DEPENDENCE = 0.05  # output differences over input differences, below this: collapsed
MIN_CHANGE = 0.01  # mean |G(x) - x|, below this: the generator does nothing (when it must change x)


@dataclass(frozen=True)
class CollapseCheck:
    """dependence: mean |G(x_i) - G(x_j)| / mean |x_i - x_j| over neighbouring probes (about 1
    for a generator that keeps the differences between photos, 0 for a collapsed one).
    change: mean |G(x) - x|."""

    dependence: float
    change: float
    passed: bool
    reason: str


@torch.inference_mode()
def collapse_check(generator: Callable[[Tensor], Tensor], probes: Tensor, *, must_change: bool = True) -> CollapseCheck:
    """Run `generator` ([N, 3, H, W] -> same, in [0, 1]) on `probes` [N >= 2, 3, H, W] (different
    photos, one size) and judge it. must_change: also refuse a generator that returns its input."""
    if probes.shape[0] < 2:
        raise ValueError("collapse_check needs at least two probe images")
    out = torch.cat([generator(p[None]).clamp(0, 1) for p in probes])
    dx = (probes[1:] - probes[:-1]).abs().mean()
    dy = (out[1:] - out[:-1]).abs().mean()
    dependence = float(dy / dx.clamp_min(1e-8))
    change = float((out - probes).abs().mean())
    if dependence < MIN_DEPENDENCE:
        return CollapseCheck(dependence, change, False, f"outputs do not depend on the input ({dependence:.3f})")
    if must_change and change < MIN_CHANGE:
        return CollapseCheck(dependence, change, False, f"the generator returns its input (change {change:.4f})")
    return CollapseCheck(dependence, change, True, "ok")


def l1(x: Tensor, y: Tensor) -> float:
    """Mean absolute difference of two image batches in [0, 1], in the reference's [-1, 1] units."""
    return float(2 * (x.float() - y.float()).abs().mean())
