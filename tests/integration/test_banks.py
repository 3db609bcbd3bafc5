"""Style-swap patch banks on the embedded SeaweedFS: the registry's bank layout, building banks
from the example artworks (tasks called as `task.fn`, no Prefect server), change detection,
promotion, resolving and loading."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from prefect.logging import disable_run_logger

from infra.registry import BANK, ModelNotFoundError, ModelRegistry
from infra.settings import get_settings
from infra.store import ObjectStore
from runs import banks, context
from styleops.errors import ImageDecodeError, InvalidInputError
from styleops.io.images import decode_image, encode_image, resize_max_side, to_float
from styleops.ops import PatchBank, build_patch_bank
from tasks.banks import build_patch_bank_task, promote_bank_if_first_task
from tests.flows.conftest import EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401

pytestmark = pytest.mark.integration

STYLE_SIZE = 64  # monet.jpg 512x337 -> 64x42 px -> relu3_1 16x10 -> 14x8 = 112 patches of 3x3
MONET = "artwork/monet/monet.jpg"
MONET_PATCHES = 112


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bank_env(pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    """The pipeline environment with banks built from 64 px artworks."""
    monkeypatch.setenv("STYLEOPS_BANK_STYLE_SIZE", str(STYLE_SIZE))
    get_settings.cache_clear()
    assert get_settings().bank_style_size == STYLE_SIZE and get_settings().bank_layer == "relu3_1"
    yield pipeline_env


def build(style: str, keys: list[str], force: bool = False) -> dict[str, Any]:
    with disable_run_logger():
        return build_patch_bank_task.fn(style, keys, force)


def bank_keys(st: ObjectStore) -> list[str]:
    return sorted(info.key for info in st.list("banks/"))


def expected_bank(artwork_files: list[Path]) -> PatchBank:
    """The bank computed here from the local files: decode, resize, encode, cut patches."""
    enc = context.encoder(("relu3_1",), torch.device("cpu"))
    maps = []
    for path in artwork_files:
        pixels = to_float(decode_image(path.read_bytes()).pixels)
        with torch.no_grad():
            maps.append(enc(resize_max_side(pixels, STYLE_SIZE)[None])["relu3_1"])
    return build_patch_bank(maps, 3, 1)


# ---- registry layout ---------------------------------------------------------------------------
def test_bank_family_lives_under_banks(store: ObjectStore) -> None:
    reg = ModelRegistry(store)
    blob = build_patch_bank(torch.rand(1, 4, 5, 5)).to_bytes()
    version = reg.register(BANK, "monet", blob, {"layer": "relu3_1"})
    reg.register("per-style", "monet", blob, {})
    assert (version.weights_key, version.card_key) == (
        "banks/monet/v0001/weights.safetensors",
        "banks/monet/v0001/card.json",
    )
    assert bank_keys(store) == ["banks/monet/v0001/card.json", "banks/monet/v0001/weights.safetensors"]
    assert sorted(i.key for i in store.list("models/")) == [
        "models/per-style/monet/v0001/card.json",
        "models/per-style/monet/v0001/weights.safetensors",
    ]
    assert reg.names(BANK) == ["monet"] and reg.names("per-style") == ["monet"] and reg.names("adain") == []
    assert reg.register(BANK, "monet", blob, {}).version == "v0002"
    assert [v.version for v in reg.versions(BANK, "monet")] == ["v0001", "v0002"]
    assert reg.resolve(BANK, "monet", "latest") == "v0002"
    reg.promote(BANK, "monet", "v0001")
    assert store.get_json("banks/monet/PRODUCTION")["version"] == "v0001"
    assert reg.production("per-style", "monet") is None and reg.weights_bytes(BANK, "monet", "v0001") == blob
    assert list(reg.events()[["event", "family", "name", "version"]].itertuples(index=False, name=None)) == [
        ("registered", BANK, "monet", "v0001"),
        ("registered", "per-style", "monet", "v0001"),
        ("registered", BANK, "monet", "v0002"),
        ("promoted", BANK, "monet", "v0001"),
    ]


# ---- building ----------------------------------------------------------------------------------
def test_build_registers_then_reports_unchanged(bank_env: PipelineEnv, vgg_weights_file: Path) -> None:
    env = bank_env
    assert build("monet", [MONET]) == {
        "style": "monet",
        "version": "v0001",
        "status": "built",
        "patches": MONET_PATCHES,
    }
    assert bank_keys(env.store) == ["banks/monet/v0001/card.json", "banks/monet/v0001/weights.safetensors"]
    card = context.registry().card(BANK, "monet", "v0001")
    expected_fields = {
        "artworks": [{"key": MONET, "sha256": sha256((EXAMPLES / "artwork/monet/monet.jpg").read_bytes())}],
        "layer": "relu3_1",
        "patch_size": 3,
        "stride": 1,
        "style_size": STYLE_SIZE,
        "max_patches": 16384,
        "encoder": {"arch": "vgg16", "weights": vgg_weights_file.name, "sha256": sha256(vgg_weights_file.read_bytes())},
        "n_patches": MONET_PATCHES,
        "total_patches": MONET_PATCHES,
        "subsampled": False,
        "channels": 256,
    }
    assert {k: card[k] for k in expected_fields} == expected_fields

    bank, loaded_card = banks.load_bank("monet", "v0001")
    assert loaded_card == card
    reference = expected_bank([EXAMPLES / "artwork/monet/monet.jpg"])
    assert bank.patches.shape == (MONET_PATCHES, 256, 3, 3) and (bank.patch_size, bank.stride) == (3, 1)
    assert torch.equal(bank.patches, reference.patches) and torch.equal(bank.norms, reference.norms)
    assert banks.load_bank("monet", "v0001")[0] is bank  # cached

    assert build("monet", [MONET]) == {"style": "monet", "version": "v0001", "status": "unchanged"}
    assert build("monet", [MONET], force=True) == {
        "style": "monet",
        "version": "v0002",
        "status": "built",
        "patches": MONET_PATCHES,
    }
    assert build("monet", [MONET]) == {"style": "monet", "version": "v0002", "status": "unchanged"}
    assert [v.version for v in context.registry().versions(BANK, "monet")] == ["v0001", "v0002"]


def test_first_bank_is_promoted_and_resolved(bank_env: PipelineEnv) -> None:
    with pytest.raises(ModelNotFoundError, match="no versions"):
        banks.resolve_bank("monet", "latest")
    build("monet", [MONET])
    with pytest.raises(ModelNotFoundError, match="no production version"):
        banks.resolve_bank("monet")
    assert promote_bank_if_first_task.fn("monet", "v0001") is True
    build("monet", [MONET], force=True)
    assert promote_bank_if_first_task.fn("monet", "v0002") is False
    assert banks.resolve_bank("monet") == banks.resolve_bank("monet", "production") == "v0001"
    assert banks.resolve_bank("monet", "latest") == "v0002"
    assert bank_env.store.get_json("banks/monet/PRODUCTION")["version"] == "v0001"


def test_changed_inputs_give_new_versions(bank_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = bank_env
    assert build("monet", [MONET])["version"] == "v0001"
    recompressed = encode_image(decode_image(env.store.get_bytes(MONET)).pixels, "jpeg", quality=60)
    env.store.put(MONET, recompressed)
    assert build("monet", [MONET]) == {
        "style": "monet",
        "version": "v0002",
        "status": "built",
        "patches": MONET_PATCHES,
    }
    assert context.registry().card(BANK, "monet", "v0002")["artworks"] == [
        {"key": MONET, "sha256": sha256(recompressed)}
    ]

    # a second artwork of the style: both in one bank, keys sorted
    second = "artwork/monet/hoitsu-copy.jpg"
    env.store.put(second, (EXAMPLES / "artwork/hoitsu/hoitsu.jpg").read_bytes())
    both = sorted([MONET, second])
    built = build("monet", [MONET, second])
    assert (built["version"], built["status"]) == ("v0003", "built")
    card = context.registry().card(BANK, "monet", "v0003")
    assert [a["key"] for a in card["artworks"]] == both
    hoitsu_patches = (64 // 4 - 2) * (round(234 * 64 / 512) // 4 - 2)  # 512x234 -> 64x29 -> 16x7 features
    assert built["patches"] == card["n_patches"] == MONET_PATCHES + hoitsu_patches
    assert build("monet", [second, MONET])["status"] == "unchanged"

    # other build parameters: a cap on the patches subsamples evenly
    monkeypatch.setenv("STYLEOPS_BANK_MAX_PATCHES", "50")
    get_settings.cache_clear()
    assert build("monet", both) == {"style": "monet", "version": "v0004", "status": "built", "patches": 50}
    card = context.registry().card(BANK, "monet", "v0004")
    assert (card["n_patches"], card["total_patches"], card["subsampled"], card["max_patches"]) == (
        50,
        MONET_PATCHES + hoitsu_patches,
        True,
        50,
    )
    bank, _ = banks.load_bank("monet", "v0004")
    full, _ = banks.load_bank("monet", "v0003")
    assert torch.equal(bank.patches[0], full.patches[0]) and torch.equal(bank.patches[-1], full.patches[-1])


def test_a_too_small_artwork_is_named(bank_env: PipelineEnv) -> None:
    env = bank_env
    thumb = "artwork/monet/thumb.png"
    env.store.put(thumb, encode_image(torch.full((3, 8, 8), 128, dtype=torch.uint8), "png"))
    with pytest.raises(
        InvalidInputError, match=r"artwork artwork/monet/thumb\.png is too small .* 2x2 relu3_1 features"
    ):
        build("monet", [MONET, thumb])
    broken = "artwork/monet/broken.jpg"
    env.store.put(broken, b"not a JPEG")
    with pytest.raises(ImageDecodeError, match=r"artwork artwork/monet/broken\.jpg"):
        build("monet", [MONET, broken])
    with pytest.raises(InvalidInputError, match=r"not under artwork/monet/"):
        build("monet", [MONET, "artwork/hoitsu/hoitsu.jpg"])
    with pytest.raises(InvalidInputError, match="no artworks"):
        build("monet", [])
    assert bank_keys(env.store) == []
