"""The `magenta` method through the tasks (no Prefect server): resolve a style and a blend, stylize a
shard from the real embedded store, the lineage in the manifest, new artwork bytes giving new
keys, and missing weights failing before any work."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from prefect.logging import disable_run_logger

from infra.settings import get_settings
from runs import context, methods
from runs.spec import StylizeParams
from styleops.errors import InvalidInputError, WeightsNotFoundError
from styleops.io.images import decode_image, encode_image, to_float
from styleops.io.magenta_weights import load_magenta
from styleops.models.magenta import blend_vectors, style_vector
from styleops.training.engine import magenta_recipe
from tasks.training import add_style_task, promote_if_first_task, train_multistyle_task, train_per_style_task
from tests.flows.conftest import (  # noqa: F401
    PipelineEnv,
    magenta_weights_file,
    pipeline_env,
    vgg_weights_file,
)
from tests.integration.test_arbitrary_tasks import run
from tests.integration.test_tasks import CATALOG_PREFIX, sha256

pytestmark = pytest.mark.integration


@pytest.fixture
def magenta_file(magenta_weights_file: Path) -> Path:  # noqa: F811
    return magenta_weights_file


@pytest.fixture
def magenta_env(pipeline_env: PipelineEnv, magenta_file: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineEnv:  # noqa: F811
    monkeypatch.setenv("STYLEOPS_MAGENTA_WEIGHTS", str(magenta_file))
    get_settings.cache_clear()
    yield pipeline_env
    get_settings.cache_clear()


def test_magenta_stylizes_a_blend_with_its_lineage(magenta_env: PipelineEnv, magenta_file: Path) -> None:
    env = magenta_env
    weights_sha = hashlib.sha256(magenta_file.read_bytes()).hexdigest()
    resolved = methods.resolve("magenta", "monet=3,hoitsu=1", None)
    assert resolved.style == "hoitsu=0.250,monet=0.750"
    assert resolved.model_version.startswith(f"arbitrary-{weights_sha[:8]}+art-")
    params = StylizeParams(method="magenta", max_side=64, alpha=0.8)
    rows = run(env, resolved, params, "run-magenta")
    for r in rows:
        assert r["method"] == "magenta" and r["model_sha256"] == weights_sha
        assert r["output_key"].startswith(
            f"stylized/demo/hoitsu-0.250+monet-0.750/{resolved.model_version}/{params.hash[:8]}/"
        )
        out = decode_image(env.store.get_bytes(r["output_key"])).pixels
        assert max(out.shape[-2:]) == 64
    inputs = json.loads(rows[0]["params_json"])["inputs"]
    assert inputs["weights_sha256"] == weights_sha and inputs["alpha"] == 0.8
    assert {a["key"]: (a["weight"], a["sha256"]) for a in inputs["artworks"]} == {
        "artwork/hoitsu/hoitsu.jpg": (0.25, sha256(env.store.get_bytes("artwork/hoitsu/hoitsu.jpg"))),
        "artwork/monet/monet.jpg": (0.75, sha256(env.store.get_bytes("artwork/monet/monet.jpg"))),
    }
    # the recorded vector hash is the blend of the artworks' predicted vectors
    predictor = load_magenta(magenta_file).predictor
    with torch.no_grad():
        vectors = torch.cat(
            [
                style_vector(predictor, to_float(decode_image(env.store.get_bytes(k)).pixels))
                for k in ("artwork/hoitsu/hoitsu.jpg", "artwork/monet/monet.jpg")
            ]
        )
    style = blend_vectors(vectors, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert inputs["style_vector_sha256"] == hashlib.sha256(style.numpy().astype(np.float32).tobytes()).hexdigest()
    assert StylizeParams(method="magenta", alpha=0.8).hash != StylizeParams(method="magenta").hash

    # New artwork bytes: a new model_version label, so new output keys and the catalog is done again.
    art = env.store.get_bytes("artwork/monet/monet.jpg")
    env.store.put("artwork/monet/monet.jpg", encode_image(decode_image(art).pixels.flip(-1), "jpeg", quality=90))
    again = methods.resolve("magenta", "monet=3,hoitsu=1", None)
    assert again.model_version != resolved.model_version
    rows2 = run(env, again, params, "run-magenta-2", n=1)
    assert rows2[0]["output_key"] not in {r["output_key"] for r in rows}


def test_magenta_without_weights_fails_before_any_work(
    pipeline_env: PipelineEnv,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STYLEOPS_MAGENTA_WEIGHTS", str(tmp_path / "nowhere.safetensors"))
    get_settings.cache_clear()
    with pytest.raises(WeightsNotFoundError, match="styleops weights install"):
        methods.resolve("magenta", "monet", None)
    with pytest.raises(InvalidInputError, match="no artwork for style 'ghost'"):
        methods.resolve("magenta", "ghost", None)
    with pytest.raises(InvalidInputError, match="one version"):
        methods.resolve("magenta", "monet", "v0002")
    assert not context.manifest().exists() and not list(pipeline_env.store.list("stylized/"))
    get_settings.cache_clear()


def test_per_style_and_multi_style_from_the_pretrained_start(magenta_env: PipelineEnv, magenta_file: Path) -> None:
    """train-style --init magenta --finetune none registers the prediction (no step run) as a per-style
    version that stylizes exactly as --method magenta does; a multi-style model from the pretrained
    start takes a new style whose old ones stay bit-identical in the pipeline's outputs."""
    env = magenta_env
    weights_sha = hashlib.sha256(magenta_file.read_bytes()).hexdigest()
    tiny = magenta_recipe(steps=2, batch_size=1, image_size=48, style_size=64, log_every=1, finetune="vector")
    with disable_run_logger():
        per = train_per_style_task.fn(
            "monet", "artwork/monet/monet.jpg", CATALOG_PREFIX, replace(tiny, finetune="none").to_dict()
        )
        promote_if_first_task.fn(context.PER_STYLE, "monet", per["version"])
    card = context.registry().card(context.PER_STYLE, "monet", per["version"])
    assert card["architecture"] == "MagentaStyleNet" and card["metrics"]["steps"] == 0
    assert card["init_from"] == f"magenta/arbitrary@{weights_sha[:8]}"
    params = StylizeParams(max_side=64, format="png")
    per_rows = run(env, methods.resolve("per-style", "monet", None), params, "run-per-style")
    zero_rows = run(env, methods.resolve("magenta", "monet", None), replace(params, method="magenta"), "run-zero")
    for a, b in zip(per_rows, zero_rows, strict=True):
        assert a["image_key"] == b["image_key"]
        assert torch.equal(
            decode_image(env.store.get_bytes(a["output_key"])).pixels,
            decode_image(env.store.get_bytes(b["output_key"])).pixels,
        )

    with disable_run_logger():
        first = train_multistyle_task.fn("pre", "artwork/", CATALOG_PREFIX, tiny.to_dict())
        added = add_style_task.fn(
            "pre", "artwork/monet/monet.jpg", CATALOG_PREFIX, tiny.to_dict(), first["version"], "monet2"
        )
    reg = context.registry()
    assert reg.card(context.MULTI_STYLE, "pre", added["version"])["architecture"] == "MagentaStyleNet"
    assert added["styles"] == ["hoitsu", "kandinsky", "monet", "monet2"]
    multi = replace(params, method="multi-style")
    before = run(env, methods.resolve("multi-style", "hoitsu=1,monet=1", first["version"], "pre"), multi, "m1")
    after = run(env, methods.resolve("multi-style", "hoitsu=1,monet=1", added["version"], "pre"), multi, "m2")
    for a, b in zip(before, after, strict=True):
        assert env.store.get_bytes(a["output_key"]) == env.store.get_bytes(b["output_key"])


def test_on_onnxruntime_the_rows_name_the_backend_and_measure_what_torch_measures(
    magenta_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same stylization on torch's kernels and on onnxruntime (the CPU default where it is
    installed): torch's rows stay as they were (no backend in the lineage), onnxruntime's name it,
    and the metrics (measured on the float output, before encoding) agree to 1e-3."""
    resolved = methods.resolve("magenta", "monet", None)
    params = StylizeParams(method="magenta", max_side=96)
    on_torch = run(magenta_env, resolved, params, "run-torch")
    monkeypatch.setenv("STYLEOPS_BACKEND", "onnxruntime")
    get_settings.cache_clear()
    on_ort = run(magenta_env, resolved, replace(params, quality=params.quality - 1), "run-ort")
    assert [json.loads(r["params_json"])["inputs"].get("backend") for r in on_torch] == [None, None]
    assert [json.loads(r["params_json"])["inputs"]["backend"] for r in on_ort] == ["onnxruntime"] * 2
    for a, b in zip(on_torch, on_ort, strict=True):
        assert a["image_key"] == b["image_key"]
        assert b["content_loss"] == pytest.approx(a["content_loss"], rel=1e-3)
        assert b["style_loss"] == pytest.approx(a["style_loss"], rel=1e-3)
