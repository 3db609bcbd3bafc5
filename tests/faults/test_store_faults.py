"""Object-store faults (issue 7): the pipeline keeps working and loses nothing when the store
answers 500/503, resets connections mid-request or mid-response, stops answering, or restarts.

Real work goes through `fault_proxy` (tests/faults/proxy.py) in front of the session's SeaweedFS:
planning (manifest reads, catalog listing), `stylize_shard_task` on the six example photos with
the shipped monet model (64 px, no metrics) in two shards, output puts and one manifest commit
per shard, from boto3 and deltalake alike. Each scenario runs a catalog set of its own and checks,
reading the store directly: one row per image, exactly one `ok` row each (or a `failed` row that
says what happened), each shard's 3 rows exactly once (no commit lost or doubled), outputs
byte-identical to the undisturbed run, and the exact number of faults the proxy injected.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

import infra.delta
import infra.store
from infra.local_store import EmbeddedStore
from infra.manifest import ManifestTable
from infra.registry import ModelRegistry
from infra.settings import Settings, get_settings
from infra.store import ObjectStore
from runs.methods.base import Source
from runs.shard import ShardJob
from runs.spec import StylizeParams
from tasks.stylize import plan_catalog_task, stylize_shard_task
from tests.faults.proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PHOTOS = sorted((EXAMPLES / "catalog").glob("*.jpg"))
STYLE = "monet"
PARAMS = StylizeParams(max_side=64)
SHARD_SIZE = 3  # six photos: two shards, two manifest commits per run

# Request targets, as the proxy sees them (path-style: /<bucket>/<key>?<query>).
CATALOG_GET = r"/catalog/"
OUTPUT_PUT = r"/stylized/"
LISTING = r"list-type=2&prefix=catalog"
COMMIT = r"/manifest/_delta_log/\d{20}\.json$"  # the conditional put that is a Delta commit
LOG_READ = r"/manifest/_delta_log/"
PARQUET = r"/manifest/run_id.*\.parquet$"
DELTA = "object_store"  # deltalake's requests (User-Agent); the others are boto3's


# ---- fixtures -------------------------------------------------------------------------------------
def register_model(store: ObjectStore) -> dict[str, str]:
    """The shipped monet model registered in the bucket (directly, not through the proxy)."""
    blob = (EXAMPLES / "models" / "monet.safetensors").read_bytes()
    card = json.loads((EXAMPLES / "models" / "monet.card.json").read_text())
    version = ModelRegistry(store).register("per-style", STYLE, blob, card).version
    return {"family": "per-style", "name": STYLE, "version": version}


@pytest.fixture(scope="module")
def model(fault_store: ObjectStore) -> dict[str, str]:
    return register_model(fault_store)


@contextmanager
def through(proxy: FaultProxy, store: ObjectStore, home: Path) -> Iterator[None]:
    """get_settings() (what tasks read) pointed at `store`'s bucket through the proxy, with client
    timeouts of 1 s (boto3 read, object_store request), so a held request is retried after 1 s."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "STYLEOPS_BUCKET": store.bucket,
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": store.connection["access_key"],
            "AWS_SECRET_ACCESS_KEY": store.connection["secret_key"],
            "STYLEOPS_HOME": str(home),
            "STYLEOPS_DEVICE": "cpu",
        }.items():
            mp.setenv(name, value)
        mp.setattr(infra.store, "READ_TIMEOUT_S", 1.0)
        mp.setattr(infra.delta, "REQUEST_TIMEOUT_S", 1.0)
        get_settings.cache_clear()
        try:
            assert get_settings().endpoint_url == proxy.url
            yield
        finally:
            get_settings.cache_clear()


