"""Transformer net, training engine (loss goes down, exact resume, NaN rollback) and inference engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.inference.engine import InferenceEngine, plan_buckets, stylize_one_at_a_time
from styleops.losses.perceptual import LossWeights
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import (
    CHECKPOINT_FILE,
    TrainConfig,
    TrainingDivergedError,
    loader_workers,
    train_style,
)
from tests.training_configs import small_train

SMALL = small_train(style_size=128, n_residual=2, seed=3, output="direct", palette=False)


def test_transformer_keeps_any_size_and_avoids_transposed_convs() -> None:
    net = TransformerNet(channels=8, n_residual=1)
    for h, w in ((37, 53), (64, 64), (5, 9)):
        assert net(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.ConvTranspose2d not in kinds
    assert torch.nn.InstanceNorm2d in kinds and torch.nn.ReflectionPad2d in kinds


def test_config_round_trips_through_dict() -> None:
    cfg = TrainConfig(loss=LossWeights(style_weight=3.0))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_loss_decreases(tmp_path: Path, encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor) -> None:
    result = train_style(SMALL, photos, artwork, encoder, workdir=tmp_path, device="cpu")
    totals = [h["total"] for h in result.history]
    assert len(totals) == SMALL.steps
    assert sum(totals[-3:]) / 3 < 0.7 * sum(totals[:3]) / 3
    assert result.resumed_from == 0 and result.rollbacks == 0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor
) -> None:
    straight = train_style(SMALL, photos, artwork, encoder, workdir=tmp_path / "a", device="cpu")
    first_half = TrainConfig.from_dict({**SMALL.to_dict(), "steps": 4})
    train_style(first_half, photos, artwork, encoder, workdir=tmp_path / "b", device="cpu")  # "killed" after step 4
    resumed = train_style(SMALL, photos, artwork, encoder, workdir=tmp_path / "b", device="cpu")
    assert resumed.resumed_from == 4
    for name, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[name]), name
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]


def test_nan_rolls_back_to_last_checkpoint_and_finishes(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor
) -> None:
    fired = []

    def inject_nan_once(step: int, loss: torch.Tensor) -> torch.Tensor:
        if step == 5 and not fired:
            fired.append(step)
            return loss * float("nan")
        return loss

    result = train_style(SMALL, photos, artwork, encoder, workdir=tmp_path, device="cpu", loss_hook=inject_nan_once)
    assert fired == [5] and result.rollbacks == 1 and result.steps == SMALL.steps
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["lr_scale"] == 0.5 and saved["step"] == SMALL.steps


def test_persistent_nan_raises_diverged(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor
) -> None:
    cfg = TrainConfig.from_dict({**SMALL.to_dict(), "max_rollbacks": 2})
    with pytest.raises(TrainingDivergedError):
        train_style(
            cfg, photos, artwork, encoder, workdir=tmp_path, device="cpu", loss_hook=lambda s, loss: loss * float("nan")
        )


def test_incompatible_checkpoint_is_refused(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor
) -> None:
    cfg = TrainConfig.from_dict({**SMALL.to_dict(), "steps": 1})
    train_style(cfg, photos, artwork, encoder, workdir=tmp_path, device="cpu")
    other = TrainConfig.from_dict({**cfg.to_dict(), "lr": 1e-2})
    with pytest.raises(ValueError, match="different configuration"):
        train_style(other, photos, artwork, encoder, workdir=tmp_path, device="cpu")


def test_plan_buckets_groups_by_padded_size() -> None:
    plan = plan_buckets([(30, 40), (32, 48), (64, 64), (17, 40)], batch_size=2, multiple=16)
    assert plan == [((32, 48), [0, 1]), ((32, 48), [3]), ((64, 64), [2])]


def test_engine_matches_one_at_a_time_and_keeps_sizes() -> None:
    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in ((32, 48), (32, 48), (64, 32), (40, 24))]
    engine = InferenceEngine(net, device="cpu", batch_size=4, bucket_multiple=1)
    batched = engine.stylize(images)
    plain = stylize_one_at_a_time(net, images)
    for a, b, img in zip(batched, plain, images):
        assert a.shape == img.shape and a.dtype == torch.uint8
        assert (a.int() - b.int()).abs().max() <= 1


def test_engine_max_side_keeps_aspect_ratio() -> None:
    engine = InferenceEngine(TransformerNet(channels=4, n_residual=1), device="cpu", max_side=50)
    (out,) = engine.stylize([torch.zeros(3, 80, 200, dtype=torch.uint8)])
    assert out.shape == (3, 20, 50)


def test_safetensors_round_trip_rebuilds_the_same_network(tmp_path: Path) -> None:
    from styleops.errors import InvalidInputError
    from styleops.io.safetensors_file import read_metadata
    from styleops.io.serialize import from_safetensors, to_safetensors

    torch.manual_seed(1)
    net = TransformerNet(channels=4, n_residual=2).eval()
    blob = to_safetensors(net.state_dict(), "TransformerNet", net.config())
    assert read_metadata(blob)["architecture"] == "TransformerNet"
    again = from_safetensors(blob)
    assert again.config() == net.config()
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(again(x), net(x), atol=0, rtol=0)
    pickled = tmp_path / "w.pt"
    torch.save(net.state_dict(), pickled)
    with pytest.raises(InvalidInputError):
        from_safetensors(pickled.read_bytes())


def test_content_can_be_a_folder(tmp_path: Path, photos: list[Path]) -> None:
    from styleops.training.engine import ContentCrops

    (tmp_path / "sub").mkdir()
    for p in photos[:2]:
        (tmp_path / "sub" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    data = ContentCrops(tmp_path, 32, seed=0)
    assert [p.name for p in data.paths] == sorted(p.name for p in photos[:2])
    assert data[(0, 0)].shape == (3, 32, 32)
    assert torch.equal(data[(5, 1)], ContentCrops(tmp_path, 32, seed=0)[(5, 1)])
    with pytest.raises(ValueError, match="no content images"):
        ContentCrops([], 32, seed=0)


def test_output_parameterizations_start_at_the_photo_and_old_files_load_as_direct() -> None:
    import json

    from safetensors.torch import load, save

    from styleops.io.serialize import from_safetensors, to_safetensors

    x = torch.rand(2, 3, 21, 30)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    for output in ("logit_residual", "residual"):
        net = TransformerNet(channels=4, n_residual=1, output=output)
        y = net(x)
        assert torch.allclose(y, x.clamp(1 / 512, 1 - 1 / 512) if output == "logit_residual" else x, atol=1e-6)
    with torch.no_grad():
        net = TransformerNet(channels=4, n_residual=1, output="logit_residual")
        net.decoder[-1][1].weight.normal_(0, 10.0)  # huge residuals: still a valid image
        y = net(x)
    assert 0 <= y.min() and y.max() <= 1 and not torch.allclose(y, x, atol=1e-2)
    direct = TransformerNet(channels=4, n_residual=1)
    assert direct.output == "direct"  # the class keeps Johnson's output; training defaults to the palette start
    assert (TrainConfig().output, TrainConfig().palette) == ("logit_residual", True)
    with pytest.raises(InvalidInputError, match="no-palette"):
        TrainConfig(output="direct")
    blob = to_safetensors(direct.state_dict(), "TransformerNet", direct.config())
    assert from_safetensors(blob).output == "direct"
    # a file from before the output parameterization (no "output" in its config) is Johnson's direct output
    tensors = load(blob)
    old = save(
        tensors, metadata={"architecture": "TransformerNet", "config": json.dumps({"channels": 4, "n_residual": 1})}
    )
    assert from_safetensors(old).output == "direct"
    assert (
        TrainConfig.from_dict(
            {k: v for k, v in TrainConfig().to_dict().items() if k not in ("output", "warmup_steps", "palette")}
        ).output
        == "direct"
    )


def test_learning_rate_warms_up_linearly() -> None:
    from styleops.training.engine import set_lr

    cfg = TrainConfig(lr=1e-3, warmup_steps=4)
    opt = torch.optim.Adam(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))]},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_mult": 10.0},
        ],
        lr=1.0,
    )
    seen = []
    for step in range(6):
        set_lr(opt, cfg, 0.5, step)
        seen += [g["lr"] for g in opt.param_groups]
    expected = [[1.25e-4 * (s + 1), 1.25e-3 * (s + 1)] if s < 4 else [5e-4, 5e-3] for s in range(6)]
    assert seen == pytest.approx([v for pair in expected for v in pair])


@pytest.mark.parametrize(
    ("workers", "device", "cores", "expected"),
    [
        (-1, "cpu", 2, 0),
        (-1, "cuda", 16, 8),
        (-1, "cuda", 4, 3),
        (-1, "cuda", 1, 1),
        (3, "cpu", 2, 3),
        (0, "cuda", 16, 0),
    ],
)
def test_loader_workers_decode_on_their_own_cores_on_cuda_only_by_default(
    workers: int, device: str, cores: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    config = TrainConfig.from_dict({**SMALL.to_dict(), "workers": workers})
    assert loader_workers(config, torch.device(device)) == expected
    with pytest.raises(ValueError, match="workers must be >= -1"):
        TrainConfig.from_dict({**SMALL.to_dict(), "workers": -2})
