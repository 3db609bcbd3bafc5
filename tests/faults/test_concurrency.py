"""Concurrent writers in separate OS processes, on the real embedded SeaweedFS over HTTP.

- 4 spawned processes append to one manifest table (`ManifestTable.append`, Delta commits made
  safe only by the store's conditional puts) at the same time, 6 appends each, of 3-6 rows: no row
  may be lost or duplicated, every append gets its own commit version, and the log (commit files,
  data files, history, time travel) must agree with what each writer was told.
- 2 spawned processes register model versions of one name and promote them concurrently
  (`ModelRegistry`: versions claimed with If-None-Match, PRODUCTION moved with If-Match): distinct
  versions, cards matching their bytes, no orphan object, exactly one event per success.

The table does not exist when the writers start, so its creation is raced too. This module imports
nothing heavy at the top (no torch): spawned children import it to find their target.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deltalake import DeltaTable
from safetensors.numpy import save as save_numpy

from infra.delta import delta_storage_options
from infra.local_store import StoreInfo
from infra.manifest import ManifestTable
from infra.registry import ModelRegistry, PromotionConflictError
from infra.settings import Settings
from infra.store import ObjectStore

pytestmark = pytest.mark.integration

WRITERS, APPENDS = 4, 6
REGISTRARS, REGISTRATIONS = 2, 3
FAMILY, NAME = "per-style", "race"
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
CHILD_TIMEOUT = 150  # seconds a child may take (each needs ~10 s on 2 busy cores)


# ---- helpers shared with the children ----------------------------------------------------------
def batch_size(writer: int, batch: int) -> int:
    return 3 + (writer + batch) % 4  # 3..6 rows: a commit's row count tells batches apart


def batch_keys(writer: int, batch: int) -> list[str]:
    return [f"w{writer}/a{batch:02d}/r{i:02d}" for i in range(batch_size(writer, batch))]


def manifest_row(key: str, writer: int, batch: int) -> dict[str, Any]:
    return {
        "run_id": f"run-{writer % 2}",  # two partitions, both shared by two writers
        "shard_id": f"w{writer}-a{batch:02d}",
        "image_key": key,
        "catalog": "catalog/race/",
        "style": "wave",
        "status": "ok",
        "worker": f"writer-{writer}",
        "started_at": T0,
        "finished_at": T0,
    }


def _append_many(settings: Settings, writer: int, barrier: Any, results: Any) -> None:
    """A spawned writer: wait for the others, then append its batches back to back."""
    try:
        table = ManifestTable(ObjectStore.from_settings(settings))
        batches = [[manifest_row(k, writer, b) for k in batch_keys(writer, b)] for b in range(APPENDS)]
        barrier.wait(timeout=CHILD_TIMEOUT)
        outcome = []
        for b, rows in enumerate(batches):
            started = time.monotonic()
            version = table.append(rows)
            outcome.append((b, version, time.monotonic() - started))
        results.put((writer, outcome))
    except BaseException as exc:
        results.put((writer, repr(exc)))
        raise


def weights_blob(registrar: int, i: int) -> bytes:
    """A small valid safetensors file, different for every (registrar, i)."""
    return save_numpy({"w": np.full((4, 4), registrar * 100 + i, dtype=np.float32)})


def _register_and_promote(settings: Settings, registrar: int, barrier: Any, results: Any) -> None:
    """A spawned registrar: register its versions and promote each right after registering it."""
    try:
        registry = ModelRegistry(ObjectStore.from_settings(settings))
        barrier.wait(timeout=CHILD_TIMEOUT)
        outcome = []
        for i in range(REGISTRATIONS):
            mv = registry.register(FAMILY, NAME, weights_blob(registrar, i), {"registrar": registrar, "i": i})
            try:
                registry.promote(FAMILY, NAME, mv.version, reason=f"registrar {registrar}")
                promoted = True
            except PromotionConflictError:
                promoted = False
            outcome.append((i, mv.version, mv.sha256, promoted))
        results.put((registrar, outcome))
    except BaseException as exc:
        results.put((registrar, repr(exc)))
        raise


def _run_children(target: Any, settings: Settings, n: int) -> dict[int, Any]:
    """Start `n` spawned processes of `target` at once; their outcomes by index (all must exit 0)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(settings, i, barrier, results)) for i in range(n)]
    for proc in procs:
        proc.start()
    try:
        outcomes = dict(results.get(timeout=CHILD_TIMEOUT) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():  # only our own children, by handle
                proc.kill()
    assert all(isinstance(o, list) for o in outcomes.values()), outcomes
    assert [p.exitcode for p in procs] == [0] * n
    return outcomes


@pytest.fixture
def bucket_settings(embedded_store: StoreInfo, tmp_path: Path) -> Settings:
    """Settings for the session's store; each test makes a bucket of its own (`_fresh_bucket`)."""
    return Settings(
        home=tmp_path,
        bucket="unused",
        endpoint_url=embedded_store.endpoint_url,
        aws_access_key_id=embedded_store.access_key,
        aws_secret_access_key=embedded_store.secret_key,
    )


def _fresh_bucket(settings: Settings) -> ObjectStore:
    """A bucket of its own (the manifest and registry live at fixed prefixes of a bucket)."""
    fresh = settings.model_copy(update={"bucket": "t-" + uuid.uuid4().hex[:12]})
    st = ObjectStore.from_settings(fresh)
    st.ensure_bucket()
    return st


# ---- 1. four processes appending to one manifest table ------------------------------------------
def test_four_processes_appending_lose_nothing_and_duplicate_nothing(bucket_settings: Settings) -> None:
    st = _fresh_bucket(bucket_settings)
    settings = bucket_settings.model_copy(update={"bucket": st.bucket})
    try:
        outcomes = _run_children(_append_many, settings, WRITERS)

        # Every append got its own commit: versions 1..24 (0 is the table's creation), each once,
        # and increasing within each writer.
        told = {(w, b): v for w, rows in outcomes.items() for b, v, _ in rows}
        total_commits = WRITERS * APPENDS
        assert sorted(told.values()) == list(range(1, total_commits + 1))
        for w in range(WRITERS):
            mine = [told[(w, b)] for b in range(APPENDS)]
            assert mine == sorted(mine), (w, mine)

        latencies = sorted(t for rows in outcomes.values() for _, _, t in rows)
        print(
            f"\nmanifest: {WRITERS} writers x {APPENDS} appends, "
            f"commit latency median {latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s"
        )

        # Rows: exactly the keys written, each once, each with its writer's shard id.
        expected = {k: f"w{w}-a{b:02d}" for w in range(WRITERS) for b in range(APPENDS) for k in batch_keys(w, b)}
        table = ManifestTable(st)
        got = table.read_arrow(columns=["image_key", "shard_id", "run_id"])
        keys = got["image_key"].to_pylist()
        duplicates = {k: n for k, n in Counter(keys).items() if n > 1}
        assert duplicates == {}
        assert set(keys) == set(expected) and len(keys) == len(expected) == 108
        assert dict(zip(keys, got["shard_id"].to_pylist(), strict=True)) == expected
        assert Counter(got["run_id"].to_pylist()) == {
            f"run-{p}": sum(batch_size(w, b) for w in range(WRITERS) if w % 2 == p for b in range(APPENDS))
            for p in (0, 1)
        }

        # The log: commit files 0..24 and nothing else; commit v holds exactly the batch whose
        # writer was told v (row count and the batch's first/last key in the file statistics).
        log_files = sorted(i.key.rsplit("/", 1)[1] for i in st.list("manifest/_delta_log/"))
        assert log_files == [f"{v:020d}.json" for v in range(total_commits + 1)]
        by_version = {v: (w, b) for (w, b), v in told.items()}
        added: dict[str, int] = {}
        for v in range(1, total_commits + 1):
            actions = [
                json.loads(line)
                for line in st.get_bytes(f"manifest/_delta_log/{v:020d}.json").splitlines()
                if line.strip()
            ]
            adds = [a["add"] for a in actions if "add" in a]
            assert not any("remove" in a or "metaData" in a for a in actions), v
            w, b = by_version[v]
            stats = [json.loads(a["stats"]) for a in adds]
            assert sum(s["numRecords"] for s in stats) == batch_size(w, b), v
            assert min(s["minValues"]["image_key"] for s in stats) == batch_keys(w, b)[0]
            assert max(s["maxValues"]["image_key"] for s in stats) == batch_keys(w, b)[-1]
            assert {a["partitionValues"]["run_id"] for a in adds} == {f"run-{w % 2}"}
            for a in adds:
                added[a["path"]] = v

        # Data files: exactly those the commits add (a retried commit leaves no orphan, none is missing).
        data_files = {
            i.key.removeprefix("manifest/")
            for i in st.list("manifest/")
            if not i.key.startswith("manifest/_delta_log/")
        }
        assert data_files == set(added)

        # History and time travel agree.
        history = table.history()
        assert sorted(h["version"] for h in history) == list(range(total_commits + 1))
        assert Counter(h["operation"] for h in history) == {"CREATE TABLE": 1, "WRITE": total_commits}
        options = delta_storage_options(st)
        for v in (1, total_commits // 2, total_commits):
            at_v = DeltaTable(table.uri, version=v, storage_options=options).to_pyarrow_table(columns=["image_key"])
            committed = {k for (w, b), tv in told.items() if tv <= v for k in batch_keys(w, b)}
            assert sorted(at_v["image_key"].to_pylist()) == sorted(committed), v
    finally:
        st.client.delete_bucket(Bucket=st.bucket)


# ---- 2. two processes registering and promoting model versions ---------------------------------
def test_two_processes_registering_get_distinct_complete_versions(bucket_settings: Settings) -> None:
    st = _fresh_bucket(bucket_settings)
    settings = bucket_settings.model_copy(update={"bucket": st.bucket})
    try:
        outcomes = _run_children(_register_and_promote, settings, REGISTRARS)
        results = [(r, *o) for r, rows in outcomes.items() for o in rows]  # (registrar, i, version, sha256, promoted)
        n = REGISTRARS * REGISTRATIONS
        assert sorted(version for _, _, version, _, _ in results) == [f"v{k:04d}" for k in range(1, n + 1)]

        registry = ModelRegistry(st)
        for registrar, i, version, sha, _ in results:
            blob = weights_blob(registrar, i)
            card = registry.card(FAMILY, NAME, version)
            assert (card["registrar"], card["i"], card["version"]) == (registrar, i, version)
            assert card["weights_sha256"] == sha == hashlib.sha256(blob).hexdigest()
            assert registry.weights_bytes(FAMILY, NAME, version) == blob

        # No orphan: exactly one weights file and one card per version, and the pointer.
        base = f"models/{FAMILY}/{NAME}/"
        listed = sorted(i.key.removeprefix(base) for i in st.list(base))
        assert listed == sorted(
            ["PRODUCTION", *(f"v{k:04d}/{f}" for k in range(1, n + 1) for f in ("card.json", "weights.safetensors"))]
        )

        # Events: one "registered" per version; one "promoted" per promotion its caller saw succeed.
        events = registry.events()
        registered = events[events.event == "registered"]
        assert sorted(registered.version) == [f"v{k:04d}" for k in range(1, n + 1)]
        promoted = events[events.event == "promoted"]
        succeeded = sorted(version for *_, version, _, ok in results if ok)
        print(
            f"\nregistry: {n} registrations, {len(succeeded)} promotions succeeded, "
            f"{n - len(succeeded)} refused as conflicts"
        )
        assert len(succeeded) >= 1
        assert sorted(promoted.version) == succeeded
        assert len(events) == n + len(succeeded)

        # PRODUCTION is the last successful promotion (promotions are serialised by If-Match).
        pointer = st.get_json(base + "PRODUCTION")
        newest = promoted.sort_values("created_at").iloc[-1]
        assert pointer["version"] == registry.production(FAMILY, NAME) == newest.version
        assert datetime.fromisoformat(pointer["promoted_at"]) == newest.created_at.to_pydatetime()
    finally:
        st.client.delete_bucket(Bucket=st.bucket)
