"""The model registry on the embedded SeaweedFS: versions, cards, safe weights, promotion."""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import torch
from safetensors.torch import load, save

from infra.registry import (
    ModelNotFoundError,
    ModelRegistry,
    ModelVersion,
    PromotionConflictError,
    RegistryError,
    UnsafeWeightsError,
    WeightsIntegrityError,
)
from infra.store import ObjectStore

pytestmark = pytest.mark.integration

FAMILY, NAME = "per-style", "starry-night"
CARD = {
    "params": {"style_weight": 1e5, "content_weight": 1.0},
    "metrics": {"style_loss": 0.25},
    "artwork_sha256": ["d" * 64],
}


def weights(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return save({"conv1.weight": torch.randn(8, 3, 3, 3, generator=generator), "conv1.bias": torch.zeros(8)})


@pytest.fixture
def registry(store: ObjectStore) -> ModelRegistry:
    return ModelRegistry(store)


def test_register_numbers_versions_and_records_cards(registry: ModelRegistry) -> None:
    blobs = [weights(1), weights(2)]
    first = registry.register(FAMILY, NAME, blobs[0], CARD)
    second = registry.register(FAMILY, NAME, blobs[1], {**CARD, "parent_version": "v0001"})
    assert (first.version, second.version) == ("v0001", "v0002")
    assert first.sha256 == hashlib.sha256(blobs[0]).hexdigest() and first.size == len(blobs[0])
    assert second.sha256 == hashlib.sha256(blobs[1]).hexdigest()
    assert first.weights_key == f"models/{FAMILY}/{NAME}/v0001/weights.safetensors"
    assert first.card_key == f"models/{FAMILY}/{NAME}/v0001/card.json"
    assert first.created_at.tzinfo is not None and first.created_at <= second.created_at

    card = registry.card(FAMILY, NAME, "v0002")
    assert card == {
        **CARD,
        "parent_version": "v0001",
        "family": FAMILY,
        "name": NAME,
        "version": "v0002",
        "weights_sha256": second.sha256,
        "weights_size": len(blobs[1]),
        "created_at": second.created_at.isoformat(),
    }
    assert registry.versions(FAMILY, NAME) == [first, second]
    assert registry.names(FAMILY) == [NAME]
    assert registry.names("adain") == []


def test_weights_round_trip_and_load(registry: ModelRegistry) -> None:
    blob = weights(3)
    registry.register(FAMILY, NAME, blob, CARD)
    data = registry.weights_bytes(FAMILY, NAME, "v0001")
    assert data == blob
    tensors = load(data)
    assert set(tensors) == {"conv1.weight", "conv1.bias"}
    assert torch.equal(tensors["conv1.weight"], load(blob)["conv1.weight"])


def test_a_pickle_at_a_weights_key_is_refused(store: ObjectStore, registry: ModelRegistry) -> None:
    version = registry.register(FAMILY, NAME, weights(4), CARD)
    pickled = io.BytesIO()
    torch.save({"conv1.weight": torch.randn(8, 3, 3, 3)}, pickled)
    store.put(version.weights_key, pickled.getvalue())
    with pytest.raises(UnsafeWeightsError):
        registry.weights_bytes(FAMILY, NAME, "v0001")


@pytest.mark.parametrize("blob", [b"", b"not safetensors at all", weights(5)[:-4], save({})])
def test_register_refuses_what_is_not_safetensors(store: ObjectStore, registry: ModelRegistry, blob: bytes) -> None:
    with pytest.raises(UnsafeWeightsError):
        registry.register(FAMILY, NAME, blob, CARD)
    assert list(store.list("models/")) == []
    assert registry.versions(FAMILY, NAME) == []


def test_tampered_weights_fail_the_card_sha256(store: ObjectStore, registry: ModelRegistry) -> None:
    version = registry.register(FAMILY, NAME, weights(6), CARD)
    store.put(version.weights_key, weights(7))  # valid safetensors, other bytes
    with pytest.raises(WeightsIntegrityError, match="the card says"):
        registry.weights_bytes(FAMILY, NAME, "v0001")
    assert issubclass(WeightsIntegrityError, RegistryError)


def test_promotion_moves_the_production_pointer(store: ObjectStore, registry: ModelRegistry) -> None:
    registry.register(FAMILY, NAME, weights(8), CARD)
    registry.register(FAMILY, NAME, weights(9), CARD)
    assert registry.production(FAMILY, NAME) is None
    registry.promote(FAMILY, NAME, "v0001", reason="first gate pass")
    assert registry.production(FAMILY, NAME) == "v0001"
    registry.promote(FAMILY, NAME, "v0002", reason="better style loss")
    assert registry.production(FAMILY, NAME) == "v0002"
    pointer = store.get_json(f"models/{FAMILY}/{NAME}/PRODUCTION")
    assert set(pointer) == {"version", "promoted_at", "reason"}
    assert (pointer["version"], pointer["reason"]) == ("v0002", "better style loss")
    assert datetime.fromisoformat(pointer["promoted_at"]).tzinfo is not None
    with pytest.raises(ModelNotFoundError):
        registry.promote(FAMILY, NAME, "v0003")
    assert registry.production(FAMILY, NAME) == "v0002"


def test_a_promotion_racing_another_is_refused(
    monkeypatch: pytest.MonkeyPatch, store: ObjectStore, registry: ModelRegistry
) -> None:
    for seed in (10, 11, 12):
        registry.register(FAMILY, NAME, weights(seed), CARD)
    registry.promote(FAMILY, NAME, "v0001")
    pointer = f"models/{FAMILY}/{NAME}/PRODUCTION"
    put = store.put

    def rival_first(key: str, data: bytes, **kw: Any) -> Any:
        """Another promoter writes PRODUCTION between our read and our conditional write."""
        if key == pointer:
            put(key, json.dumps({"version": "v0003", "promoted_at": "x", "reason": "rival"}).encode())
        return put(key, data, **kw)

    monkeypatch.setattr(store, "put", rival_first)
    with pytest.raises(PromotionConflictError):
        registry.promote(FAMILY, NAME, "v0002")
    assert registry.production(FAMILY, NAME) == "v0003"


def test_resolve(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError, match="no versions"):
        registry.resolve(FAMILY, NAME, "latest")
    registry.register(FAMILY, NAME, weights(13), CARD)
    registry.register(FAMILY, NAME, weights(14), CARD)
    assert registry.resolve(FAMILY, NAME, "latest") == "v0002"
    for alias in (None, "production"):
        with pytest.raises(ModelNotFoundError, match="no production version"):
            registry.resolve(FAMILY, NAME, alias)
    registry.promote(FAMILY, NAME, "v0001")
    assert registry.resolve(FAMILY, NAME) == registry.resolve(FAMILY, NAME, "production") == "v0001"
    assert registry.resolve(FAMILY, NAME, "v0002") == "v0002"
    with pytest.raises(ModelNotFoundError):
        registry.resolve(FAMILY, NAME, "v0009")
    with pytest.raises(RegistryError, match="version must look like"):
        registry.resolve(FAMILY, NAME, "../v0001")


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("per-style", "Starry"),
        ("per-style", "-starry"),
        ("per-style", "a/b"),
        ("per-style", "x" * 65),
        ("stylegan", "starry"),  # not a family
    ],
)
def test_names_and_families_are_validated(registry: ModelRegistry, family: str, name: str) -> None:
    with pytest.raises(RegistryError):
        registry.register(family, name, weights(15), CARD)


