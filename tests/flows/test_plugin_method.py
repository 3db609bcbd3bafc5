"""A new stylize method is one module: a toy Method registered here runs end to end through the
stylize-catalog flow, against the real store, with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from flows.stylize_catalog import stylize_catalog
from infra.settings import Settings
from runs import context, methods
from runs.keys import output_key
from runs.methods.base import Built, Method, OnIteration, Params, Resolved, Source, checked_artworks, engine, one_style
from runs.spec import RunSpec, StylizeParams
from styleops.io.images import decode_image
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.flow]


class Identity(Method):
    """The photo itself (resized to max_side): no model, the style's first artwork for the metrics."""

    name = "identity"
    aliases = ("id",)
    hashed = ("alpha",)  # not read: hashed to show a plug-in's declared fields go into params_hash

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        first = checked_artworks(one_style(self.name, style))[0][0]
        return Resolved(style, "identity", Source(family=self.name, artwork_key=first))

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        assert source.artwork_key is not None
        return Built(
            engine(nn.Identity(), params, device, settings, batch_size),
            None,
            source.artwork_key,
            {"artwork": source.artwork_key},
        )


@pytest.fixture
def identity() -> Iterator[Method]:
    method = methods.register(Identity())
    try:
        yield method
    finally:
        methods.unregister(method.name)


def test_a_registered_method_stylizes_a_catalog_end_to_end(pipeline_env: PipelineEnv, identity: Method) -> None:
    env = pipeline_env
    assert methods.names()[-1] == "identity" and methods.get("id") is identity
    params = StylizeParams(method="identity", max_side=48, alpha=0.5)
    assert params.to_dict()["alpha"] == 0.5  # the method's declared field is hashed

    summary = stylize_catalog(
        RunSpec.create(catalog="demo", style="monet", method="id", max_side=48, alpha=0.5, shard_size=4)
    )
    summary.pop("run_id")
    assert summary == {
        "catalog": CATALOG_PREFIX,
        "method": "identity",
        "style": "monet",
        "model_version": "identity",
        "params_hash": params.hash,
        "images": 6,
        "already_done": 0,
        "known_bad": 0,
        "restyled": 0,
        "shards": 2,
        "ok": 6,
        "failed": 0,
    }

    rows = context.manifest().read(filters=[("catalog", "=", CATALOG_PREFIX)]).sort_values("image_key")
    assert list(rows.image_key) == env.catalog_keys
    assert set(rows.method) == {"identity"} and set(rows.status) == {"ok"} and set(rows.params_hash) == {params.hash}
    for r in rows.itertuples():
        assert r.output_key == output_key(r.image_key, "demo", "monet", "identity", params)
        out = decode_image(env.store.get_bytes(r.output_key)).pixels.float()
        photo = decode_image(env.store.get_bytes(r.image_key)).pixels
        assert max(out.shape[-2:]) == 48 and out.shape[-2:] == (r.out_height, r.out_width)
        assert max(photo.shape[-2:]) > 48  # resized, not stylized: the output looks like the photo
        small = torch.nn.functional.interpolate(photo[None].float(), size=tuple(out.shape[-2:]), mode="area")[0]
        assert (out - small).abs().mean() < 12
