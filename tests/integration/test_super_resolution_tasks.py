"""Super-resolution through the tasks, without a Prefect server: train a tiny x2 network and register
it in the `super-resolution` family, upscale a catalog shard with it (`--method upscale`), and chain
it after a per-style model (`--upscale`): one output per image, both models in its lineage. Real
embedded SeaweedFS, example photos, the shipped Monet model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from prefect.logging import disable_run_logger

from runs import context, methods
from runs.methods.upscale import upscaler_ref
from runs.reports.super_resolution import comparison, make_low_resolution
from runs.shard import ShardJob
from runs.spec import RunSpec, StylizeParams
from styleops.errors import InvalidInputError
from styleops.inference.engine import shrunk_size
from styleops.io.images import decode_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors
from styleops.models.super_resolution import upscale
from styleops.training.engine import TrainConfig
from styleops.training.super_resolution import SRConfig
from tasks.stylize import stylize_shard_task
from tasks.training import import_model_task, promote_if_first_task, train_super_resolution_task
from tests.flows.conftest import CATALOG_PREFIX, EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401

pytestmark = pytest.mark.integration

TINY = SRConfig(
    scale=2,
    channels=8,
    blocks=1,
    train=TrainConfig(steps=3, batch_size=2, image_size=32, lr=1e-2, warmup_steps=0, log_every=1),
)


def _shard(env: PipelineEnv, run_id: str, style: str, version: str, params: StylizeParams, n: int = 2) -> list[dict]:
    items = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)][:n]
    resolved = methods.resolve(params.method, style, version)
    with disable_run_logger():
        counts = stylize_shard_task.fn(
            ShardJob("s0", items, run_id, CATALOG_PREFIX, style, version, params, None, True, resolved.source)
        )
    assert counts == {"ok": n, "failed": 0}
    return context.manifest().read(filters=[("run_id", "=", run_id)]).sort_values("image_key").to_dict("records")


def _pixels(env: PipelineEnv, key: str) -> torch.Tensor:
    return decode_image(env.store.get_bytes(key)).pixels


def test_a_trained_upscaler_is_registered_then_upscales_alone_and_after_a_style(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    with disable_run_logger():
        trained = train_super_resolution_task.fn("x2", CATALOG_PREFIX, TINY.to_dict())
        assert promote_if_first_task.fn(context.SUPER_RESOLUTION, "x2", trained["version"])
        models = EXAMPLES / "models"
        import_model_task.fn(
            context.PER_STYLE, "monet", str(models / "monet.safetensors"), str(models / "monet.card.json")
        )
    reg = context.registry()
    card = reg.card(context.SUPER_RESOLUTION, "x2", "v0001")
    assert (card["architecture"], card["scale"], card["sr_loss"], card["metrics"]["steps"]) == (
        "SuperResolutionNet",
        2,
        "pixel",
        3,
    )
    assert SRConfig.from_dict(card["sr_config"]) == TINY
    sr = from_safetensors(reg.weights_bytes(context.SUPER_RESOLUTION, "x2", "v0001"))

    # --upscale's forms, all pinned to the same version; an unknown name lists what there is
    ref = "super-resolution/x2/v0001"
    assert upscaler_ref("2") == upscaler_ref("x2") == upscaler_ref("x2@v0001") == upscaler_ref(ref) == ref
    with pytest.raises(InvalidInputError, match="no super-resolution model 'x8' for --upscale 8; registered: x2$"):
        upscaler_ref("8")
    with pytest.raises(InvalidInputError, match="no super-resolution model 'x3' for --method upscale --style x3"):
        methods.resolve("upscale", "x3", None)
    # a model named for another scale than it was trained for is refused by that scale
    blob = reg.weights_bytes(context.SUPER_RESOLUTION, "x2", "v0001")
    reg.register(context.SUPER_RESOLUTION, "x4", blob, card)
    reg.promote(context.SUPER_RESOLUTION, "x4", "v0001", reason="misnamed on purpose")
    with pytest.raises(InvalidInputError, match="^super-resolution/x4 v0001 upscales x2, not x4$"):
        upscaler_ref("4")

    # upscale alone: twice the (max_side-shrunk) input, exactly the network's output, no style metrics
    alone = StylizeParams(method="upscale", max_side=40, format="png")
    rows = _shard(env, "run-up", "x2", "v0001", alone)
    for row in rows:
        photo = _pixels(env, row["image_key"])
        h, w = shrunk_size(*photo.shape[-2:], 40)
        assert (row["out_height"], row["out_width"]) == (2 * h, 2 * w)
        assert row["method"] == "upscale" and row["style"] == "x2" and row["model_version"] == "v0001"
        assert pd.isna(row["content_loss"]) and pd.isna(row["style_loss"])
        expected = to_uint8(upscale(sr, resize_max_side(to_float(photo), 40)))
        assert torch.equal(_pixels(env, row["output_key"]), expected)

    # after the per-style model: one output per image, 2x the stylized size, both models' lineage
    plain = StylizeParams(method="per-style", max_side=32, format="png")
    chained = StylizeParams(method="per-style", max_side=32, format="png", upscale=ref)
    assert plain.hash != chained.hash
    styled = {r["image_key"]: r for r in _shard(env, "run-plain", "monet", "v0001", plain)}
    for row in _shard(env, "run-chained", "monet", "v0001", chained):
        before = styled[row["image_key"]]
        assert (row["out_height"], row["out_width"]) == (2 * before["out_height"], 2 * before["out_width"])
        assert row["output_key"] != before["output_key"]
        inputs = json.loads(row["params_json"])["inputs"]
        assert inputs == {
            "model": "per-style/monet/v0001",
            "model_sha256": row["model_sha256"],
            "upscale": {"model": ref, "model_sha256": card["weights_sha256"]},
        }
        # the style losses are measured (on the output shrunk back to the input's size)
        assert row["content_loss"] > 0 and row["style_loss"] > 0
        # the upscaled output is the network applied to the stylized output (whole image, not tiled)
        expected = to_uint8(upscale(sr, to_float(_pixels(env, before["output_key"]))))
        assert (_pixels(env, row["output_key"]).int() - expected.int()).abs().max() <= 1


def test_upscale_settings_are_refused_before_any_work() -> None:
    with pytest.raises(InvalidInputError, match="--method upscale runs it alone"):
        RunSpec.create("demo", "x4", method="upscale", upscale=4).check()
    spec = RunSpec.create("demo", "monet", upscale=4).check()
    assert spec.params.upscale == "4" and spec.params.to_dict()["upscale"] == "4"
    assert "upscale" not in RunSpec.create("demo", "monet").params.to_dict()  # existing hashes unchanged
    assert spec.with_upscaler("super-resolution/x4/v0002").params.upscale == "super-resolution/x4/v0002"


def test_the_side_by_side_report_compares_bicubic_the_model_and_the_original(
    pipeline_env: PipelineEnv, tmp_path
) -> None:  # noqa: F811, ANN001
    env = pipeline_env
    with disable_run_logger():
        trained = train_super_resolution_task.fn("x2", CATALOG_PREFIX, TINY.to_dict())
        promote_if_first_task.fn(context.SUPER_RESOLUTION, "x2", trained["version"])
    keys = make_low_resolution("demo", "demo-small", 2, limit=2)
    assert keys == [
        k.replace("catalog/demo/", "catalog/demo-small/").replace(".jpg", ".png") for k in env.catalog_keys[:2]
    ]
    for small, key in zip(keys, env.catalog_keys, strict=False):
        h, w = _pixels(env, key).shape[-2:]
        assert _pixels(env, small).shape == (3, h // 2, w // 2)
    items = [(i.key, i.etag, i.size) for i in env.store.list("catalog/demo-small/")]
    resolved = methods.resolve("upscale", "x2", None)
    params = StylizeParams(method="upscale", format="png")
    with disable_run_logger():
        stylize_shard_task.fn(
            ShardJob("s0", items, "r", "catalog/demo-small/", "x2", "v0001", params, None, False, resolved.source)
        )
    page = comparison(tmp_path, "demo", "demo-small", ["x2", "x8"], 2, crop=40, cell=80)
    assert page.count("<tr>") == 2 and page.count("<div>bicubic: ") == 2 and page.count("<div>x2: ") == 2
    assert "<div>x8: " not in page  # a model with no outputs gets no column
    sheet = decode_image((tmp_path / "super_resolution.png").read_bytes()).pixels
    assert sheet.shape == (3, 4 + 2 * 84, 4 + 3 * 84)  # 2 photos x (bicubic, x2, original)


def test_the_card_names_the_code_the_training_started_with(
    pipeline_env: PipelineEnv,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code edited (or committed) while a model trains must not be what its card says trained it."""
    import tasks.training as training
    from tasks import common

    trained = {"done": False}
    real = training.train_super_resolution

    def train_then_change_the_code(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real(*args, **kwargs)
        trained["done"] = True
        return result

    monkeypatch.setattr(training, "train_super_resolution", train_then_change_the_code)
    # tasks.common.Started (moved from tasks.training) records the code version when training starts
    monkeypatch.setattr(common, "code_version", lambda: "0.1.0+gafter" if trained["done"] else "0.1.0+gbefore")
    with disable_run_logger():
        version = train_super_resolution_task.fn("x2", CATALOG_PREFIX, TINY.to_dict())["version"]
    assert trained["done"]
    assert context.registry().card(context.SUPER_RESOLUTION, "x2", version)["code_version"] == "0.1.0+gbefore"
