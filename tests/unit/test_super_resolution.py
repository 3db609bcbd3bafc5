"""Super-resolution (Johnson et al. 2016): the net, its safetensors and tiling, the literature's
Y-PSNR/SSIM protocol (checked against the published BSD100 bicubic figure), and training through
the shared loop (loss goes down, exact resume, relu2_2 feature loss)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from styleops.errors import InvalidInputError
from styleops.evaluation.super_resolution import (
    bicubic_upscale,
    degrade,
    evaluate_sr,
    feature_distance,
    psnr_y,
    resize_bicubic_pil,
    rgb_to_y,
    ssim_y,
)
from styleops.inference.upscale import upscale_tiled
from styleops.io.images import read_image, to_float
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.models.super_resolution import SuperResolutionNet, bicubic, receptive_radius, upscale
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import TrainConfig
from styleops.training.super_resolution import HRCrops, SRConfig, make_lr, train_super_resolution

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TINY_TRAIN = TrainConfig(
    steps=30, batch_size=4, image_size=32, lr=2e-3, warmup_steps=0, checkpoint_every=10, log_every=1, seed=5
)
TINY = SRConfig(scale=2, channels=8, blocks=1, residual=False, train=TINY_TRAIN)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photo(photos: list[Path]) -> torch.Tensor:
    """uint8 [3, 512, 768]: the first catalog photo."""
    return read_image(photos[0]).pixels


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("residual", [True, False])
def test_output_is_scale_times_any_odd_size(scale: int, residual: bool) -> None:
    torch.manual_seed(0)
    net = SuperResolutionNet(scale, channels=8, blocks=2, residual=residual)
    x = torch.rand(2, 3, 13, 17)
    assert net(x).shape == (2, 3, 13 * scale, 17 * scale)
    assert net.config() == {"scale": scale, "channels": 8, "blocks": 2, "residual": residual}
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.ConvTranspose2d not in kinds and not any(
        issubclass(k, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)) for k in kinds
    )
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 2 + 2 * 2 + int(math.log2(scale))
    if residual:  # the output conv starts at zero: the untrained net is exactly the bicubic upscale
        assert torch.equal(net(x), bicubic(x, (13 * scale, 17 * scale)))


def test_rejects_other_scales_and_tiny_inputs() -> None:
    with pytest.raises(InvalidInputError, match="scale"):
        SuperResolutionNet(3)
    with pytest.raises(InvalidInputError, match="at least 5 px"):
        SuperResolutionNet(2, channels=4, blocks=0)(torch.rand(1, 3, 4, 9))


def test_safetensors_round_trip_gives_identical_outputs(photo: torch.Tensor) -> None:
    torch.manual_seed(1)
    net = SuperResolutionNet(4, channels=8, blocks=2, residual=True)
    for p in net.parameters():  # a non-trivial residual (the fresh output conv is zero)
        p.data.normal_(0, 0.05)
    blob = to_safetensors(net.state_dict(), "SuperResolutionNet", net.config())
    back = from_safetensors(blob)
    assert isinstance(back, SuperResolutionNet) and back.config() == net.config()
    lr = to_float(photo[:, :48, :64])[None]
    with torch.inference_mode():
        assert torch.equal(back(lr), net.eval()(lr))
    crafted = to_safetensors(net.state_dict(), "SuperResolutionNet", {**net.config(), "scale": 3})
    with pytest.raises(InvalidInputError, match="scale"):
        from_safetensors(crafted)


def test_tiled_upscale_equals_whole_image(photo: torch.Tensor) -> None:
    torch.manual_seed(2)
    net = SuperResolutionNet(2, channels=8, blocks=2, residual=True)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    lr = to_float(photo[:, 100:161, 200:293])[None]  # 61 x 93, cores of 24 leave thin last tiles
    whole = upscale(net, lr)
    tiled = upscale_tiled(net, lr, tile=24)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)  # float rounding of other conv blockings only
    assert (upscale_tiled(net, lr, tile=24, halo=2) - whole).abs().max() > 1e-3  # the halo is what makes it exact


def test_receptive_radius_bounds_what_one_output_pixel_sees() -> None:
    torch.manual_seed(3)
    net = SuperResolutionNet(4, channels=4, blocks=2, residual=False)
    r = receptive_radius(net)
    assert r == 4 + 2 * 2 + 2 + 1
    x = torch.rand(1, 3, 41, 41, requires_grad=True)
    net(x)[0, :, 20 * 4 + 1, 20 * 4 + 2].sum().backward()
    ys, xs = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    reach = max((ys - 20).abs().max(), (xs - 20).abs().max())
    assert r - 2 <= int(reach) <= r  # the bound holds and is nearly tight


def test_psnr_of_identical_images_is_inf_and_of_a_constant_offset_is_the_closed_form(photo: torch.Tensor) -> None:
    hr = photo.clamp(0, 250)
    assert math.isinf(float(psnr_y(hr, hr, 4)))
    assert math.isinf(float(psnr_y(to_float(hr), hr, 4)))  # float in [0, 1] and uint8 are the same image
    d = 3  # every channel + 3 levels: Y moves by 3 * (65.481 + 128.553 + 24.966) / 255 = 3 * 219 / 255
    expected = 20 * math.log10(255 * 255 / (219 * d))
    assert float(psnr_y(hr + d, hr, 4)) == pytest.approx(expected, abs=1e-9)
    batch = torch.stack([hr, hr + d])
    assert psnr_y(batch, torch.stack([hr, hr]), 4).tolist()[1] == pytest.approx(expected, abs=1e-9)


def test_y_channel_is_bt601_studio_range() -> None:
    px = torch.tensor([[0, 255, 255, 0], [0, 255, 0, 0], [0, 255, 0, 255]], dtype=torch.uint8).view(3, 1, 4)
    assert rgb_to_y(px).flatten().tolist() == pytest.approx([16.0, 235.0, 16 + 65.481, 16 + 24.966], abs=1e-12)


def test_ssim_is_one_for_identical_images_and_drops_with_noise(photo: torch.Tensor) -> None:
    hr = photo[:, :128, :160]
    assert float(ssim_y(hr, hr, 4)) == 1.0
    noisy = (
        (hr.float() + torch.randn(hr.shape, generator=torch.Generator().manual_seed(0)) * 10)
        .clamp(0, 255)
        .round()
        .to(torch.uint8)
    )
    s = float(ssim_y(noisy, hr, 4))
    assert 0.3 < s < 0.95 and s == pytest.approx(float(ssim_y(hr, noisy, 4)), abs=1e-12)


def test_degrade_crops_to_the_scale_and_matches_pil_bicubic(photo: torch.Tensor) -> None:
    odd = photo[:, :203, :301]
    hr, lr = degrade(odd, 4)
    assert hr.shape == (3, 200, 300) and lr.shape == (3, 50, 75)
    assert torch.equal(hr, to_float(odd[:, :200, :300]))
    pil = Image.fromarray(odd[:, :200, :300].permute(1, 2, 0).numpy()).resize((75, 50), Image.BICUBIC)
    diff = lr.mul(255).round().permute(1, 2, 0).numpy() - np.asarray(pil, dtype=np.float64)
    assert np.abs(diff).max() <= 1 and (diff == 0).mean() > 0.99
    up = bicubic_upscale(lr, 4)
    pil_up = np.asarray(pil.resize((300, 200), Image.BICUBIC), dtype=np.float64)
    diff = up.mul(255).round().permute(1, 2, 0).numpy() - pil_up
    assert np.abs(diff).max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.skipif(
    not (SHARED / "PROVENANCE.csv").is_file(), reason=f"the shared data set ({SHARED}) is not on this machine"
)
def test_bsd100_x4_bicubic_matches_the_published_psnr() -> None:
    rows = list(csv.DictReader((SHARED / "PROVENANCE.csv").open()))
    bsd100 = [
        SHARED / r["file"] for r in rows if r["source_repo"] == "BIDS/BSDS500" and "/images/val/" in r["source_path"]
    ]
    assert len(bsd100) == 100  # BSDS500 val = the BSDS300 test set = BSD100
    scores = evaluate_sr(lambda lr: bicubic_upscale(lr, 4), (read_image(p).pixels for p in bsd100), 4)
    assert scores.psnr == pytest.approx(25.96, abs=0.03)  # e.g. VDSR/EDSR tables: 25.96 dB
    assert scores.ssim == pytest.approx(0.6675, abs=0.002)


def test_sr_config_round_trips_and_checks_the_crop() -> None:
    assert SRConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(InvalidInputError, match="multiple of the scale"):
        SRConfig(scale=4, train=replace(TINY_TRAIN, image_size=30))


def test_training_pairs_are_blurred_pil_bicubic_downscales(photos: list[Path]) -> None:
    crops = HRCrops(photos, 32, seed=1)
    a, b = crops[(7, 2)], crops[(7, 2)]
    assert a.shape == (3, 32, 32) and torch.equal(a, b)  # deterministic in (seed, step, slot)
    lr = make_lr(a[None], 4, 0.0)
    assert torch.equal(lr[0], degrade(a, 4)[1])  # without blur: exactly the evaluation's degradation
    assert not torch.equal(make_lr(a[None], 4, 1.0), lr)


def test_tiny_training_lowers_the_pixel_loss_and_resumes_exactly(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path]
) -> None:
    held_out = torch.stack([HRCrops(photos, 32, seed=99)[(0, i)] for i in range(8)])
    lr = make_lr(held_out, 2, TINY.blur_sigma)

    def pixel_loss(state: dict[str, torch.Tensor] | None) -> float:
        torch.manual_seed(TINY.train.seed)
        net = SuperResolutionNet(**TINY.model_config())
        if state is not None:
            net.load_state_dict(state)
        with torch.no_grad():
            return float(F.mse_loss(net(lr), held_out))

    straight = train_super_resolution(TINY, photos, encoder, workdir=tmp_path / "a", device="cpu")
    assert straight.steps == 30 and len(straight.history) == 30 and straight.rollbacks == 0
    assert all(
        h["content"] == 0 and h["style"] == 0 and h["tv"] == h["total"] for h in straight.history
    )  # pixel term only
    assert pixel_loss(straight.state_dict) < 0.5 * pixel_loss(None)

    first = replace(TINY, train=replace(TINY_TRAIN, steps=20))
    train_super_resolution(first, photos, encoder, workdir=tmp_path / "b", device="cpu")  # "killed" after step 20
    resumed = train_super_resolution(TINY, photos, encoder, workdir=tmp_path / "b", device="cpu")
    assert resumed.resumed_from == 20
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]
    for name, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[name]), name
    with pytest.raises(InvalidInputError, match="super-resolution settings"):
        train_super_resolution(replace(TINY, blur_sigma=0.5), photos, encoder, workdir=tmp_path / "b", device="cpu")


def test_perceptual_loss_is_the_relu2_2_feature_reconstruction(
    tmp_path: Path, encoder: VGGEncoder, photos: list[Path]
) -> None:
    config = replace(
        TINY, residual=True, loss="perceptual", feature_weight=0.5, pixel_weight=2.0, train=replace(TINY_TRAIN, steps=1)
    )
    assert config.feature_layer == "relu2_2"
    result = train_super_resolution(config, photos, encoder, workdir=tmp_path, device="cpu")
    hr = torch.stack(
        [HRCrops(photos, 32, TINY_TRAIN.seed)[(0, slot)] for slot in range(TINY_TRAIN.batch_size)]
    )  # step 0's batch
    lr = make_lr(hr, 2, config.blur_sigma)
    sr = bicubic(lr, (32, 32))  # the untrained residual net
    with torch.no_grad():
        feats, target = encoder(sr), encoder(hr)
    expected = {n: 0.5 * float(F.mse_loss(feats[n], target[n])) for n in ("relu1_2", "relu2_2", "relu3_3")}
    logged = result.history[0]
    assert logged["content"] == pytest.approx(expected["relu2_2"], rel=1e-4)
    assert all(logged["content"] != pytest.approx(v, rel=1e-2) for n, v in expected.items() if n != "relu2_2")
    assert logged["tv"] == pytest.approx(2.0 * float(F.mse_loss(sr, hr)), rel=1e-4)
    assert logged["total"] == pytest.approx(logged["content"] + logged["tv"], rel=1e-6)
    mean_distance = float(feature_distance(encoder, sr.clamp(0, 1), hr).mean())
    assert mean_distance == pytest.approx(
        expected["relu2_2"] / 0.5, rel=0.05
    )  # the bench's metric is the same distance (of uint8 images)


def test_warm_start_begins_from_the_given_weights(tmp_path: Path, encoder: VGGEncoder, photos: list[Path]) -> None:
    torch.manual_seed(7)
    start = SuperResolutionNet(**TINY.model_config()).state_dict()
    config = replace(TINY, loss="perceptual", train=replace(TINY_TRAIN, steps=1))
    # a zero loss gives zero gradients, and Adam's update of a zero gradient is exactly zero
    result = train_super_resolution(
        config, photos, encoder, workdir=tmp_path, device="cpu", init_state=start, loss_hook=lambda step, loss: loss * 0
    )
    for name, value in start.items():
        assert torch.equal(result.state_dict[name], value), name


# ---- in the stream: UpscaleEngine and Upscaled (styleops.inference.upscale) ------------------------
def test_upscale_engine_gives_the_whole_image_output_for_any_size_and_keeps_errors_when_chained() -> None:
    from styleops.inference.engine import InferenceEngine
    from styleops.inference.upscale import Upscaled, UpscaleEngine

    torch.manual_seed(0)
    net = SuperResolutionNet(scale=2, channels=8, blocks=2, residual=False)
    engine = UpscaleEngine(net, device="cpu", max_side=30, tile=7)  # several tiles per image
    photo = (torch.rand(3, 40, 23) * 255).to(torch.uint8)
    x = engine.prepare(photo)
    assert x.shape == (3, 30, 17) and engine.output_size(40, 23) == (60, 34)
    (y,) = engine.try_stylize([x])
    assert torch.allclose(y, upscale(net, x), atol=1e-5)
    thin = torch.rand(3, 3, 2)  # under the net's 5 px: edge-padded, cropped back
    padded = F.pad(thin[None], (0, 3, 0, 2), mode="replicate")[0]
    assert torch.allclose(engine.upscale(thin), upscale(net, padded)[:, :6, :4], atol=1e-6)

    class FailsFirst:  # an engine that could not do its first image
        batch_size, device = 2, torch.device("cpu")

        def bucket(self, h: int, w: int) -> tuple[int, int]:
            return h, w

        def prepare(self, image: torch.Tensor) -> torch.Tensor:
            return to_float(image)

        def try_stylize(self, prepared: list[torch.Tensor]) -> list[torch.Tensor | Exception]:
            return [ValueError("no"), *(1 - p for p in prepared[1:])]

    chained = Upscaled(FailsFirst(), engine)
    a, b = (torch.rand(3, 9, 12) * 255).to(torch.uint8), (torch.rand(3, 8, 8) * 255).to(torch.uint8)
    error, out = chained.try_stylize([chained.prepare(a), chained.prepare(b)])
    assert isinstance(error, ValueError) and chained.batch_size == 2
    assert torch.allclose(out, upscale(net, 1 - to_float(b)), atol=1e-5)
    feed_forward = Upscaled(InferenceEngine(torch.nn.Identity(), device="cpu", max_side=16), engine)
    (same,) = feed_forward.try_stylize([feed_forward.prepare(photo)])
    assert same.shape == (3, 32, 18)  # shrunk to 16 px by the first engine, then x2


def test_an_output_over_the_pixel_cap_is_refused_before_any_work() -> None:
    from styleops.errors import ImageTooLargeError
    from styleops.inference.upscale import Upscaled, UpscaleEngine

    net = SuperResolutionNet(scale=4, channels=4, blocks=0)
    engine = UpscaleEngine(net, device="cpu", max_output_pixels=16 * 10 * 12)  # a 10x12 input's x4 output fits
    fits, too_big = torch.rand(3, 10, 12), torch.rand(3, 10, 13)
    ok, refused = engine.try_stylize([fits, too_big])
    assert ok.shape == (3, 40, 48)
    assert isinstance(refused, ImageTooLargeError) and refused.error_class == "too_large"
    assert str(refused) == (
        "the x4 output would be 52x40 = 2,080 pixels, over the limit of 1,920 "
        "(lower --max-side, or raise STYLEOPS_MAX_IMAGE_PIXELS)"
    )

    seen: list[tuple[int, ...]] = []

    class Recording:  # the stylization before the upscale: must never see the refused image
        batch_size, device = 2, torch.device("cpu")

        def bucket(self, h: int, w: int) -> tuple[int, int]:
            return h, w

        def prepare(self, image: torch.Tensor) -> torch.Tensor:
            return image

        def try_stylize(self, prepared: list[torch.Tensor]) -> list[torch.Tensor]:
            seen.extend(tuple(p.shape) for p in prepared)
            return list(prepared)

    first, second = Upscaled(Recording(), engine).try_stylize([too_big, fits])
    assert isinstance(first, ImageTooLargeError) and second.shape == (3, 40, 48)
    assert seen == [(3, 10, 12)]
