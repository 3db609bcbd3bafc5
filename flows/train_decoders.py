"""Flows for the decoders of the arbitrary-style methods: the AdaIN decoder and the style-swap
inverse network. Each trains one network for every artwork (none per style), registers it and
promotes it if nothing of that name is in production."""

from __future__ import annotations

from typing import Any

from prefect import flow

from runs.context import ADAIN, INVERSE
from styleops.training.decoders import adain_config, inverse_config
from styleops.training.engine import TrainConfig
from tasks.training import promote_if_first_task, train_decoder_task


def _train(
    family: str,
    defaults: TrainConfig,
    artwork_prefix: str,
    content_prefix: str,
    name: str,
    config: dict[str, Any] | None,
    max_content: int,
    init_from: str | None,
    encoder: str,
) -> dict[str, Any]:
    """Train `family`'s decoder with `config` over `defaults` (bad values fail here, before any
    work), register it, promote it if it is the name's first."""
    if encoder not in ("vgg16", "vgg19"):
        raise ValueError(f"encoder must be vgg16 or vgg19, got {encoder!r}")
    cfg = TrainConfig.from_dict({**defaults.to_dict(), **(config or {})}).to_dict()
    trained = train_decoder_task(
        family, name, artwork_prefix, content_prefix, cfg, max_content, init_from=init_from, encoder=encoder
    )
    return {**trained, "promoted": promote_if_first_task(family, name, trained["version"])}


@flow(name="train-adain")
def train_adain(
    artwork_prefix: str,
    content_prefix: str,
    name: str = "default",
    config: dict[str, Any] | None = None,
    max_content: int = 5000,
    init_from: str | None = None,
    encoder: str = "vgg16",
) -> dict[str, Any]:
    """Train the AdaIN decoder (relu4_1 -> pixels) on the photos and artworks under the prefixes;
    register it as adain/<name>. `config` overrides `styleops.training.decoders.adain_config()`;
    `init_from`: warm start (.safetensors path or adain/<name>/<version>); `encoder`: vgg16 (the loss
    network) or vgg19 (AdaIN's normalised VGG19, the paper's)."""
    return _train(
        ADAIN, adain_config(encoder), artwork_prefix, content_prefix, name, config, max_content, init_from, encoder
    )


@flow(name="train-inverse")
def train_inverse(
    artwork_prefix: str,
    content_prefix: str,
    name: str = "default",
    config: dict[str, Any] | None = None,
    max_content: int = 5000,
    init_from: str | None = None,
    encoder: str = "vgg16",
) -> dict[str, Any]:
    """Train the style-swap inverse network (relu3_1 -> pixels) on content, artwork and swapped
    features; register it as inverse/<name>. `config` overrides `inverse_config()`; `init_from`
    as for train_adain."""
    return _train(
        INVERSE, inverse_config(), artwork_prefix, content_prefix, name, config, max_content, init_from, encoder
    )
