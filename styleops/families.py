"""The model families, declared once: what the registry stores under models/<family>/, what
serialization rebuilds, and how `styleops models list` names a family's losses.

A family is a kind of trained model with its own registry folder. Its record names the
architectures its versions may be (`styleops.io.serialize` rebuilds them from a safetensors
header), the labels of the engine's four loss slots as its training fills them (content, style,
tv and critic: pix2pix puts its L1 in `content` and its GAN loss in `style`), and the command that
trains one. The registry (`infra.registry`), the runs ring's constants (`runs.context.PER_STYLE`,
...) and the CLI read these records; a new family is one `register(Family(...))` here beside its
model module, method and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from styleops.errors import InvalidInputError
from styleops.models.decoder import VGGDecoder
from styleops.models.magenta import MagentaStyleNet
from styleops.models.mixgan import MixGenerator
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.super_resolution import SuperResolutionNet
from styleops.models.transformer import TransformerNet
from styleops.models.translation import CycleGenerators, UNetGenerator

STYLE_LOSSES = (("content", "content"), ("style", "style"))
"""(column label, loss slot) pairs: the slots are StepLog's and a card's metrics' keys."""


@dataclass(frozen=True)
class Family:
    """One registry family of trained models."""

    name: str  # the registry's folder, models/<name>/, and the --family value
    architectures: tuple[type[nn.Module], ...]  # the classes its versions may be
    trained_by: str  # the command that trains one, for help and error messages
    losses: tuple[tuple[str, str], ...] = STYLE_LOSSES  # how `models list` labels the loss slots

    @property
    def architecture_names(self) -> tuple[str, ...]:
        return tuple(cls.__name__ for cls in self.architectures)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add `family` (a new name); returns it."""
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} is registered already")
    _FAMILIES[family.name] = family
    return family


def get(name: str) -> Family:
    """The family of that name; InvalidInputError naming the families otherwise."""
    if name not in _FAMILIES:
        raise InvalidInputError(f"family must be one of {', '.join(map(repr, _FAMILIES))}, got {name!r}")
    return _FAMILIES[name]


def names() -> tuple[str, ...]:
    """The families' names, in registration order."""
    return tuple(_FAMILIES)


def architectures() -> dict[str, type[nn.Module]]:
    """Every family's architectures by class name (what a safetensors header records)."""
    return {cls.__name__: cls for f in _FAMILIES.values() for cls in f.architectures}


PER_STYLE = register(Family("per-style", (TransformerNet, MagentaStyleNet), "styleops train-style"))
MULTI_STYLE = register(Family("multi-style", (MultiStyleTransformerNet, MagentaStyleNet), "styleops train-multistyle"))
INVERSE = register(Family("inverse", (VGGDecoder,), "styleops train-inverse", (("features", "content"), ("tv", "tv"))))
ADAIN = register(Family("adain", (VGGDecoder,), "styleops train-adain"))
SUPER_RESOLUTION = register(
    Family("super-resolution", (SuperResolutionNet,), "styleops train-sr", (("features", "content"), ("pixel", "tv")))
)
PIX2PIX = register(
    Family(
        "pix2pix", (UNetGenerator,), "styleops train-pix2pix", (("L1", "content"), ("GAN", "style"), ("D", "critic"))
    )
)
CYCLEGAN = register(
    Family(
        "cyclegan",
        (CycleGenerators,),
        "styleops train-cyclegan",
        (("cycle", "content"), ("GAN", "style"), ("identity", "tv"), ("D", "critic")),
    )
)
MIXGAN = register(
    Family(
        "mixgan",
        (MixGenerator,),
        "styleops train-mixgan",
        (("reconstruction", "content"), ("GAN", "style"), ("latent+keep", "tv"), ("D", "critic")),
    )
)
