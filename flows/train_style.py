"""Flow: an artwork in the store -> a trained per-style model -> a registered (maybe promoted) version."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from runs.context import PER_STYLE
from runs.keys import artifact_key, style_from_artwork_key
from styleops.training.engine import config_from
from tasks.training import promote_if_first_task, train_per_style_task


@flow(name="train-style")
def train_style(
    artwork_key: str,
    content_prefix: str,
    style: str | None = None,
    config: dict[str, Any] | None = None,
    init_from: str | None = None,
    max_content: int = 5000,
) -> dict[str, Any]:
    """Train a per-style model for `artwork_key` (artwork/<style>/<file>) on the photos under
    `content_prefix`; register it; promote it if no version of the style is in production.

    `config` overrides `styleops.training.engine.TrainConfig` fields, e.g. {"steps": 2000, "image_size": 256}.
    """
    style = style or style_from_artwork_key(artwork_key)
    cfg = config_from(config)  # bad values fail here, before any work
    trained = train_per_style_task(style, artwork_key, content_prefix, cfg.to_dict(), init_from, max_content)
    promoted = promote_if_first_task(PER_STYLE, style, trained["version"])
    create_markdown_artifact(
        key=artifact_key("train", style),
        markdown=summary_markdown(style, trained, promoted),
        description=f"per-style model for {artwork_key}",
    )
    return {**trained, "style": style, "promoted": promoted}


def summary_markdown(style: str, trained: dict[str, Any], promoted: bool) -> str:
    """The training summary artifact. A model registered without a step (the pretrained start's
    prediction, `--finetune none`) has no losses: '-'."""
    m = trained["metrics"]

    def loss(key: str, spec: str) -> str:
        return format(m[key], spec) if key in m else "-"

    return (
        f"# Trained {PER_STYLE}/{style} {trained['version']}\n\n"
        "| steps | seconds | content | style | tv | promoted |\n|---|---|---|---|---|---|\n"
        f"| {m.get('steps', 0)} | {m.get('seconds', '-')} | {loss('content', '.1f')} | {loss('style', '.1f')} "
        f"| {loss('tv', '.2f')} | {promoted} |\n"
    )
