"""Per-style and multi-style models from Magenta's pretrained start (styleops.training.engine.
train_magenta, add_magenta_style; styleops.models.magenta.MagentaStyleNet): the prediction as it
is, a vector fine-tune that moves only the vectors, add-style leaving old styles bit-identical,
and the weights' round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.io.images import read_image, to_float
from styleops.io.magenta_weights import MagentaWeights
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.losses.perceptual import LossWeights
from styleops.models.magenta import MagentaStyleNet, MagentaStylizer, style_vector
from styleops.models.multistyle import Conditioned
from styleops.training.engine import TrainConfig, add_magenta_style, config_from, magenta_recipe, train_magenta

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _art(name: str) -> torch.Tensor:
    return to_float(read_image(EXAMPLES / "artwork" / name / f"{name}.jpg").pixels)


def tiny(**overrides: object) -> TrainConfig:
    return magenta_recipe(
        **{
            "steps": 3,
            "batch_size": 1,
            "image_size": 64,
            "style_size": 64,
            "log_every": 1,
            "finetune": "vector",
            **overrides,
        }
    )


def test_the_recipe_is_the_pretrained_start_and_scratch_configs_are_unchanged() -> None:
    cfg = magenta_recipe(steps=7, loss={"style_weight": 3.0})
    assert (cfg.init, cfg.finetune, cfg.steps, cfg.loss.style_weight) == ("magenta", "none", 7, 3.0)
    assert cfg.loss == LossWeights(style_weight=3.0)  # the project's loss (docs/quality.md)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert "init" not in TrainConfig().to_dict()  # from-scratch configs and their run keys stay as they were
    with pytest.raises(InvalidInputError, match="finetune"):
        magenta_recipe(finetune="some")
    # a flow's partial parameters: the pretrained recipe's values when they ask for it
    assert config_from({"init": "magenta", "steps": 9}) == magenta_recipe(steps=9)
    assert config_from({"steps": 9}) == TrainConfig(steps=9)


def test_finetune_none_is_the_prediction(tmp_path, encoder, photos, magenta: MagentaWeights) -> None:  # noqa: ANN001
    art = _art("monet")
    result = train_magenta(
        tiny(finetune="none"), photos, [art], encoder, magenta.transformer, magenta.predictor, workdir=tmp_path
    )
    assert result.steps == 0 and result.model_config == {"n_styles": 1}
    net = from_safetensors(to_safetensors(result.state_dict, "MagentaStyleNet", result.model_config))
    assert isinstance(net, MagentaStyleNet)
    with torch.no_grad():
        vector = style_vector(magenta.predictor, art)
        photo = to_float(read_image(photos[0]).pixels)[None, :, :96, :128]
        assert torch.equal(net(photo), MagentaStylizer(magenta.transformer, vector)(photo))
    assert not list(tmp_path.iterdir())  # nothing trained, nothing checkpointed


def test_vector_finetune_moves_only_the_vector(tmp_path, encoder, photos, magenta: MagentaWeights) -> None:  # noqa: ANN001
    art = _art("monet")
    result = train_magenta(tiny(), photos, [art], encoder, magenta.transformer, magenta.predictor, workdir=tmp_path)
    assert result.steps == 3 and len(result.history) == 3
    state = result.state_dict
    for k, v in magenta.transformer.state_dict().items():
        assert torch.equal(state[f"transformer.{k}"], v), k
    with torch.no_grad():
        assert not torch.equal(state["styles"], style_vector(magenta.predictor, art))
    again = train_magenta(tiny(), photos, [art], encoder, magenta.transformer, magenta.predictor, workdir=tmp_path)
    assert again.resumed_from == 3 and torch.equal(again.state_dict["styles"], state["styles"])  # resumed, done


def test_all_finetune_moves_the_transformer(tmp_path, encoder, photos, magenta: MagentaWeights) -> None:  # noqa: ANN001
    result = train_magenta(
        tiny(finetune="all", lr=1e-4, steps=2, anchor_weight=1e3),
        photos,
        [_art("hoitsu")],
        encoder,
        magenta.transformer,
        magenta.predictor,
        workdir=tmp_path,
    )
    key = "residual.0.conv1.1.weight"
    assert not torch.equal(result.state_dict[f"transformer.{key}"], magenta.transformer.state_dict()[key])


def test_multi_style_then_add_a_style_leaves_the_old_ones_bit_identical(
    tmp_path,  # noqa: ANN001
    encoder,  # noqa: ANN001
    photos,  # noqa: ANN001
    magenta: MagentaWeights,
) -> None:
    arts = [_art("monet"), _art("hoitsu")]
    cfg = tiny(steps=2)
    base = train_magenta(cfg, photos, arts, encoder, magenta.transformer, magenta.predictor, workdir=tmp_path / "a")
    assert base.model_config == {"n_styles": 2}
    added = add_magenta_style(
        cfg, photos, _art("kandinsky"), encoder, base.state_dict, 2, predictor=magenta.predictor, workdir=tmp_path / "b"
    )
    assert added.model_config == {"n_styles": 3} and added.steps == 2
    for k, v in base.state_dict.items():
        if k != "styles":
            assert torch.equal(added.state_dict[k], v), k
    assert torch.equal(added.state_dict["styles"][:2], base.state_dict["styles"])
    old = from_safetensors(to_safetensors(base.state_dict, "MagentaStyleNet", base.model_config))
    new = from_safetensors(to_safetensors(added.state_dict, "MagentaStyleNet", added.model_config))
    photo = to_float(read_image(photos[1]).pixels)[None, :, :64, :80]
    with torch.no_grad():
        for weights_old, weights_new in (([1.0, 0.0], [1.0, 0.0, 0.0]), ([0.3, 0.7], [0.3, 0.7, 0.0])):
            assert torch.equal(Conditioned(old, weights_old)(photo), Conditioned(new, weights_new)(photo))
        one = Conditioned(new, [0.0, 0.0, 1.0])(photo)
        assert torch.equal(one, new(photo, 2))
    predicted = add_magenta_style(
        tiny(finetune="none"),
        photos,
        _art("kandinsky"),
        encoder,
        base.state_dict,
        2,
        predictor=magenta.predictor,
        workdir=tmp_path,
    )
    with torch.no_grad():
        assert torch.equal(predicted.state_dict["styles"][2:], style_vector(magenta.predictor, _art("kandinsky")))
    with pytest.raises(InvalidInputError, match="not 'all'"):
        add_magenta_style(
            tiny(finetune="all"),
            photos,
            arts[0],
            encoder,
            base.state_dict,
            2,
            predictor=magenta.predictor,
            workdir=tmp_path,
        )
