"""Training tasks: fetch artwork and content photos, train, register the result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import task
from safetensors.torch import load as load_safetensors

from infra.progress import progress
from infra.settings import get_settings
from infra.version import code_version
from styleops.device import resolve_device
from styleops.serialize import to_safetensors
from styleops.train import StepLog, TrainConfig, train_style
from styleops.weights import resolve_weights_file
from tasks import common


def sync_content(prefix: str, dest: Path, limit: int) -> list[Path]:
    """Download up to `limit` images under `prefix` into `dest` (skipping files already there, same size)."""
    st = common.store()
    paths: list[Path] = []
    for info in st.list(prefix):
        if not common.is_image_key(info.key):
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


def _init_state(init_from: str | None) -> dict[str, Any] | None:
    """Warm-start weights: a local .safetensors path or a registry ref `per-style/<name>/<version>`."""
    if not init_from:
        return None
    path = Path(init_from)
    if path.suffix == ".safetensors" and path.is_file():
        return load_safetensors(path.read_bytes())
    family, name, version = init_from.split("/")
    reg = common.registry()
    return load_safetensors(reg.weights_bytes(family, name, reg.resolve(family, name, version)))


@task(name="train-per-style-model", tags=["gpu"])
def train_per_style_task(style: str, artwork_key: str, content_prefix: str, config: dict[str, Any], init_from: str | None = None, max_content: int = 5000) -> dict[str, Any]:
    """Train one per-style network and register it as a new version; returns the version's card."""
    settings = get_settings()
    log = common.logger()
    cfg = TrainConfig.from_dict(config)
    st = common.store()
    art, art_sha = common.artwork_pixels(st, artwork_key, settings)
    content = sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    device = resolve_device(settings.device)
    enc = common.encoder(cfg.loss.layers, device, settings)
    run_key = common.stable_hash({"style": style, "artwork": art_sha, "config": cfg.to_dict(), "content": content_prefix, "init": init_from})
    workdir = settings.home / "work" / "train" / style / run_key
    log.info("training %s on %d content images, %d steps at %d px on %s (checkpoints in %s)", style, len(content), cfg.steps, cfg.image_size, device, workdir)

    bar = f"train:{style}"
    progress().start(bar, f"train {style}", cfg.steps)

    done = [0]

    def on_step(step: StepLog) -> None:
        progress().advance(bar, step.step - done[0], description=f"train {style} loss {step.total:,.0f}")
        done[0] = step.step
        if step.step % (cfg.log_every * 10) == 0 or step.step == step.steps:
            log.info("step %d/%d total %.1f content %.1f style %.1f tv %.2f (%.1f img/s)", step.step, step.steps, step.total, step.content, step.style, step.tv, step.images_per_s)

    started = time.time()
    result = train_style(cfg, content, art, enc, workdir=workdir, device=device, init_state=_init_state(init_from), progress=on_step)
    progress().finish(bar)
    weights_file = resolve_weights_file(settings.vgg_weights, cache_dir=settings.cache_dir)
    card = {
        "architecture": "TransformerNet",
        "model_config": result.model_config,
        "train_config": cfg.to_dict(),
        "artwork_key": artwork_key,
        "artwork_sha256": art_sha,
        "content_prefix": content_prefix,
        "content_images": len(content),
        "init_from": init_from,
        "metrics": {**result.final_losses(), "steps": result.steps, "rollbacks": result.rollbacks, "seconds": round(time.time() - started, 1), "resumed_from": result.resumed_from},
        "loss_curve": result.history,
        "device": str(device),
        "loss_network": {"arch": "vgg16", "weights": str(weights_file.name) if weights_file else "torchvision-imagenet"},
        "code_version": code_version(),
    }
    blob = to_safetensors(result.state_dict, "TransformerNet", result.model_config)
    version = common.registry().register(common.PER_STYLE, style, blob, card)
    log.info("registered %s/%s %s (sha256 %s)", common.PER_STYLE, style, version.version, version.sha256[:12])
    return {"family": version.family, "name": version.name, "version": version.version, "sha256": version.sha256, "metrics": card["metrics"]}


@task(name="promote-if-none-in-production")
def promote_if_first_task(family: str, name: str, version: str) -> bool:
    """Promote `version` when nothing of `family/name` is in production yet; True if it did."""
    reg = common.registry()
    if reg.production(family, name) is not None:
        return False
    reg.promote(family, name, version, reason="first version")
    return True
