"""Device out-of-memory inside a real shard (real store, real manifest, the shipped Monet model):
a batch that does not fit is split and completes; an image that fits nowhere becomes one
`failed` row (`out_of_memory`) and the shard goes on. The out-of-memory error is simulated: the
model raises torch.OutOfMemoryError above a size, as CUDA's allocator does."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from PIL import Image
from prefect.logging import disable_run_logger
from torch import nn

from runs import context, methods
from runs.methods.base import Built
from runs.shard import ShardJob
from runs.spec import StylizeParams
from tasks.stylize import stylize_shard_task
from tasks.training import import_model_task
from tests.flows.conftest import EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401

pytestmark = pytest.mark.integration


class OutOfMemoryAbove(nn.Module):
    """The shard's model, raising CUDA's out-of-memory error for inputs over `limit` elements
    (and, with `tall`, for any input taller than wide: an image that fits nowhere)."""

    def __init__(self, net: nn.Module, limit: int, calls: Counter, tall: bool = False) -> None:
        super().__init__()
        self.net, self.limit, self.calls, self.tall = net, limit, calls, tall

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls[tuple(x.shape)] += 1
        if x.numel() > self.limit or (self.tall and x.shape[-2] > x.shape[-1]):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return self.net(x)


def _shard(
    env: PipelineEnv, limit: int, monkeypatch: pytest.MonkeyPatch, *, tall: bool = False, tile_size: int | None = None
) -> tuple[dict[str, int], Counter]:
    calls: Counter = Counter()
    per_style = methods.get("per-style")
    build = per_style.build

    def build_with_small_memory(*args: Any, **kwargs: Any) -> Built:
        built = build(*args, **kwargs)
        engine = built.engine
        engine.model = engine.eager_model = OutOfMemoryAbove(engine.model, limit, calls, tall)
        engine.batch_size, engine.tile_size, engine.min_tile = 4, tile_size, 64
        return built

    monkeypatch.setattr(per_style, "build", build_with_small_memory)
    models = EXAMPLES / "models"
    items = [(i.key, i.etag, i.size) for i in env.store.list("catalog/demo/")]
    with disable_run_logger():
        import_model_task.fn(
            context.PER_STYLE, "monet", str(models / "monet.safetensors"), str(models / "monet.card.json")
        )
        counts = stylize_shard_task.fn(
            ShardJob("oom-s0000", items, "oom", "catalog/demo/", "monet", "v0001", StylizeParams(max_side=64), 4, False)
        )
    return counts, calls


def test_a_batch_out_of_memory_is_split_and_the_shard_completes(
    pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts, calls = _shard(pipeline_env, limit=2 * 3 * 64 * 64, monkeypatch=monkeypatch)  # 2 images fit, 4 do not
    assert counts == {"ok": 6, "failed": 0}
    assert calls == Counter({(4, 3, 64, 64): 1, (2, 3, 64, 64): 3})  # 4 -> 2 + 2, then the last 2 alone
    rows = context.manifest().read(filters=[("run_id", "=", "oom")])
    assert sorted(rows.status) == ["ok"] * 6 and rows.image_key.nunique() == 6


def test_an_image_that_fits_nowhere_is_one_failed_row_and_the_shard_goes_on(
    pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tall photo that runs out of memory alone and in every tile size (the simulated device
    refuses anything taller than wide): it alone fails; the six square example photos are stylized."""
    tall = Image.open(EXAMPLES / "catalog" / "kodim03.jpg").resize((100, 400))
    pipeline_env.store.put("catalog/demo/tall.png", _png(tall))
    counts, _ = _shard(pipeline_env, limit=4 * 3 * 64 * 64, monkeypatch=monkeypatch, tall=True)
    assert counts == {"ok": 6, "failed": 1}
    rows = context.manifest().read(filters=[("run_id", "=", "oom")]).set_index("image_key")
    failed = rows.loc["catalog/demo/tall.png"]
    assert (failed.status, failed.error_class) == ("failed", "out_of_memory")
    assert failed.error.startswith("out of cpu memory for a 64x16 image even in")
    assert "CUDA out of memory. Tried to allocate 20.00 GiB (simulated)" in failed.error
    assert sorted(rows.drop(index="catalog/demo/tall.png").status) == ["ok"] * 6


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
