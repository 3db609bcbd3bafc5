"""Task logic without a Prefect server: `task.fn(...)` on the real embedded SeaweedFS over HTTP,
real example photos and artworks, tiny models (a few seconds per test)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from runs import context
from runs.keys import catalog_prefix, output_key
from runs.shard import ShardJob
from runs.spec import StylizeParams
from styleops.evaluation.metrics import in_sample
from styleops.io.images import decode_image, encode_image
from styleops.io.serialize import from_safetensors
from styleops.training.engine import TrainConfig
from tasks.storage import upload_directory_task
from tasks.stylize import plan_catalog_task, stylize_shard_task
from tasks.training import promote_if_first_task, train_per_style_task
from tests.flows.conftest import CATALOG, CATALOG_PREFIX, EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.training_configs import SHALLOW_STYLE

pytestmark = pytest.mark.integration

STYLE = "monet"
ARTWORK = "artwork/monet/monet.jpg"
MAX_SIDE = 64
BROKEN = CATALOG_PREFIX + "broken.jpg"
EMPTY = CATALOG_PREFIX + "empty.png"
TINY = TrainConfig(
    steps=2, batch_size=1, image_size=32, style_size=64, channels=4, n_residual=1, log_every=1, loss=SHALLOW_STYLE
).to_dict()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train(style: str = STYLE, artwork: str = ARTWORK, config: dict[str, Any] = TINY) -> dict[str, Any]:
    with disable_run_logger():
        return train_per_style_task.fn(style, artwork, CATALOG_PREFIX, config)


def add_bad_images(env: PipelineEnv) -> None:
    env.store.put(BROKEN, b"this is not a JPEG at all\n" * 10)
    env.store.put(EMPTY, b"")


def items(env: PipelineEnv, keys: list[str] | None = None) -> list[tuple[str, str, int]]:
    """(key, etag, size) as the planner makes them."""
    listed = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)]
    return [it for it in listed if keys is None or it[0] in keys]


def run_shard(
    env: PipelineEnv,
    run_id: str,
    shard: list[tuple[str, str, int]],
    *,
    metrics: bool = True,
    metrics_sample: float = 1.0,
    params: StylizeParams | None = None,
) -> dict[str, int]:
    params = params or StylizeParams(max_side=MAX_SIDE)
    job = ShardJob(
        f"{run_id}-s0000", shard, run_id, CATALOG, STYLE, "v0001", params, batch_size=4, metrics=metrics,
        metrics_sample=metrics_sample,
    )  # fmt: skip
    with disable_run_logger():
        return stylize_shard_task.fn(job)


def run_rows(run_id: str) -> pd.DataFrame:
    return context.manifest().read(filters=[("run_id", "=", run_id)]).sort_values("image_key").reset_index(drop=True)


@pytest.fixture
def stylized(pipeline_env: PipelineEnv) -> PipelineEnv:
    """A trained and promoted monet v0001, two bad images in the catalog, and run "r1": one shard
    over all eight catalog images (max_side 64, metrics on)."""
    assert train()["version"] == "v0001"
    add_bad_images(pipeline_env)
    assert run_shard(pipeline_env, "r1", items(pipeline_env)) == {"ok": 6, "failed": 2}
    return pipeline_env


# ---- 1. training and first promotion ---------------------------------------------------------
def test_train_registers_a_version_with_its_card_then_promotes_only_the_first(pipeline_env: PipelineEnv) -> None:
    trained = train()
    assert (trained["family"], trained["name"], trained["version"]) == ("per-style", STYLE, "v0001")

    reg = context.registry()
    card = reg.card("per-style", STYLE, "v0001")
    art_bytes = (EXAMPLES / "artwork" / "monet" / "monet.jpg").read_bytes()
    assert card["artwork_key"] == ARTWORK
    assert card["artwork_sha256"] == sha256(art_bytes)
    assert card["train_config"] == TINY
    assert card["metrics"]["steps"] == TINY["steps"] == trained["metrics"]["steps"]
    assert len(card["loss_curve"]) == TINY["steps"] // TINY["log_every"] == 2
    assert [h["step"] for h in card["loss_curve"]] == [1, 2]
    assert all(math.isfinite(h["total"]) for h in card["loss_curve"])
    assert card["content_images"] == 6 and card["content_prefix"] == CATALOG_PREFIX
    assert card["weights_sha256"] == trained["sha256"]

    blob = reg.weights_bytes("per-style", STYLE, "v0001")
    assert sha256(blob) == card["weights_sha256"]
    model = from_safetensors(blob)
    assert (model.channels, model.n_residual) == (TINY["channels"], TINY["n_residual"])
    assert card["model_config"] == model.config()

    assert reg.production("per-style", STYLE) is None
    with disable_run_logger():
        assert promote_if_first_task.fn("per-style", STYLE, "v0001") is True
    assert reg.production("per-style", STYLE) == "v0001"

    assert train()["version"] == "v0002"
    with disable_run_logger():
        assert promote_if_first_task.fn("per-style", STYLE, "v0002") is False
    assert reg.production("per-style", STYLE) == "v0001"
    assert [v.version for v in reg.versions("per-style", STYLE)] == ["v0001", "v0002"]


# ---- 2. keys -------------------------------------------------------------------------------
def test_output_key_and_catalog_prefix() -> None:
    jpeg, png = StylizeParams(format="jpeg"), StylizeParams(format="png", max_side=512)
    assert jpeg.hash != png.hash
    assert (
        output_key("catalog/demo/a/b.png", "demo", "monet", "v0001", jpeg)
        == f"stylized/demo/monet/v0001/{jpeg.hash[:8]}/a/b.png.jpg"
    )
    assert (
        output_key("catalog/demo/a/b.jpg", "demo", "monet", "v0001", jpeg)
        == f"stylized/demo/monet/v0001/{jpeg.hash[:8]}/a/b.jpg"
    )
    assert (
        output_key("catalog/demo/x.jpeg", "catalog/demo/", "monet", "v0003", png)
        == f"stylized/demo/monet/v0003/{png.hash[:8]}/x.jpeg.png"
    )
    webp = StylizeParams(format="webp")
    assert (
        output_key("catalog/shop/deep/er/p.JPG", "shop", "hoitsu", "v0012", webp)
        == f"stylized/shop/hoitsu/v0012/{webp.hash[:8]}/deep/er/p.JPG.webp"
    )

    for spelling in ("demo", "catalog/demo", "catalog/demo/", "/demo/"):
        assert catalog_prefix(spelling) == "catalog/demo/"
    for bad in (
        "",
        "/",
        "catalog/",
        "catalog",
        "/catalog/",
        "a/b",
        "catalog/a/b",
        "..",
        "catalog/..",
        ".",
        "a\\b",
        "de\nmo",
    ):
        with pytest.raises(ValueError):
            catalog_prefix(bad)
    with pytest.raises(ValueError):
        output_key("catalog/demo/a.jpg", "de/mo", "monet", "v0001", jpeg)


# ---- 3. a shard: good and bad images -------------------------------------------------------
def test_stylize_shard_records_every_image(stylized: PipelineEnv) -> None:
    env = stylized
    card = context.registry().card("per-style", STYLE, "v0001")
    params = StylizeParams(max_side=MAX_SIDE)
    rows = run_rows("r1")
    assert len(rows) == 8
    assert sorted(rows.image_key) == sorted([*env.catalog_keys, BROKEN, EMPTY])
    assert rows.status.value_counts().to_dict() == {"ok": 6, "failed": 2}
    assert (
        set(rows["shard_id"]) == {"r1-s0000"}
        and set(rows["style"]) == {STYLE}
        and set(rows["model_version"]) == {"v0001"}
    )
    assert set(rows.catalog) == {CATALOG_PREFIX} and set(rows.params_hash) == {params.hash}
    assert set(rows.model_sha256) == {card["weights_sha256"]}
    listed = {i.key: i for i in env.store.list(CATALOG_PREFIX)}

    failed = rows[rows.status == "failed"]
    assert sorted(failed.image_key) == sorted([BROKEN, EMPTY])
    assert set(failed.error_class) == {"decode_error"}
    assert all(isinstance(e, str) and e for e in failed.error)
    assert failed.output_key.isna().all()

    ok = rows[rows.status == "ok"]
    assert sorted(ok.image_key) == env.catalog_keys
    for r in ok.itertuples():
        assert r.output_key == output_key(r.image_key, CATALOG, STYLE, "v0001", params)
        assert r.input_etag == listed[r.image_key].etag and r.bytes_in == listed[r.image_key].size
        assert r.input_sha256 == sha256((EXAMPLES / "catalog" / r.image_key.rsplit("/", 1)[1]).read_bytes())
        assert (r.width, r.height) == (500, 500)
        stored = env.store.get(r.output_key).data
        assert r.output_sha256 == sha256(stored) and r.bytes_out == len(stored)
        out = decode_image(stored).pixels
        assert (r.out_width, r.out_height) == (out.shape[-1], out.shape[-2])
        assert max(r.out_width, r.out_height) <= MAX_SIDE and (r.out_width, r.out_height) == (64, 64)
        assert isinstance(r.content_loss, float) and math.isfinite(r.content_loss) and r.content_loss >= 0
        assert isinstance(r.style_loss, float) and math.isfinite(r.style_loss) and r.style_loss > 0
        assert pd.isna(r.error_class) and pd.isna(r.error)
    assert len({r.output_sha256 for r in ok.itertuples()}) == 6  # six different photos, six outputs


def test_sampled_metrics_measure_the_images_their_keys_pick_and_say_so(stylized: PipelineEnv) -> None:
    """--metrics-sample 0.5: the images `in_sample` picks have the same losses as in the full run
    r1, the others none; every row's lineage records the share; outputs are the same bytes (r1's
    objects, found identical by the conditional put)."""
    env = stylized
    ok = items(env, env.catalog_keys)
    picked = {k for k, _, _ in ok if in_sample(k, 0.5)}
    assert 0 < len(picked) < len(ok)  # both kinds among the six photos, or the test shows nothing
    assert run_shard(env, "r2", ok, metrics_sample=0.5) == {"ok": 6, "failed": 0}
    full, sampled = run_rows("r1").set_index("image_key"), run_rows("r2").set_index("image_key")
    for key, row in sampled.iterrows():
        assert row.output_sha256 == full.loc[key, "output_sha256"]
        assert json.loads(row.params_json)["inputs"]["metrics_sample"] == 0.5
        if key in picked:
            assert (row.content_loss, row.style_loss) == (full.loc[key, "content_loss"], full.loc[key, "style_loss"])
        else:
            assert pd.isna(row.content_loss) and pd.isna(row.style_loss)
    assert "metrics_sample" not in json.loads(full.iloc[0].params_json)["inputs"]


# ---- 4. planning against the manifest ------------------------------------------------------
def test_plan_skips_done_and_known_bad_and_replans_changed_inputs(stylized: PipelineEnv) -> None:
    env = stylized
    p = StylizeParams(max_side=MAX_SIDE)
    with disable_run_logger():

        def plan(**kw: Any) -> dict[str, Any]:
            return plan_catalog_task.fn(CATALOG, STYLE, "v0001", kw.pop("params_hash", p.hash), 4, **kw)

        first = plan()
        assert (first["total"], first["done"], first["known_bad"], first["todo"], first["ignored"]) == (8, 6, 2, 0, 0)
        assert first["shards"] == []

        retry = plan(retry_failed=True)
        assert (retry["done"], retry["known_bad"], retry["todo"]) == (6, 0, 2)
        assert [[k for k, _, _ in s] for s in retry["shards"]] == [sorted([BROKEN, EMPTY])]

        other_params = plan(params_hash=StylizeParams(max_side=128).hash)  # different params: all to do
        assert (other_params["done"], other_params["known_bad"], other_params["todo"]) == (0, 0, 8)
        assert [len(s) for s in other_params["shards"]] == [4, 4]

        changed = env.catalog_keys[1]
        env.store.put(
            changed, encode_image(decode_image(env.store.get_bytes(env.catalog_keys[0])).pixels.flip(-1), "jpeg")
        )
        env.store.put(CATALOG_PREFIX + "notes.txt", b"not an image")
        new_etag = env.store.head(changed).etag
        after = plan()
        assert (after["total"], after["done"], after["known_bad"], after["todo"], after["ignored"]) == (8, 5, 2, 1, 1)
        assert after["shards"] == [[(changed, new_etag, env.store.head(changed).size)]]
        assert all(CATALOG_PREFIX + "notes.txt" not in [k for k, _, _ in s] for s in after["shards"])

    # stylizing the changed image replaces its own stale output (same key), then all is done again
    old_output = run_rows("r1").set_index("image_key").loc[changed]
    assert run_shard(env, "r2", after["shards"][0], metrics=False) == {"ok": 1, "failed": 0}
    new_output = run_rows("r2").set_index("image_key").loc[changed]
    assert new_output.output_key == old_output.output_key and new_output.input_etag == new_etag
    assert new_output.output_sha256 != old_output.output_sha256
    assert new_output.output_sha256 == sha256(env.store.get_bytes(new_output.output_key))
    with disable_run_logger():
        again = plan()
    assert (again["done"], again["known_bad"], again["todo"], again["shards"]) == (6, 2, 0, [])


# ---- 5. outputs are never overwritten ------------------------------------------------------
def test_existing_outputs_are_never_overwritten(stylized: PipelineEnv) -> None:
    env = stylized
    first = run_rows("r1").set_index("image_key")
    clash, same = env.catalog_keys[0], env.catalog_keys[1]
    clash_out = first.loc[clash, "output_key"]
    squatter = b"someone else's bytes"
    env.store.delete(clash_out)
    env.store.put(clash_out, squatter)
    # an object that looks like the pipeline's output, but of another source image: not ours either
    other = env.catalog_keys[2]
    other_out = first.loc[other, "output_key"]
    env.store.delete(other_out)
    env.store.put(other_out, squatter, metadata={"source-key": clash, "source-sha256": "0" * 64})

    assert run_shard(env, "r2", items(env, [clash, same, other]), metrics=False) == {"ok": 1, "failed": 2}
    rows = run_rows("r2").set_index("image_key")
    for key, out in ((clash, clash_out), (other, other_out)):
        assert rows.loc[key, "status"] == "failed"
        assert rows.loc[key, "error_class"] == "output_conflict"
        assert out in rows.loc[key, "error"]
        assert sha256(env.store.get_bytes(out)) == sha256(squatter)  # not overwritten
    # identical bytes already there: accepted as ok, same object
    assert rows.loc[same, "status"] == "ok" and pd.isna(rows.loc[same, "error_class"])
    assert (
        rows.loc[same, "output_sha256"]
        == first.loc[same, "output_sha256"]
        == sha256(env.store.get_bytes(rows.loc[same, "output_key"]))
    )
    assert rows.loc[same, "bytes_out"] == first.loc[same, "bytes_out"]


# ---- 6. uploads ----------------------------------------------------------------------------
def test_upload_directory_uploads_then_skips_same_size_files(pipeline_env: PipelineEnv, tmp_path: Path) -> None:
    env = pipeline_env
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01\x02")
    with disable_run_logger():
        keys = upload_directory_task.fn(str(src), "catalog/up/")
        assert keys == ["catalog/up/a.txt", "catalog/up/sub/b.bin"]
        assert (
            env.store.get_bytes("catalog/up/a.txt") == b"alpha"
            and env.store.get_bytes("catalog/up/sub/b.bin") == b"\x00\x01\x02"
        )
        etags = {k: env.store.head(k).etag for k in keys}

        (src / "sub" / "b.bin").write_bytes(b"\x00\x01\x02\x03")  # new size: uploaded
        (src / "c.txt").write_bytes(b"new")
        again = upload_directory_task.fn(str(src), "catalog/up/")
    assert again == ["catalog/up/a.txt", "catalog/up/c.txt", "catalog/up/sub/b.bin"]
    assert env.store.head("catalog/up/a.txt").etag == etags["catalog/up/a.txt"]
    assert env.store.get_bytes("catalog/up/a.txt") == b"alpha"
    assert env.store.head("catalog/up/sub/b.bin").etag != etags["catalog/up/sub/b.bin"]
    assert env.store.get_bytes("catalog/up/sub/b.bin") == b"\x00\x01\x02\x03"
    assert env.store.get_bytes("catalog/up/c.txt") == b"new"

    with pytest.raises(FileNotFoundError):
        upload_directory_task.fn(str(tmp_path / "missing"), "catalog/up/")
