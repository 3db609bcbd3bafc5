"""Training tasks: fetch artwork and content photos, train, register the result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from infra.settings import get_settings
from runs import context
from runs.keys import is_image_key, style_from_artwork_key
from styleops.device import resolve_device
from styleops.errors import InvalidInputError
from styleops.io.safetensors_file import PICKLE_SUFFIXES, load_state_dict
from styleops.io.weights import resolve_weights_file
from styleops.training.decoders import decoder_layer, train_adain, train_inverse
from styleops.training.engine import (
    StepLog,
    TrainConfig,
    TrainResult,
    add_magenta_style,
    add_style,
    train_magenta,
    train_multistyle,
    train_style,
)
from styleops.training.super_resolution import SRConfig, train_super_resolution
from tasks import common


def warm_start_state(init_from: str | None) -> dict[str, Any] | None:
    """Warm-start weights: a local .safetensors path or a registry ref `per-style/<name>/<version>`.

    Only safetensors is read: a pickle checkpoint (.pt, .pth, .ckpt, or pickle bytes under any
    name) is refused with InvalidInputError before anything is deserialized."""
    if not init_from:
        return None
    path = Path(init_from)
    if path.suffix == ".safetensors" and path.is_file():
        return load_state_dict(path.read_bytes(), source=str(path))
    if path.suffix.lower() in PICKLE_SUFFIXES or path.is_file():
        raise InvalidInputError(
            f"init_from {init_from!r}: only .safetensors weights are loaded "
            "(pickle checkpoints such as .pt/.pth/.ckpt can run code and are refused)"
        )
    parts = init_from.split("/")
    if len(parts) != 3:
        raise InvalidInputError(
            f"init_from must be a local .safetensors file or <family>/<name>/<version>, got {init_from!r}"
        )
    family, name, version = parts
    reg = context.registry()
    return load_state_dict(reg.weights_bytes(family, name, reg.resolve(family, name, version)), source=init_from)


@task(name="train-per-style-model", tags=["gpu"])
def train_per_style_task(
    style: str,
    artwork_key: str,
    content_prefix: str,
    config: dict[str, Any],
    init_from: str | None = None,
    max_content: int = 5000,
) -> dict[str, Any]:
    """Train one per-style network and register it as a new version; returns the version's card."""
    settings = get_settings()
    log = common.logger()
    cfg = TrainConfig.from_dict(config)
    st = context.store()
    art, art_sha = context.artwork_pixels(st, artwork_key, settings)
    content = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    device = resolve_device(settings.device)
    enc = context.encoder(cfg.loss.layers, device, settings)
    if cfg.init == "magenta":
        if init_from:
            raise InvalidInputError("init_from warm-starts a from-scratch net; --init magenta starts pretrained")
        init_from = f"magenta/arbitrary@{context.magenta(settings).sha256[:8]}"  # also keys the checkpoints
    run_key = context.stable_hash(
        {"style": style, "artwork": art_sha, "config": cfg.to_dict(), "content": content_prefix, "init": init_from}
    )
    workdir = settings.home / "work" / "train" / style / run_key
    log.info(
        "training %s on %d content images, %d steps at %d px on %s (checkpoints in %s)",
        style,
        len(content),
        cfg.steps,
        cfg.image_size,
        device,
        workdir,
    )

    started = common.Started()
    with common.reporting(f"train {style}", cfg) as on_step:
        if cfg.init == "magenta":
            result = _train_pretrained(cfg, content, [art], enc, workdir, device, on_step)
        else:
            result = train_style(
                cfg,
                content,
                art,
                enc,
                workdir=workdir,
                device=device,
                init_state=warm_start_state(init_from),
                progress=on_step,
            )
    architecture = _architecture(cfg, "TransformerNet")
    card = {
        "architecture": architecture,
        **_card_common(cfg, result, content_prefix, len(content), device, started),
        "artwork_key": artwork_key,
        "artwork_sha256": art_sha,
        "init_from": init_from,
    }
    return common.register_result(context.PER_STYLE, style, result, architecture, card)


def _train_pretrained(
    cfg: TrainConfig,
    content: list[Path],
    artworks: list[Any],
    enc: Any,
    workdir: Path,
    device: Any,
    on_step: Callable[[StepLog], None],
) -> TrainResult:
    """`train_magenta` from the installed pretrained weights (per-style: one artwork; multi: all)."""
    pretrained = context.magenta(get_settings())
    return train_magenta(
        cfg,
        content,
        artworks,
        enc,
        pretrained.transformer,
        pretrained.predictor,
        workdir=workdir,
        device=device,
        progress=on_step,
    )


