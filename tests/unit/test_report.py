"""Pure helpers of the HTML report: summaries, latest rows, the loss-curve chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from runs.reports.catalog import _losses, latest_rows, loss_curve_svg, summarize


def _rows() -> pd.DataFrame:
    t = datetime(2026, 11, 22, tzinfo=UTC)
    return pd.DataFrame(
        [
            {
                "image_key": "a",
                "method": "per-style",
                "style": "s",
                "model_version": "v0001",
                "status": "failed",
                "content_loss": None,
                "style_loss": None,
                "duration_ms": 10.0,
                "finished_at": t,
            },
            {
                "image_key": "a",
                "method": "per-style",
                "style": "s",
                "model_version": "v0001",
                "status": "ok",
                "content_loss": 4.0,
                "style_loss": 8.0,
                "duration_ms": 30.0,
                "finished_at": t + timedelta(1),
            },
            {
                "image_key": "b",
                "method": "per-style",
                "style": "s",
                "model_version": "v0001",
                "status": "ok",
                "content_loss": 2.0,
                "style_loss": 4.0,
                "duration_ms": 20.0,
                "finished_at": t,
            },
        ]
    )


def test_latest_rows_keeps_the_newest_per_image_and_style() -> None:
    latest = latest_rows(_rows())
    assert list(zip(latest.image_key, latest.status)) == [("a", "ok"), ("b", "ok")]
    swapped = pd.concat([_rows(), _rows().assign(method="swap", status="failed")])
    latest = latest_rows(swapped)  # one row per image, method and style
    assert list(zip(latest.image_key, latest.method, latest.status)) == [
        ("a", "per-style", "ok"),
        ("a", "swap", "failed"),
        ("b", "per-style", "ok"),
        ("b", "swap", "failed"),
    ]


def test_summarize_counts_and_means() -> None:
    s = summarize(_rows()).iloc[0].to_dict()
    assert s == {
        "method": "per-style",
        "style": "s",
        "model_version": "v0001",
        "ok": 2,
        "failed": 1,
        "content_loss": 3.0,
        "style_loss": 6.0,
        "duration_ms": 20.0,
    }


def test_loss_curve_svg_draws_one_line_per_term() -> None:
    history = [{"step": s, "content": 100.0 / s, "style": 1000.0 / s} for s in (10, 20, 30)]
    svg = loss_curve_svg(history)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert loss_curve_svg(history[:1]) == "<p>no loss curve</p>"


def test_columns_name_a_method_or_default_to_the_per_style_model() -> None:
    from runs.reports.catalog import column

    assert column("monet") == ("per-style", "monet")
    assert column("swap:monet") == ("swap", "monet")
    assert column("adain:hoitsu=0.500,monet=0.500") == ("adain", "hoitsu=0.500,monet=0.500")


def test_a_contact_sheet_cell_says_when_its_losses_were_not_measured() -> None:
    assert _losses(1234.4, 6.0) == "content 1,234 · style 6"
    assert _losses(None, None) == _losses(float("nan"), float("nan")) == "not measured"  # --no-metrics, or unsampled
