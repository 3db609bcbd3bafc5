"""Translation-family tasks: make pairs and domains in the store, train Pix2Pix and CycleGAN,
check the generator against collapse, register it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from prefect import task
from safetensors.torch import load_file

from infra.settings import get_settings
from runs import context
from runs.keys import is_image_key
from styleops.data.makers import MAKERS, edge_drawing, grayscale, painted, split_side_by_side
from styleops.device import resolve_device
from styleops.errors import InvalidInputError
from styleops.evaluation.translation import collapse_check
from styleops.io.images import encode_image, read_image, resize_max_side, to_float
from styleops.io.weights import install_hed_side_weights, load_vgg_state_dict
from styleops.models.hed import HEDEdges
from styleops.models.mixgan import MixGenerator
from styleops.models.translation import CycleGenerators, OneDirection, UNetGenerator
from styleops.training.engine import StepLog, TrainResult
from styleops.training.translation import (
    CycleGANConfig,
    MIXGANConfig,
    Pix2PixConfig,
    check_images,
    check_pairs,
    train_cyclegan,
    train_mixgan,
    train_pix2pix,
)
from tasks import common

PROBES = 4  # training A images the collapse check runs on
PROBE_SIDE = 128


# What each family's generator terms are (StepLog's content, style and tv columns) in progress lines.
_TERM_NAMES = {
    context.PIX2PIX: ("l1", "gan", None),
    context.CYCLEGAN: ("cycle", "gan", "identity"),
    context.MIXGAN: ("reconstruction", "mixture gan", "latent + pull"),
}


def _gan_terms(family: str) -> Callable[[StepLog], str]:
    """The progress line of a `family` step: G's total and terms by their names, then D's loss."""
    names = _TERM_NAMES[family]

    def line(step: StepLog) -> str:
        terms = " ".join(
            f"{name} {value:.4g}" for name, value in zip(names, (step.content, step.style, step.tv)) if name
        )
        return f"G {step.total:.4g} ({terms}) D {step.critic:.4g}"

    return line


# ---- data -----------------------------------------------------------------------------------------
@task(name="make-translation-data")
def make_pairs_task(
    kind: str,
    content_prefix: str,
    name: str,
    style: str | None = None,
    limit: int = 200,
    max_side: int = 256,
    domains: bool = False,
) -> dict[str, Any]:
    """Turn the photos under `content_prefix` into pairs/<name>/A/<stem>.png and B/<stem>.png.

    kind: edges (A: HED line drawing, B: the photo), gray (A: grayscale, B: the photo), painted
    (A: the photo, B: rendered by the per-style model `style`). domains: also write an unpaired,
    disjoint split for CycleGAN: domains/<name>-A/ holds the A side of the even-numbered photos,
    domains/<name>-B/ the B side of the odd-numbered ones (every image keeps its ground truth in
    pairs/<name>/). Photos are shrunk to `max_side` px first."""
    if kind not in MAKERS:
        raise InvalidInputError(f"kind must be one of {MAKERS}, got {kind!r}")
    if kind == "painted" and not style:
        raise InvalidInputError("--kind painted needs --style: the per-style model that paints the B side")
    settings = get_settings()
    st = context.store(writable=("pairs/", "domains/"))
    photos = common.sync_content(content_prefix, settings.cache_dir / "content" / st.bucket, limit)
    make = _maker(kind, style, resolve_device(settings.device))
    made = 0
    for index, path in enumerate(photos):
        photo = resize_max_side(to_float(read_image(path).pixels), max_side)
        a, b = make(photo)
        stem = path.stem
        st.put(f"pairs/{name}/A/{stem}.png", encode_image(a, "png"), content_type="image/png")
        st.put(f"pairs/{name}/B/{stem}.png", encode_image(b, "png"), content_type="image/png")
        if domains:
            side, image = ("A", a) if index % 2 == 0 else ("B", b)
            st.put(f"domains/{name}-{side}/{stem}.png", encode_image(image, "png"), content_type="image/png")
        made += 1
    common.logger().info("made %d %s pairs under %s", made, kind, st.uri(f"pairs/{name}/"))
    out = {"pairs": f"pairs/{name}/", "images": made, "kind": kind}
    if domains:
        out.update(domain_a=f"domains/{name}-A/", domain_b=f"domains/{name}-B/")
    return out


def _maker(kind: str, style: str | None, device: torch.device):  # noqa: ANN202 - photo -> (A, B)
    if kind == "gray":
        return lambda photo: (grayscale(photo), photo)
    if kind == "edges":
        cache = get_settings().cache_dir
        hed = HEDEdges(load_vgg_state_dict("hed", cache_dir=cache), load_file(install_hed_side_weights(cache)))
        return lambda photo: (edge_drawing(hed, photo), photo)
    reg = context.registry()
    net, _card = context.load_model(reg, context.PER_STYLE, str(style), reg.resolve(context.PER_STYLE, str(style)))
    return lambda photo: (photo, painted(net, photo))


def _sync_folder(prefix: str, dest: Path, limit: int) -> list[Path]:
    return sorted(common.sync_content(prefix, dest, limit)) if _has_images(prefix) else []


def _has_images(prefix: str) -> bool:
    return any(is_image_key(i.key) for i in context.store().list(prefix))


def paired_files(prefix: str, limit: int) -> tuple[list[Path], list[Path]]:
    """Local (A, B) files of the pairs under `prefix`: A/ and B/ folders with the same names, or
    the reference's side-by-side images under AB/ (split here into A and B). Refused (with the
    reason, before any training) when names do not match, an image does not decode, a pair's
    sizes differ, or there are too few pairs."""
    root = get_settings().cache_dir / "pairs" / context.store().bucket / prefix.strip("/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if _has_images(prefix + "AB/"):
        a_dir, b_dir = root / "split" / "A", root / "split" / "B"
        a_dir.mkdir(parents=True, exist_ok=True)
        b_dir.mkdir(parents=True, exist_ok=True)
        for path in _sync_folder(prefix + "AB/", root / "AB", limit):
            a, b = split_side_by_side(read_image(path).pixels)
            (a_dir / f"{path.stem}.png").write_bytes(encode_image(a, "png"))
            (b_dir / f"{path.stem}.png").write_bytes(encode_image(b, "png"))
        a, b = sorted(a_dir.glob("*.png")), sorted(b_dir.glob("*.png"))
    else:
        a, b = _sync_folder(prefix + "A/", root / "A", limit), _sync_folder(prefix + "B/", root / "B", limit)
    if not a and not b:
        raise InvalidInputError(
            f"no pairs under {prefix}: expected {prefix}A/ and {prefix}B/ (same names) or {prefix}AB/"
        )
    check_pairs(a, b, prefix.rstrip("/"))
    return a, b


def _domain_files(prefix: str, limit: int) -> list[Path]:
    root = get_settings().cache_dir / "domains" / context.store().bucket / prefix.strip("/")
    files = _sync_folder(prefix, root, limit)
    check_images(files, f"domain {prefix}")
    return files


def _data_sha256(*groups: list[Path]) -> str:
    """sha256 over the training files' names and contents, group by group (A, then B)."""
    h = hashlib.sha256()
    for group in groups:
        for path in group:
            h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        h.update(b"\1")
    return h.hexdigest()


