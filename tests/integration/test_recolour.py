"""The `recolour` method, added as one module (runs/methods/recolour.py): through the shard task
against the real embedded store, each output is the photo with the artwork's RGB palette; its
`strength` knob is hashed, checked, and a `stylize` option the other methods refuse."""

from __future__ import annotations

import json

import pytest
import torch

from runs import methods
from runs.spec import RunSpec, StylizeParams
from styleops.errors import InvalidInputError
from styleops.io.images import decode_image, resize_max_side, to_float
from styleops.models.palette import palette_of, recolour
from tests.flows.conftest import PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.integration.test_arbitrary_tasks import run

pytestmark = pytest.mark.integration


def test_recolour_gives_each_photo_the_artworks_palette(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    resolved = methods.resolve("recolour", "monet", None)
    assert resolved.style == "monet" and resolved.model_version.startswith("palette+art-")
    params = StylizeParams(method="recolour", max_side=48, format="png")
    rows = run(env, resolved, params, "run-recolour")
    art = resize_max_side(to_float(decode_image(env.store.get_bytes("artwork/monet/monet.jpg")).pixels), 512)
    target = palette_of(art)
    for r in rows:
        photo = resize_max_side(to_float(decode_image(env.store.get_bytes(r["image_key"])).pixels), 48)
        expected = recolour(photo[None], target)[0].clamp(0, 1)
        out = to_float(decode_image(env.store.get_bytes(r["output_key"])).pixels)
        assert out.shape == photo.shape
        assert (out - expected).abs().max() <= 1 / 255 + 1e-6  # PNG: only the rounding to 8 bits
        assert (out - photo).abs().mean() > 0.02  # and it did change the colours
        got = palette_of(out)
        assert torch.allclose(got.mean, target.mean, atol=0.02)  # the artwork's mean colour (clamping aside)
    inputs = json.loads(rows[0]["params_json"])["inputs"]
    assert inputs["strength"] == 1.0 and [a["key"] for a in inputs["artworks"]] == ["artwork/monet/monet.jpg"]


def test_strength_zero_keeps_the_photo_and_strength_is_hashed(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    env = pipeline_env
    params = StylizeParams(method="recolour", max_side=48, format="png", strength=0.0)
    rows = run(env, methods.resolve("recolour", "monet", None), params, "run-recolour-0", n=1)
    photo = resize_max_side(to_float(decode_image(env.store.get_bytes(rows[0]["image_key"])).pixels), 48)
    out = to_float(decode_image(env.store.get_bytes(rows[0]["output_key"])).pixels)
    assert (out - photo).abs().max() <= 2 / 255  # the photo's own palette, up to float round-off
    assert params.hash != StylizeParams(method="recolour", max_side=48, format="png").hash
    assert params.to_dict()["strength"] == 0.0 and "strength" not in StylizeParams(max_side=48).to_dict()
    with pytest.raises(InvalidInputError, match=r"strength must be in \[0, 1\], got 1.5"):
        RunSpec.create("demo", "monet", method="recolour", strength=1.5).check()


def test_the_stylize_command_takes_strength_for_recolour_only(pipeline_env: PipelineEnv) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["stylize", "--help"], env={"COLUMNS": "200"})
    assert "--strength" in result.output and "recolour: 1 the artwork's palette" in result.output
    result = CliRunner().invoke(app, ["stylize", "--catalog", "demo", "--style", "monet", "--strength", "0.5"])
    assert result.exit_code == 1
    assert "--strength does not apply to --method per-style; it is for --method recolour" in result.output
