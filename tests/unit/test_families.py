"""The model families are declared once (styleops.families); the registry, serialization, the
runs ring's constants and the CLI read them."""

from __future__ import annotations

import pytest

from infra.registry import BANK, FAMILIES, family_prefix
from runs import context
from styleops import families
from styleops.errors import InvalidInputError
from styleops.io.serialize import to_safetensors


def test_the_registry_and_the_runs_ring_take_the_families_from_their_declaration() -> None:
    assert FAMILIES == (*families.names(), BANK)
    assert [context.PER_STYLE, context.MULTI_STYLE, context.INVERSE, context.ADAIN] == list(families.names()[:4])
    assert {context.SUPER_RESOLUTION, context.PIX2PIX, context.CYCLEGAN, context.MIXGAN} == set(families.names()[4:])
    assert [family_prefix(f) for f in families.names()] == [f"models/{f}/" for f in families.names()]


def test_serialization_knows_every_familys_architectures_and_nothing_else() -> None:
    names = {cls.__name__ for f in families.names() for cls in families.get(f).architectures}
    assert set(families.architectures()) == names
    assert {"TransformerNet", "MagentaStyleNet", "VGGDecoder", "UNetGenerator"} <= names
    with pytest.raises(InvalidInputError, match="unknown architecture 'Net'"):
        to_safetensors({}, "Net", {})


def test_an_unknown_family_is_refused_with_the_list_and_a_name_is_taken_once() -> None:
    with pytest.raises(InvalidInputError, match=r"family must be one of 'per-style', .*'mixgan', got 'cycle-gan'"):
        families.get("cycle-gan")
    with pytest.raises(ValueError, match="family 'pix2pix' is registered already"):
        families.register(families.Family("pix2pix", (), "styleops train-pix2pix"))
    assert families.get("pix2pix").losses == (("L1", "content"), ("GAN", "style"), ("D", "critic"))
    assert families.get("adain").losses == families.STYLE_LOSSES
