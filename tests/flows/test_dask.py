"""Catalog runs on a local Dask cluster of 2 worker processes, against the real local object store.

The catalog: 20 real photos, crops of four example Kodak photos at five sizes (so several size
buckets), stylized with the shipped Monet model in shards of 5. Checked row by row in the manifest.
The resume test kills a worker process (SIGKILL) while its shard is writing outputs, then reruns
the same flow: exactly one `ok` row per image, and every output byte-identical to an undisturbed run.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from PIL import Image
from prefect.logging import disable_run_logger

from flows.stylize_catalog import stylize_catalog
from runs import context
from runs.keys import output_key
from runs.spec import RunSpec, StylizeParams
from styleops.inference.engine import shrunk_size
from styleops.io.images import sha256_hex
from tasks.training import import_model_task
from tests.flows.conftest import EXAMPLES, PipelineEnv

pytestmark = [pytest.mark.flow, pytest.mark.integration]

SIZES = [(200, 150), (150, 200), (240, 240), (320, 180), (96, 128)]  # (w, h) crops
MAX_SIDE = 128


N = 20  # photos in the catalog


def _photos() -> dict[str, bytes]:
    """N distinct real photos: each of the first N / 5 example photos cropped at five sizes, as JPEG."""
    out = {}
    for path in sorted((EXAMPLES / "catalog").glob("*.jpg"))[: N // len(SIZES)]:
        with Image.open(path) as im:
            for i, (w, h) in enumerate(SIZES):
                x0, y0 = 17 * i, 11 * i
                buf = io.BytesIO()
                im.crop((x0, y0, x0 + w, y0 + h)).save(buf, "JPEG", quality=92)
                out[f"{path.stem}-{w}x{h}.jpg"] = buf.getvalue()
    return out


@pytest.fixture
def dask_env(pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch) -> PipelineEnv:
    models = EXAMPLES / "models"
    with disable_run_logger():
        import_model_task.fn(
            context.PER_STYLE, "monet", str(models / "monet.safetensors"), str(models / "monet.card.json")
        )
    for catalog in ("dozens", "undisturbed"):
        for name, data in _photos().items():
            pipeline_env.store.put(f"catalog/{catalog}/{name}", data)
    return pipeline_env


def _rows(catalog: str) -> pd.DataFrame:
    return context.manifest().read(filters=[("catalog", "=", f"catalog/{catalog}/")])


def _outputs(env: PipelineEnv, catalog: str) -> dict[str, bytes]:
    """Output bytes by image file name."""
    return {o.key.rsplit("/", 1)[1]: env.store.get_bytes(o.key) for o in env.store.list(f"stylized/{catalog}/")}


def _run(catalog: str, **kw: Any) -> dict[str, Any]:
    """The catalog on a local Dask cluster of 2 worker processes, no metrics (the subprocess test runs
    the command with them)."""
    return stylize_catalog(
        RunSpec.create(
            catalog, "monet", max_side=MAX_SIDE, **{"shard_size": 5, "dask_workers": 2, "metrics": False, **kw}
        )
    )


def _check_clean_run(env: PipelineEnv, catalog: str, summary: dict[str, Any]) -> None:
    """A run of the whole catalog on the 2 Dask workers: every row and output as expected, and a
    rerun that finds nothing to do."""
    photos = _photos()
    assert (summary["images"], summary["shards"], summary["ok"], summary["failed"], summary["already_done"]) == (
        N,
        N // 5,
        N,
        0,
        0,
    )

    rows = _rows(catalog)
    assert len(rows) == N and set(rows.status) == {"ok"}
    assert sorted(rows.image_key) == sorted(f"catalog/{catalog}/{n}" for n in photos)
    assert rows.worker.nunique() == 2  # two worker processes shared the shards
    assert all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in rows.worker)
    assert sorted(rows.groupby("shard_id").size().tolist()) == [5] * (N // 5)
    assert set(rows.run_id) == {summary["run_id"]}
    for row in rows.itertuples():
        name = row.image_key.rsplit("/", 1)[1]
        w, h = (int(v) for v in name.rsplit("-", 1)[1].removesuffix(".jpg").split("x"))
        assert (row.width, row.height) == (w, h)
        assert (row.out_height, row.out_width) == shrunk_size(h, w, MAX_SIDE)
        assert row.output_key == output_key(row.image_key, catalog, "monet", "v0001", StylizeParams(max_side=MAX_SIDE))
        data = env.store.get_bytes(row.output_key)
        assert sha256_hex(data) == row.output_sha256 and len(data) == row.bytes_out
        with Image.open(io.BytesIO(data)) as out:
            assert out.size == (row.out_width, row.out_height)
        assert row.input_sha256 == sha256_hex(photos[name])

    again = _run(catalog)  # everything is done: nothing to run
    assert (again["already_done"], again["shards"], again["ok"]) == (N, 0, 0)
    assert len(_rows(catalog)) == N


def _worker_processes() -> list[psutil.Process]:
    """The Dask worker processes: this process's multiprocessing children (their nannies run in
    this process), not its resource tracker or the Prefect test server."""
    found = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.cmdline())
            if "spawn_main" in cmd or "forkserver" in cmd:
                found.append(p)
    return found


def test_catalog_on_two_dask_workers_then_a_worker_killed_mid_shard_and_the_rerun_finishes_exactly_once(
    dask_env: PipelineEnv,
) -> None:
    _check_clean_run(dask_env, "undisturbed", _run("undisturbed"))  # also the reference bytes

    killed: list[int] = []
    seen: dict[str, int] = {}

    def kill_a_busy_worker() -> None:
        """Once some outputs exist but fewer than all, SIGKILL the worker that is using the CPU."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            written = sum(1 for _ in dask_env.store.list("stylized/dozens/"))
            workers = _worker_processes()
            if 3 <= written < N - 5 and len(workers) == 2:
                for p in workers:
                    p.cpu_percent()
                time.sleep(0.3)
                busy = max(workers, key=lambda p: p.cpu_percent())
                seen["outputs"], seen["rows"] = written, len(_rows("dozens"))
                os.kill(busy.pid, signal.SIGKILL)
                killed.append(busy.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        first = _run("dozens", metrics=True)  # slower images: a wider window to kill a worker in
    except Exception as exc:  # noqa: BLE001 - a run may end failed when its worker died; the rerun must finish it
        first = {"error": repr(exc)}
    killer.join()
    assert killed, "no worker was killed: the run finished before any output appeared"
    assert seen["rows"] < N  # killed before the catalog was recorded

    rerun = _run("dozens")
    rows = _rows("dozens")
    ok = rows[rows.status == "ok"]
    assert ok.image_key.value_counts().max() == 1 and len(ok) == N, (first, rerun)
    assert set(rows.status) == {"ok"}
    assert rerun["already_done"] + rerun["ok"] == N and rerun["failed"] == 0
    assert _outputs(dask_env, "dozens") == _outputs(dask_env, "undisturbed")  # byte-identical


def test_flow_process_killed_mid_run_then_same_command_finishes_exactly_once(dask_env: PipelineEnv) -> None:
    """`styleops stylize` in its own process (shards on threads, metrics on), SIGKILLed once some
    outputs are written but before they are all recorded; the same command run again finishes
    the catalog: one `ok` row per image, outputs byte-identical to an undisturbed run."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "STYLEOPS_COMMIT_EVERY": "4",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "stylize",
        "--catalog",
        "dozens",
        "--style",
        "monet",
        "--max-side",
        str(MAX_SIDE),
        "--shard-size",
        "10",
    ]
    reference = _run("undisturbed", shard_size=10, dask_workers=0)  # threads, one torch thread: as the command
    assert reference["ok"] == N

    proc = subprocess.Popen(command, env=env, cwd=EXAMPLES.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, written = time.monotonic() + 240, 0
    while time.monotonic() < deadline and proc.poll() is None:
        written = sum(1 for _ in dask_env.store.list("stylized/dozens/"))
        if written >= 6:
            break
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait(30)
    recorded = len(_rows("dozens"))
    assert proc.returncode == -signal.SIGKILL and 6 <= written < N and recorded < N, (
        proc.returncode,
        written,
        recorded,
    )

    rerun = subprocess.run(command, env=env, cwd=EXAMPLES.parent, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    rows = _rows("dozens")
    assert len(rows) == N and set(rows.status) == {"ok"} and rows.image_key.nunique() == N
    assert rows.run_id.nunique() == (2 if recorded else 1)  # rows the killed run committed are kept, not redone
    assert _outputs(dask_env, "dozens") == _outputs(dask_env, "undisturbed")  # byte-identical


def test_shards_on_a_separate_scheduler_and_gpu_worker_use_the_gpu_resource(
    dask_env: PipelineEnv, tmp_path: Path
) -> None:
    """The multi-machine set-up, on one machine: `dask scheduler` and `dask worker --resources
    GPU=1` as their own processes (as infra/deploy/dask/ starts them), the flow given the address.
    Shards are annotated resources={"GPU": 1}: a scheduler plugin records each task's resource
    restrictions as it starts processing."""
    from distributed import Client
    from distributed.diagnostics.plugin import SchedulerPlugin

    class RecordRestrictions(SchedulerPlugin):
        name = "record-restrictions"

        def start(self, scheduler: Any) -> None:
            self.scheduler, self.seen = scheduler, []

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            if finish == "processing":
                self.seen.append(self.scheduler.tasks[key].resource_restrictions)

    dask = Path(sys.executable).with_name("dask")
    port = 20000 + os.getpid() % 20000
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    scheduler = subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [str(dask), "worker", address, "--nthreads", "1", "--resources", "GPU=1", "--name", "gpu0"],
        env=env,
        cwd=EXAMPLES.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            client.register_plugin(RecordRestrictions())
            summary = stylize_catalog(
                RunSpec.create(catalog="dozens", style="monet", max_side=64, shard_size=10, dask_address=address)
            )
            assert (summary["shards"], summary["ok"], summary["failed"]) == (-(-N // 10), N, 0)
            restrictions = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.plugins["record-restrictions"].seen
            )
        rows = _rows("dozens")
        assert len(rows) == N and set(rows.status) == {"ok"} and rows.worker.nunique() == 1
    finally:
        for p in (worker, scheduler):
            p.terminate()
            p.wait(30)
    assert restrictions == [{"GPU": 1}] * -(-N // 10), restrictions  # every shard needed one GPU
