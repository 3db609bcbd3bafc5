"""Multi-style tasks without a Prefect server: train over artwork/, add a style, stylize with a
style and with a blend, against the real embedded SeaweedFS and the example images."""

from __future__ import annotations

import pytest
import torch
from prefect.logging import disable_run_logger

from runs import context
from runs.methods.base import blend_label, parse_blend
from runs.shard import ShardJob
from runs.spec import StylizeParams
from styleops.io.serialize import from_safetensors
from styleops.models.multistyle import MultiStyleTransformerNet
from tasks.stylize import stylize_shard_task
from tasks.training import add_style_task, train_multistyle_task
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.integration.test_tasks import TINY, sha256

pytestmark = pytest.mark.integration


def test_train_add_and_stylize_with_a_blend(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    art = env.store.get_bytes("artwork/monet/monet.jpg")
    env.store.put("new-art/extra/extra.jpg", art[::-1][::-1])  # same bytes, another place
    with disable_run_logger():
        first = train_multistyle_task.fn("collection", "artwork/", CATALOG_PREFIX, TINY)
        reg = context.registry()
        card = reg.card(context.MULTI_STYLE, "collection", first["version"])
        assert [s["name"] for s in card["styles"]] == ["hoitsu", "kandinsky", "monet"]
        assert card["styles"][2]["artwork_sha256"] == sha256(art)
        assert card["model_config"]["n_styles"] == 3
        with pytest.raises(ValueError, match="already has a style named 'monet'"):
            add_style_task.fn("collection", "artwork/monet/monet.jpg", CATALOG_PREFIX, TINY, first["version"])
        added = add_style_task.fn(
            "collection", "new-art/extra/extra.jpg", CATALOG_PREFIX, TINY, first["version"], "extra"
        )
    assert added["version"] == "v0002" and added["styles"] == ["hoitsu", "kandinsky", "monet", "extra"]
    old = from_safetensors(reg.weights_bytes(context.MULTI_STYLE, "collection", "v0001"))
    new = from_safetensors(reg.weights_bytes(context.MULTI_STYLE, "collection", "v0002"))
    assert isinstance(new, MultiStyleTransformerNet) and new.n_styles == 4
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        for s in range(3):
            assert torch.equal(old(x, s), new(x, s))

    label = blend_label(parse_blend("monet=3,hoitsu=1"))
    assert label == "hoitsu=0.250,monet=0.750"
    shard = [(i.key, i.etag, i.size) for i in env.store.list(CATALOG_PREFIX)][:2]
    params = StylizeParams(method="multi-style", max_side=48)
    with disable_run_logger():
        counts = stylize_shard_task.fn(
            ShardJob("s0", shard, "run-blend", CATALOG_PREFIX, label, "collection/v0002", params)
        )
        assert counts == {"ok": 2, "failed": 0}
        with pytest.raises(ValueError, match="has no style nosuch"):
            stylize_shard_task.fn(
                ShardJob("s1", shard, "run-bad", CATALOG_PREFIX, "nosuch", "collection/v0002", params)
            )
    rows = context.manifest().read(filters=[("run_id", "=", "run-blend")])
    assert sorted(rows["style"]) == [label, label] and set(rows["method"]) == {"multi-style"}
    assert set(rows["model_version"]) == {"collection/v0002"}
    assert all(k.startswith("stylized/demo/hoitsu-0.250+monet-0.750/collection/v0002/") for k in rows["output_key"])