def _architecture(cfg: TrainConfig, scratch: str) -> str:
    """The registered architecture: `scratch`'s, or the pretrained start's (MagentaStyleNet)."""
    return "MagentaStyleNet" if cfg.init == "magenta" else scratch


def _card_common(
    cfg: TrainConfig, result: TrainResult, content_prefix: str, n_content: int, device: Any, started: common.Started
) -> dict[str, Any]:
    """Card fields every family shares: configs, data, final losses, curve, loss network, code."""
    settings = get_settings()
    weights_file = resolve_weights_file(settings.vgg_weights, cache_dir=settings.cache_dir)
    for rollback in result.rollback_log:  # the engine logs them too, on `styleops.training.engine` (not a run logger)
        common.logger().warning(
            "training rolled back: %s not finite at step %d, "
            "resumed from the checkpoint at step %d with learning rate x%g",
            rollback["cause"],
            rollback["step"],
            rollback["restored_step"],
            rollback["lr_scale"],
        )
    return {
        "model_config": result.model_config,
        "train_config": cfg.to_dict(),
        # The absolute loss weights trained with (calibrated per artwork when the recipe asks):
        # manifest metrics and the bench score outputs with these. Multi-style: one per style.
        "loss": result.loss_weights[0].to_dict() if result.loss_weights else cfg.to_dict()["loss"],
        "content_prefix": content_prefix,
        "content_images": n_content,
        "metrics": common.run_metrics(result, started),
        "loss_curve": result.history,
        "rollback_log": result.rollback_log,
        "device": str(device),
        "loss_network": {
            "arch": "vgg16",
            "weights": str(weights_file.name) if weights_file else "torchvision-imagenet",
        },
        "code_version": started.code_version,  # the code that trained it, not the code at registration
    }


def _artworks_under(prefix: str) -> list[tuple[str, str]]:
    """(style, key) of the first image of every artwork/<style>/ folder under `prefix`, by style."""
    found: dict[str, str] = {}
    for info in context.store().list(prefix):
        if is_image_key(info.key):
            found.setdefault(style_from_artwork_key(info.key), info.key)
    if not found:
        raise ValueError(f"no artworks under {prefix!r} (expected artwork/<style>/<file>)")
    return sorted(found.items())


@task(name="train-multi-style-model", tags=["gpu"])
def train_multistyle_task(
    name: str, artwork_prefix: str, content_prefix: str, config: dict[str, Any], max_content: int = 5000
) -> dict[str, Any]:
    """Train one conditional-instance-norm network for every artwork under `artwork_prefix`;
    register it under multi-style/<name>. Every artwork is decoded before any training starts."""
    settings = get_settings()
    cfg = TrainConfig.from_dict(config)
    st = context.store()
    styles = _artworks_under(artwork_prefix)
    arts = [context.artwork_pixels(st, key, settings) for _, key in styles]  # bad artwork: clear error now
    content = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    device = resolve_device(settings.device)
    enc = context.encoder(cfg.loss.layers, device, settings)
    key: dict[str, Any] = {"multi": name, "artworks": [sha for _, sha in arts], "config": cfg.to_dict()}
    if cfg.init == "magenta":  # the pretrained weights key the checkpoints too
        key["init"] = context.magenta(settings).sha256[:8]
    run_key = context.stable_hash({**key, "content": content_prefix})
    started = common.Started()
    workdir = settings.home / "work" / "multi" / name / run_key
    with common.reporting(f"train {name} ({len(styles)} styles)", cfg) as on_step:
        if cfg.init == "magenta":
            result = _train_pretrained(cfg, content, [px for px, _ in arts], enc, workdir, device, on_step)
        else:
            result = train_multistyle(
                cfg, content, [px for px, _ in arts], enc, workdir=workdir, device=device, progress=on_step
            )
    architecture = _architecture(cfg, "MultiStyleTransformerNet")
    card = {
        "architecture": architecture,
        **_card_common(cfg, result, content_prefix, len(content), device, started),
        "styles": [
            {"name": s, "artwork_key": k, "artwork_sha256": sha, "loss": w.to_dict()}
            for (s, k), (_, sha), w in zip(styles, arts, result.loss_weights, strict=True)
        ],
        "parent_version": None,
    }
    return common.register_result(context.MULTI_STYLE, name, result, architecture, card)


