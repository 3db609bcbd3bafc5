"""Fixtures for the fault tests: the real object store, never a stub of boto3.

- `fault_store` (module): an ObjectStore on one fresh bucket of the session's embedded SeaweedFS
  (`embedded_store`, over HTTP), shared by the module's tests and deleted with its objects at the
  end. One bucket, not `pipeline_env`'s bucket per test: that fixture's setup (bucket, example
  uploads) costs ~0.5-0.8 s a test, here ~30 tests; each test writes under keys of its own.
- `fault_settings` (function): get_settings(), which `runs.context.store()` reads, pointed at that
  bucket through the environment (as `pipeline_env` does), the cache cleared before and after.
- `fault_proxy` (module): the fault-injecting proxy (tests/faults/proxy.py) in front of the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local_store import StoreInfo
from infra.settings import Settings, get_settings
from infra.store import ObjectStore
from tests.conftest import set_env, store_env
from tests.faults.proxy import FaultProxy


@pytest.fixture(scope="module")
def fault_store(embedded_store: StoreInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    settings = Settings(
        home=tmp_path_factory.mktemp("fault-home"),
        bucket="t-" + uuid.uuid4().hex[:12],
        endpoint_url=embedded_store.endpoint_url,
        aws_access_key_id=embedded_store.access_key,
        aws_secret_access_key=embedded_store.secret_key,
    )
    st = ObjectStore.from_settings(settings)
    st.ensure_bucket()
    yield st
    st.client.delete_bucket(Bucket=st.bucket)  # SeaweedFS deletes non-empty buckets


@pytest.fixture
def fault_settings(
    fault_store: ObjectStore, embedded_store: StoreInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    set_env(monkeypatch, store_env(embedded_store, fault_store.bucket, tmp_path / "home"))
    try:
        settings = get_settings()
        assert settings.bucket == fault_store.bucket and settings.endpoint_url == embedded_store.endpoint_url
        yield settings
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def fault_proxy(embedded_store: StoreInfo) -> Iterator[FaultProxy]:
    """A FaultProxy (tests/faults/proxy.py, its own process) in front of the session's SeaweedFS,
    with no rules until a test adds some (`fault_proxy.clear()` between scenarios). Point settings
    at `fault_proxy.url`. Its `restart` rules only refuse connections for 3 s: the session's store
    is shared by every module, so a test that really restarts a store starts one of its own."""
    with FaultProxy(embedded_store.endpoint_url, hold_s=3.0) as proxy:
        yield proxy
