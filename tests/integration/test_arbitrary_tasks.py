"""Arbitrary-style methods through the tasks, without a Prefect server: train the AdaIN decoder and
the swap inverse network (tiny), build a patch bank, resolve, stylize shards with swap, AdaIN
(blend, alpha) and Gatys, colour preservation; bad input fails before any work. Real embedded
SeaweedFS, example photos and artworks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from runs import context, methods
from runs.methods.base import Resolved
from runs.shard import ShardJob
from runs.spec import StylizeParams
from styleops.errors import ImageError, InvalidInputError
from styleops.io.images import decode_image, encode_image
from styleops.training.decoders import adain_config, inverse_config
from tasks.banks import build_patch_bank_task
from tasks.stylize import stylize_shard_task
from tasks.training import promote_if_first_task, train_decoder_task
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.integration.test_tasks import sha256

pytestmark = pytest.mark.integration

TINY = {"steps": 2, "batch_size": 1, "image_size": 32, "log_every": 1}


def shard(env: PipelineEnv, n: int) -> list[tuple[str, str, int]]:
    return [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)][:n]


def run(env: PipelineEnv, resolved: Resolved, params: StylizeParams, run_id: str, n: int = 2) -> list[dict]:
    with disable_run_logger():
        counts = stylize_shard_task.fn(
            ShardJob(
                "s0",
                shard(env, n),
                run_id,
                CATALOG_PREFIX,
                resolved.style,
                resolved.model_version,
                params,
                None,
                True,
                resolved.source,
            )
        )
    assert counts == {"ok": n, "failed": 0}
    rows = context.manifest().read(filters=[("run_id", "=", run_id)]).sort_values("image_key")
    return rows.to_dict("records")


def test_swap_bank_and_inverse_network_end_to_end(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    with disable_run_logger():
        inv = train_decoder_task.fn("inverse", "default", "artwork/", CATALOG_PREFIX, inverse_config(**TINY).to_dict())
        assert promote_if_first_task.fn("inverse", "default", inv["version"])
        bank = build_patch_bank_task.fn("monet", ["artwork/monet/monet.jpg"])
    card = context.registry().card("inverse", "default", "v0001")
    assert (
        card["architecture"] == "VGGDecoder"
        and card["layer"] == "relu3_1"
        and card["model_config"] == {"from_layer": "relu3_1", "arch": "vgg16"}
    )

    resolved = methods.resolve("swap", "monet", None)
    assert (resolved.style, resolved.model_version) == ("monet", f"default/v0001+bank-{bank['version']}")
    params = StylizeParams(method="swap", max_side=48, color="luminance")
    rows = run(env, resolved, params, "run-swap")
    bank_sha = context.store().head(f"banks/monet/{bank['version']}/weights.safetensors")
    for r in rows:
        assert r["method"] == "swap" and r["model_sha256"] == card["weights_sha256"]
        assert r["output_key"].startswith(
            f"stylized/demo/monet/default/v0001+bank-{bank['version']}/{params.hash[:8]}/"
        )
        lineage = json.loads(r["params_json"])
        assert lineage["color"] == "luminance" and lineage["method"] == "swap"
        assert (
            lineage["inputs"]["bank"]["version"] == bank["version"]
            and lineage["inputs"]["bank"]["patches"] == bank["patches"]
        )
        assert lineage["inputs"]["bank"]["sha256"] == sha256(
            env.store.get_bytes(f"banks/monet/{bank['version']}/weights.safetensors")
        )
        out = decode_image(env.store.get_bytes(r["output_key"])).pixels
        assert (out.shape[-1], out.shape[-2]) == (r["out_width"], r["out_height"]) and max(out.shape[-2:]) == 48
    assert bank_sha is not None


def test_adain_blend_alpha_and_lineage(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    with disable_run_logger():
        dec = train_decoder_task.fn("adain", "default", "artwork/", CATALOG_PREFIX, adain_config(**TINY).to_dict())
        promote_if_first_task.fn("adain", "default", dec["version"])
    resolved = methods.resolve("adain", "monet=3,hoitsu=1", None)
    assert resolved.style == "hoitsu=0.250,monet=0.750"
    assert (
        resolved.model_version.startswith("default/v0001+art-")
        and len(resolved.model_version) == len("default/v0001+art-") + 8
    )
    rows = run(env, resolved, StylizeParams(method="adain", max_side=40, alpha=0.5), "run-adain")
    inputs = json.loads(rows[0]["params_json"])["inputs"]
    assert inputs["alpha"] == 0.5
    assert {a["key"]: a["weight"] for a in inputs["artworks"]} == {
        "artwork/hoitsu/hoitsu.jpg": 0.25,
        "artwork/monet/monet.jpg": 0.75,
    }
    assert {a["key"]: a["sha256"] for a in inputs["artworks"]} == {
        k: sha256(env.store.get_bytes(k)) for k in ("artwork/hoitsu/hoitsu.jpg", "artwork/monet/monet.jpg")
    }
    assert StylizeParams(method="adain", alpha=0.5).hash != StylizeParams(method="adain", alpha=1.0).hash

    # New artwork bytes for a style: a new model_version label, so the catalog is done again.
    art = env.store.get_bytes("artwork/monet/monet.jpg")
    env.store.put("artwork/monet/monet.jpg", encode_image(decode_image(art).pixels.flip(-1), "jpeg", quality=90))
    assert methods.resolve("adain", "monet=3,hoitsu=1", None).model_version != resolved.model_version


def test_gatys_shard_records_its_settings(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    resolved = methods.resolve("gatys", "monet", None)
    assert resolved.model_version.startswith("gatys+art-")
    params = StylizeParams(method="gatys", max_side=32, iterations=2, optimizer="adam", color="histogram")
    (row,) = run(env, resolved, params, "run-gatys", n=1)
    assert pd.isna(row["model_sha256"]) and row["style"] == "monet"  # no model: nothing trained
    lineage = json.loads(row["params_json"])
    assert lineage["iterations"] == 2 and lineage["optimizer"] == "adam" and lineage["color"] == "histogram"
    assert lineage["inputs"]["artwork"] == {
        "key": "artwork/monet/monet.jpg",
        "sha256": sha256(env.store.get_bytes("artwork/monet/monet.jpg")),
    }


def test_bad_styles_and_artworks_fail_before_any_work(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    env.store.put(
        "artwork/tiny/tiny.png",
        encode_image(decode_image(env.store.get_bytes("artwork/monet/monet.jpg")).pixels[:, :16, :16], "png"),
    )
    env.store.put("artwork/broken/broken.jpg", b"not an image at all" * 20)
    refused: list[tuple[str, str, type[Exception], str | None]] = [
        ("swap", "nosuch", InvalidInputError, "no patch bank for style .nosuch.: upload"),
        ("gatys", "monet=0.5,hoitsu=0.5", InvalidInputError, "not a blend"),
        ("adain", "monet=-1,hoitsu=2", ValueError, "weight >= 0"),
        ("adain", "monet=0,hoitsu=0", ValueError, "no positive weight"),
        ("adain", "ghost", InvalidInputError, "no artwork for style 'ghost'"),
        ("gatys", "tiny", InvalidInputError, "artwork/tiny/tiny.png is 16x16 px: too small"),
        ("adain", "broken", ImageError, None),
        ("cartoon", "monet", InvalidInputError, "method must be one of"),
    ]
    for method, style, error, match in refused:
        with pytest.raises(error, match=match):
            methods.resolve(method, style, None)
    assert not context.manifest().exists() and not list(env.store.list("stylized/"))
