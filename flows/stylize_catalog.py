"""Flow: stylize every image of a catalog with a style's model; one manifest row per image.

The story: spec -> check -> resolve -> plan -> shards -> compact -> summary. What each step does
is in runs/ (runs.spec, runs.methods, runs.plan, runs.shard), called through the tasks of
tasks/stylize.py; this module adds the fan-out of the shards and the artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner

from infra.cluster import gpu_annotation, shard_runner
from infra.progress import progress
from infra.settings import get_settings
from runs import context
from runs.keys import artifact_key
from runs.methods.base import Resolved
from runs.shard import ShardJob
from runs.spec import RunSpec
from runs.summary import RunSummary
from tasks.stylize import plan_catalog_task, resolve_model_task, resolve_upscaler_task, stylize_shard_task


@flow(name="stylize-catalog")
def stylize_catalog(spec: RunSpec) -> RunSummary:
    """List -> plan (skip what the manifest has) -> stylize shards in parallel -> record -> report.

    spec: what to stylize, how and where (`runs.spec.RunSpec`; `RunSpec.create` builds one from
    flat settings, as the CLI does). `spec.params.method` is a registered method (runs.methods:
    per-style, multi-style, swap, adain, gatys, upscale, pix2pix, cyclegan, mixgan). Shards run on
    threads in this process, or on Dask (`spec.dask_address` or `spec.dask_workers`; defaults from
    STYLEOPS_DASK_*). Rerunning the same spec after a crash or kill finishes what is left.
    `spec.repair`: also check the outputs of the images done before (as `styleops audit` does) and
    re-render the missing or tampered ones, with new manifest rows; the summary's "repaired" counts
    them. `spec.params.upscale`: super-resolution after the method, in the same shard, pinned here
    to one registry version before planning (its version is in the params hash).
    """
    spec = spec.check()
    resolved = resolve_model_task(spec.style, spec.version, spec.method, spec.model, spec.metrics)
    if spec.params.upscale is not None:  # pinned before planning: its version is in the params hash
        spec = spec.with_upscaler(resolve_upscaler_task(spec.params.upscale))
    plan = plan_catalog_task(
        spec.prefix,
        resolved.style,
        resolved.model_version,
        spec.params.hash,
        spec.shard_size,
        spec.retry_failed,
        resolved.still_current,
        spec.repair,
    )
    publish_plan(plan, resolved.style, resolved.model_version)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid4().hex[:6]}"
    counts = stylize_shards(_runner(spec), shard_jobs(run_id, spec, resolved, plan))
    if plan["shards"]:
        context.manifest().compact(run_id=run_id)
    summary = _summary(spec, resolved, plan, run_id, counts)
    create_markdown_artifact(
        key=artifact_key("stylize", resolved.style),
        markdown=summary_markdown(summary),
        description=f"stylize {spec.prefix} with {resolved.style}",
    )
    return summary


def _runner(spec: RunSpec) -> TaskRunner:
    """Threads, or Dask from the spec (or the STYLEOPS_DASK_* settings)."""
    settings = get_settings()
    return shard_runner(
        spec.dask_address or settings.dask_address,
        settings.dask_workers if spec.dask_workers is None else spec.dask_workers,
    )


def _summary(
    spec: RunSpec, resolved: Resolved, plan: dict[str, Any], run_id: str, counts: dict[str, Any]
) -> RunSummary:
    summary: RunSummary = {
        "run_id": run_id,
        "catalog": spec.prefix,
        "method": spec.method,
        "style": resolved.style,
        "model_version": resolved.model_version,
        "params_hash": spec.params.hash,
        "images": plan["total"],
        "already_done": plan["done"],
        "known_bad": plan["known_bad"],
        "restyled": plan["stale"],
        "shards": len(plan["shards"]),
        "ok": counts["ok"],
        "failed": counts["failed"],
    }
    if counts.get("compile_s"):
        summary["compile_s"] = round(counts["compile_s"], 1)
    if spec.params.upscale is not None:
        summary["upscale"] = spec.params.upscale
    if spec.repair:
        summary.update(repaired=plan["repair"], missing=plan["missing"], tampered=plan["tampered"])
    return summary


def shard_jobs(run_id: str, spec: RunSpec, resolved: Resolved, plan: dict[str, Any]) -> list[ShardJob]:
    """The plan's shards as jobs, one per shard task: its id, items and (a repair) the outputs it
    may overwrite, with the run's spec and resolved source."""
    shards, overwrite = plan["shards"], plan.get("overwrite")
    total = sum(len(s) for s in shards)
    return [
        ShardJob(
            shard_id=f"{run_id}-s{i:04d}",
            items=shard,
            run_id=run_id,
            catalog=spec.prefix,
            style=resolved.style,
            model_version=resolved.model_version,
            params=spec.params,
            batch_size=spec.batch_size,
            metrics=spec.metrics,
            metrics_sample=spec.metrics_sample,
            source=resolved.source,
            overwrite=overwrite[i] if overwrite else {},
            run_images=total,
        )
        for i, shard in enumerate(shards)
    ]


