"""The translation families' pieces: U-Net and PatchGAN shapes, the GAN losses and history pool,
pair checks and crops, the collapse gate, and the two-player loop (seeded, exactly resumable,
rolled back on NaN). Real photos from examples/, tiny networks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from styleops.data.makers import grayscale, split_side_by_side
from styleops.errors import InvalidInputError
from styleops.evaluation.translation import collapse_check
from styleops.io.images import read_image, to_float
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.losses.gan import ImagePool, gan_loss
from styleops.models.mixgan import LatentDiscriminator, MixGenerator
from styleops.models.translation import CycleGenerators, OneDirection, PatchDiscriminator, UNetGenerator
from styleops.training.engine import CHECKPOINT_FILE, TrainResult
from styleops.training.translation import (
    CycleGANConfig,
    MIXGANConfig,
    PairedCrops,
    Pix2PixConfig,
    check_images,
    check_pairs,
    train_cyclegan,
    train_mixgan,
    train_pix2pix,
)

# The families' own loop settings (Adam (0.5, 0.999), no warm-up, direct output), tiny and quickly decayed.
TRAIN = replace(
    Pix2PixConfig().train, steps=6, batch_size=2, image_size=32, decay_steps=3, log_every=1, checkpoint_every=3
)
PIX2PIX = Pix2PixConfig(channels=4, depth=6, d_channels=4, train=TRAIN)  # depth 6: one dropout layer
MIXGAN = MIXGANConfig(channels=4, code=2, blocks=1, d_channels=4, train=TRAIN)
CYCLEGAN = CycleGANConfig(channels=4, n_residual=1, d_channels=4, pool_size=3, train=TRAIN)


@pytest.fixture
def pairs(photos: list[Path], tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """8 (grayscale, colour) pairs from the example photos, 64 px high."""
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    a_dir.mkdir()
    b_dir.mkdir()
    for i in range(8):
        img = Image.open(photos[i % len(photos)]).convert("RGB")
        img = img.resize((96, 64))
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i >= len(photos) else img
        img.save(b_dir / f"p{i}.png")
        img.convert("L").convert("RGB").save(a_dir / f"p{i}.png")
    return sorted(a_dir.glob("*.png")), sorted(b_dir.glob("*.png"))


class _Killed(Exception):
    """Stands for a killed process."""


def _kill_at(step: int):  # noqa: ANN202
    def hook(s: int, loss: torch.Tensor) -> torch.Tensor:
        if s == step:
            raise _Killed
        return loss

    return hook


def _killed_and_resumed_equals_whole(
    train: Callable[..., TrainResult],
    config: Any,  # noqa: ANN401 - Pix2PixConfig, CycleGANConfig or MIXGANConfig
    a: list[Path],
    b: list[Path],
    tmp_path: Path,
) -> TrainResult:
    """Train `config` straight through, then again killed at step 4 and resumed: asserts the two
    end with the same weights bit for bit; returns the straight run."""
    whole = train(config, a, b, workdir=tmp_path / "whole", device="cpu")
    with pytest.raises(_Killed):
        train(config, a, b, workdir=tmp_path / "split", device="cpu", loss_hook=_kill_at(4))
    rest = train(config, a, b, workdir=tmp_path / "split", device="cpu")
    for k, v in whole.state_dict.items():
        assert torch.equal(v, rest.state_dict[k]), k
    return whole


def test_unet_keeps_any_size_and_is_deterministic_in_eval_only() -> None:
    torch.manual_seed(0)
    net = UNetGenerator(channels=4, depth=5)
    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y, net(x))  # eval: dropout off, identical reruns
    assert net.multiple == 32 and net.config() == {"channels": 4, "depth": 5, "dropout": 0.5}
    six = UNetGenerator(channels=4, depth=6).train()  # depth 6: one up layer with dropout
    x = torch.rand(1, 3, 64, 64)
    assert not torch.equal(six(x), six(x))  # train: dropout is the noise source
    six.eval()
    assert torch.equal(six(x), six(x))
    # dropout sits after the bottleneck-side up layers 4..depth-2 only (the reference's middle blocks)
    deep = UNetGenerator(channels=4, depth=8)
    assert [i for i, up in enumerate(deep.ups) if isinstance(up[-1], torch.nn.Dropout)] == [4, 5, 6]


def test_patch_discriminator_is_the_70_px_patchgan() -> None:
    d = PatchDiscriminator(6, channels=4)
    assert d(torch.rand(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # the reference's 30x30 patches at 256 px
    # receptive field (norms aside, which pool over the whole image): a middle logit's gradient
    # covers exactly 70 x 70 input pixels
    d.net = torch.nn.Sequential(*[torch.nn.Identity() if isinstance(m, torch.nn.InstanceNorm2d) else m for m in d.net])
    x = torch.rand(1, 6, 256, 256, requires_grad=True)
    d(x)[0, 0, 15, 15].backward()
    rows, cols = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero(), (x.grad.abs().sum((0, 1, 2)) > 0).nonzero()
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (70, 70)


def test_gan_losses_have_their_textbook_values() -> None:
    zeros = torch.zeros(1, 1, 4, 4)
    assert math.isclose(float(gan_loss(zeros, True, "vanilla")), math.log(2), rel_tol=1e-6)
    assert float(gan_loss(zeros, True, "lsgan")) == 1.0 and float(gan_loss(zeros, False, "lsgan")) == 0.0
    with pytest.raises(InvalidInputError, match="GAN mode"):
        gan_loss(zeros, True, "wgan")


def test_image_pool_fills_then_swaps_and_is_saved_with_its_module() -> None:
    pool = ImagePool(2, (3, 4, 4), seed=1)
    a, b, c = (torch.full((1, 3, 4, 4), v) for v in (0.1, 0.2, 0.3))
    assert torch.equal(pool.query(a, 0), a) and torch.equal(pool.query(b, 1), b) and int(pool.count) == 2
    seen = [round(float(pool.query(c, step)[0, 0, 0, 0]), 3) for step in range(2, 12)]
    assert set(seen) <= {0.1, 0.2, 0.3} and len(set(seen)) > 1  # half old images, half the new one
    twin = ImagePool(2, (3, 4, 4), seed=1)
    twin.load_state_dict(pool.state_dict())
    assert torch.equal(twin.images, pool.images)
    assert torch.equal(twin.query(c, 99), pool.query(c, 99))  # the coin flips of a step are seeded


def test_pair_checks_refuse_mismatches_with_names(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    a, b = pairs
    check_pairs(a, b, "pairs/t")
    with pytest.raises(InvalidInputError, match=r"mismatched pairs: only in A \['p7.png'\], only in B \[\]"):
        check_pairs(a, b[:-1], "pairs/t")
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.open(b[0]).resize((50, 50)).save(odd / "p0.png")
    with pytest.raises(InvalidInputError, match="pair p0.png is 96x64 in A but 50x50 in B"):
        check_pairs(a, [odd / "p0.png", *b[1:]], "pairs/t")
    (odd / "p1.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="p1.png does not decode"):
        check_images([a[0], odd / "p1.png", *a[2:]], "domain d")
    with pytest.raises(InvalidInputError, match="has 7 images; at least 8 are needed"):
        check_images(a[:7], "domain d")


def test_paired_crops_cut_both_sides_alike(photos: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    Image.open(photos[0]).convert("RGB").resize((90, 60)).save(path)
    crops = PairedCrops([path], [path], 32, seed=3)
    item = crops[(5, 1)]
    assert item.shape == (6, 32, 32) and torch.equal(item[:3], item[3:])
    assert torch.equal(item, crops[(5, 1)]) and not torch.equal(item, crops[(6, 1)])


def test_makers_and_side_by_side(photos: list[Path]) -> None:
    x = to_float(read_image(photos[0]).pixels)
    g = grayscale(x)
    assert torch.allclose(g[0], 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]) and torch.equal(g[0], g[2])
    a, b = split_side_by_side(torch.cat([x, g], -1))
    assert torch.equal(a, x) and torch.equal(b, g)
    with pytest.raises(InvalidInputError, match="even width"):
        split_side_by_side(x[..., :-1] if x.shape[-1] % 2 == 0 else x)


def test_collapse_check_catches_constant_and_identity_generators(photos: list[Path]) -> None:
    probes = torch.stack([to_float(read_image(p).pixels)[:, :64, :64] for p in photos[:3]])
    const = collapse_check(lambda x: torch.full_like(x, 0.5), probes)
    assert not const.passed and const.dependence == 0 and "do not depend" in const.reason
    same = collapse_check(lambda x: x, probes)
    assert not same.passed and math.isclose(same.dependence, 1.0) and same.change == 0
    assert collapse_check(lambda x: x, probes, must_change=False).passed
    inverted = collapse_check(lambda x: 1 - x, probes)
    assert inverted.passed and math.isclose(inverted.dependence, 1.0, rel_tol=1e-5)


def test_translation_models_round_trip_through_safetensors() -> None:
    for net, arch in ((UNetGenerator(4, 5), "UNetGenerator"), (CycleGenerators(4, 1), "CycleGenerators")):
        back = from_safetensors(to_safetensors(net.state_dict(), arch, net.config()))
        x = torch.rand(1, 3, 40, 40)
        run = (lambda m: m.eval()(x)) if arch == "UNetGenerator" else (lambda m: OneDirection(m, "BtoA")(x))
        assert type(back) is type(net) and torch.equal(run(net), run(back))


def test_pix2pix_resumes_exactly_with_its_discriminator(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    a, b = pairs
    whole = train_pix2pix(PIX2PIX, a, b, workdir=tmp_path / "whole", device="cpu")
    with pytest.raises(_Killed):
        train_pix2pix(PIX2PIX, a, b, workdir=tmp_path / "split", device="cpu", loss_hook=_kill_at(4))
    ckpt = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["step"] == 3 and "critic" in ckpt and "critic_optimizer" in ckpt
    rest = train_pix2pix(PIX2PIX, a, b, workdir=tmp_path / "split", device="cpu")
    assert (rest.resumed_from, rest.steps) == (3, 6)
    for k, v in whole.state_dict.items():
        assert torch.equal(v, rest.state_dict[k]), k
    assert [h["critic"] for h in whole.history] == [h["critic"] for h in rest.history]
    # the schedule: constant for steps - decay_steps, then linear towards 0 (the reference's)
    assert [round(h["lr"] / TRAIN.lr, 4) for h in whole.history] == [1, 1, 1, 0.75, 0.5, 0.25]
    with pytest.raises(InvalidInputError, match="different pix2pix settings"):
        train_pix2pix(replace(PIX2PIX, l1_weight=10.0), a, b, workdir=tmp_path / "split", device="cpu")


def test_cyclegan_resumes_exactly_with_its_pools(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    a, b = pairs
    whole = _killed_and_resumed_equals_whole(train_cyclegan, CYCLEGAN, a, b, tmp_path)
    ckpt = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=True)
    assert int(ckpt["critic"]["pool_a.count"]) == 3  # full after 2 x 2 images, saved with the critics
    assert set(whole.model_config) == {"channels", "n_residual"}


def test_a_non_finite_critic_loss_rolls_back(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    a, b = pairs
    calls = []

    def nan_once(step: int, loss: torch.Tensor) -> torch.Tensor:
        calls.append(step)
        return loss * float("nan") if step == 4 and calls.count(4) == 1 else loss

    result = train_pix2pix(PIX2PIX, a, b, workdir=tmp_path / "w", device="cpu", loss_hook=nan_once)
    assert result.steps == 6 and result.rollbacks == 1
    assert result.rollback_log == [{"step": 4, "restored_step": 3, "lr_scale": 0.5, "cause": "loss"}]
    assert all(math.isfinite(v) for v in result.state_dict["ups.0.3.weight"].flatten().tolist())


def test_pix2pix_learns_a_mapping_it_can_fit(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    """L1-heavy Pix2Pix on grayscale -> colour: after 40 steps the held-in L1 is well below the
    untrained generator's (a loop that does not learn fails this)."""
    a, b = pairs
    train = replace(TRAIN, steps=40, decay_steps=0, lr=2e-3, checkpoint_every=40)
    cfg = replace(PIX2PIX, channels=8, train=train)
    result = train_pix2pix(cfg, a, b, workdir=tmp_path / "w", device="cpu")
    torch.manual_seed(cfg.train.seed)
    start = UNetGenerator(**cfg.model_config()).eval()
    trained = UNetGenerator(**result.model_config)
    trained.load_state_dict(result.state_dict)
    trained.eval()
    xa = torch.stack([to_float(read_image(p).pixels) for p in a])[:, :, :64, :64]
    xb = torch.stack([to_float(read_image(p).pixels) for p in b])[:, :, :64, :64]
    with torch.no_grad():
        before, after = (start(xa) - xb).abs().mean(), (trained(xa) - xb).abs().mean()
    assert float(after) < 0.6 * float(before), (float(before), float(after))


