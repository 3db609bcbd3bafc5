"""Flow: stylize every image of a catalog with a style's model; one manifest row per image."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from styleops.errors import InvalidInputError
from styleops.imageio import encode_image
from tasks import common
from tasks.stylize import StylizeParams, blend_label, catalog_prefix, checked_blend, plan_catalog_task, stylize_shard_task


@task(name="resolve-model-version")
def resolve_model_task(style: str, version: str | None, method: str = "per-style", model: str = "collection") -> tuple[str, str]:
    """(style label, model version) with the version resolved: `None`/'production' -> promoted,
    'latest' -> newest, 'v0003' -> checked. multi-style: the version is '<model>/<version>' and the
    label a checked style name or canonical blend; unknown names fail here, before any work."""
    reg = common.registry()
    if method == "per-style":
        return style, reg.resolve(common.PER_STYLE, style, version)
    if method != "multi-style":
        raise InvalidInputError(f"method must be per-style or multi-style, got {method!r}")
    resolved = reg.resolve(common.MULTI_STYLE, model, version)
    blend = checked_blend(style, reg.card(common.MULTI_STYLE, model, resolved), f"{model}/{resolved}")
    return blend_label(blend), f"{model}/{resolved}"


def check_params(params: StylizeParams) -> None:
    """Fail before any work when the output settings are unusable."""
    import torch

    encode_image(torch.zeros(3, 2, 2, dtype=torch.uint8), params.format, quality=params.quality)
    if params.max_side is not None and params.max_side < 16:
        raise InvalidInputError(f"max_side must be >= 16 pixels, got {params.max_side}")


@flow(name="stylize-catalog", task_runner=ThreadPoolTaskRunner(max_workers=2))
def stylize_catalog(catalog: str, style: str, model_version: str | None = None, max_side: int | None = 1024, format: str = "jpeg", quality: int = 90, shard_size: int = 64, batch_size: int | None = None, metrics: bool = True, retry_failed: bool = False, method: str = "per-style", model: str = "collection") -> dict[str, Any]:
    """List -> plan (skip what the manifest has) -> stylize shards in parallel -> record -> report.

    method 'multi-style': `style` is a style of the multi-style model `model`, or a blend
    'wave=0.7,udnie=0.3' (weights normalized; recorded as the manifest's style).
    """
    params = StylizeParams(method=method, max_side=max_side, format=format.lower(), quality=quality)
    check_params(params)
    prefix = catalog_prefix(catalog)
    style, version = resolve_model_task(style, model_version, method, model)
    plan = plan_catalog_task(prefix, style, version, params.hash, shard_size, retry_failed)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid4().hex[:6]}"
    futures = [
        stylize_shard_task.submit(f"{run_id}-s{i:04d}", shard, run_id, prefix, style, version, params.to_dict(), batch_size, metrics)
        for i, shard in enumerate(plan["shards"])
    ]
    counts = [f.result() for f in futures]
    summary = {
        "run_id": run_id, "catalog": prefix, "style": style, "model_version": version, "params_hash": params.hash,
        "images": plan["total"], "already_done": plan["done"], "known_bad": plan["known_bad"], "shards": len(plan["shards"]),
        "ok": sum(c["ok"] for c in counts), "failed": sum(c["failed"] for c in counts),
    }
    if counts:
        common.manifest().compact(run_id=run_id)
    create_markdown_artifact(key="stylize-" + "".join(c if c.isalnum() else "-" for c in style.lower())[:60], markdown=_summary_markdown(summary), description=f"stylize {prefix} with {style}")
    return summary


def _summary_markdown(s: dict[str, Any]) -> str:
    head = "| " + " | ".join(s) + " |\n|" + "---|" * len(s) + "\n"
    return f"# Stylized {s['catalog']} with {s['style']} {s['model_version']}\n\n" + head + "| " + " | ".join(str(v) for v in s.values()) + " |\n"
