"""The build-patch-banks flow under the Prefect test harness: two styles, built, then unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.artifacts import Artifact

from flows.build_patch_banks import build_patch_banks
from infra.registry import BANK
from infra.settings import get_settings
from runs import context
from tests.flows.conftest import PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.flow]


@pytest.fixture
def two_styles(pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    """monet and hoitsu under artwork/ (kandinsky removed), a stray text file, 64 px banks."""
    monkeypatch.setenv("STYLEOPS_BANK_STYLE_SIZE", "64")
    get_settings.cache_clear()
    pipeline_env.store.delete("artwork/kandinsky/kandinsky.jpg")
    pipeline_env.store.put("artwork/monet/NOTES.txt", b"not an image: ignored")
    yield pipeline_env


def test_flow_builds_one_bank_per_style_then_nothing(two_styles: PipelineEnv) -> None:
    first = build_patch_banks(artworks="artwork/")
    assert first == {
        "built": ["hoitsu", "monet"],
        "unchanged": [],
        "banks": {"hoitsu": "v0001", "monet": "v0001"},
        "promoted": ["hoitsu", "monet"],
    }
    assert sorted(i.key for i in two_styles.store.list("banks/")) == [
        f"banks/{style}/{leaf}"
        for style in ("hoitsu", "monet")
        for leaf in ("PRODUCTION", "v0001/card.json", "v0001/weights.safetensors")
    ]
    reg = context.registry()
    assert [a["key"] for a in reg.card(BANK, "monet", "v0001")["artworks"]] == ["artwork/monet/monet.jpg"]
    assert reg.card(BANK, "monet", "v0001")["n_patches"] == 112 and reg.card(BANK, "hoitsu", "v0001")["n_patches"] == 70
    artifact = Artifact.get("patch-banks-artwork")
    assert artifact is not None and "| monet | v0001 | built | 112 | True |" in artifact.data

    second = build_patch_banks(artworks="artwork/")
    assert second == {
        "built": [],
        "unchanged": ["hoitsu", "monet"],
        "banks": {"hoitsu": "v0001", "monet": "v0001"},
        "promoted": [],
    }
    forced = build_patch_banks(artworks="artwork/monet/", force=True)
    assert forced == {"built": ["monet"], "unchanged": [], "banks": {"monet": "v0002"}, "promoted": []}
    assert (reg.production(BANK, "monet"), reg.resolve(BANK, "monet", "latest")) == ("v0001", "v0002")


def test_swaps_palette_is_its_banks_artwork_and_a_changed_artwork_is_refused(two_styles: PipelineEnv) -> None:
    import torch

    from runs.methods.base import ARTWORK_SIZE
    from runs.methods.swap import bank_palette
    from styleops.errors import InvalidInputError
    from styleops.io.images import decode_image, resize_max_side, to_float
    from styleops.models.palette import palette_of

    build_patch_banks(artworks="artwork/monet/")
    artworks = context.registry().card(BANK, "monet", "v0001")["artworks"]
    got = bank_palette(artworks, get_settings())
    pixels = decode_image(two_styles.store.get_bytes("artwork/monet/monet.jpg")).pixels
    expected = palette_of(resize_max_side(to_float(pixels), ARTWORK_SIZE))
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.sqrt_cov, expected.sqrt_cov)
    two_styles.store.put("artwork/monet/monet.jpg", two_styles.store.get_bytes("artwork/hoitsu/hoitsu.jpg"))
    with pytest.raises(InvalidInputError, match="artwork/monet/monet.jpg changed since its patch bank was built"):
        bank_palette(artworks, get_settings())
