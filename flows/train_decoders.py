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


def _config(defaults: TrainConfig, overrides: dict[str, Any] | None) -> dict[str, Any]:
    return TrainConfig.from_dict({**defaults.to_dict(), **(overrides or {})}).to_dict()  # bad values fail here


@flow(name="train-adain")
def train_adain(
    artwork_prefix: str,
    content_prefix: str,
    name: str = "default",
    config: dict[str, Any] | None = None,
    max_content: int = 5000,
    init_from: str | None = None,
) -> dict[str, Any]:
    """Train the AdaIN decoder (relu4_1 -> pixels) on the photos and artworks under the prefixes;
    register it as adain/<name>. `config` overrides `styleops.training.decoders.adain_config()`;
    `init_from`: warm start (.safetensors path or adain/<name>/<version>)."""
    trained = train_decoder_task(
        ADAIN, name, artwork_prefix, content_prefix, _config(adain_config(), config), max_content, init_from=init_from
    )
    return {**trained, "promoted": promote_if_first_task(ADAIN, name, trained["version"])}


@flow(name="train-inverse")
def train_inverse(
    artwork_prefix: str,
    content_prefix: str,
    name: str = "default",
    config: dict[str, Any] | None = None,
    max_content: int = 5000,
    init_from: str | None = None,
) -> dict[str, Any]:
    """Train the style-swap inverse network (relu3_1 -> pixels) on content, artwork and swapped
    features; register it as inverse/<name>. `config` overrides `inverse_config()`; `init_from`
    as for train_adain."""
    trained = train_decoder_task(
        INVERSE,
        name,
        artwork_prefix,
        content_prefix,
        _config(inverse_config(), config),
        max_content,
        init_from=init_from,
    )
    return {**trained, "promoted": promote_if_first_task(INVERSE, name, trained["version"])}