def run_catalog(catalog: str, run_id: str, model: dict[str, str]) -> dict[str, Any]:
    """Plan the catalog set and stylize its shards, as the stylize-catalog flow does (no Prefect)."""
    with disable_run_logger():
        plan = plan_catalog_task.fn(catalog, STYLE, model["version"], PARAMS.hash, SHARD_SIZE)
        counts: Counter[str] = Counter()
        for i, shard in enumerate(plan["shards"]):
            counts.update(
                stylize_shard_task.fn(
                    ShardJob(
                        f"{run_id}-s{i:04d}",
                        shard,
                        run_id,
                        catalog,
                        STYLE,
                        model["version"],
                        PARAMS,
                        batch_size=2,
                        metrics=False,
                        source=Source.from_dict(model),
                    )
                )
            )
    return {"todo": plan["todo"], "shards": len(plan["shards"]), **counts}


def upload_catalog(store: ObjectStore, catalog: str) -> None:
    for photo in PHOTOS:
        store.put(f"catalog/{catalog}/{photo.name}", photo.read_bytes(), content_type="image/jpeg")


def outputs(store: ObjectStore, catalog: str) -> dict[str, bytes]:
    """Output file name -> bytes, read directly (not through the proxy)."""
    return {info.key.rsplit("/", 1)[1]: store.get_bytes(info.key) for info in store.list(f"stylized/{catalog}/")}