def _probes(paths: list[Path]) -> torch.Tensor:
    """The first PROBES images, shorter side PROBE_SIDE px, centre-cropped square: [P, 3, S, S]."""
    out = []
    for path in paths[:PROBES]:
        x = to_float(read_image(path).pixels)[None]
        h, w = x.shape[-2:]
        k = PROBE_SIDE / min(h, w)
        x = F.interpolate(x, size=(max(PROBE_SIDE, round(h * k)), max(PROBE_SIDE, round(w * k))), mode="bilinear")
        top, left = (x.shape[-2] - PROBE_SIDE) // 2, (x.shape[-1] - PROBE_SIDE) // 2
        out.append(x[0, :, top : top + PROBE_SIDE, left : left + PROBE_SIDE])
    return torch.stack(out)


def _gate(generator: torch.nn.Module, probes: torch.Tensor, must_change: bool) -> dict[str, Any]:
    check = collapse_check(generator.eval(), probes, must_change=must_change)
    if not check.passed:
        common.logger().warning("collapse check failed: %s; the version is registered but not promoted", check.reason)
    return {"passed": check.passed, "reason": check.reason, "dependence": check.dependence, "change": check.change}


def _card(cfg: Any, result: TrainResult, device: Any, started: common.Started, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_config": result.model_config,
        "train_config": cfg.train.to_dict(),
        "translation_config": cfg.to_dict(),
        "data": data,
        "metrics": common.run_metrics(
            result,
            started,
            critic=sum(h.get("critic", 0.0) for h in result.history[-5:]) / max(1, len(result.history[-5:])),
        ),
        "loss_curve": result.history,
        "rollback_log": result.rollback_log,
        "device": str(device),
        "code_version": started.code_version,
    }


