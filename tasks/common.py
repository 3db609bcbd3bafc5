"""What the tasks share: the run logger, and for the training tasks the content download, progress
reporting, the start record and the registration of a trained model. Everything else (store,
registry and manifest handles, the encoder and model caches, keys) is in runs/ (runs.context,
runs.keys)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from infra.progress import progress
from infra.version import code_version
from runs import context
from runs.keys import is_image_key
from styleops.io.serialize import to_safetensors
from styleops.training.engine import StepLog, TrainConfig, TrainResult


def logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, else the ring's `styleops` logger (plain calls, tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return context.log


def sync_content(prefix: str, dest: Path, limit: int) -> list[Path]:
    """Download up to `limit` images under `prefix` into `dest` (skipping files already there, same size)."""
    st = context.store()
    paths: list[Path] = []
    for info in st.list(prefix):
        if not is_image_key(info.key):
            continue
        path = dest / info.key[len(prefix) :].lstrip("/")
        if not (path.is_file() and path.stat().st_size == info.size):
            path.parent.mkdir(parents=True, exist_ok=True)
            st.download_file(info.key, path)
        paths.append(path)
        if len(paths) >= limit:
            break
    if not paths:
        raise ValueError(f"no content images under {st.uri(prefix)}")
    return paths


def short(x: float) -> str:
    """A loss for a progress bar: thousands separated when large, 4 significant digits when small."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.4g}"


def style_terms(step: StepLog) -> str:
    return f"total {step.total:.1f} content {step.content:.1f} style {step.style:.1f} tv {step.tv:.2f}"


def sr_terms(step: StepLog) -> str:  # styleops.training.super_resolution.HISTORY_KEYS
    return f"total {step.total:.5g} feature {step.content:.5g} pixel MSE {step.tv:.5g}"


@contextmanager
def reporting(
    label: str, cfg: TrainConfig, terms: Callable[[StepLog], str] = style_terms
) -> Iterator[Callable[[StepLog], None]]:
    """A progress callback for the engines: a progress bar, and a log line every 10 logged steps."""
    log, bar, done = logger(), f"train:{label}", [0]
    progress().start(bar, label, cfg.steps)

    def on_step(step: StepLog) -> None:
        progress().advance(bar, step.step - done[0], description=f"{label} loss {short(step.total)}")
        done[0] = step.step
        if step.step % (cfg.log_every * 10) == 0 or step.step == step.steps:
            log.info("step %d/%d %s (%.1f img/s)", step.step, step.steps, terms(step), step.images_per_s)

    try:
        yield on_step
    finally:
        progress().finish(bar)


@dataclass(frozen=True)
class Started:
    """When a training run started, and the code it started with (edits made while it trains do
    not change what its card says)."""

    at: float = field(default_factory=time.time)
    code_version: str = field(default_factory=lambda: code_version())


def run_metrics(result: TrainResult, started: Started, **extra_losses: float) -> dict[str, Any]:
    """A card's `metrics`: the final losses (then `extra_losses`), steps, rollbacks, seconds since
    `started` and the step the run resumed from."""
    return {
        **result.final_losses(),
        **extra_losses,
        "steps": result.steps,
        "rollbacks": result.rollbacks,
        "seconds": round(time.time() - started.at, 1),
        "resumed_from": result.resumed_from,
    }


def register_result(
    family: str, name: str, result: TrainResult, architecture: str, card: dict[str, Any]
) -> dict[str, Any]:
    """Register a trained model (safetensors with its architecture and config) and its card as the
    next version of <family>/<name>; returns the version's summary for the flow."""
    blob = to_safetensors(result.state_dict, architecture, result.model_config)
    version = context.registry().register(family, name, blob, card)
    logger().info("registered %s/%s %s (sha256 %s)", family, name, version.version, version.sha256[:12])
    return {
        "family": version.family,
        "name": version.name,
        "version": version.version,
        "sha256": version.sha256,
        "metrics": card["metrics"],
        "styles": [s["name"] for s in card.get("styles", [])],
    }