@task(name="add-style-to-multi-style-model", tags=["gpu"])
def add_style_task(
    name: str,
    artwork_key: str,
    content_prefix: str,
    config: dict[str, Any],
    base_version: str | None = None,
    style: str | None = None,
    max_content: int = 5000,
    replace: bool = False,
) -> dict[str, Any]:
    """Append an artwork to multi-style/<name> (base: production) as a new version, training only
    the new style's scale/shift; old styles' outputs are unchanged bit for bit. `replace`: the
    style exists (its artwork changed): retrain its scale/shift in place instead.

    Each style in the card carries `trained_in`, the version whose training last changed its
    parameters, so a stylize run knows which older outputs are still current."""
    settings = get_settings()
    cfg = TrainConfig.from_dict(config)
    st, reg = context.store(), context.registry()
    style = style or style_from_artwork_key(artwork_key)
    base = reg.resolve(context.MULTI_STYLE, name, base_version)
    base_card = reg.card(context.MULTI_STYLE, name, base)
    names = [s["name"] for s in base_card["styles"]]
    if style in names and not replace:
        raise ValueError(f"multi-style/{name} {base} already has a style named {style!r}")
    if replace and style not in names:
        raise ValueError(f"multi-style/{name} {base} has no style {style!r} to retrain")
    index = names.index(style) if replace else None
    art, art_sha = context.artwork_pixels(st, artwork_key, settings)
    content = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    device = resolve_device(settings.device)
    enc = context.encoder(cfg.loss.layers, device, settings)
    base_state = load_state_dict(
        reg.weights_bytes(context.MULTI_STYLE, name, base), source=f"{context.MULTI_STYLE}/{name}/{base}"
    )
    model_cfg = base_card["model_config"]
    pretrained = base_card["architecture"] == "MagentaStyleNet"
    if not pretrained and cfg.init == "magenta":  # a from-scratch model learns a style's scale/shift its own way
        cfg = TrainConfig(steps=cfg.steps, seed=cfg.seed)
    cfg = TrainConfig.from_dict(
        {**cfg.to_dict(), "init": "magenta", "finetune": "none" if cfg.finetune == "none" else "vector"}
        if pretrained
        else {
            **cfg.to_dict(),
            "channels": model_cfg["channels"],
            "n_residual": model_cfg["n_residual"],
            "output": model_cfg.get("output", "direct"),
            "palette": model_cfg.get("palette", False),
        }
    )
    run_key = context.stable_hash(
        {
            "add": name,
            "base": base,
            "artwork": art_sha,
            "config": cfg.to_dict(),
            "content": content_prefix,
            "replace": index,
        }
    )
    started = common.Started()
    with common.reporting(
        f"{'retrain' if replace else 'add'} {style} {'in' if replace else 'to'} {name}", cfg
    ) as on_step:
        trainer, extra = (
            (add_magenta_style, {"predictor": context.magenta(settings).predictor}) if pretrained else (add_style, {})
        )
        result = trainer(
            cfg,
            content,
            art,
            enc,
            base_state,
            model_cfg["n_styles"],
            workdir=settings.home / "work" / "multi" / name / run_key,
            device=device,
            progress=on_step,
            replace=index,
            **extra,
        )
    inherited = [{**s, "trained_in": s.get("trained_in") or base} for s in base_card["styles"]]
    new_entry = {
        "name": style,
        "artwork_key": artwork_key,
        "artwork_sha256": art_sha,
        "loss": result.loss_weights[0].to_dict(),
    }  # trained_in: this version
    card = {
        "architecture": base_card["architecture"],
        **_card_common(cfg, result, content_prefix, len(content), device, started),
        "styles": [new_entry if s["name"] == style else s for s in inherited] if replace else [*inherited, new_entry],
        "parent_version": base,
    }
    return common.register_result(context.MULTI_STYLE, name, result, base_card["architecture"], card)


DECODER_TRAINERS = {context.ADAIN: train_adain, context.INVERSE: train_inverse}