def test_concurrent_registrations_get_distinct_versions(registry: ModelRegistry) -> None:
    blobs = {seed: weights(seed) for seed in (20, 21, 22)}

    def register(seed: int) -> ModelVersion:
        return registry.register(FAMILY, NAME, blobs[seed], {**CARD, "seed": seed})

    with ThreadPoolExecutor(max_workers=3) as pool:
        versions = list(pool.map(register, blobs))
    assert sorted(v.version for v in versions) == ["v0001", "v0002", "v0003"]
    for version in versions:
        card = registry.card(FAMILY, NAME, version.version)
        assert card["weights_sha256"] == hashlib.sha256(blobs[card["seed"]]).hexdigest()
        assert registry.weights_bytes(FAMILY, NAME, version.version) == blobs[card["seed"]]
    assert sorted(registry.events()["version"]) == ["v0001", "v0002", "v0003"]


def test_events_record_registrations_and_promotions(registry: ModelRegistry) -> None:
    one = registry.register(FAMILY, NAME, weights(30), CARD)
    registry.register("adain", "decoder", weights(31), {"metrics": {"content_loss": 2.0}})
    registry.promote(FAMILY, NAME, "v0001", reason="gate")
    events = registry.events()
    assert list(events[["event", "family", "name", "version"]].itertuples(index=False, name=None)) == [
        ("registered", FAMILY, NAME, "v0001"),
        ("registered", "adain", "decoder", "v0001"),
        ("promoted", FAMILY, NAME, "v0001"),
    ]
    first = events.iloc[0]
    assert (first["sha256"], first["size"]) == (one.sha256, one.size)
    assert first["created_at"] == one.created_at
    assert json.loads(first["metrics_json"]) == CARD["metrics"]
    assert json.loads(first["card_json"]) == registry.card(FAMILY, NAME, "v0001")
    promoted = events.iloc[2]
    assert (promoted["reason"], promoted["sha256"]) == ("gate", one.sha256)
    assert promoted["created_at"] > one.created_at
