"""Flow: stylize every image of a catalog with a style's model; one manifest row per image."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner

from infra.progress import progress
from infra.settings import get_settings
from infra.cluster import gpu_annotation, shard_runner

from styleops.color import COLOR_MODES
from styleops.errors import InvalidInputError
from styleops.imageio import encode_image
from tasks import common
from tasks import stylizers
from tasks.stylize import StylizeParams, catalog_prefix, plan_catalog_task, stylize_shard_task
from tasks.stylizers import Resolved


@task(name="resolve-model-version")
def resolve_model_task(style: str, version: str | None, method: str = "per-style", model: str | None = None) -> Resolved:
    """The style label, model version label and what to load, checked before any work: version
    `None`/'production' -> promoted, 'latest' -> newest, 'v0003' -> checked; unknown styles,
    missing banks, undecodable or tiny artworks fail here (see `tasks.stylizers`)."""
    return stylizers.resolve(method, style, version, model)


def check_params(params: StylizeParams) -> None:
    """Fail before any work when the settings are unusable."""
    import torch

    encode_image(torch.zeros(3, 2, 2, dtype=torch.uint8), params.format, quality=params.quality)
    if params.method not in stylizers.METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(stylizers.METHODS)}, got {params.method!r}")
    if params.max_side is not None and params.max_side < 16:
        raise InvalidInputError(f"max_side must be >= 16 pixels, got {params.max_side}")
    if params.color not in COLOR_MODES:
        raise InvalidInputError(f"colour preservation must be one of {', '.join(COLOR_MODES)}, got {params.color!r}")
    if not 0.0 <= params.alpha <= 1.0:
        raise InvalidInputError(f"alpha must be in [0, 1], got {params.alpha}")
    if params.iterations < 1 or params.optimizer not in ("lbfgs", "adam") or not 1 <= params.levels <= 4:
        raise InvalidInputError(f"gatys needs iterations >= 1, optimizer lbfgs|adam and levels 1-4; got {params.iterations}, {params.optimizer!r}, {params.levels}")


@flow(name="stylize-catalog")
def stylize_catalog(catalog: str, style: str, model_version: str | None = None, max_side: int | None = 1024, format: str = "jpeg", quality: int = 90, shard_size: int = 64, batch_size: int | None = None, metrics: bool = True, retry_failed: bool = False, method: str = "per-style", model: str | None = None, color: str = "none", alpha: float = 1.0, iterations: int = 300, optimizer: str = "lbfgs", levels: int = 1, dask_address: str | None = None, dask_workers: int | None = None, repair: bool = False) -> dict[str, Any]:
    """List -> plan (skip what the manifest has) -> stylize shards in parallel -> record -> report.

    method: per-style (`style` names the model), multi-style (`style` is a style of the model
    `model`, or a blend 'wave=0.7,udnie=0.3'), swap (patch bank + inverse network), adain (`style`
    a style or blend of artwork/<style>/ folders; `alpha`), gatys (optimization, slow: a few hero
    images; `iterations`, `optimizer`, `levels`). color: none | luminance | histogram.
    Shards run on threads in this process, or on Dask: `dask_address` (tcp://scheduler:8786) or
    `dask_workers` N (a local cluster of N worker processes); defaults from STYLEOPS_DASK_*.
    Rerunning the same call after a crash or kill finishes what is left.
    `repair`: also check the outputs of the images done before (as `styleops audit` does) and
    re-render the missing or tampered ones, with new manifest rows; the summary's "repaired"
    counts them. Only a tampered output that is unchanged since the check is overwritten.
    """
    params = StylizeParams(method=method, max_side=max_side, format=format.lower(), quality=quality, color=color, alpha=alpha, iterations=iterations, optimizer=optimizer, levels=levels)
    check_params(params)
    prefix = catalog_prefix(catalog)
    resolved = resolve_model_task(style, model_version, method, model)
    style, version = resolved.style, resolved.model_version
    plan = plan_catalog_task(prefix, style, version, params.hash, shard_size, retry_failed, resolved.still_current, repair)
    publish_plan(plan, style, version)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid4().hex[:6]}"
    settings = get_settings()
    runner = shard_runner(dask_address or settings.dask_address, settings.dask_workers if dask_workers is None else dask_workers)
    counts = stylize_shards(runner, plan["shards"], run_id, prefix, style, version, params.to_dict(), batch_size, metrics, resolved.source, plan.get("overwrite"))
    summary = {
        "run_id": run_id, "catalog": prefix, "method": method, "style": style, "model_version": version, "params_hash": params.hash,
        "images": plan["total"], "already_done": plan["done"], "known_bad": plan["known_bad"], "restyled": plan["stale"], "shards": len(plan["shards"]),
        "ok": counts["ok"], "failed": counts["failed"],
    }
    if repair:
        summary.update(repaired=plan["repair"], missing=plan["missing"], tampered=plan["tampered"])
    if plan["shards"]:
        common.manifest().compact(run_id=run_id)
    create_markdown_artifact(key="stylize-" + _slug(style), markdown=_summary_markdown(summary), description=f"stylize {prefix} with {style}")
    return summary


def stylize_shards(runner: TaskRunner, shards: list[list[tuple[str, str, int]]], run_id: str, catalog: str, style: str, model_version: str, params: dict[str, Any], batch_size: int | None, metrics: bool, source: dict[str, Any], overwrite: list[dict[str, str]] | None = None) -> dict[str, int]:
    """Fan the shards out as task runs of this flow on `runner` (threads or Dask; one shard per GPU
    where the Dask workers declare a GPU resource) and follow them: a progress bar and a progress
    artifact advance as shards finish. Returns the summed status counts.

    A plain function, not a subflow with its own task runner: a subflow's parameters are stored
    by the Prefect API, and a million-image plan does not belong there; each shard's 64 items
    travel as that task's parameters only (to a Dask worker through the scheduler). `overwrite`:
    per shard, the {output_key: etag} a repair may overwrite (see plan_catalog_task)."""
    if not shards:
        return {"ok": 0, "failed": 0}
    with runner.duplicate() as started:
        return _follow(started, shards, run_id, catalog, style, model_version, params, batch_size, metrics, source, overwrite)


def _follow(runner: TaskRunner, shards: list[list[tuple[str, str, int]]], run_id: str, catalog: str, style: str, model_version: str, params: dict[str, Any], batch_size: int | None, metrics: bool, source: dict[str, Any], overwrite: list[dict[str, str]] | None = None) -> dict[str, int]:
    total = sum(len(s) for s in shards)
    with gpu_annotation(runner):
        futures = [
            runner.submit(stylize_shard_task, {"shard_id": f"{run_id}-s{i:04d}", "items": shard, "run_id": run_id, "catalog": catalog, "style": style, "model_version": model_version, "params": params, "batch_size": batch_size, "metrics": metrics, "source": source,
                                               **({"overwrite": overwrite[i]} if overwrite and overwrite[i] else {})})
            for i, shard in enumerate(shards)
        ]
    artifact = create_progress_artifact(progress=0.0, key="progress-" + _slug(style), description=f"{run_id}: images of {catalog} stylized with {style} {model_version}")
    bar = f"catalog:{run_id}"
    progress().start(bar, f"{catalog} {style}: {len(shards)} shards", total)
    counts, done = {"ok": 0, "failed": 0}, 0
    try:
        for future in as_completed(futures):
            shard_counts = future.result()
            for status, n in shard_counts.items():
                counts[status] += n
            done += sum(shard_counts.values())
            progress().advance(bar, sum(shard_counts.values()))
            update_progress_artifact(artifact, progress=100.0 * done / max(total, 1))
    finally:
        progress().finish(bar)
    return counts


def publish_plan(plan: dict[str, Any], style: str, version: str) -> None:
    """The plan's counts as a table artifact (its log line is in plan_catalog_task)."""
    row = {"catalog": plan["catalog"], "style": style, "model_version": version, **{k: plan[k] for k in ("total", "done", "known_bad", "stale", "todo", "ignored", "repair") if k in plan}, "shards": len(plan["shards"])}
    create_table_artifact(key="plan-" + _slug(style), table=[row], description=f"plan: {plan['todo']} of {plan['total']} images to do in {len(plan['shards'])} shards")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())[:60]


def _summary_markdown(s: dict[str, Any]) -> str:
    head = "| " + " | ".join(s) + " |\n|" + "---|" * len(s) + "\n"
    return f"# Stylized {s['catalog']} with {s['style']} {s['model_version']}\n\n" + head + "| " + " | ".join(str(v) for v in s.values()) + " |\n"
