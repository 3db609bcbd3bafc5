"""The manifest Delta table on the embedded SeaweedFS, over HTTP, as the pipeline uses it."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from deltalake import DeltaTable

from infra.delta import delta_storage_options, table_uri
from infra.manifest import MANIFEST_SCHEMA, ManifestError, ManifestTable
from infra.settings import Settings
from infra.store import ObjectStore, PreconditionFailedError, WriteOutsideScopeError

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
WORKERS, BATCHES, BATCH_ROWS = 4, 5, 10


def row(image_key: str, **values: Any) -> dict[str, Any]:
    """A complete manifest row (every column set), overridden by `values`."""
    base: dict[str, Any] = {
        "run_id": "r1",
        "flow_run_id": "fr-1",
        "shard_id": "s000",
        "attempt": 1,
        "catalog": "cats",
        "image_key": image_key,
        "input_etag": f"etag-{image_key}",
        "input_sha256": "a" * 64,
        "bytes_in": 123_456,
        "width": 640,
        "height": 480,
        "style": "starry",
        "method": "per-style",
        "model_version": "v0001",
        "model_sha256": "b" * 64,
        "params_hash": "p1",
        "output_key": f"stylized/cats/starry/v0001/{image_key}",
        "output_sha256": "c" * 64,
        "bytes_out": 98_765,
        "out_width": 640,
        "out_height": 480,
        "status": "ok",
        "error_class": None,
        "error": None,
        "content_loss": 1.25,
        "style_loss": 0.5,
        "duration_ms": 12.5,
        "device": "cpu",
        "worker": "w1",
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1),
        "code_version": "abc123",
        "params_json": '{"method": "per-style"}',
    }
    return {**base, **values}


@pytest.fixture
def manifest(store: ObjectStore) -> ManifestTable:
    return ManifestTable(store)


def partition_files(store: ObjectStore, manifest: ManifestTable, run_id: str) -> int:
    table = DeltaTable(manifest.uri, storage_options=delta_storage_options(store))
    return len(table.file_uris(file_pruning_predicate=[("run_id", "=", run_id)]))


def test_storage_options_follow_the_connection(store: ObjectStore) -> None:
    options = delta_storage_options(store)
    assert options["AWS_ENDPOINT_URL"] == store.connection["endpoint_url"]
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_CONDITIONAL_PUT"] == "etag"
    assert options["AWS_ACCESS_KEY_ID"] == store.connection["access_key"]
    aws = ObjectStore("b", None, connection={"endpoint_url": None, "region": "eu-west-1"})
    assert delta_storage_options(aws) == {"AWS_REGION": "eu-west-1", "AWS_CONDITIONAL_PUT": "etag"}
    assert table_uri(store, "/manifest/") == f"s3://{store.bucket}/manifest"


def test_empty_table_reads_as_the_schema(manifest: ManifestTable) -> None:
    assert not manifest.exists()
    assert manifest.version() == -1
    assert manifest.append([]) == -1
    assert not manifest.exists()
    empty = manifest.read_arrow()
    assert empty.num_rows == 0 and empty.schema.equals(MANIFEST_SCHEMA)
    assert manifest.completed(catalog="cats", style="starry", model_version="v0001", params_hash="p1") == {}
    assert manifest.compact() == {}
    assert manifest.history() == []


def test_appends_read_back_exactly(manifest: ManifestTable) -> None:
    failed = row("b.jpg", status="failed", error_class="DecodeError", error="truncated", output_key=None)
    first = [row("a.jpg"), failed, row("c.jpg", status="skipped")]
    second = [row("d.jpg", run_id="r2", attempt=2), row("e.jpg", run_id="r2", content_loss=None)]
    v1 = manifest.append(first)
    v2 = manifest.append(second)
    assert (v1, v2) == (1, 2)  # version 0 is the CREATE TABLE commit
    assert manifest.version() == 2
    assert [h["operation"] for h in reversed(manifest.history())] == ["CREATE TABLE", "WRITE", "WRITE"]

    table = manifest.read_arrow()
    assert table.schema.equals(MANIFEST_SCHEMA)  # names, types, nullability, order
    assert table.sort_by("image_key").to_pylist() == first + second
    started = table["started_at"].to_pylist()
    assert all(t.utcoffset() == timedelta(0) for t in started) and set(started) == {T0}
    frame = manifest.read()
    assert str(frame["finished_at"].dtype) == "datetime64[us, UTC]"
    assert (frame["finished_at"] == pd.Timestamp(T0 + timedelta(seconds=1))).all()


def test_filters_return_exact_subsets(manifest: ManifestTable) -> None:
    manifest.append([row("a"), row("b", status="failed"), row("c")])
    manifest.append([row("d", run_id="r2"), row("e", run_id="r2", status="failed")])

    def keys(filters: Any) -> list[str]:
        return sorted(manifest.read_arrow(filters=filters)["image_key"].to_pylist())

    assert keys([("run_id", "=", "r1")]) == ["a", "b", "c"]
    assert keys([("run_id", "=", "r1"), ("status", "=", "ok")]) == ["a", "c"]
    assert keys([("status", "=", "failed")]) == ["b", "e"]
    assert keys([[("run_id", "=", "r2")], [("image_key", "in", ["a", "b"])]]) == ["a", "b", "d", "e"]
    assert keys([("run_id", "=", "nope")]) == []
    narrow = manifest.read_arrow(filters=[("run_id", "=", "r2")], columns=["image_key", "status"])
    assert narrow.column_names == ["image_key", "status"]
    assert sorted(narrow.to_pylist(), key=lambda r: r["image_key"]) == [
        {"image_key": "d", "status": "ok"},
        {"image_key": "e", "status": "failed"},
    ]


def test_missing_optional_columns_are_null_and_frames_are_accepted(manifest: ManifestTable) -> None:
    manifest.append([{"run_id": "r1", "image_key": "a", "status": "skipped"}])
    manifest.append(pd.DataFrame([row("b", width=None)]))
    table = manifest.read_arrow().sort_by("image_key")
    sparse = table.to_pylist()[0]
    assert {k for k, v in sparse.items() if v is not None} == {"run_id", "image_key", "status"}
    assert table["width"].to_pylist() == [None, None]
    assert table["height"].to_pylist() == [None, 480]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row("x", colour="red"), "unknown columns: \\['colour'\\]"),
        (row("x", status="done"), "status must be one of"),
        ({"run_id": "r1", "status": "ok"}, "image_key"),  # missing, or null beside a good row
        (row("x", run_id=None), "null run_id"),
        (row("x", width=1.5), "column width .*truncated"),
        (row("x", attempt="first"), "column attempt does not fit int32"),
    ],
)
def test_invalid_rows_write_nothing(manifest: ManifestTable, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        manifest.append([bad])
    assert not manifest.exists()
    manifest.append([row("good")])
    with pytest.raises(ManifestError, match=message):
        manifest.append([row("also-good"), bad])
    assert manifest.version() == 1
    assert manifest.read_arrow()["image_key"].to_pylist() == ["good"]


def test_completed_maps_ok_images_to_their_latest_etag(manifest: ManifestTable) -> None:
    later = T0 + timedelta(hours=1)
    manifest.append(
        [
            row("a", input_etag="a-old"),
            row("b", input_etag="b1"),
            row("c", status="failed"),
            row("d", model_version="v0002"),
            row("e", style="wave"),
            row("f", params_hash="p2"),
            row("g", catalog="dogs"),
            row("h", status="skipped"),
        ]
    )
    rerun = [row("a", run_id="r2", input_etag="a-new", finished_at=later), row("c", run_id="r2", status="failed")]
    manifest.append(rerun)
    combination = {"catalog": "cats", "style": "starry", "params_hash": "p1"}
    assert manifest.completed(**combination, model_version="v0001") == {"a": "a-new", "b": "b1"}
    assert manifest.completed(**combination, model_version="v0002") == {"d": "etag-d"}


def _append_batches(settings: Settings, worker: int, barrier: Any, results: Any) -> None:
    """One spawned writer: wait for the others, then append its batches as fast as it can."""
    try:
        manifest = ManifestTable(ObjectStore.from_settings(settings))
        batches = [[row(f"w{worker}/b{b}/{i}") for i in range(BATCH_ROWS)] for b in range(BATCHES)]
        barrier.wait(timeout=120)
        results.put([manifest.append(batch) for batch in batches])
    except BaseException as exc:
        results.put(repr(exc))
        raise


def test_concurrent_appends_from_processes_lose_nothing(s3_settings: Settings, store: ObjectStore) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_append_batches, args=(s3_settings, w, barrier, results)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert [p.exitcode for p in procs] == [0] * WORKERS

    manifest = ManifestTable(store)
    total = WORKERS * BATCHES
    assert sorted(v for o in outcomes for v in o) == list(range(1, total + 1))  # one commit each
    keys = manifest.read_arrow(columns=["image_key"])["image_key"].to_pylist()
    assert len(keys) == len(set(keys)) == total * BATCH_ROWS
    history = manifest.history()
    assert Counter(h["operation"] for h in history) == {"CREATE TABLE": 1, "WRITE": total}


def test_the_store_refuses_to_overwrite_a_commit_file(store: ObjectStore, manifest: ManifestTable) -> None:
    """What makes concurrent commits safe: delta-rs writes `_delta_log/<n>.json` with put-if-absent."""
    manifest.append([row("a")])
    commit = "manifest/_delta_log/00000000000000000001.json"
    assert store.exists(commit)
    with pytest.raises(PreconditionFailedError):
        store.put(commit, b'{"commitInfo": {}}', if_none_match=True)
    assert manifest.read_arrow()["image_key"].to_pylist() == ["a"]


def test_compact_merges_one_partition_and_keeps_rows(store: ObjectStore, manifest: ManifestTable) -> None:
    for b in range(3):
        manifest.append([row(f"rc-{b}-{i}", run_id="rc") for i in range(4)])
    for b in range(2):
        manifest.append([row(f"other-{b}", run_id="other")])
    before = manifest.read_arrow().sort_by("image_key")
    assert (partition_files(store, manifest, "rc"), partition_files(store, manifest, "other")) == (3, 2)

    metrics = manifest.compact(run_id="rc")
    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (3, 1)
    assert (partition_files(store, manifest, "rc"), partition_files(store, manifest, "other")) == (1, 2)
    assert manifest.read_arrow().sort_by("image_key").equals(before)
    assert manifest.history()[0]["operation"] == "OPTIMIZE"


def test_writes_respect_the_store_scope(store: ObjectStore) -> None:
    scoped = ManifestTable(store.scoped("catalog/"))
    with pytest.raises(WriteOutsideScopeError):
        scoped.append([row("a")])
    assert not scoped.exists()
    ManifestTable(store.scoped("manifest/")).append([row("a")])
    assert scoped.read_arrow()["image_key"].to_pylist() == ["a"]


def test_a_table_written_before_params_json_gains_the_column(store: ObjectStore) -> None:
    from infra.delta import StoreDeltaTable
    from infra.manifest import PARTITION_BY, conform

    old_schema = MANIFEST_SCHEMA.remove(MANIFEST_SCHEMA.get_field_index("params_json"))
    old = StoreDeltaTable(store, "manifest", old_schema, partition_by=PARTITION_BY)
    old.append(conform([row("old.jpg")]).drop_columns(["params_json"]))  # as the first release wrote it

    table = ManifestTable(store)
    table.append([row("new.jpg", params_json='{"color": "luminance"}')])
    got = table.read().sort_values("image_key")
    assert got["image_key"].tolist() == ["new.jpg", "old.jpg"]
    assert got["params_json"].tolist()[0] == '{"color": "luminance"}' and pd.isna(got["params_json"].tolist()[1])
    assert table.completed(catalog="cats", style="starry", model_version="v0001", params_hash="p1") == {
        "old.jpg": "etag-old.jpg",
        "new.jpg": "etag-new.jpg",
    }
