"""The translation families through the store: make pairs and domains from the example photos,
train tiny Pix2Pix and CycleGAN models through their flows, stylize catalog images with them
(deterministic bytes, lineage, one output per direction), and refuse bad data before any work.
Real embedded SeaweedFS, the Prefect test harness, example photos."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from PIL import Image
from prefect.logging import disable_run_logger

from flows.demo import TRANSLATION_MODELS
from flows.train_translation import make_translation_data, train_cyclegan, train_mixgan, train_pix2pix
from infra.registry import ModelNotFoundError
from runs import context, methods
from runs.reports.translation import learned_look
from runs.shard import ShardJob
from runs.spec import RunSpec, StylizeParams
from styleops.data.makers import grayscale, painted
from styleops.errors import InvalidInputError
from styleops.io.images import decode_image, resize_max_side, to_float, to_uint8
from styleops.training.translation import CycleGANConfig, MIXGANConfig, Pix2PixConfig
from tasks.stylize import stylize_shard_task
from tasks.training import import_model_task
from tasks.translation import paired_files
from tests.flows.conftest import (  # noqa: F401
    CATALOG_PREFIX,
    EXAMPLES,
    PipelineEnv,
    pipeline_env,
    prefect_harness,
    vgg_weights_file,
)

pytestmark = pytest.mark.integration

# The families' own loop settings (Adam (0.5, 0.999), no warm-up, direct output), tiny and undecayed.
TRAIN = replace(Pix2PixConfig().train, steps=2, batch_size=2, image_size=32, decay_steps=0, log_every=1)
PIX2PIX = Pix2PixConfig(channels=4, d_channels=4, train=TRAIN)
CYCLEGAN = CycleGANConfig(channels=4, n_residual=1, d_channels=4, pool_size=2, train=TRAIN)
MIXGAN = MIXGANConfig(channels=4, code=2, blocks=1, d_channels=4, train=TRAIN)
SOURCE = "catalog/pairsrc/"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _sources(env: PipelineEnv) -> None:
    """8 photos under SOURCE: the 6 examples and 2 of them mirrored, 96 x 64 px."""
    photos = sorted((EXAMPLES / "catalog").glob("*.jpg"))
    for i in range(8):
        img = Image.open(photos[i % len(photos)]).convert("RGB").resize((96, 64))
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i >= len(photos) else img
        env.store.put(f"{SOURCE}p{i}.png", _png(img))


def _shard(env: PipelineEnv, run_id: str, style: str, params: StylizeParams, version: str | None = None) -> list[dict]:
    items = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)][:2]
    resolved = methods.resolve(params.method, style, version)
    with disable_run_logger():
        counts = stylize_shard_task.fn(
            ShardJob(
                "s0", items, run_id, CATALOG_PREFIX, style, resolved.model_version, params, None, True,
                resolved.source,
            )
        )  # fmt: skip
    assert counts == {"ok": 2, "failed": 0}
    return context.manifest().read(filters=[("run_id", "=", run_id)]).sort_values("image_key").to_dict("records")


def test_pairs_train_pix2pix_and_stylize_deterministically(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    _sources(env)
    made = make_translation_data("gray", SOURCE, "gray", max_side=64, domains=True)
    assert made == {
        "pairs": "pairs/gray/",
        "images": 8,
        "kind": "gray",
        "domain_a": "domains/gray-A/",
        "domain_b": "domains/gray-B/",
    }
    a_keys = [i.key for i in env.store.list("pairs/gray/A/")]
    assert a_keys == [f"pairs/gray/A/p{i}.png" for i in range(8)]
    assert [i.key for i in env.store.list("domains/gray-A/")] == [f"domains/gray-A/p{i}.png" for i in (0, 2, 4, 6)]
    assert [i.key for i in env.store.list("domains/gray-B/")] == [f"domains/gray-B/p{i}.png" for i in (1, 3, 5, 7)]
    b0 = to_float(decode_image(env.store.get_bytes("pairs/gray/B/p0.png")).pixels)
    a0 = to_float(decode_image(env.store.get_bytes("pairs/gray/A/p0.png")).pixels)
    assert (a0 - grayscale(b0)).abs().max() <= 1 / 255 + 1e-6  # A is the B photo's luminance (uint8 rounding)

    trained = train_pix2pix("pairs/gray/", "gray", PIX2PIX.to_dict())
    assert (trained["version"], trained["promoted"], trained["gate"]["passed"]) == ("v0001", True, True)
    card = context.registry().card(context.PIX2PIX, "gray", "v0001")
    assert card["architecture"] == "UNetGenerator" and card["metrics"]["steps"] == 2
    assert Pix2PixConfig.from_dict(card["translation_config"]) == PIX2PIX
    assert card["data"]["pairs"] == "pairs/gray/" and card["data"]["images"] == 8 and len(card["data"]["sha256"]) == 64
    assert len(card["loss_curve"]) == 2 and all("critic" in h for h in card["loss_curve"])

    params = StylizeParams(method="pix2pix", max_side=48, format="png")
    first, again = _shard(env, "run-1", "gray", params), _shard(env, "run-2", "gray", params)
    for row, rerun in zip(first, again, strict=True):
        assert row["method"] == "pix2pix" and row["model_version"] == "v0001"
        assert json.loads(row["params_json"])["inputs"] == {
            "model": "pix2pix/gray/v0001",
            "model_sha256": card["weights_sha256"],
        }
        assert pd.isna(row["style_loss"])  # no artwork, no style metrics
        assert row["output_sha256"] == rerun["output_sha256"]  # eval mode: identical bytes on a rerun
        assert max(row["out_height"], row["out_width"]) == 48

    # a domain with too few images is refused before training, naming it
    with pytest.raises(InvalidInputError, match="domain domains/gray-A/ has 4 images; at least 8 are needed"):
        train_cyclegan("domains/gray-A/", "domains/gray-B/", "small", CYCLEGAN.to_dict())
    assert not context.registry().names(context.CYCLEGAN)


def test_cyclegan_holds_both_directions_and_mixgan_mixes(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    _sources(env)
    make_translation_data("gray", SOURCE, "gray", max_side=64)
    trained = train_cyclegan("pairs/gray/A/", "pairs/gray/B/", "colour", CYCLEGAN.to_dict())
    # two steps from the identity start: the generator still returns its input, and the gate says
    # so: registered for inspection, not promoted
    gate = trained["gate"]
    assert (trained["version"], trained["promoted"], gate["passed"]) == ("v0001", False, False)
    assert gate["reason"].startswith("the generator returns its input") and gate["dependence"] > 0.5
    card = context.registry().card(context.CYCLEGAN, "colour", "v0001")
    assert card["architecture"] == "CycleGenerators" and card["data"]["images"] == [8, 8]

    a_to_b = StylizeParams(method="cyclegan", max_side=48, format="png")
    b_to_a = StylizeParams(method="cyclegan", max_side=48, format="png", direction="BtoA")
    assert a_to_b.to_dict()["direction"] == "AtoB" and a_to_b.hash != b_to_a.hash
    forward = _shard(env, "run-ab", "colour", a_to_b, "v0001")
    backward = _shard(env, "run-ba", "colour", b_to_a, "v0001")
    for f, b in zip(forward, backward, strict=True):
        assert f["output_key"] != b["output_key"] and f["output_sha256"] != b["output_sha256"]
    with pytest.raises(InvalidInputError, match="direction must be one of AtoB, BtoA"):
        RunSpec.create("demo", "colour", method="cyclegan", direction="AB").check()
    with pytest.raises(InvalidInputError, match="no cyclegan model 'nope'; registered: colour"):
        methods.resolve("cyclegan", "nope", None)
    assert "direction" not in StylizeParams(method="pix2pix").to_dict()  # other methods' hashes unchanged

    # MIXGAN: content from the grayscale domain, style from the colour one; its generator starts
    # at the reconstruction, so two steps leave a generator that changes its input (the AE is untrained)
    mixed = train_mixgan("pairs/gray/A/", "pairs/gray/B/", "gray2colour", MIXGAN.to_dict())
    card = context.registry().card(context.MIXGAN, "gray2colour", mixed["version"])
    assert card["architecture"] == "MixGenerator" and MIXGANConfig.from_dict(card["translation_config"]) == MIXGAN
    rows = _shard(env, "run-mix", "gray2colour", StylizeParams(method="mixgan", max_side=48, format="png"), "v0001")
    assert [r["method"] for r in rows] == ["mixgan", "mixgan"]
    assert {json.loads(r["params_json"])["inputs"]["model"] for r in rows} == {"mixgan/gray2colour/v0001"}


def test_bad_pairs_are_refused_before_any_work_and_ab_images_are_split(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    photo = Image.open(sorted((EXAMPLES / "catalog").glob("*.jpg"))[0]).convert("RGB").resize((64, 48))
    for i in range(8):
        env.store.put(f"pairs/bad/A/p{i}.png", _png(photo))
        if i != 3:
            env.store.put(f"pairs/bad/B/p{i}.png", _png(photo))
    env.store.put("pairs/bad/B/q3.png", _png(photo))
    with pytest.raises(InvalidInputError, match=r"mismatched pairs: only in A \['p3.png'\], only in B \['q3.png'\]"):
        train_pix2pix("pairs/bad/", "bad", PIX2PIX.to_dict())
    assert not (env.home / "work" / context.PIX2PIX).exists() and not context.registry().names(context.PIX2PIX)
    with pytest.raises(InvalidInputError, match="no pairs under pairs/none/"):
        train_pix2pix("pairs/none/", "none", PIX2PIX.to_dict())

    side_by_side = Image.new("RGB", (128, 48))
    side_by_side.paste(photo, (0, 0))
    side_by_side.paste(photo.convert("L").convert("RGB"), (64, 0))
    for i in range(8):
        env.store.put(f"pairs/ab/AB/p{i}.png", _png(side_by_side))
    a, b = paired_files("pairs/ab/", 100)
    assert [p.name for p in a] == [p.name for p in b] == [f"p{i}.png" for i in range(8)]
    left = decode_image(a[0].read_bytes()).pixels
    assert torch.equal(left, decode_image(_png(photo)).pixels)


def _import_example(family: str, name: str, file: str) -> None:
    models = EXAMPLES / "models"
    with disable_run_logger():
        import_model_task.fn(family, name, str(models / f"{file}.safetensors"), str(models / f"{file}.card.json"))


def test_painted_pairs_are_the_photo_and_the_per_style_models_painting(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    _sources(env)
    _import_example(context.PER_STYLE, "monet", "monet")
    made = make_translation_data("painted", SOURCE, "monet", style="monet", max_side=64)
    assert made == {"pairs": "pairs/monet/", "images": 8, "kind": "painted"}
    assert [i.key for i in env.store.list("pairs/monet/B/")] == [f"pairs/monet/B/p{i}.png" for i in range(8)]
    reg = context.registry()
    net, _card = context.load_model(reg, context.PER_STYLE, "monet", "v0001")
    for i in (0, 7):
        photo = resize_max_side(to_float(decode_image(env.store.get_bytes(f"{SOURCE}p{i}.png")).pixels), 64)
        a = decode_image(env.store.get_bytes(f"pairs/monet/A/p{i}.png")).pixels
        b = decode_image(env.store.get_bytes(f"pairs/monet/B/p{i}.png")).pixels
        assert torch.equal(a, to_uint8(photo))  # A: the shrunk photo
        assert torch.equal(b, to_uint8(painted(net, photo)))  # B: the per-style model's painting of it
        assert (b.float() - a.float()).abs().mean() > 5  # the painting is not the photo

    # no painter, or one that is not registered: refused before any pair is written
    with pytest.raises(InvalidInputError, match="--kind painted needs --style"):
        make_translation_data("painted", SOURCE, "nostyle", max_side=64)
    with pytest.raises(ModelNotFoundError, match="no per-style model named 'nosuch'"):
        make_translation_data("painted", SOURCE, "nosuch", style="nosuch", max_side=64)
    assert not list(env.store.list("pairs/nostyle/")) and not list(env.store.list("pairs/nosuch/"))


def test_the_demos_pix2pix_section_shows_the_photo_the_look_and_the_model(
    pipeline_env: PipelineEnv,  # noqa: F811
    tmp_path,  # noqa: ANN001
) -> None:
    """The demo's shipped Pix2Pix model imports and runs through the pipeline; its section shows,
    per translated photo, the photo, the look (here the per-style example) and the model's output."""
    env = pipeline_env
    pix2pix = {name: file for file, (family, name) in TRANSLATION_MODELS.items() if family == context.PIX2PIX}
    assert len(pix2pix) == 1
    ((name, file),) = pix2pix.items()
    _import_example(context.PIX2PIX, name, file)
    _import_example(context.PER_STYLE, "monet", "monet")
    rows = _shard(env, "run-p2p", name, StylizeParams(method="pix2pix", max_side=64, format="png"))
    _shard(env, "run-look", "monet", StylizeParams(method="per-style", max_side=64, format="png"))
    for row in rows:  # the generator changes the photo
        photo = resize_max_side(to_float(decode_image(env.store.get_bytes(row["image_key"])).pixels), 64)
        out = to_float(decode_image(env.store.get_bytes(row["output_key"])).pixels)
        assert out.shape == photo.shape and (out - photo).abs().mean() > 0.02

    page = learned_look(tmp_path, "demo", "monet", [name, "nosuch"], cell=80)
    assert page.count("<tr>") == 2  # the two translated photos, not the other four
    for label in ("photo", "target: monet", f"pix2pix: {name}"):
        assert page.count(f"<div>{label}</div>") == 2, label
    assert "nosuch" not in page  # a model with no outputs gets no column
    sheet = decode_image((tmp_path / "translation.png").read_bytes()).pixels
    assert sheet.shape == (3, 4 + 2 * 84, 4 + 3 * 84)  # 2 photos x (photo, look, Pix2Pix)
    assert learned_look(tmp_path / "one", "demo", "monet", [name], cell=80, limit=1).count("<tr>") == 1
    assert learned_look(tmp_path / "none", "demo", "monet", ["nosuch"]) == "<p>no translated images</p>"
    assert not (tmp_path / "none").exists()
