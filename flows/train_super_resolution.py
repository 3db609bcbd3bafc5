"""Flow: HR photos in the store -> a trained super-resolution network (Johnson et al. 2016, x2/x4/x8)
-> a registered version of super-resolution/<name>, promoted if it is the name's first."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from runs.context import SUPER_RESOLUTION
from runs.keys import artifact_key
from styleops.training.super_resolution import SRConfig
from tasks.training import promote_if_first_task, train_super_resolution_task


@flow(name="train-super-resolution")
def train_super_resolution(
    content_prefix: str,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    init_from: str | None = None,
    max_content: int = 5000,
) -> dict[str, Any]:
    """Train on the photos under `content_prefix` (keep the test sets out of it), register the
    network as super-resolution/<name> (default x<scale>), promote it if it is the name's first.
    `config` overrides `SRConfig` fields ({"scale": 4, "loss": "perceptual", "train": {...}})."""
    cfg = SRConfig.from_dict({**SRConfig().to_dict(), **(config or {})})  # bad values fail here, before any work
    name = name or f"x{cfg.scale}"
    trained = train_super_resolution_task(name, content_prefix, cfg.to_dict(), init_from, max_content)
    promoted = promote_if_first_task(SUPER_RESOLUTION, name, trained["version"])
    m = trained["metrics"]
    create_markdown_artifact(
        key=artifact_key("train", name),
        markdown=(
            f"# Trained {SUPER_RESOLUTION}/{name} {trained['version']} (x{cfg.scale}, {cfg.loss} loss)\n\n"
            "| steps | seconds | feature | pixel MSE | promoted |\n|---|---|---|---|---|\n"
            f"| {m['steps']} | {m['seconds']} | {m['content']:.4g} | {m['tv']:.4g} | {promoted} |\n"
        ),
        description=f"super-resolution model trained on {content_prefix}",
    )
    return {**trained, "name": name, "scale": cfg.scale, "promoted": promoted}
