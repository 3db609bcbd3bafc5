"""The quality gate's rule (styleops.evaluation.quality_gate): exact decisions on given scores, and scoring
real photos with the real loss network."""

from __future__ import annotations

import math

import pytest
import torch

from styleops.evaluation.metrics import StyleMetrics
from styleops.evaluation.quality_gate import Scores, decide, score
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.losses.perceptual import LossWeights

BASE = Scores(content=0.0, style=1000.0, images=4)
PROD = Scores(content=100.0, style=200.0, images=4)


@pytest.mark.parametrize(
    ("candidate", "production", "passed", "reason"),
    [
        (Scores(100.0, 200.0, 4), PROD, True, "content 100.0 vs 100.0, style 200.0 vs 200.0 (margin 0.05)"),
        (
            Scores(105.0, 210.0, 4),
            PROD,
            True,
            "content 105.0 vs 100.0, style 210.0 vs 200.0 (margin 0.05)",
        ),  # exactly at the margin
        (Scores(105.1, 150.0, 4), PROD, False, "content loss 105.1 > production 100.0 x 1.05"),
        (Scores(90.0, 210.1, 4), PROD, False, "style loss 210.1 > production 200.0 x 1.05"),
        (
            Scores(200.0, 400.0, 4),
            PROD,
            False,
            "content loss 200.0 > production 100.0 x 1.05; style loss 400.0 > production 200.0 x 1.05",
        ),
        (Scores(50.0, 1000.0, 4), PROD, False, "style loss 1,000.0 is no better than the unstylized photos' 1,000.0"),
        (Scores(50.0, 999.0, 4), None, True, "first version: style loss 999.0 < unstylized 1,000.0"),
        (Scores(50.0, 1200.0, 4), None, False, "style loss 1,200.0 is no better than the unstylized photos' 1,000.0"),
        (Scores(math.nan, 10.0, 4), PROD, False, "candidate losses are not finite"),
    ],
)
def test_decide(candidate: Scores, production: Scores | None, passed: bool, reason: str) -> None:
    d = decide(candidate, production, BASE, 0.05)
    assert (d.passed, d.reason) == (passed, reason)
    assert d.to_dict()["candidate"] == {"content": candidate.content, "style": candidate.style, "images": 4}


def test_decide_rejects_a_negative_margin() -> None:
    with pytest.raises(ValueError, match="margin must be >= 0"):
        decide(PROD, PROD, BASE, -0.1)


def test_score_of_real_photos(encoder, photos, artwork) -> None:  # noqa: ANN001 (fixtures)
    metrics = StyleMetrics(encoder, artwork, LossWeights(), size=64, style_size=128)
    held_out = [resize_max_side(to_float(read_image(p).pixels), 64) for p in photos[:3]]
    identity = score(lambda x: x, held_out, metrics)
    assert identity.images == 3 and identity.content == pytest.approx(0.0, abs=1e-3) and identity.style > 0
    flat = score(lambda x: torch.full_like(x, 0.5), held_out, metrics)
    one = [metrics.measure(p, torch.full_like(p, 0.5)) for p in held_out]
    assert flat.content == pytest.approx(sum(c for c, _ in one) / 3) and flat.style == pytest.approx(
        sum(s for _, s in one) / 3
    )
    with pytest.raises(ValueError, match="at least one held-out photo"):
        score(lambda x: x, [], metrics)