def run_rows(store: ObjectStore, run_id: str) -> pd.DataFrame:
    return ManifestTable(store).read(filters=[("run_id", "=", run_id)]).sort_values("image_key").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(
    fault_store: ObjectStore, fault_proxy: FaultProxy, model: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """The undisturbed run's outputs (through the proxy, no rules): file name -> bytes."""
    upload_catalog(fault_store, "reference")
    fault_proxy.clear()
    with through(fault_proxy, fault_store, tmp_path_factory.mktemp("home")):
        assert run_catalog("reference", "ref", model) == {"todo": 6, "shards": 2, "ok": 6, "failed": 0}
    assert fault_proxy.counts() == Counter()
    assert fault_proxy.requests()["PUT"] >= 6 + 2 * 2  # outputs, and per shard a parquet file and a commit
    out = outputs(fault_store, "reference")
    assert sorted(out) == [p.name for p in PHOTOS]
    return out


@pytest.fixture
def scenario(
    fault_store: ObjectStore,
    fault_proxy: FaultProxy,
    reference: dict[str, bytes],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """A fresh catalog set (named after the test) holding the six photos; the pipeline's settings
    point through the proxy, which starts with no rules and zero counts."""
    catalog = request.node.name.removeprefix("test_").replace("_", "-")[:40]
    upload_catalog(fault_store, catalog)
    fault_proxy.clear()
    with through(fault_proxy, fault_store, tmp_path / "home"):
        yield catalog
    fault_proxy.clear()


def check_run(
    store: ObjectStore, run_id: str, catalog: str, reference: dict[str, bytes], *, failed: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Every image once; `ok` rows hold the reference bytes; each shard's rows exactly once."""
    rows = run_rows(store, run_id)
    assert rows["image_key"].tolist() == [
        f"catalog/{catalog}/{p.name}" for p in PHOTOS
    ]  # one row each: none lost, none doubled
    assert rows.groupby("shard_id").size().to_dict() == {f"{run_id}-s0000": 3, f"{run_id}-s0001": 3}
    assert sorted(rows.loc[rows["status"] == "failed", "image_key"].str.rsplit("/", n=1).str[1]) == sorted(failed)
    ok = rows[rows["status"] == "ok"]
    out = outputs(store, catalog)
    for key, sha in zip(ok["image_key"], ok["output_sha256"], strict=True):
        name = key.rsplit("/", 1)[1]
        assert out[name] == reference[name], f"{name}: output differs from the undisturbed run"
        assert sha == hashlib.sha256(reference[name]).hexdigest()
    return rows


# ---- scenarios ------------------------------------------------------------------------------------
def test_http_500_and_503_are_retried(
    scenario: str, fault_store: ObjectStore, fault_proxy: FaultProxy, model: dict[str, str], reference: dict[str, bytes]
) -> None:
    fault_proxy.add(
        Rule("internal_error", "GET", CATALOG_GET, times=2),
        Rule("slow_down", "GET", CATALOG_GET, times=1),
        Rule("unavailable", "GET", CATALOG_GET, times=1),
        Rule("internal_error", "GET", LISTING, times=1),
        Rule("slow_down", "PUT", OUTPUT_PUT, times=1),
        Rule("internal_error", "PUT", OUTPUT_PUT, after=True, times=1),  # written, but answered 500
        Rule("unavailable", "PUT", PARQUET, agent=DELTA, times=1),
        Rule("internal_error", "PUT", COMMIT, agent=DELTA, times=1),
        Rule("internal_error", "PUT", COMMIT, agent=DELTA, after=True, times=1),  # committed, answered 500
        Rule("slow_down", "GET", LOG_READ, agent=DELTA, times=1),
        Rule("unavailable", "GET", LOG_READ, agent=DELTA, times=1),
    )
    assert run_catalog(scenario, "http-errors", model) == {"todo": 6, "shards": 2, "ok": 6, "failed": 0}
    assert fault_proxy.counts() == {"internal_error": 6, "slow_down": 3, "unavailable": 3}
    check_run(fault_store, "http-errors", scenario, reference)


def test_connection_resets_mid_request_and_mid_response(
    scenario: str, fault_store: ObjectStore, fault_proxy: FaultProxy, model: dict[str, str], reference: dict[str, bytes]
) -> None:
    fault_proxy.add(
        Rule("reset", "GET", CATALOG_GET, times=2),  # before the store sees it
        Rule("reset", "GET", CATALOG_GET, after=True, times=2),  # mid-body: after botocore's retries end
        Rule("reset", "GET", LISTING, after=True, times=1),
        Rule("reset", "PUT", OUTPUT_PUT, times=1),  # half the body sent
        Rule("reset", "PUT", OUTPUT_PUT, after=True, times=1),  # written; the answer is cut
        Rule("reset", "PUT", PARQUET, agent=DELTA, times=1),
        Rule("reset", "PUT", COMMIT, agent=DELTA, times=1),  # object_store does not retry a cut commit
        Rule("reset", "PUT", COMMIT, agent=DELTA, after=True, times=1),  # committed; did it land?
        Rule("reset", "GET", LOG_READ, agent=DELTA, after=True, times=1),
    )
    assert run_catalog(scenario, "resets", model) == {"todo": 6, "shards": 2, "ok": 6, "failed": 0}
    assert fault_proxy.counts() == {"reset": 11}
    check_run(fault_store, "resets", scenario, reference)


def test_unanswered_requests_time_out_and_are_retried(
    scenario: str, fault_store: ObjectStore, fault_proxy: FaultProxy, model: dict[str, str], reference: dict[str, bytes]
) -> None:
    fault_proxy.add(
        Rule("timeout", "GET", CATALOG_GET, times=1),
        Rule("timeout", "PUT", OUTPUT_PUT, after=True, times=1),  # written, never answered
        Rule("timeout", "PUT", COMMIT, agent=DELTA, times=1),
        Rule("timeout", "PUT", COMMIT, agent=DELTA, after=True, times=1),  # committed, never answered
        Rule("timeout", "GET", LOG_READ, agent=DELTA, times=1),
    )
    assert run_catalog(scenario, "timeouts", model) == {"todo": 6, "shards": 2, "ok": 6, "failed": 0}
    assert fault_proxy.counts() == {"timeout": 5}
    check_run(fault_store, "timeouts", scenario, reference)


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[tuple[EmbeddedStore, ObjectStore]]:
    """A SeaweedFS of this test's own (restarting the session's would disturb every other module),
    with a bucket; stopped afterwards."""
    service = EmbeddedStore(tmp_path / "own-store")
    info = service.start()
    try:
        settings = Settings(
            home=tmp_path,
            bucket="restart",
            endpoint_url=info.endpoint_url,
            aws_access_key_id=info.access_key,
            aws_secret_access_key=info.secret_key,
        )
        store = ObjectStore.from_settings(settings)
        store.ensure_bucket()
        yield service, store
    finally:
        service.stop(timeout=5)


def test_store_restarts_mid_run(
    own_store: tuple[EmbeddedStore, ObjectStore], reference: dict[str, bytes], tmp_path: Path
) -> None:
    """SeaweedFS really stopped and started again (same data dir and ports): once while shard 1
    writes its outputs (boto3), once at shard 2's commit (deltalake). Connections are refused
    while it is down (~2 s), then 3 s of 500s, as SeaweedFS gives until its volumes are loaded."""
    service, store = own_store
    before = service.status()
    assert before is not None
    model = register_model(store)
    upload_catalog(store, "restarts")
    with (
        FaultProxy(before.endpoint_url, store_dir=service.state_dir, warmup_s=3.0) as proxy,
        through(proxy, store, tmp_path / "home"),
    ):
        proxy.add(
            Rule("restart", "PUT", OUTPUT_PUT, skip=1, times=1),  # shard 1, between its outputs
            Rule("restart", "PUT", COMMIT, agent=DELTA, skip=2, times=1),  # shard 2's (0 creates the table)
        )
        assert run_catalog("restarts", "restarts", model) == {"todo": 6, "shards": 2, "ok": 6, "failed": 0}
        proxy.wait_up()
        counts = proxy.counts()
        assert counts["restart"] == 2 and counts["warming_up"] > 0, counts
        assert "restart_failed" not in counts, proxy.errors()
    after = service.status()
    assert after is not None and after.pid != before.pid  # really another SeaweedFS process
    # Its ports, or new ones when an old one was still taken (EmbeddedStore moves; the proxy followed).
    settings = Settings(
        home=tmp_path,
        bucket=store.bucket,
        endpoint_url=after.endpoint_url,
        aws_access_key_id=after.access_key,
        aws_secret_access_key=after.secret_key,
    )
    check_run(ObjectStore.from_settings(settings), "restarts", "restarts", reference)


def test_a_persistent_fault_ends_in_a_failed_row_that_says_so_and_the_rerun_completes(
    scenario: str,
    fault_store: ObjectStore,
    fault_proxy: FaultProxy,
    model: dict[str, str],
    reference: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(infra.store, "MAX_ATTEMPTS", 2)  # give up quickly (the default would take ~40 s)
    fault_proxy.add(Rule("internal_error", "PUT", rf"/stylized/{scenario}/.*/{PHOTOS[1].name}$", times=None))
    assert run_catalog(scenario, "persistent", model) == {"todo": 6, "shards": 2, "ok": 5, "failed": 1}
    assert fault_proxy.counts() == {"internal_error": 3}  # the first try and botocore's 2 retries
    rows = check_run(fault_store, "persistent", scenario, reference, failed=(PHOTOS[1].name,))
    bad = rows[rows["status"] == "failed"].iloc[0]
    assert bad["error_class"] == "store_error"
    assert "InternalError" in bad["error"] and "PutObject" in bad["error"] and "reached max retries: 2" in bad["error"]

    fault_proxy.clear()
    assert run_catalog(scenario, "persistent-rerun", model) == {"todo": 1, "shards": 1, "ok": 1, "failed": 0}
    rerun = run_rows(fault_store, "persistent-rerun")
    assert rerun[["image_key", "status"]].values.tolist() == [[f"catalog/{scenario}/{PHOTOS[1].name}", "ok"]]
    both = pd.concat([rows, rerun])
    assert both[both["status"] == "ok"].groupby("image_key").size().tolist() == [1] * 6  # exactly one ok row each
    assert outputs(fault_store, scenario) == reference
