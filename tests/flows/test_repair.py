"""`styleops audit` finds deleted and altered outputs; `styleops stylize ... --repair` re-renders
exactly those (real embedded SeaweedFS, a tiny trained model, the Prefect test harness).

A plain rerun trusts the manifest's `ok` rows; --repair checks their outputs as the audit does and
puts the broken ones back into the shards. A tampered output is overwritten only with If-Match on
the etag the plan saw, so a change made after the plan is never clobbered.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.logging import disable_run_logger
from typer.testing import CliRunner

from flows.cli import app
from flows.stylize_catalog import stylize_catalog
from runs import context
from runs.keys import output_key
from runs.shard import ShardJob
from runs.spec import RunSpec, StylizeParams
from tasks.audit import repair_command
from tasks.stylize import plan_catalog_task, stylize_shard_task
from tasks.training import train_per_style_task
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv
from tests.integration.test_tasks import TINY  # the tiny per-style recipe the task tests train

pytestmark = [pytest.mark.integration, pytest.mark.flow]

STYLE, MAX_SIDE = "monet", 64
PARAMS = StylizeParams(max_side=MAX_SIDE)
runner = CliRunner()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train_monet() -> None:
    """A tiny monet v0001, promoted."""
    with disable_run_logger():
        assert train_per_style_task.fn(STYLE, "artwork/monet/monet.jpg", CATALOG_PREFIX, TINY)["version"] == "v0001"
    context.registry().promote("per-style", STYLE, "v0001")


def rows_of(run_id: str) -> pd.DataFrame:
    return context.manifest().read(filters=[("run_id", "=", run_id)]).sort_values("image_key").set_index("image_key")


def outputs(env: PipelineEnv) -> dict[str, tuple[Any, ...]]:
    """Every object under stylized/: (size, etag, last modified)."""
    return {i.key: (i.size, i.etag, i.last_modified) for i in env.store.list("stylized/")}


def test_audit_finds_broken_outputs_and_stylize_repair_rerenders_exactly_those(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    env = pipeline_env
    train_monet()
    first = stylize_catalog(RunSpec.create(catalog="demo", style=STYLE, max_side=MAX_SIDE, shard_size=4, metrics=False))
    assert (first["images"], first["ok"], first["failed"]) == (6, 6, 0)
    made = rows_of(first["run_id"])
    gone_image, altered_image = env.catalog_keys[0], env.catalog_keys[3]
    gone, altered = made.loc[gone_image, "output_key"], made.loc[altered_image, "output_key"]
    env.store.delete(gone)
    changed = bytearray(env.store.get_bytes(altered))
    changed[-3] ^= 0xFF  # same size, other bytes: only the sha256 tells
    env.store.put(altered, bytes(changed))
    untouched = {k: v for k, v in outputs(env).items() if k != altered}
    assert len(untouched) == 4

    # the audit finds both and names the remedy
    result = runner.invoke(app, ["audit", "--catalog", "demo", "--style", STYLE, "--out", str(tmp_path / "audit")])
    assert result.exit_code == 2, result.output
    counts = json.loads((tmp_path / "audit" / "findings.json").read_text(encoding="utf-8"))["counts"]
    assert (counts["missing_output"], counts["tampered_output"], counts["critical"]) == (1, 1, 2)
    command = f"styleops stylize --catalog demo --style {STYLE} --version v0001 --max-side {MAX_SIDE} --repair"
    assert f"1 missing + 1 tampered outputs of {STYLE} v0001; re-render them with:\n  {command}\n" in result.output

    # a plain rerun trusts the manifest: nothing is redone
    again = stylize_catalog(RunSpec.create(catalog="demo", style=STYLE, max_side=MAX_SIDE, shard_size=4, metrics=False))
    assert (again["already_done"], again["shards"], again["ok"], again["failed"]) == (6, 0, 0, 0)
    assert "repaired" not in again and rows_of(again["run_id"]).empty
    with disable_run_logger():
        plan = plan_catalog_task.fn(CATALOG_PREFIX, STYLE, "v0001", PARAMS.hash, 4)
    assert (plan["todo"], plan["shards"]) == (0, []) and "repair" not in plan
    assert env.store.head(gone) is None and env.store.get_bytes(altered) == bytes(changed)

    # the command the audit printed re-renders exactly those two
    result = runner.invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert "repair: 2 outputs re-rendered (1 missing + 1 tampered)" in result.output
    repair_runs = set(context.manifest().read(columns=["run_id"])["run_id"]) - {first["run_id"]}
    assert len(repair_runs) == 1
    redone = rows_of(repair_runs.pop())
    assert sorted(redone.index) == sorted([gone_image, altered_image])
    assert set(redone["status"]) == {"ok"} and set(redone["attempt"]) == {1} and redone["error_class"].isna().all()
    assert redone["params_hash"].unique().tolist() == [PARAMS.hash] and redone["model_version"].unique().tolist() == [
        "v0001"
    ]
    for image in (gone_image, altered_image):
        assert redone.loc[image, "output_key"] == made.loc[image, "output_key"]
        assert (
            redone.loc[image, "output_sha256"] == made.loc[image, "output_sha256"]
        )  # deterministic: the original bytes again
        assert sha256(env.store.get_bytes(made.loc[image, "output_key"])) == made.loc[image, "output_sha256"]
    after = outputs(env)
    assert {k: after[k] for k in untouched} == untouched  # the four intact outputs were not rewritten
    assert set(after) == set(untouched) | {gone, altered}

    # all intact again: the audit is clean, and a repair finds nothing to do
    result = runner.invoke(app, ["audit", "--catalog", "demo", "--style", STYLE, "--out", str(tmp_path / "audit2")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "audit2" / "findings.json").read_text(encoding="utf-8"))["counts"]["critical"] == 0
    assert "re-render" not in result.output
    clean = stylize_catalog(
        RunSpec.create(catalog="demo", style=STYLE, max_side=MAX_SIDE, shard_size=4, metrics=False, repair=True)
    )
    assert (
        clean["already_done"],
        clean["shards"],
        clean["ok"],
        clean["repaired"],
        clean["missing"],
        clean["tampered"],
    ) == (6, 0, 0, 0, 0, 0)
    assert outputs(env) == after


def test_repair_overwrites_only_the_tampered_output_it_checked(pipeline_env: PipelineEnv) -> None:
    """The shard overwrites a key of its `overwrite` map with If-Match on the plan's etag: once the
    object changed again after the plan, the precondition fails and it is left alone (an
    output_conflict row); a key not in the map is never overwritten either; one deleted since is
    simply written."""
    env = pipeline_env
    train_monet()
    image, other = env.catalog_keys[0], env.catalog_keys[1]
    items = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX) if i.key in (image, other)]
    out, other_out = (output_key(k, CATALOG_PREFIX, STYLE, "v0001", PARAMS) for k in (image, other))

    def shard(run_id: str, overwrite: dict[str, str] | None = None) -> dict[str, int]:
        with disable_run_logger():
            return stylize_shard_task.fn(
                ShardJob(
                    f"{run_id}-s0000",
                    items,
                    run_id,
                    CATALOG_PREFIX,
                    STYLE,
                    "v0001",
                    PARAMS,
                    metrics=False,
                    overwrite=overwrite or {},
                )
            )

    assert shard("r1") == {"ok": 2, "failed": 0}
    original = env.store.get_bytes(out)
    env.store.put(out, b"tampered")
    env.store.put(other_out, b"someone else's")
    seen = env.store.head(out).etag  # what a repair plan saw
    env.store.put(out, b"changed again after the plan")
    now = env.store.head(out)

    assert shard("r2", {out: seen}) == {"ok": 0, "failed": 2}
    rows = rows_of("r2")
    assert rows.loc[image, "error_class"] == rows.loc[other, "error_class"] == "output_conflict"
    assert env.store.get_bytes(out) == b"changed again after the plan" and env.store.head(out).etag == now.etag
    assert env.store.get_bytes(other_out) == b"someone else's"

    assert shard("r3", {out: now.etag}) == {
        "ok": 1,
        "failed": 1,
    }  # the etag still holds: overwritten; the other key still not
    rows = rows_of("r3")
    assert (rows.loc[image, "status"], rows.loc[image, "output_sha256"]) == ("ok", sha256(original))
    assert env.store.get_bytes(out) == original and env.store.get_bytes(other_out) == b"someone else's"
    assert rows.loc[other, "error_class"] == "output_conflict"

    env.store.delete(out)  # gone since the plan saw it tampered: written as any new output is
    assert shard("r4", {out: now.etag}) == {"ok": 1, "failed": 1}
    assert env.store.get_bytes(out) == original and rows_of("r4").loc[image, "output_sha256"] == sha256(original)


@pytest.mark.parametrize(
    ("row", "command"),
    [
        (
            {
                "catalog": "catalog/demo/",
                "style": "monet",
                "method": "per-style",
                "model_version": "v0003",
                "params_json": json.dumps({"method": "per-style", "max_side": 1024, "format": "jpeg", "quality": 90}),
            },
            "styleops stylize --catalog demo --style monet --version v0003 --repair",
        ),
        (
            {
                "catalog": "catalog/shop/",
                "style": "udnie=0.300,wave=0.700",
                "method": "multi-style",
                "model_version": "collection/v0002",
                "params_json": json.dumps(
                    {
                        "method": "multi-style",
                        "max_side": 512,
                        "format": "png",
                        "quality": 90,
                        "color": "luminance",
                        "inputs": {},
                    }
                ),
            },
            (
                "styleops stylize --catalog shop --method multi --blend udnie=0.300,wave=0.700 --model collection "
                "--version v0002 --max-side 512 --format png --color luminance --repair"
            ),
        ),
        (
            {
                "catalog": "catalog/shop/",
                "style": "monet",
                "method": "adain",
                "model_version": "default/v0001+art-0123abcd",
                "params_json": json.dumps({"max_side": 1024, "alpha": 0.8}),
            },
            (
                "styleops stylize --catalog shop --method adain --style monet --model default --version v0001 "
                "--alpha 0.8 --no-palette --repair"
            ),
        ),
        (
            {
                "catalog": "catalog/shop/",
                "style": "monet",
                "method": "adain",
                "model_version": "default/v0001+art-0123abcd",
                "params_json": json.dumps({"max_side": 1024, "alpha": 0.8, "palette": True}),
            },
            (
                "styleops stylize --catalog shop --method adain --style monet --model default --version v0001 "
                "--alpha 0.8 --repair"
            ),
        ),
        (
            {
                "catalog": "catalog/shop/",
                "style": "hoitsu",
                "method": "swap",
                "model_version": "default/v0002+bank-v0001",
                "params_json": None,
            },
            (
                "styleops stylize --catalog shop --method swap --style hoitsu --model default --version v0002 "
                "--swap-weight 1.0 --no-palette --no-normalise --repair"  # as swap rendered before its knobs
            ),
        ),
        (
            {
                "catalog": "catalog/shop/",
                "style": "monet",
                "method": "gatys",
                "model_version": "gatys+art-0123abcd",
                "params_json": json.dumps({"iterations": 100, "levels": 2, "optimizer": "lbfgs"}),
            },
            "styleops stylize --catalog shop --method gatys --style monet --iterations 100 --levels 2 --repair",
        ),
    ],
    ids=["per-style", "multi-blend", "adain-before-palettes", "adain", "swap-old-row", "gatys"],
)
def test_repair_command_names_the_run_settings(row: dict[str, Any], command: str) -> None:
    assert repair_command(row) == command
