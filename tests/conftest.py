"""Shared fixtures. The environment is isolated at import time, before anything imports Prefect.

- Prefect gets a throwaway PREFECT_HOME (no analytics, generous ephemeral-server startup).
- STYLEOPS_HOME is a throwaway directory, so no test touches ~/.styleops; STYLEOPS_CONFIG points
  at a file that does not exist, so a developer's ./styleops.toml is not read.
- The AWS endpoint and credential variables are removed, so no test can reach a real store.
- Under pytest-xdist every worker has its own homes and one torch thread per core it owns (two
  OpenMP threads fighting over a busy core run small tensors many times slower).

Fixtures: `embedded_store` (one SeaweedFS per session), `s3_settings` (Settings for a fresh
bucket on it), `store` (an ObjectStore on that bucket, created and removed around the test).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# pytest-xdist (scripts/test runs one worker per core): each worker process gets homes of its own
# under the ones scripts/test exports, and one torch thread per core it owns.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TORCH_THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
for _home, _prefix in (("STYLEOPS_HOME", "styleops-test-home-"), ("PREFECT_HOME", "styleops-test-prefect-")):
    if _home in os.environ and WORKER:
        os.environ[_home] = os.path.join(os.environ[_home], WORKER)
        os.makedirs(os.environ[_home], exist_ok=True)
    os.environ.setdefault(_home, tempfile.mkdtemp(prefix=_prefix))
_STYLEOPS_HOME = os.environ["STYLEOPS_HOME"]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("STYLEOPS_CONFIG", str(Path(_STYLEOPS_HOME) / "no-such-styleops.toml"))
# Commands in tests use Prefect's temporary server, so none outlives the suite; the kept server
# (the CLI's default) is tested on its own in tests/flows/test_operations.py.
os.environ.setdefault("STYLEOPS_PREFECT_SERVER", "ephemeral")
# Tests run torch's kernels, whose outputs and metrics they pin; the onnxruntime backend (the CPU
# default where it is installed) is tested on its own in tests/unit/test_onnx_backend.py.
os.environ.setdefault("STYLEOPS_BACKEND", "torch")
for _var in (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "STYLEOPS_ENDPOINT_URL",
):
    os.environ.pop(_var, None)

import uuid  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

if WORKER:
    torch.set_num_threads(TORCH_THREADS)

from infra.local_store import EmbeddedStore, StoreInfo  # noqa: E402
from infra.settings import Settings, get_settings  # noqa: E402
from infra.store import ObjectStore  # noqa: E402


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread inside (the same reductions in every process), the count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def set_env(mp: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Set the variables `env` with `mp` and clear the cached settings, so `get_settings()` reads them."""
    for name, value in env.items():
        mp.setenv(name, value)
    get_settings.cache_clear()


def store_env(embedded_store: StoreInfo, bucket: str, home: Path) -> dict[str, str]:
    """The environment variables that point settings at `bucket` on the session's store, with
    STYLEOPS_HOME `home`."""
    return {
        "STYLEOPS_BUCKET": bucket,
        "AWS_ENDPOINT_URL": embedded_store.endpoint_url,
        "AWS_ACCESS_KEY_ID": embedded_store.access_key,
        "AWS_SECRET_ACCESS_KEY": embedded_store.secret_key,
        "STYLEOPS_HOME": str(home),
    }


@pytest.fixture(scope="session")
def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreInfo]:
    """One embedded SeaweedFS for the whole session, in its own state dir; stopped at the end."""
    service = EmbeddedStore(tmp_path_factory.mktemp("embedded-store"))
    info = service.start()
    try:
        yield info
    finally:
        service.stop()


@pytest.fixture
def s3_settings(embedded_store: StoreInfo, tmp_path: Path) -> Settings:
    """Settings pointing at the session's store, with a fresh bucket name and home=tmp_path."""
    return Settings(
        home=tmp_path,
        bucket="t-" + uuid.uuid4().hex[:12],
        endpoint_url=embedded_store.endpoint_url,
        aws_access_key_id=embedded_store.access_key,
        aws_secret_access_key=embedded_store.secret_key,
    )


@pytest.fixture
def store(s3_settings: Settings) -> Iterator[ObjectStore]:
    """An ObjectStore on the test's own bucket (created before, deleted with its objects after)."""
    object_store = ObjectStore.from_settings(s3_settings)
    object_store.ensure_bucket()
    yield object_store
    # SeaweedFS deletes non-empty buckets (and frees their volume), keeping a long session lean.
    object_store.client.delete_bucket(Bucket=object_store.bucket)
