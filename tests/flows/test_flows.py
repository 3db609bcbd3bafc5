"""The runbook end to end under a Prefect test harness: train -> stylize (twice) -> report.

One test on purpose: every flow run costs seconds against the ephemeral Prefect server.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from flows.stylize_catalog import stylize_catalog
from flows.train_style import train_style
from infra.registry import ModelNotFoundError
from infra.store import StoreError
from runs import context
from runs.reports.catalog import write_report
from runs.spec import RunSpec, StylizeParams
from styleops.errors import InvalidInputError, WeightsNotFoundError
from styleops.io.images import decode_image
from styleops.training.engine import TrainConfig
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.flow]

TINY = {
    "steps": 2,
    "batch_size": 1,
    "image_size": 32,
    "style_size": 64,
    "channels": 4,
    "n_residual": 1,
    "log_every": 1,
    "loss": {"content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}},
}
CELL, GAP = 64, 4  # styleops.io.contact_sheet: gap defaults to 4; write_report passes its cell through


def test_train_stylize_twice_and_report(pipeline_env: PipelineEnv, tmp_path: Path) -> None:
    env = pipeline_env
    broken, empty = CATALOG_PREFIX + "broken.jpg", CATALOG_PREFIX + "empty.png"
    env.store.put(broken, b"\xff\xd8\xff\xe0 truncated JPEG header and then nothing")
    env.store.put(empty, b"")
    env.store.put(CATALOG_PREFIX + "README.txt", b"not an image: ignored")

    trained = train_style(artwork_key="artwork/monet/monet.jpg", content_prefix=CATALOG_PREFIX, config=TINY)
    assert (trained["style"], trained["version"], trained["promoted"]) == ("monet", "v0001", True)
    card = context.registry().card("per-style", "monet", "v0001")
    assert card["train_config"] == TrainConfig.from_dict({**TrainConfig().to_dict(), **TINY}).to_dict()
    assert card["content_images"] == 8  # the undecodable ones are downloaded but skipped by the trainer

    params = StylizeParams(max_side=64)
    expected = {
        "catalog": CATALOG_PREFIX,
        "method": "per-style",
        "style": "monet",
        "model_version": "v0001",
        "params_hash": params.hash,
    }
    first = stylize_catalog(RunSpec.create(catalog="demo", style="monet", max_side=64, shard_size=4))
    assert first.pop("run_id")
    assert first == {
        **expected,
        "images": 8,
        "already_done": 0,
        "known_bad": 0,
        "restyled": 0,
        "shards": 2,
        "ok": 6,
        "failed": 2,
    }

    rows = context.manifest().read(filters=[("catalog", "=", CATALOG_PREFIX)])
    assert len(rows) == 8 and rows["run_id"].nunique() == 1 and rows["shard_id"].nunique() == 2
    assert set(rows["flow_run_id"]) != {""}  # recorded from the Prefect run context
    ok = rows[rows.status == "ok"]
    assert sorted(ok.image_key) == env.catalog_keys
    assert all(math.isfinite(v) for v in [*ok.content_loss, *ok.style_loss])
    assert sorted(rows[rows.status == "failed"].image_key) == [broken, empty]
    assert set(rows[rows.status == "failed"].error_class) == {"decode_error"}

    second = stylize_catalog(RunSpec.create(catalog="demo", style="monet", max_side=64, shard_size=4))
    second.pop("run_id")
    assert second == {
        **expected,
        "images": 8,
        "already_done": 6,
        "known_bad": 2,
        "restyled": 0,
        "shards": 0,
        "ok": 0,
        "failed": 0,
    }
    assert len(context.manifest().read(filters=[("catalog", "=", CATALOG_PREFIX)])) == 8  # no new rows

    out = tmp_path / "report"
    index = write_report(out, "demo", ["monet"], cell=CELL)
    assert index == out / "index.html"
    page = index.read_text(encoding="utf-8")
    for key in [*env.catalog_keys, broken, empty]:
        assert key in page
    for r in ok.itertuples():
        assert r.output_key in page
    assert "README.txt" not in page
    assert page.count("<div>content ") == 6 and "not measured" not in page  # every output's losses
    sheet = decode_image((out / "contact_sheet.png").read_bytes()).pixels
    n_rows, n_cols = 8, 1 + 1  # every catalog image (the broken ones too) x (input + one style)
    assert tuple(sheet.shape) == (3, GAP + n_rows * (CELL + GAP), GAP + n_cols * (CELL + GAP))
    csv = pd.read_csv(out / "manifest.csv")
    assert len(csv) == 8 and set(csv["status"]) == {"ok", "failed"}

    # Grouped columns: one table per group, each with the inputs (a wide sheet fits a laptop screen).
    grouped = write_report(tmp_path / "grouped", "demo", {"First": ["monet"], "Second": ["monet"]}, cell=CELL)
    page = grouped.read_text(encoding="utf-8")
    assert page.count('<table class="grid">') == 2 and "<h3>First</h3>" in page and "<h3>Second</h3>" in page
    assert page.index("<h3>First</h3>") < page.index("<h3>Second</h3>")
    for r in ok.itertuples():
        assert page.count(f'alt="{r.output_key}"') == 2
    for key in env.catalog_keys:
        assert page.count(f'alt="{key}"') == 2  # the input column in each table
    sheet = decode_image((tmp_path / "grouped" / "contact_sheet.png").read_bytes()).pixels
    assert sheet.shape[-1] == GAP + 3 * (CELL + GAP)  # the image keeps every column: input + 2


def test_swap_and_adain_runs_from_decoders_trained_by_their_flows(pipeline_env: PipelineEnv) -> None:
    from flows.build_patch_banks import build_patch_banks
    from flows.train_decoders import train_adain, train_inverse

    tiny = {"steps": 2, "batch_size": 1, "image_size": 32, "log_every": 1}
    inv = train_inverse(artwork_prefix="artwork/", content_prefix=CATALOG_PREFIX, config=tiny)
    ada = train_adain(artwork_prefix="artwork/", content_prefix=CATALOG_PREFIX, config=tiny)
    assert (inv["family"], inv["version"], inv["promoted"]) == ("inverse", "v0001", True)
    assert (ada["family"], ada["version"], ada["promoted"]) == ("adain", "v0001", True)
    banks = build_patch_banks(artworks="artwork/hoitsu/")
    assert banks["banks"] == {"hoitsu": "v0001"}

    swap = stylize_catalog(
        RunSpec.create(catalog="demo", style="hoitsu", method="swap", max_side=48, shard_size=3, color="histogram")
    )
    assert (swap["model_version"], swap["ok"], swap["failed"], swap["shards"]) == ("default/v0001+bank-v0001", 6, 0, 2)
    again = stylize_catalog(
        RunSpec.create(catalog="demo", style="hoitsu", method="swap", max_side=48, shard_size=3, color="histogram")
    )
    assert (again["already_done"], again["ok"], again["shards"]) == (6, 0, 0)
    blend = stylize_catalog(
        RunSpec.create(catalog="demo", style="monet=1,hoitsu=1", method="adain", max_side=48, alpha=0.8)
    )
    assert (blend["style"], blend["ok"]) == ("hoitsu=0.500,monet=0.500", 6)
    rows = context.manifest().read(filters=[("catalog", "=", CATALOG_PREFIX)])
    assert rows.groupby("method").size().to_dict() == {"adain": 6, "swap": 6}


def test_the_stylize_summary_artifact_has_one_row_per_field() -> None:
    """Thirteen columns side by side were cut off in Prefect's UI at 1400 px (docs/operations.md)."""
    from flows.stylize_catalog import summary_markdown

    summary = {"run_id": "r1", "catalog": "catalog/demo/", "style": "monet", "model_version": "v0001", "ok": 6}
    lines = summary_markdown(summary).splitlines()  # type: ignore[arg-type]
    assert lines[:4] == ["# Stylized catalog/demo/ with monet v0001", "", "| field | value |", "|---|---|"]
    assert lines[4:] == [
        "| run_id | r1 |",
        "| catalog | catalog/demo/ |",
        "| style | monet |",
        "| model_version | v0001 |",
        "| ok | 6 |",
    ]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (InvalidInputError("the model's artwork is not in the store"), False),
        (ModelNotFoundError("no per-style model named 'x'"), False),
        (WeightsNotFoundError("no weights"), False),
        (StoreError("SlowDown"), True),
        (RuntimeError("a worker died"), True),
    ],
    ids=["bad-input", "unknown-model", "no-weights", "store", "other"],
)
def test_a_shard_is_retried_unless_it_failed_on_bad_input(error: Exception, retried: bool) -> None:
    import asyncio

    from prefect.states import exception_to_failed_state

    from tasks.stylize import retry_unless_bad_input

    state = asyncio.run(exception_to_failed_state(error))
    assert retry_unless_bad_input(None, None, state) is retried
