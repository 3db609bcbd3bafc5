"""Arbitrary-style stylizers (AdaIN, style swap), colour preservation, decoder training, Gatys engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.inference.arbitrary import AdaINStylizer, SwapStylizer
from styleops.inference.color import ColorPreserving, preserve_colors, rgb_to_yiq
from styleops.inference.gatys import GatysConfig, GatysEngine
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.io.weights import load_encoder
from styleops.losses.perceptual import LossWeights
from styleops.models.decoder import VGGDecoder
from styleops.models.vgg import VGGEncoder
from styleops.ops import adain, bank_statistics, build_patch_bank, mean_std, style_swap
from styleops.training.decoders import adain_config, decoder_layer, inverse_config, train_adain, train_inverse
from styleops.training.engine import CHECKPOINT_FILE, TrainConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ARTWORKS = sorted((EXAMPLES / "artwork").glob("*/*.jpg"))  # hoitsu, kandinsky, monet


@pytest.fixture(scope="module")
def enc(vgg_weights: Path) -> VGGEncoder:
    return load_encoder(vgg_weights, ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two real photos, [2, 3, 64, 96] in [0, 1]."""
    photos = sorted((EXAMPLES / "catalog").glob("*.jpg"))[:2]
    return torch.stack([resize_max_side(to_float(read_image(p).pixels), 96)[:, :64, :96] for p in photos])


@pytest.fixture(scope="module")
def arts() -> list[torch.Tensor]:
    return [resize_max_side(to_float(read_image(p).pixels), 128)[None] for p in ARTWORKS]


def test_adain_stylizer_is_adain_then_decoder(enc: VGGEncoder, images: torch.Tensor, arts: list[torch.Tensor]) -> None:
    torch.manual_seed(0)
    dec = VGGDecoder("relu4_1").eval()
    with torch.no_grad():
        expected = dec(adain(enc(images)["relu4_1"], enc(arts[0])["relu4_1"]))
        got = AdaINStylizer(enc, dec, [arts[0]])(images)
    assert got.shape == images.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_adain_blend_weight_one_is_that_artwork_and_alpha_zero_is_the_photo(
    enc: VGGEncoder, images: torch.Tensor, arts: list[torch.Tensor]
) -> None:
    dec = VGGDecoder("relu4_1").eval()
    with torch.no_grad():
        alone = AdaINStylizer(enc, dec, [arts[1]])(images)
        blended = AdaINStylizer(enc, dec, arts, [0.0, 3.0, 0.0])(images)  # weights are normalized
        assert torch.equal(alone, blended)
        photo = AdaINStylizer(enc, dec, arts, alpha=0.0)(images)
        torch.testing.assert_close(photo, dec(enc(images)["relu4_1"]), rtol=1e-4, atol=1e-4)
        half = AdaINStylizer(enc, dec, [arts[0], arts[2]], [1, 1])(images)
    assert not torch.equal(half, alone)


@pytest.mark.parametrize("weights", [[-1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0], [float("nan"), 1.0, 1.0]])
def test_adain_rejects_bad_blend_weights(enc: VGGEncoder, arts: list[torch.Tensor], weights: list[float]) -> None:
    with pytest.raises(InvalidInputError):
        AdaINStylizer(enc, VGGDecoder("relu4_1"), arts, weights)


def test_adain_rejects_a_decoder_for_another_layer_and_bad_alpha(
    enc: VGGEncoder, arts: list[torch.Tensor], vgg_weights: Path
) -> None:
    with pytest.raises(InvalidInputError, match="relu3_1"):
        AdaINStylizer(load_encoder(vgg_weights, ["relu4_1"]), VGGDecoder("relu3_1"), arts)
    with pytest.raises(InvalidInputError, match="alpha"):
        AdaINStylizer(enc, VGGDecoder("relu4_1"), arts, alpha=1.5)


