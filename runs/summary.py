"""The record a stylize run returns (the flow's result, the CLI's table, the nightly's rows): a
typed, JSON-shaped dict, so Prefect stores it as is and callers index it by name."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class RunSummary(TypedDict):
    """One `stylize_catalog` run: counts of the catalog's images by what happened to them."""

    run_id: str  # <UTC time>-<6 hex>: the manifest partition of the run's rows
    catalog: str  # catalog/<set>/
    method: str  # a registered method's name
    style: str  # the style label (a blend's normalized weights)
    model_version: str  # the resolved model version label, e.g. 'v0003' or 'default/v0001+bank-v0002'
    params_hash: str  # StylizeParams.hash: names the outputs
    images: int  # images in the catalog
    already_done: int  # done before with this model and settings (skipped)
    known_bad: int  # failed for good before (skipped unless retry_failed)
    restyled: int  # done with an older model version, done again
    shards: int
    ok: int  # outputs written by this run
    failed: int  # rows of this run with an error
    compile_s: NotRequired[float]  # seconds the shards spent compiling (torch.compile; settings.compile)
    upscale: NotRequired[str]  # super-resolution/<name>/<version> chained after the method
    repaired: NotRequired[int]  # --repair: outputs re-rendered (missing + tampered)
    missing: NotRequired[int]
    tampered: NotRequired[int]
