"""Catalog stylization tasks: resolve the method's inputs, plan what is left to do, stylize a shard.
The work is in runs/ (runs.methods, runs.plan, runs.shard); these add Prefect's names, tags,
retries, run logger and runtime (flow run id, attempt)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import flow_run, task_run

from infra.registry import RegistryError
from runs import context, methods
from runs.methods.base import Resolved, resolve_checked
from runs.methods.upscale import upscaler_ref
from runs.plan import plan_catalog
from runs.shard import ShardJob, stylize_shard
from styleops.errors import InvalidInputError, WeightsNotFoundError
from tasks import common


@task(name="resolve-model-version")
def resolve_model_task(
    style: str, version: str | None, method: str = context.PER_STYLE, model: str | None = None, metrics: bool = False
) -> Resolved:
    """The style label, model version label and what to load, checked before any work: version
    `None`/'production' -> promoted, 'latest' -> newest, 'v0003' -> checked; unknown styles,
    missing banks, undecodable or tiny artworks fail here (the method's `resolve`), and with
    `metrics`, an artwork the per-image metrics need that is not in the store."""
    return resolve_checked(methods.get(method), style, version, model, metrics)


@task(name="resolve-upscaler")
def resolve_upscaler_task(asked: str) -> str:
    """`--upscale` ('4', a model name, 'name@v0002') pinned to 'super-resolution/<name>/<version>'."""
    return upscaler_ref(asked)


@task(name="plan-catalog")
def plan_catalog_task(
    catalog: str,
    style: str,
    model_version: str,
    params_hash: str,
    shard_size: int,
    retry_failed: bool = False,
    still_current: tuple[str, ...] | list[str] = (),
    repair: bool = False,
) -> dict[str, Any]:
    """runs.plan.plan_catalog as a dict: {"catalog", "total", "done", "known_bad", "todo", "stale",
    "ignored", "shards"} (+ "repair", "missing", "tampered", "overwrite" with `repair`)."""
    return plan_catalog(
        catalog, style, model_version, params_hash, shard_size, retry_failed, still_current, repair, log=common.logger()
    ).to_dict()


NOT_RETRIED = (InvalidInputError, WeightsNotFoundError, RegistryError)
"""A shard that failed on these failed on its input or configuration: a retry would fail alike."""


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition for shards: retry (a store hiccup, a dead worker) unless the
    shard failed on bad input or configuration (`NOT_RETRIED`), which is reported at once."""
    return not isinstance(state.result(raise_on_failure=False), NOT_RETRIED)


@task(
    name="stylize-shard",
    tags=["gpu"],
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_bad_input,
)
def stylize_shard_task(job: ShardJob) -> dict[str, Any]:
    """runs.shard.stylize_shard of one shard, the job as the flow built it; returns {"ok": n,
    "failed": n} (+ "compile_s": seconds where it compiled). Retried: rows an earlier attempt
    recorded are not redone."""
    return stylize_shard(
        job, flow_run_id=str(flow_run.get_id() or ""), attempt=int(task_run.get_run_count() or 1), log=common.logger()
    )