def stylize_shards(runner: TaskRunner, jobs: list[ShardJob]) -> dict[str, Any]:
    """Map the shard task over `jobs` on `runner` (threads or Dask; one shard per GPU where the
    Dask workers declare a GPU resource) and follow them: a progress bar and a progress artifact
    advance as shards finish. Returns the summed status counts.

    A plain function, not a subflow with its own task runner: a subflow's parameters are stored
    by the Prefect API, and a million-image plan does not belong there; each shard's job (its 64
    items) travels as that task's parameter only (to a Dask worker through the scheduler).
    `runner.map`, not `stylize_shard_task.map`: the task's map would use the flow's own runner."""
    if not jobs:
        return {"ok": 0, "failed": 0}
    with runner.duplicate() as started:
        return _follow(started, jobs)


def _follow(runner: TaskRunner, jobs: list[ShardJob]) -> dict[str, Any]:
    run, total = jobs[0], sum(len(job.items) for job in jobs)  # what every job of the run shares
    with gpu_annotation(runner):
        futures = runner.map(stylize_shard_task, {"job": jobs})
    artifact = create_progress_artifact(
        progress=0.0,
        key=artifact_key("progress", run.style),
        description=f"{run.run_id}: images of {run.catalog} stylized with {run.style} {run.model_version}",
    )
    bar = f"catalog:{run.run_id}"
    progress().start(bar, f"{run.catalog} {run.style}: {len(jobs)} shards", total)
    counts, done = {"ok": 0, "failed": 0, "compile_s": 0.0}, 0
    try:
        for future in as_completed(futures):
            shard_counts = future.result()
            for key in counts:
                counts[key] += shard_counts.get(key, 0)
            shard_done = shard_counts["ok"] + shard_counts["failed"]
            done += shard_done
            progress().advance(bar, shard_done)
            update_progress_artifact(artifact, progress=100.0 * done / max(total, 1))
    finally:
        progress().finish(bar)
    return counts


def publish_plan(plan: dict[str, Any], style: str, version: str) -> None:
    """The plan's counts as a table artifact (its log line is in runs.plan)."""
    row = {
        "catalog": plan["catalog"],
        "style": style,
        "model_version": version,
        **{k: plan[k] for k in ("total", "done", "known_bad", "stale", "todo", "ignored", "repair") if k in plan},
        "shards": len(plan["shards"]),
    }
    create_table_artifact(
        key=artifact_key("plan", style),
        table=[row],
        description=f"plan: {plan['todo']} of {plan['total']} images to do in {len(plan['shards'])} shards",
    )


def summary_markdown(s: RunSummary) -> str:
    """The run's summary artifact: a heading, then one row per field (a table 13 columns wide
    was cut off in Prefect's UI at 1400 px, or ran under its side panel)."""
    rows = "".join(f"| {k} | {v} |\n" for k, v in s.items())
    return f"# Stylized {s['catalog']} with {s['style']} {s['model_version']}\n\n| field | value |\n|---|---|\n{rows}"