# ---- training -------------------------------------------------------------------------------------
def _train_and_register(
    family: str,
    architecture: type[torch.nn.Module],
    name: str,
    cfg: Any,
    a: list[Path],
    b: list[Path],
    data: dict[str, Any],
    trainer: Callable[..., TrainResult],
    served: Callable[[torch.nn.Module], torch.nn.Module] = lambda net: net,
) -> dict[str, Any]:
    """Train with `trainer(cfg, a, b, workdir=..., device=..., progress=...)`, run the collapse
    check on `served(generator)`, and register the generator as <family>/<name> with its card."""
    settings = get_settings()
    device = resolve_device(settings.device)
    data = {**data, "sha256": _data_sha256(a, b)}
    run_key = context.stable_hash({family: name, "config": cfg.to_dict(), "data": data["sha256"]})
    started = common.Started()
    with common.reporting(f"train {family}/{name}", cfg.train, _gan_terms(family)) as on_step:
        workdir = settings.home / "work" / family / name / run_key
        result = trainer(cfg, a, b, workdir=workdir, device=device, progress=on_step)
    net = architecture(**result.model_config)
    net.load_state_dict(result.state_dict)
    card = {"architecture": architecture.__name__, **_card(cfg, result, device, started, data)}
    card["gate"] = _gate(served(net), _probes(a), must_change=True)
    return {**common.register_result(family, name, result, architecture.__name__, card), "gate": card["gate"]}


@task(name="train-pix2pix-model", tags=["gpu"])
def train_pix2pix_task(name: str, pairs_prefix: str, config: dict[str, Any], max_images: int = 5000) -> dict[str, Any]:
    """Train a Pix2Pix U-Net on the pairs under `pairs_prefix` and register it as pix2pix/<name>;
    the card's `gate` says whether its outputs depend on its input."""
    cfg = Pix2PixConfig.from_dict(config)
    a, b = paired_files(pairs_prefix, max_images)
    data = {"pairs": pairs_prefix, "images": len(a)}
    return _train_and_register(context.PIX2PIX, UNetGenerator, name, cfg, a, b, data, train_pix2pix)


@task(name="train-cyclegan-model", tags=["gpu"])
def train_cyclegan_task(
    name: str, domain_a: str, domain_b: str, config: dict[str, Any], max_images: int = 5000
) -> dict[str, Any]:
    """Train CycleGAN's two generators between the images under `domain_a` and `domain_b` and
    register them (one version) as cyclegan/<name>; the card's `gate` checks the A->B generator."""
    cfg = CycleGANConfig.from_dict(config)
    a, b = _domain_files(domain_a, max_images), _domain_files(domain_b, max_images)
    data = {"domain_a": domain_a, "domain_b": domain_b, "images": [len(a), len(b)]}
    return _train_and_register(
        context.CYCLEGAN, CycleGenerators, name, cfg, a, b, data, train_cyclegan, lambda net: OneDirection(net, "AtoB")
    )


@task(name="train-mixgan-model", tags=["gpu"])
def train_mixgan_task(
    name: str, content_domain: str, style_domain: str, config: dict[str, Any], max_images: int = 5000
) -> dict[str, Any]:
    """Train MIXGAN (content from `content_domain`'s photos, style from `style_domain`'s images)
    and register the generator (encode -> mixture-decode) as mixgan/<name>."""
    cfg = MIXGANConfig.from_dict(config)
    a, b = _domain_files(content_domain, max_images), _domain_files(style_domain, max_images)
    data = {"domain_a": content_domain, "domain_b": style_domain, "images": [len(a), len(b)]}
    return _train_and_register(context.MIXGAN, MixGenerator, name, cfg, a, b, data, train_mixgan)
