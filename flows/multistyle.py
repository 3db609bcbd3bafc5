"""Flows for multi-style models (Dumoulin et al. 2017): train one net for many artworks; add one."""

from __future__ import annotations

from typing import Any

from prefect import flow

from runs.context import MULTI_STYLE
from styleops.training.engine import config_from
from tasks.training import add_style_task, promote_if_first_task, train_multistyle_task


def _config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    return config_from(overrides).to_dict()


@flow(name="train-multistyle")
def train_multistyle(
    artwork_prefix: str,
    content_prefix: str,
    name: str = "collection",
    config: dict[str, Any] | None = None,
    max_content: int = 5000,
) -> dict[str, Any]:
    """One network for every artwork/<style>/ under `artwork_prefix`; register it as
    multi-style/<name>; promote it if nothing of that name is in production. `config.steps` is
    the total: each style gets steps / N of them."""
    trained = train_multistyle_task(name, artwork_prefix, content_prefix, _config(config), max_content)
    return {**trained, "promoted": promote_if_first_task(MULTI_STYLE, name, trained["version"])}


@flow(name="add-style")
def add_style(
    artwork_key: str,
    content_prefix: str,
    name: str = "collection",
    style: str | None = None,
    base_version: str | None = None,
    config: dict[str, Any] | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Append an artwork to multi-style/<name> as a new version (only its scale/shift trained);
    promote it when `promote` and the base was production (old styles are bit-identical)."""
    from runs.context import registry

    base = base_version or registry().production(MULTI_STYLE, name)
    added = add_style_task(name, artwork_key, content_prefix, _config(config), base, style)
    promoted = False
    if promote and base is not None and base == registry().production(MULTI_STYLE, name):
        registry().promote(MULTI_STYLE, name, added["version"], reason=f"added style {added['styles'][-1]} to {base}")
        promoted = True
    return {**added, "base_version": base, "promoted": promoted}
