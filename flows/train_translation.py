"""Flows of the translation families: photos -> training pairs or domains in the store; pairs ->
a Pix2Pix model; two domains -> a CycleGAN or a MIXGAN model. Each trained version is registered, and
promoted if it is the name's first and passes the collapse check."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from runs.context import CYCLEGAN, MIXGAN, PIX2PIX
from runs.keys import artifact_key
from styleops.training.translation import CycleGANConfig, MIXGANConfig, Pix2PixConfig
from tasks.training import promote_if_first_task
from tasks.translation import make_pairs_task, train_cyclegan_task, train_mixgan_task, train_pix2pix_task


@flow(name="make-translation-data")
def make_translation_data(
    kind: str,
    content_prefix: str,
    name: str,
    style: str | None = None,
    limit: int = 200,
    max_side: int = 256,
    domains: bool = False,
) -> dict[str, Any]:
    """pairs/<name>/{A,B}/ from the photos under `content_prefix` (and, with `domains`, a disjoint
    unpaired split domains/<name>-A/ and -B/); see `tasks.translation.make_pairs_task`."""
    return make_pairs_task(kind, content_prefix, name, style, limit, max_side, domains)


def _report(family: str, name: str, trained: dict[str, Any], promoted: bool, source: str) -> None:
    m, gate = trained["metrics"], trained["gate"]
    create_markdown_artifact(
        key=artifact_key("train", f"{family}-{name}"),
        markdown=(
            f"# Trained {family}/{name} {trained['version']}\n\n"
            "| steps | seconds | G loss | D loss | collapse check | promoted |\n|---|---|---|---|---|---|\n"
            f"| {m['steps']} | {m['seconds']} | {m['total']:.4g} | {m['critic']:.4g}"
            f" | {gate['reason']} | {promoted} |\n"
        ),
        description=f"{family} model trained on {source}",
    )


def _promote(family: str, name: str, trained: dict[str, Any]) -> bool:
    return bool(trained["gate"]["passed"]) and promote_if_first_task(family, name, trained["version"])


@flow(name="train-pix2pix")
def train_pix2pix(pairs_prefix: str, name: str, config: dict[str, Any] | None = None, max_images: int = 5000) -> dict:
    """Train Pix2Pix on pairs/<set>/ (A/ and B/, or AB/), register pix2pix/<name>.
    `config` overrides `Pix2PixConfig` fields ({"channels": 32, "train": {...}})."""
    cfg = Pix2PixConfig.from_dict({**Pix2PixConfig().to_dict(), **(config or {})})  # bad values fail here
    trained = train_pix2pix_task(name, pairs_prefix, cfg.to_dict(), max_images)
    promoted = _promote(PIX2PIX, name, trained)
    _report(PIX2PIX, name, trained, promoted, pairs_prefix)
    return {**trained, "name": name, "promoted": promoted}


@flow(name="train-cyclegan")
def train_cyclegan(
    domain_a: str, domain_b: str, name: str, config: dict[str, Any] | None = None, max_images: int = 5000
) -> dict:
    """Train CycleGAN between domains/<a>/ and domains/<b>/, register cyclegan/<name> (both directions).
    `config` overrides `CycleGANConfig` fields."""
    cfg = CycleGANConfig.from_dict({**CycleGANConfig().to_dict(), **(config or {})})
    trained = train_cyclegan_task(name, domain_a, domain_b, cfg.to_dict(), max_images)
    promoted = _promote(CYCLEGAN, name, trained)
    _report(CYCLEGAN, name, trained, promoted, f"{domain_a} and {domain_b}")
    return {**trained, "name": name, "promoted": promoted}


@flow(name="train-mixgan")
def train_mixgan(
    content_domain: str, style_domain: str, name: str, config: dict[str, Any] | None = None, max_images: int = 5000
) -> dict:
    """Train MIXGAN: content from the photos under `content_domain`, style from the images under
    `style_domain`; register mixgan/<name>. `config` overrides `MIXGANConfig` fields."""
    cfg = MIXGANConfig.from_dict({**MIXGANConfig().to_dict(), **(config or {})})
    trained = train_mixgan_task(name, content_domain, style_domain, cfg.to_dict(), max_images)
    promoted = _promote(MIXGAN, name, trained)
    _report(MIXGAN, name, trained, promoted, f"{content_domain} and {style_domain}")
    return {**trained, "name": name, "promoted": promoted}