def test_mixgan_is_fully_convolutional_and_starts_at_its_reconstruction() -> None:
    torch.manual_seed(0)
    gen = MixGenerator(channels=4, code=3, blocks=1).eval()
    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        z = gen.encode(x)
        mixture, recon = gen.mix(z)
        assert z.shape == (2, 3, 10, 13)  # one code vector per 4x4 px cell (padded to 40 x 52)
        assert gen(x).shape == x.shape
        assert torch.allclose(mixture, recon.clamp(1 / 512, 1 - 1 / 512), atol=1e-6)  # f = 0 at init
    assert LatentDiscriminator(3)(z).shape == (2, 1, 10, 13)
    back = from_safetensors(to_safetensors(gen.state_dict(), "MixGenerator", gen.config()))
    assert torch.equal(back(x), gen(x))


def test_mixgan_trains_resumably_and_reconstructs_better(pairs: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    a, b = pairs
    _killed_and_resumed_equals_whole(train_mixgan, MIXGAN, a, b, tmp_path)
    # the autoencoder learns: 60 steps bring the reconstruction L1 of the photos well below the
    # untrained network's (measured on fixed crops, not the noisy per-batch log)
    train = replace(TRAIN, steps=60, decay_steps=0, lr=1e-3, checkpoint_every=60)
    cfg = replace(MIXGAN, channels=8, code=4, train=train)
    result = train_mixgan(cfg, a, b, workdir=tmp_path / "long", device="cpu")
    torch.manual_seed(cfg.train.seed)
    start = MixGenerator(**cfg.model_config()).eval()
    trained = MixGenerator(**result.model_config).eval()
    trained.load_state_dict(result.state_dict)
    x = torch.stack([to_float(read_image(p).pixels) for p in a])[:, :, :64, :64]
    with torch.no_grad():
        before = (start.reconstruct(start.encode(x)) - x).abs().mean()
        after = (trained.reconstruct(trained.encode(x)) - x).abs().mean()
    assert float(after) < 0.7 * float(before), (float(before), float(after))


def test_hed_line_drawing_inks_the_edges_of_a_square(vgg_weights: Path) -> None:
    from safetensors.torch import load_file

    from styleops.data.makers import edge_drawing
    from styleops.io.weights import install_hed_side_weights
    from styleops.models.hed import HEDEdges

    hed = HEDEdges(load_file(vgg_weights), load_file(install_hed_side_weights(vgg_weights.parent)))
    photo = torch.ones(3, 96, 96)
    photo[:, 32:64, 32:64] = 0.1  # a dark square on white
    drawing = edge_drawing(hed, photo)
    assert drawing.shape == (3, 96, 96) and torch.equal(drawing[0], drawing[2])
    border = torch.cat([drawing[0, 30:34, 32:64].flatten(), drawing[0, 32:64, 30:34].flatten()])
    assert float(border.min()) < 0.2  # black strokes on the square's edges
    assert (
        float(drawing[0, 44:52, 44:52].min()) == 1.0 and float(drawing[0, :12, :12].min()) == 1.0
    )  # white away from them