@task(name="train-decoder", tags=["gpu"])
def train_decoder_task(
    family: str,
    name: str,
    artwork_prefix: str,
    content_prefix: str,
    config: dict[str, Any],
    max_content: int = 5000,
    max_artworks: int = 5000,
    init_from: str | None = None,
    encoder: str = "vgg16",
) -> dict[str, Any]:
    """Train the AdaIN decoder (family 'adain') or the style-swap inverse network ('inverse') on
    the photos under `content_prefix` and the artworks under `artwork_prefix`; register it.
    init_from: warm start, a local .safetensors or `<family>/<name>/<version>`. encoder: the
    network it inverts, also its loss network: vgg16 (the VGG16 loss network) or vgg19 (AdaIN's
    normalised VGG19, `styleops weights install`)."""
    if family not in DECODER_TRAINERS:
        raise ValueError(f"decoder family must be one of {sorted(DECODER_TRAINERS)}, got {family!r}")
    settings = get_settings()
    cfg = TrainConfig.from_dict(config)
    st = context.store()
    content = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    artworks = common.sync_content(artwork_prefix, settings.cache_dir / "artwork" / st.bucket, max_artworks)
    device = resolve_device(settings.device)
    enc = context.encoder_for(encoder, cfg.loss.layers, device, settings)
    run_key = context.stable_hash(
        {
            **({"encoder": encoder} if encoder != "vgg16" else {}),  # earlier runs keep their keys
            "decoder": family,
            "name": name,
            "config": cfg.to_dict(),
            "content": content_prefix,
            "artworks": artwork_prefix,
            "init": init_from,
        }
    )
    started = common.Started()
    with common.reporting(f"train {family} decoder {name}", cfg) as on_step:
        result = DECODER_TRAINERS[family](
            cfg,
            content,
            artworks,
            enc,
            workdir=settings.home / "work" / family / name / run_key,
            device=device,
            init_state=warm_start_state(init_from),
            progress=on_step,
        )
    card = {
        "architecture": "VGGDecoder",
        **_card_common(cfg, result, content_prefix, len(content), device, started),
        "layer": decoder_layer(cfg),
        "encoder": encoder,
        "artwork_prefix": artwork_prefix,
        "artwork_images": len(artworks),
        "init_from": init_from,
    }
    return common.register_result(family, name, result, "VGGDecoder", card)


@task(name="train-super-resolution-model", tags=["gpu"])
def train_super_resolution_task(
    name: str, content_prefix: str, config: dict[str, Any], init_from: str | None = None, max_content: int = 5000
) -> dict[str, Any]:
    """Train one super-resolution network (Johnson et al.'s x2/x4/x8) on the photos under
    `content_prefix` (the HR images; LR is made from them on the fly) and register it in the
    `super-resolution` family as `name`. init_from: warm start (a perceptual model from a pixel one),
    a local .safetensors or `super-resolution/<name>/<version>`."""
    settings = get_settings()
    cfg = SRConfig.from_dict(config)
    st = context.store()
    content = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, max_content)
    device = resolve_device(settings.device)
    enc = context.encoder((cfg.feature_layer,), device, settings)
    run_key = context.stable_hash(
        {"sr": name, "config": cfg.to_dict(), "content": content_prefix, "init": init_from, "n": len(content)}
    )
    started = common.Started()
    with common.reporting(
        f"train {context.SUPER_RESOLUTION}/{name} (x{cfg.scale}, {cfg.loss} loss)", cfg.train, common.sr_terms
    ) as on_step:
        result = train_super_resolution(
            cfg,
            content,
            enc,
            workdir=settings.home / "work" / context.SUPER_RESOLUTION / name / run_key,
            device=device,
            init_state=warm_start_state(init_from),
            progress=on_step,
        )
    card = {
        "architecture": "SuperResolutionNet",
        **_card_common(cfg.train, result, content_prefix, len(content), device, started),
        "sr_config": cfg.to_dict(),
        "scale": cfg.scale,
        "sr_loss": cfg.loss,
        "init_from": init_from,
    }
    return common.register_result(context.SUPER_RESOLUTION, name, result, "SuperResolutionNet", card)


@task(name="import-model")
def import_model_task(
    family: str, name: str, weights_path: str, card_path: str | None = None, promote: bool = True
) -> dict[str, Any]:
    """Register a local .safetensors model (its card from `card_path`, e.g. one written by
    `styleops models export`) unless a version with the same bytes is registered already;
    promote it when `promote` and nothing of family/name is in production."""
    import hashlib
    import json

    from styleops.io.serialize import from_safetensors

    blob = Path(weights_path).read_bytes()
    from_safetensors(blob)  # only a module this code can rebuild (never a pickle)
    sha = hashlib.sha256(blob).hexdigest()
    reg = context.registry()
    present = [mv.version for mv in reg.versions(family, name) if mv.sha256 == sha]
    if present:
        version, status = present[0], "present"
    else:
        card = json.loads(Path(card_path).read_text()) if card_path else {}
        version, status = (
            reg.register(family, name, blob, {**card, "imported_from": Path(weights_path).name}).version,
            "registered",
        )
    promoted = promote and reg.production(family, name) is None
    if promoted:
        reg.promote(family, name, version, reason=f"imported {Path(weights_path).name}")
    common.logger().info("%s/%s %s: %s%s", family, name, version, status, ", promoted" if promoted else "")
    return {"family": family, "name": name, "version": version, "status": status, "sha256": sha, "promoted": promoted}


@task(name="promote-if-none-in-production")
def promote_if_first_task(family: str, name: str, version: str) -> bool:
    """Promote `version` when nothing of `family/name` is in production yet; True if it did."""
    reg = context.registry()
    if reg.production(family, name) is not None:
        return False
    reg.promote(family, name, version, reason="first version")
    return True
