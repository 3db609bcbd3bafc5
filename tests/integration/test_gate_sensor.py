"""Quality gate, artwork change detection, multi-style retrain and still-current outputs, as
`task.fn` calls against the real embedded SeaweedFS, the shipped example models and photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from prefect.logging import disable_run_logger

from infra.settings import get_settings
from runs import context, methods
from runs.shard import ShardJob
from runs.spec import StylizeParams
from styleops.io.images import decode_image, encode_image
from styleops.io.serialize import from_safetensors
from tasks.gate import promote_if_passed_task, quality_gate_task
from tasks.sensor import detect_artwork_changes_task
from tasks.stylize import plan_catalog_task, stylize_shard_task
from tasks.training import add_style_task, import_model_task, train_multistyle_task
from tests.flows.conftest import CATALOG_PREFIX, EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.integration.test_tasks import TINY, sha256

pytestmark = pytest.mark.integration
MODELS = EXAMPLES / "models"


@pytest.fixture
def ops_env(pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch) -> PipelineEnv:  # noqa: F811
    """The examples, the shipped monet model in production, the demo photos as held-out set."""
    monkeypatch.setenv("STYLEOPS_GATE_HOLDOUT", CATALOG_PREFIX)
    monkeypatch.setenv("STYLEOPS_GATE_SIZE", "128")
    monkeypatch.setenv("STYLEOPS_TRAIN_CONTENT", CATALOG_PREFIX)
    get_settings.cache_clear()
    with disable_run_logger():
        imported = import_model_task.fn(
            context.PER_STYLE, "monet", str(MODELS / "monet.safetensors"), str(MODELS / "monet.card.json")
        )
    assert (imported["version"], imported["promoted"]) == ("v0001", True)
    return pipeline_env


def register_copy(name: str, blob: bytes, card_from: Path) -> str:
    """Register `blob` as the next per-style version of `name` with the card of `card_from`."""
    card = {
        k: v
        for k, v in json.loads(card_from.read_text()).items()
        if k in ("architecture", "artwork_key", "artwork_sha256", "train_config", "model_config")
    }
    return context.registry().register(context.PER_STYLE, name, blob, card).version


def test_gate_refuses_a_bad_candidate_and_keeps_production(ops_env: PipelineEnv) -> None:
    reg = context.registry()
    # hoitsu's network stylizes, but not as Monet: worse than production on monet's artwork.
    bad = register_copy("monet", (MODELS / "hoitsu.safetensors").read_bytes(), MODELS / "monet.card.json")
    with disable_run_logger():
        gate = quality_gate_task.fn(context.PER_STYLE, "monet", bad)
        assert promote_if_passed_task.fn(context.PER_STYLE, "monet", bad, gate) is False
    n = gate["numbers"]
    assert (gate["passed"], gate["production"], bad) == (False, "v0001", "v0002")
    assert n["candidate"]["images"] == n["production"]["images"] == n["baseline"]["images"] == 6
    worse = [t for t in ("content", "style") if n["candidate"][t] > n["production"][t] * 1.05]
    assert worse and all(f"{t} loss" in gate["reason"] for t in worse)
    assert reg.production(context.PER_STYLE, "monet") == "v0001"
    events = reg.events()
    refused = events[events["event"] == "gate-refused"]
    assert list(zip(refused["name"], refused["version"], strict=True)) == [("monet", "v0002")]
    recorded = json.loads(refused["metrics_json"].iloc[0])
    assert recorded["candidate"] == n["candidate"] and recorded["production_version"] == "v0001"

    # The same weights as production score exactly the same: no worse, so they pass and promote.
    same = register_copy("monet", (MODELS / "monet.safetensors").read_bytes(), MODELS / "monet.card.json")
    with disable_run_logger():
        gate = quality_gate_task.fn(context.PER_STYLE, "monet", same, margin=0.0)
        assert gate["passed"] and gate["numbers"]["candidate"] == gate["numbers"]["production"]
        assert promote_if_passed_task.fn(context.PER_STYLE, "monet", same, gate) is True
    assert reg.production(context.PER_STYLE, "monet") == same == "v0003"
    assert list(reg.events()["event"]).count("gate-passed") == 1
    with disable_run_logger(), pytest.raises(ValueError, match="needs the style"):
        quality_gate_task.fn(context.MULTI_STYLE, "collection", "v0001")


def test_detect_artwork_changes_against_the_newest_versions(ops_env: PipelineEnv) -> None:
    env = ops_env
    with disable_run_logger():
        first = detect_artwork_changes_task.fn("artwork/", [context.PER_STYLE, context.MULTI_STYLE])
    per_style = {c["style"]: c["change"] for c in first[context.PER_STYLE]}
    assert per_style == {"hoitsu": "new", "kandinsky": "new"}  # monet: the imported model's artwork
    assert first[context.MULTI_STYLE] == []  # no multi-style/collection yet
    # New bytes for monet (mirrored): changed, with the new sha256.
    img = decode_image(env.store.get_bytes("artwork/monet/monet.jpg")).pixels
    mirrored = encode_image(img.flip(-1), "jpeg", quality=90)
    env.store.put("artwork/monet/monet.jpg", mirrored)
    with disable_run_logger():
        second = detect_artwork_changes_task.fn("artwork/", [context.PER_STYLE])
    monet = [c for c in second[context.PER_STYLE] if c["style"] == "monet"]
    assert monet == [
        {"style": "monet", "key": "artwork/monet/monet.jpg", "sha256": sha256(mirrored), "change": "changed"}
    ]


def test_retrained_multi_style_keeps_other_styles_outputs_current(ops_env: PipelineEnv) -> None:
    env = ops_env
    for key in [k for k in env.artwork_keys if "/kandinsky/" in k]:
        env.store.delete(key)
    reg = context.registry()
    with disable_run_logger():
        train_multistyle_task.fn("collection", "artwork/", CATALOG_PREFIX, TINY)
        reg.promote(context.MULTI_STYLE, "collection", "v0001")
        items = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)][:3]
        params = StylizeParams(method="multi-style", max_side=48)
        for style in ("monet", "hoitsu"):
            r = methods.resolve("multi-style", style, None)
            assert (r.model_version, r.still_current) == ("collection/v0001", ())
            assert stylize_shard_task.fn(
                ShardJob(f"s-{style}", items, f"run-{style}", CATALOG_PREFIX, style, r.model_version, params)
            ) == {"ok": 3, "failed": 0}
        # hoitsu's artwork changes: retrain only its scale/shift in place.
        img = decode_image(env.store.get_bytes("artwork/hoitsu/hoitsu.jpg")).pixels
        env.store.put("artwork/hoitsu/hoitsu.jpg", encode_image(img.flip(-2), "jpeg", quality=90))
        changes = detect_artwork_changes_task.fn("artwork/", [context.MULTI_STYLE])
        assert [(c["style"], c["change"]) for c in changes[context.MULTI_STYLE]] == [("hoitsu", "changed")]
        retrained = add_style_task.fn(
            "collection", "artwork/hoitsu/hoitsu.jpg", CATALOG_PREFIX, TINY, None, "hoitsu", replace=True
        )
        reg.promote(context.MULTI_STYLE, "collection", retrained["version"])
        assert detect_artwork_changes_task.fn("artwork/", [context.MULTI_STYLE])[context.MULTI_STYLE] == []
        monet, hoitsu = methods.resolve("multi-style", "monet", None), methods.resolve("multi-style", "hoitsu", None)
        plans = {
            s: plan_catalog_task.fn(CATALOG_PREFIX, r.style, r.model_version, params.hash, 64, False, r.still_current)
            for s, r in (("monet", monet), ("hoitsu", hoitsu))
        }
    card = reg.card(context.MULTI_STYLE, "collection", "v0002")
    assert retrained["styles"] == ["hoitsu", "monet"] and card["parent_version"] == "v0001"
    assert [s.get("trained_in") for s in card["styles"]] == [None, "v0001"]
    old = from_safetensors(reg.weights_bytes(context.MULTI_STYLE, "collection", "v0001"))
    new = from_safetensors(reg.weights_bytes(context.MULTI_STYLE, "collection", "v0002"))
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(old(x, 1), new(x, 1)) and not torch.equal(old(x, 0), new(x, 0))
    assert (monet.still_current, hoitsu.still_current) == (("collection/v0001",), ())
    # monet's outputs from v0001 are still current; hoitsu's are stale and redone.
    assert (plans["monet"]["done"], plans["monet"]["todo"], plans["monet"]["stale"]) == (3, 3, 0)
    assert (plans["hoitsu"]["done"], plans["hoitsu"]["todo"], plans["hoitsu"]["stale"]) == (0, 6, 3)
