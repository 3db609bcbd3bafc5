"""The quality gate a candidate model passes before it replaces the production version.

Both versions stylize the same fixed held-out photos; one scoring loss (the same VGG layers and
weights for both, whatever they were trained with) measures each output's content and style loss
against the *current* artwork. The candidate passes when

- it stylizes at all: its mean style loss is below that of the unstylized photos (the baseline),
  which also refuses a first version that learned nothing; and
- where a production version exists, neither its mean content loss nor its mean style loss is
  worse than production's by more than `margin` (0.05 = 5% worse allowed).

Losses are the weighted perceptual terms of `styleops.losses.perceptual` (dimensionless, lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from styleops.evaluation.metrics import StyleMetrics


@dataclass(frozen=True)
class Scores:
    """Mean losses of one stylizer over the held-out photos."""

    content: float
    style: float
    images: int


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    candidate: Scores
    production: Scores | None
    baseline: Scores
    margin: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(stylize: Callable[[Tensor], Tensor], photos: Sequence[Tensor], metrics: StyleMetrics) -> Scores:
    """Mean (content, style) loss of `stylize` (float [3, H, W] in [0, 1] -> same) over `photos`."""
    if not photos:
        raise ValueError("the quality gate needs at least one held-out photo")
    content = style = 0.0
    with torch.inference_mode():
        for photo in photos:
            c, s = metrics.measure(photo, stylize(photo).clamp(0, 1))
            content, style = content + c, style + s
    return Scores(content / len(photos), style / len(photos), len(photos))


def decide(candidate: Scores, production: Scores | None, baseline: Scores, margin: float) -> GateDecision:
    """Apply the rule of the module docstring; `reason` states the numbers that decided."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not (math.isfinite(candidate.content) and math.isfinite(candidate.style)):
        return GateDecision(False, "candidate losses are not finite", candidate, production, baseline, margin)
    if candidate.style >= baseline.style:
        reason = f"style loss {candidate.style:,.1f} is no better than the unstylized photos' {baseline.style:,.1f}"
        return GateDecision(False, reason, candidate, production, baseline, margin)
    if production is None:
        return GateDecision(
            True,
            f"first version: style loss {candidate.style:,.1f} < unstylized {baseline.style:,.1f}",
            candidate,
            None,
            baseline,
            margin,
        )
    worse = [
        f"{term} loss {getattr(candidate, term):,.1f} > production {getattr(production, term):,.1f} x {1 + margin:g}"
        for term in ("content", "style")
        if getattr(candidate, term) > getattr(production, term) * (1 + margin)
    ]
    if worse:
        return GateDecision(False, "; ".join(worse), candidate, production, baseline, margin)
    reason = (
        f"content {candidate.content:,.1f} vs {production.content:,.1f}, "
        f"style {candidate.style:,.1f} vs {production.style:,.1f} (margin {margin:g})"
    )
    return GateDecision(True, reason, candidate, production, baseline, margin)
