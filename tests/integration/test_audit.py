"""The manifest audit (tasks/audit.py) on the real embedded SeaweedFS: `task.fn(...)` calls.

1. A real run (tiny per-style model, one shard of the example catalog) audits clean; then outputs
   deleted or overwritten, a new catalog image and a stray object are found, exactly.
2. Hand-written manifest rows (no training) for what a real run rarely produces: duplicates,
   outliers, stale models, failures by class, store-side integrity errors, run/date/catalog filters.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import torch
from prefect.logging import disable_run_logger
from safetensors.torch import save as save_safetensors

from runs import context
from runs.keys import output_key
from runs.outputs import count_findings
from runs.spec import StylizeParams
from styleops.io.images import decode_image, encode_image
from tasks.audit import audit_rows_task, coverage_task, orphans_task, outlier_findings, parse_when, sample_sheet_task
from tasks.training import promote_if_first_task
from tests.flows.conftest import CATALOG, CATALOG_PREFIX, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.integration.test_tasks import MAX_SIDE, STYLE, items, run_rows, run_shard, train

pytestmark = pytest.mark.integration


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def where(findings: list[dict[str, Any]], *kinds: str) -> list[tuple[str, str | None, str | None]]:
    """(kind, image_key, output_key) of the findings of `kinds` (all kinds if none), sorted."""
    found = [(f["kind"], f.get("image_key"), f.get("output_key")) for f in findings if not kinds or f["kind"] in kinds]
    return sorted(found, key=lambda t: tuple(v or "" for v in t))


def audit(**kw: Any) -> dict[str, Any]:
    with disable_run_logger():
        return audit_rows_task.fn(**kw)


def orphans(prefix: str = "stylized/") -> list[str]:
    with disable_run_logger():
        return orphans_task.fn(prefix)


def coverage(styles: list[str]) -> dict[str, Any]:
    with disable_run_logger():
        return coverage_task.fn(CATALOG, styles)


def expected_outliers(rows: pd.DataFrame, k: float = 5.0) -> list[str]:
    """Image keys whose style_loss is more than k MADs from the median (the rule, recomputed)."""
    losses = rows.set_index("image_key")["style_loss"]
    median = losses.median()
    mad = (losses - median).abs().median()
    return sorted(losses.index[(losses - median).abs() > k * mad]) if len(losses) >= 5 and mad > 0 else []


# ---- 1. a real run ---------------------------------------------------------------------------------
def test_a_clean_run_audits_clean_then_damage_is_found_exactly(pipeline_env: PipelineEnv) -> None:
    env = pipeline_env
    assert train()["version"] == "v0001"
    with disable_run_logger():
        assert promote_if_first_task.fn("per-style", STYLE, "v0001") is True
    assert run_shard(env, "r1", items(env)) == {"ok": 6, "failed": 0}
    rows = run_rows("r1")
    outputs = dict(zip(rows.image_key, rows.output_key, strict=True))
    assert set(outputs.values()) == {
        output_key(k, CATALOG, STYLE, "v0001", StylizeParams(max_side=MAX_SIDE)) for k in env.catalog_keys
    }

    clean = audit(run_id="r1")
    assert (clean["rows"], clean["latest"], clean["ok"], clean["failed"], clean["checked"]) == (6, 6, 6, 0, 6)
    assert count_findings(clean["findings"])["critical"] == 0
    outliers = expected_outliers(rows)
    assert where(clean["findings"]) == [
        ("outlier", k, outputs[k]) for k in outliers
    ]  # nothing else: no stale, no duplicates
    assert clean["failed_by_class"] == {}
    assert [s["image_key"] for s in clean["samples"]] == env.catalog_keys
    assert all(
        s["output_key"] == outputs[s["image_key"]] and s["style"] == STYLE and s["model_version"] == "v0001"
        for s in clean["samples"]
    )
    day = rows.finished_at.dt.strftime("%Y-%m-%d").iloc[0]
    assert clean["daily"] == [
        {"date": day, "images": 6, "failed": 0, "style_loss": pytest.approx(rows.style_loss.mean())}
    ]
    assert audit(run_id="other")["rows"] == 0 and audit(run_id="other")["findings"] == []
    assert orphans() == []
    assert coverage([STYLE]) == {
        "catalog": CATALOG_PREFIX,
        "images": 6,
        "styles": {STYLE: {"version": "v0001", "covered": 6, "uncovered": 0}},
        "findings": [],
    }

    # the contact sheet of the samples: input and output thumbnails, and one PNG
    with disable_run_logger():
        sheet = sample_sheet_task.fn(clean["samples"][:2], cell=32)
    assert [(p["image_key"], p["input_uri"][:23], p["output_uri"][:23]) for p in sheet["pairs"]] == [
        (k, "data:image/jpeg;base64,", "data:image/jpeg;base64,") for k in env.catalog_keys[:2]
    ]
    assert tuple(decode_image(sheet["png"]).pixels.shape) == (3, 4 + 2 * 36, 4 + 2 * 36)

    # damage: one output deleted, one overwritten by as many other bytes (an unscoped put: the
    # store's sha256 metadata matches them, only the manifest's sha256 tells), one new catalog
    # image never stylized, one object under stylized/ that no row names
    gone, changed = env.catalog_keys[0], env.catalog_keys[1]
    env.store.delete(outputs[gone])
    altered = bytearray(env.store.get_bytes(outputs[changed]))
    altered[len(altered) // 2] ^= 0xFF
    env.store.put(outputs[changed], bytes(altered))
    new = CATALOG_PREFIX + "new.jpg"
    env.store.put(new, encode_image(decode_image(env.store.get_bytes(env.catalog_keys[2])).pixels.flip(-1), "jpeg"))
    stray = "stylized/demo/monet/v0001/deadbeef/stray.jpg"
    env.store.put(stray, b"left behind")

    damaged = audit(run_id="r1")
    assert where(damaged["findings"], "missing_output", "tampered_output") == [
        ("missing_output", gone, outputs[gone]),
        ("tampered_output", changed, outputs[changed]),
    ]
    assert all(
        f["severity"] == "critical" and f["style"] == STYLE for f in damaged["findings"] if f["kind"] != "outlier"
    )
    assert count_findings(damaged["findings"])["critical"] == 2
    assert [s["image_key"] for s in damaged["samples"]] == env.catalog_keys[2:]  # only intact outputs
    assert audit(catalog="demo")["findings"] == damaged["findings"]
    assert audit(catalog="catalog/elsewhere/")["rows"] == 0

    assert orphans() == [stray]
    assert orphans("stylized/other/") == []
    covered = coverage([STYLE])
    assert where(covered["findings"]) == [("uncovered", new, None)]
    assert covered["findings"][0]["severity"] == "critical" and covered["findings"][0]["style"] == STYLE
    assert covered["styles"] == {STYLE: {"version": "v0001", "covered": 6, "uncovered": 1}}

    # new bytes under a stylized key: no longer covered (the etag differs); a style with no model
    env.store.put(env.catalog_keys[3], env.store.get_bytes(env.catalog_keys[4]))
    covered = coverage([STYLE, "wave"])
    assert where(covered["findings"]) == [
        ("uncovered", None, None),
        ("uncovered", env.catalog_keys[3], None),
        ("uncovered", new, None),
    ]
    assert covered["styles"]["wave"] == {"version": None, "covered": 0, "uncovered": 7}


# ---- 2. hand-written rows --------------------------------------------------------------------------
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
PH = "0123abcd4567ef89"


def register_versions(n: int, promote: str) -> None:
    reg = context.registry()
    for i in range(n):
        assert (
            reg.register(
                "per-style", STYLE, save_safetensors({"w": torch.full((2,), float(i))}), {"note": "audit test"}
            ).version
            == f"v{i + 1:04d}"
        )
    reg.promote("per-style", STYLE, promote)


def row(
    env: PipelineEnv,
    name: str,
    *,
    run: str = "r1",
    at: datetime = T0,
    version: str = "v0002",
    status: str = "ok",
    loss: float | None = 10.0,
    catalog: str = CATALOG_PREFIX,
    data: bytes | None = None,
    write: bool = True,
    error_class: str | None = None,
) -> dict[str, Any]:
    """One manifest row; for `ok` rows the output is written (unless `write` is False) with `data`."""
    key = f"{catalog}{name}.jpg"
    r: dict[str, Any] = {
        "run_id": run,
        "shard_id": f"{run}-s0000",
        "catalog": catalog,
        "image_key": key,
        "input_etag": f"etag-{name}",
        "style": STYLE,
        "method": "per-style",
        "model_version": version,
        "params_hash": PH,
        "status": status,
        "started_at": at - timedelta(seconds=1),
        "finished_at": at,
    }
    if status == "ok":
        data = data if data is not None else f"output of {name} by {version}".encode()
        out = f"stylized/{catalog.split('/')[1]}/{STYLE}/{version}/{PH[:8]}/{name}.jpg"
        r.update(output_key=out, output_sha256=sha256(data), bytes_out=len(data), style_loss=loss, content_loss=1.0)
        if write:
            env.store.put(out, data)
    else:
        r.update(error_class=error_class, error=f"{error_class}: {name}")
    return r


def test_hand_written_rows_give_exactly_their_findings(pipeline_env: PipelineEnv) -> None:
    env = pipeline_env
    register_versions(3, promote="v0002")
    k_data = b"k's real output"
    rows = [
        *(row(env, n, loss=v) for n, v in zip("abcdef", [10.0, 11.0, 9.0, 10.5, 9.5, 100.0], strict=True)),
        row(
            env, "a", at=T0 - timedelta(hours=1), data=b"an earlier, different output of the same input", write=False
        ),  # duplicate
        {
            **row(env, "b", at=T0 - timedelta(hours=2), data=b"b before the photo changed", write=False),
            "input_etag": "etag-b-old",
        },  # not a duplicate
        row(env, "g", at=T1, version="v0001"),  # stale: production is v0002
        row(env, "y", at=T1, version="v0003"),  # newer than production: not stale
        row(env, "h", at=T1, status="failed", error_class="decode_error"),
        row(env, "i", at=T1, status="failed", error_class="decode_error"),
        row(env, "j", at=T1, status="failed", error_class="store_error"),
        row(env, "k", at=T1, loss=10.2, data=k_data, write=False),
        row(env, "old", run="r0", at=datetime(2025, 12, 31, 23, 59, tzinfo=UTC), write=False),  # output never written
        row(env, "x", run="r1", catalog="catalog/other/", write=False),
    ]
    context.manifest().append(rows)
    # k's output: the manifest's bytes, but a recorded sha256 that does not match (the store's own check fails)
    k_out = next(r["output_key"] for r in rows if r["image_key"].endswith("/k.jpg"))
    env.store.client.put_object(Bucket=env.bucket, Key=k_out, Body=k_data, Metadata={"sha256": "0" * 64})
    key = {n: f"{CATALOG_PREFIX}{n}.jpg" for n in "abcdefghijky"} | {
        "old": CATALOG_PREFIX + "old.jpg",
        "x": "catalog/other/x.jpg",
    }
    out = {r["image_key"]: r.get("output_key") for r in rows if r["status"] == "ok"}

    r1 = audit(run_id="r1", catalog="demo")
    assert (r1["rows"], r1["latest"], r1["ok"], r1["failed"], r1["checked"]) == (14, 12, 9, 3, 9)
    assert where(r1["findings"]) == [
        ("duplicate", key["a"], out[key["a"]]),
        ("outlier", key["f"], out[key["f"]]),
        ("stale", key["g"], out[key["g"]]),
        ("tampered_output", key["k"], k_out),
    ]
    by_kind = {f["kind"]: f for f in r1["findings"]}
    assert {k: f["severity"] for k, f in by_kind.items()} == {
        "duplicate": "warning",
        "outlier": "warning",
        "stale": "warning",
        "tampered_output": "critical",
    }
    assert "v0002" in by_kind["stale"]["detail"] and "recorded" in by_kind["tampered_output"]["detail"]
    assert count_findings(r1["findings"]) == {
        "critical": 1,
        "warnings": 3,
        "missing_output": 0,
        "tampered_output": 1,
        "uncovered": 0,
        "duplicate": 1,
        "outlier": 1,
        "stale": 1,
        "orphan": 0,
    }
    assert r1["failed_by_class"] == {
        "decode_error": {"count": 2, "samples": [key["h"], key["i"]]},
        "store_error": {"count": 1, "samples": [key["j"]]},
    }
    assert r1["daily"] == [
        {
            "date": "2026-03-01",
            "images": 8,
            "failed": 0,
            "style_loss": pytest.approx((10 + 11 + 9 + 10.5 + 9.5 + 100 + 10 + 10) / 8),
        },
        {"date": "2026-03-02", "images": 3, "failed": 3, "style_loss": pytest.approx((10 + 10 + 10.2) / 3)},
    ]
    assert [s["image_key"] for s in r1["samples"]] == [key[n] for n in "abcdefgy"]  # k is not intact
    assert audit(run_id="r1", catalog="demo", mad_k=200.0)["findings"] == [
        f for f in r1["findings"] if f["kind"] != "outlier"
    ]

    # finished_at ranges: ISO dates, `until` includes its day
    assert where(audit(catalog="demo", since="2026-03-02")["findings"]) == [
        ("stale", key["g"], out[key["g"]]),
        ("tampered_output", key["k"], k_out),
    ]
    assert where(audit(catalog="demo", until="2026-03-01")["findings"]) == [
        ("duplicate", key["a"], out[key["a"]]),
        ("missing_output", key["old"], out[key["old"]]),
        ("outlier", key["f"], out[key["f"]]),
    ]
    assert where(audit(catalog="demo", since="2026-01-01", until="2026-03-01")["findings"]) == [
        ("duplicate", key["a"], out[key["a"]]),
        ("outlier", key["f"], out[key["f"]]),
    ]
    assert audit(since="2026-03-01T12:00:00", until="2026-03-01T12:00:00")["rows"] == 7  # a-f and x, all at T0 exactly
    assert where(audit(run_id="r0")["findings"]) == [("missing_output", key["old"], out[key["old"]])]
    everything = audit()
    assert (everything["rows"], everything["checked"]) == (16, 11)
    assert where(everything["findings"], "missing_output", "tampered_output") == [
        ("missing_output", key["old"], out[key["old"]]),
        ("missing_output", key["x"], out[key["x"]]),
        ("tampered_output", key["k"], k_out),
    ]
    for bad in ({"since": "yesterday"}, {"since": "2026-03-02", "until": "2026-03-01"}, {"catalog": "a/b"}):
        with pytest.raises(ValueError):
            audit(**bad)

    # every output key named by a row, whatever its status, is not an orphan
    assert orphans() == []
    stray = "stylized/demo/monet/v0002/0123abcd/z.jpg"
    env.store.put(stray, b"stray")
    assert orphans() == [stray]
    conflict = row(env, "z", run="r9", status="failed", error_class="output_conflict")
    context.manifest().append([{**conflict, "output_key": stray}])  # a failed row that names it: not an orphan
    assert orphans() == []


def test_outliers_need_five_rows_and_a_spread() -> None:
    def frame(losses: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "image_key": [f"k{i}" for i in range(len(losses))],
                "style": "s",
                "model_version": "v0001",
                "output_key": [f"o{i}" for i in range(len(losses))],
                "style_loss": losses,
            }
        )

    assert outlier_findings(frame([1.0, 1.0, 1.0, 1.0, 50.0])) == []  # MAD 0: no scale to judge by
    assert outlier_findings(frame([1.0, 2.0, 3.0, 500.0])) == []  # too few rows
    found = outlier_findings(frame([1.0, 2.0, 3.0, 4.0, 500.0, -400.0]))  # both directions
    assert [(f["image_key"], f["output_key"], f["severity"]) for f in found] == [
        ("k4", "o4", "warning"),
        ("k5", "o5", "warning"),
    ]
    # median 3, MAD 1: 9 is 6 MADs away, an outlier for k below 6 only (strictly more than k)
    assert [f["image_key"] for f in outlier_findings(frame([1.0, 2.0, 3.0, 4.0, 9.0]))] == ["k4"]
    assert outlier_findings(frame([1.0, 2.0, 3.0, 4.0, 9.0]), k=6.0) == []


def test_parse_when() -> None:
    assert parse_when("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01", end=True) == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_when("2026-03-01T10:30:00") == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert parse_when("2026-03-01T10:30:00+02:00") == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert parse_when(None) is None