def test_swap_stylizer_is_swap_then_inverse(enc: VGGEncoder, images: torch.Tensor, arts: list[torch.Tensor]) -> None:
    dec = VGGDecoder("relu3_1").eval()
    with torch.no_grad():
        bank = build_patch_bank(enc(arts[0])["relu3_1"])
        got = SwapStylizer(enc, dec, bank, chunk_size=500)(images)
        expected = dec(style_swap(enc(images)["relu3_1"], bank))
    assert got.shape == images.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_normalised_swap_mixes_the_swap_with_adain_to_the_banks_statistics(
    enc: VGGEncoder, images: torch.Tensor, arts: list[torch.Tensor]
) -> None:
    dec = VGGDecoder("relu3_1").eval()
    with torch.no_grad():
        style = enc(arts[0])["relu3_1"]
        bank = build_patch_bank(style)
        mean, std = bank_statistics(bank)
        interior = style[..., 1:-1, 1:-1].half().float()  # the patch centres, at the bank's precision
        torch.testing.assert_close((mean, std), mean_std(interior), rtol=1e-5, atol=1e-5)
        f = enc(images)["relu3_1"]
        normalised = (f - f.mean((2, 3), keepdim=True)) / (f.var((2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
        c = normalised * std + mean
        expected = dec(0.3 * style_swap(c, bank) + 0.7 * c)
        got = SwapStylizer(enc, dec, bank, normalise=True, swap_weight=0.3)(images)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        as_adain = SwapStylizer(enc, dec, bank, normalise=True, swap_weight=0.0)(images)
        torch.testing.assert_close(as_adain, dec(c), rtol=1e-4, atol=1e-4)
        raw = SwapStylizer(enc, dec, bank, swap_weight=0.3)(images)  # no normalising: mixed with the raw features
        torch.testing.assert_close(raw, dec(0.3 * style_swap(f, bank) + 0.7 * f), rtol=1e-4, atol=1e-4)
    with pytest.raises(InvalidInputError, match="swap_weight"):
        SwapStylizer(enc, dec, bank, swap_weight=1.5)


def test_swap_rejects_a_bank_of_another_layer(enc: VGGEncoder, arts: list[torch.Tensor]) -> None:
    with torch.no_grad():
        bank = build_patch_bank(enc(arts[0])["relu4_1"])  # 512 channels
    with pytest.raises(InvalidInputError, match="512 channels"):
        SwapStylizer(enc, VGGDecoder("relu3_1"), bank)


def test_colour_preservation_keeps_the_photos_colours(images: torch.Tensor) -> None:
    stylized = images.flip(-1).roll(1, dims=1)  # other colours, other layout
    lum = preserve_colors(images, stylized, "luminance")
    yiq_out, yiq_photo, yiq_styl = rgb_to_yiq(lum), rgb_to_yiq(images), rgb_to_yiq(stylized)
    inside = (lum > 0.02).all(1, keepdim=True) & (lum < 0.98).all(1, keepdim=True)  # clamping aside
    assert torch.allclose(yiq_out[:, :1][inside], yiq_styl[:, :1][inside], atol=1e-4)
    assert torch.allclose(
        yiq_out[:, 1:][inside.expand(-1, 2, -1, -1)], yiq_photo[:, 1:][inside.expand(-1, 2, -1, -1)], atol=1e-4
    )
    hist = preserve_colors(images, stylized, "histogram")
    torch.testing.assert_close(hist.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.02, rtol=0)
    assert torch.equal(preserve_colors(images, stylized, "none"), stylized)
    with pytest.raises(InvalidInputError):
        preserve_colors(images, stylized, "sepia")
    wrapped = ColorPreserving(torch.nn.Identity(), "luminance")
    torch.testing.assert_close(wrapped(images), images.clamp(0, 1), atol=1e-5, rtol=0)


def test_decoder_config_round_trips_through_safetensors() -> None:
    dec = VGGDecoder("relu3_1")
    back = from_safetensors(to_safetensors(dec.state_dict(), "VGGDecoder", dec.config()))
    assert isinstance(back, VGGDecoder) and back.config() == {"from_layer": "relu3_1", "arch": "vgg16"}
    for k, v in dec.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_decoder_layer_is_the_single_content_layer() -> None:
    assert decoder_layer(adain_config()) == "relu4_1" and decoder_layer(inverse_config()) == "relu3_1"
    with pytest.raises(InvalidInputError, match="exactly one"):
        decoder_layer(TrainConfig(loss=LossWeights(content_layers={"relu3_1": 1.0, "relu4_1": 1.0})))


TINY = {"steps": 6, "batch_size": 2, "image_size": 64, "checkpoint_every": 3, "log_every": 1, "seed": 5}


@pytest.mark.parametrize(
    ("train", "config"), [(train_adain, adain_config(**TINY, lr=1e-3)), (train_inverse, inverse_config(**TINY))]
)
def test_decoder_training_learns_and_resumes_exactly(
    tmp_path: Path, enc: VGGEncoder, train, config: TrainConfig
) -> None:
    photos = sorted((EXAMPLES / "catalog").glob("*.jpg"))
    straight = train(config, photos, ARTWORKS, enc, workdir=tmp_path / "a", device="cpu")
    assert len(straight.history) == config.steps and straight.model_config["from_layer"] == decoder_layer(config)
    assert straight.history[-1]["content"] < straight.history[0]["content"]
    train(
        replace(config, steps=3), photos, ARTWORKS, enc, workdir=tmp_path / "b", device="cpu"
    )  # "killed" after step 3
    assert (tmp_path / "b" / CHECKPOINT_FILE).is_file()
    resumed = train(config, photos, ARTWORKS, enc, workdir=tmp_path / "b", device="cpu")
    assert resumed.resumed_from == 3
    for name, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[name]), name


def test_gatys_engine_levels_colour_and_progress(
    enc: VGGEncoder, images: torch.Tensor, arts: list[torch.Tensor], vgg_weights: Path
) -> None:
    loss_enc = load_encoder(vgg_weights, LossWeights().layers)
    calls: list[int] = []
    cfg = GatysConfig(iterations=3, optimizer="adam", style_size=64)
    engine = GatysEngine(
        loss_enc, arts[0][0], cfg, max_side=48, levels=2, color="luminance", progress=lambda i, loss: calls.append(i)
    )
    image = (images[0] * 255).to(torch.uint8)
    x = engine.prepare(image)
    assert max(x.shape[-2:]) == 48
    (y,) = engine.stylize_prepared([x])
    assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert calls == [1, 2, 3, 4, 5, 6]  # 3 iterations at 24 px, then 3 at 48 px
    with pytest.raises(InvalidInputError):
        GatysEngine(loss_enc, arts[0][0], cfg, levels=9)
