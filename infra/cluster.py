"""Where shards run: threads in the flow's process, a local Dask cluster, or a remote one.

- `shard_runner(address, workers)`: a Prefect task runner for the shards. No address and no
  workers: `ThreadPoolTaskRunner` (2 threads: one shard on the device while the next one loads).
  `workers` N: `prefect_dask.DaskTaskRunner` on a `LocalCluster` of N single-threaded worker
  processes, each with cores/N torch threads. `address`: connect to a running scheduler
  (`dask scheduler` + `dask worker tcp://... --resources GPU=1` on each GPU machine; see
  infra/deploy/dask/ and the README).
- `gpu_annotation(runner)`: inside it, submitted tasks are annotated `resources={"GPU": 1}` when the
  flow runs on Dask and some worker declares a GPU resource, so each GPU runs one shard at a
  time. Without such workers there is no annotation (a resource no worker has would never run).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner


def shard_runner(address: str | None = None, workers: int = 0) -> TaskRunner:
    """The task runner for a catalog's shards (see the module doc)."""
    if not address and workers <= 0:
        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "env": env,
            "dashboard_address": ":0",
        }
    )


def gpu_workers(runner: Any) -> int:
    """Dask workers of `runner` that declare a "GPU" resource (0 for other runners)."""
    client = getattr(runner, "client", None) if type(runner).__name__ == "DaskTaskRunner" else None
    if client is None:
        return 0
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    return sum(1 for w in workers if w.get("resources", {}).get("GPU", 0) >= 1)


@contextlib.contextmanager
def gpu_annotation(runner: TaskRunner) -> Iterator[None]:
    """Annotate tasks submitted inside with resources={"GPU": 1} when `runner` is a Dask cluster
    with GPU workers."""
    if not gpu_workers(runner):
        yield
        return
    import dask

    with dask.annotate(resources={"GPU": 1}):
        yield
