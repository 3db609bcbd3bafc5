"""The palette start: linear colour transfer (styleops.models.palette) and TransformerNet(palette=True)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from styleops.errors import InvalidInputError
from styleops.inference.tiling import stylize_tiled
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.palette import Palette, PaletteMatch, blend_palettes, palette_of, recolour
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import TrainConfig, train_style

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _image(path: Path, side: int) -> torch.Tensor:
    return resize_max_side(to_float(read_image(path).pixels), side)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = x.double().flatten(1)
    return pixels.mean(1), torch.cov(pixels, correction=0)


def test_recolour_gives_the_targets_mean_and_covariance_on_real_images() -> None:
    photo = _image(EXAMPLES / "catalog" / "kodim05.jpg", 96)
    art = _image(EXAMPLES / "artwork" / "monet" / "monet.jpg", 96)
    out = recolour(photo[None], palette_of(art))[0]  # unclamped: the statistics are exact
    (m_out, c_out), (m_art, c_art) = _stats(out), _stats(art)
    torch.testing.assert_close(m_out, m_art, atol=1e-5, rtol=0)
    torch.testing.assert_close(c_out, c_art, atol=2e-5, rtol=1e-3)
    # an image recoloured to its own palette is itself
    torch.testing.assert_close(recolour(photo[None], palette_of(photo))[0], photo, atol=1e-5, rtol=0)
    # per-sample palettes: [N, 3] and [N, 3, 3]
    pa, pp = palette_of(art), palette_of(photo)
    both = recolour(
        torch.stack([photo, photo]), Palette(torch.stack([pa.mean, pp.mean]), torch.stack([pa.sqrt_cov, pp.sqrt_cov]))
    )
    torch.testing.assert_close(both[1], photo, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[0], out, atol=1e-6, rtol=0)


def test_recolour_of_a_crop_with_the_whole_images_statistics_is_the_crop_of_the_whole() -> None:
    photo = _image(EXAMPLES / "catalog" / "kodim07.jpg", 120)[None]
    target = palette_of(_image(EXAMPLES / "artwork" / "hoitsu" / "hoitsu.jpg", 96))
    whole = recolour(photo, target)
    crop = recolour(photo[..., 10:50, 20:70], target, palette_of(photo))
    torch.testing.assert_close(crop, whole[..., 10:50, 20:70], atol=1e-6, rtol=0)
    assert not torch.allclose(recolour(photo[..., 10:50, 20:70], target), crop, atol=1e-3)


def test_palette_net_starts_at_the_recoloured_photo_and_round_trips() -> None:
    photo = _image(EXAMPLES / "catalog" / "kodim15.jpg", 64)[None]
    art = _image(EXAMPLES / "artwork" / "monet" / "monet.jpg", 64)
    net = TransformerNet(channels=4, n_residual=1, output="logit_residual", palette=True)
    net.set_palette(palette_of(art))
    expected = recolour(photo, palette_of(art)).clamp(1 / 512, 1 - 1 / 512)
    torch.testing.assert_close(net(photo), expected, atol=1e-5, rtol=0)
    assert TransformerNet(4, 1, output="residual", palette=True).config()["palette"] is True
    assert "palette" not in TransformerNet(4, 1, output="residual").config()  # older configs stay as they were
    with pytest.raises(InvalidInputError, match="residual output"):
        TransformerNet(4, 1, output="direct", palette=True)
    with pytest.raises(InvalidInputError, match="no palette"):
        TransformerNet(4, 1, output="residual").set_palette(palette_of(art))
    loaded = from_safetensors(to_safetensors(net.state_dict(), "TransformerNet", net.config()))
    torch.testing.assert_close(loaded.palette_mean, palette_of(art).mean)
    torch.testing.assert_close(loaded(photo), net(photo), atol=0, rtol=0)


def test_multistyle_palettes_blend_with_the_style_weights() -> None:
    x = _image(EXAMPLES / "catalog" / "kodim20.jpg", 48)[None]
    arts = [_image(EXAMPLES / "artwork" / s / f"{s}.jpg", 48) for s in ("monet", "hoitsu")]
    net = MultiStyleTransformerNet(2, 4, 1, output="residual", palette=True).eval()
    for i, art in enumerate(arts):
        net.set_palette(palette_of(art), i)
    palettes = [palette_of(a) for a in arts]
    with torch.no_grad():
        for i in range(2):
            torch.testing.assert_close(net(x, i), recolour(x, palettes[i]), atol=1e-5, rtol=0)
        blend = Palette(
            0.25 * palettes[0].mean + 0.75 * palettes[1].mean,
            0.25 * palettes[0].sqrt_cov + 0.75 * palettes[1].sqrt_cov,
        )
        torch.testing.assert_close(net(x, [0.25, 0.75]), recolour(x, blend), atol=1e-5, rtol=0)
    assert net.add_style(init_from=1) == 2
    torch.testing.assert_close(net.palette_mean[2], palettes[1].mean)


def test_tiles_of_a_palette_net_equal_the_whole_image() -> None:
    photo = F.interpolate(_image(EXAMPLES / "catalog" / "kodim23.jpg", 300)[None], size=(206, 262), mode="bilinear")
    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=1, output="logit_residual", palette=True)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)  # a residual far from zero, so the windows' own statistics would show
    net.set_palette(palette_of(_image(EXAMPLES / "artwork" / "monet" / "monet.jpg", 96)))
    net.eval()
    with torch.no_grad():
        whole = net(photo)
        tiled = stylize_tiled(net, photo, tile=128, overlap=48)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert net.source_palette is None  # the whole image's statistics are not left behind


def test_training_stores_the_artworks_palette(
    encoder: VGGEncoder, photos: list[Path], artwork: torch.Tensor, tmp_path: Path
) -> None:
    cfg = TrainConfig(steps=2, batch_size=1, image_size=32, style_size=64, channels=4, n_residual=1, seed=0)
    assert (cfg.output, cfg.palette) == ("logit_residual", True)  # the default recipe
    result = train_style(cfg, photos[:2], artwork, encoder, workdir=tmp_path, device="cpu")
    expected = palette_of(resize_max_side(artwork, 64))
    torch.testing.assert_close(result.state_dict["palette_mean"], expected.mean)
    torch.testing.assert_close(result.state_dict["palette_sqrt_cov"], expected.sqrt_cov)
    assert result.model_config["palette"] is True


def test_palette_match_gives_the_artworks_palette_and_alpha_blends_towards_the_photos() -> None:
    photo = _image(EXAMPLES / "catalog" / "kodim05.jpg", 96)[None]
    decoded = photo.flip(-1).roll(1, dims=1)  # any output (channels swapped): its statistics are replaced
    monet, hoitsu = (palette_of(_image(EXAMPLES / "artwork" / n / f"{n}.jpg", 96)) for n in ("monet", "hoitsu"))
    out = PaletteMatch(monet)(decoded, photo)[0]
    torch.testing.assert_close(_stats(out)[0], monet.mean.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(_stats(out)[1], (monet.sqrt_cov @ monet.sqrt_cov).double(), atol=2e-5, rtol=1e-3)
    # alpha 0: the photo's own palette; alpha 1/2: the mean of the two palettes' means
    torch.testing.assert_close(
        _stats(PaletteMatch(monet, 0.0)(decoded, photo)[0]), _stats(photo[0]), atol=2e-5, rtol=1e-3
    )
    half = _stats(PaletteMatch(monet, 0.5)(decoded, photo)[0])[0]
    torch.testing.assert_close(half, (monet.mean.double() + _stats(photo[0])[0]) / 2, atol=1e-5, rtol=0)
    # blends: weights normalized, one weight on one palette is that palette
    only = blend_palettes([monet, hoitsu], [0.0, 2.0])
    torch.testing.assert_close(only.mean, hoitsu.mean)
    torch.testing.assert_close(only.sqrt_cov, hoitsu.sqrt_cov)
    with pytest.raises(InvalidInputError, match="one non-negative weight per palette"):
        blend_palettes([monet], [1.0, 1.0])
    with pytest.raises(InvalidInputError, match="alpha must be in"):
        PaletteMatch(monet, 1.5)


class _Decoded(torch.nn.Module):
    """A stand-in for an arbitrary-style stylizer: a 3x3 conv, then the final PaletteMatch."""

    def __init__(self, target: Palette) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")
        self.palette = PaletteMatch(target, alpha=0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.palette(self.conv(x), x)


def test_tiles_of_a_palette_matched_output_equal_the_whole_image() -> None:
    photo = _image(EXAMPLES / "catalog" / "kodim23.jpg", 260)[None]
    torch.manual_seed(0)
    model = _Decoded(palette_of(_image(EXAMPLES / "artwork" / "monet" / "monet.jpg", 96))).eval()
    with torch.no_grad():
        whole = model(photo)
        tiled = stylize_tiled(model, photo, tile=96, overlap=16)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert not model.palette.deferred  # left as it was found
    with torch.no_grad():  # each window matched on its own would not be the whole image
        model.palette.deferred = False
        naive = torch.cat([model(photo[..., :, :128]), model(photo[..., :, 128:])], -1)
    assert (naive - whole).abs().max().item() > 1e-2
