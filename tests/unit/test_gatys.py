"""Gatys optimization (groundwork for issue 4): the loss goes down, scales, seeds, bad config."""

from __future__ import annotations

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.inference.gatys import GatysConfig, gatys
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.models.vgg import VGGEncoder


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_decreases(optimizer: str, encoder: VGGEncoder, photos: list, artwork: torch.Tensor) -> None:
    content = resize_max_side(to_float(read_image(photos[0]).pixels), 48)
    image, history = gatys(content, artwork, encoder, GatysConfig(iterations=8, optimizer=optimizer, style_size=64))
    assert image.shape == content.shape and 0 <= image.min() and image.max() <= 1
    assert len(history) >= 8 and history[-1] < 0.8 * history[0]


def test_coarse_to_fine_and_seeded_noise(encoder: VGGEncoder, photos: list, artwork: torch.Tensor) -> None:
    content = to_float(read_image(photos[1]).pixels)
    cfg = GatysConfig(iterations=2, optimizer="adam", init="noise", scales=(24, 40), style_size=64, seed=5)
    seen: list[int] = []
    a, _ = gatys(content, artwork, encoder, cfg, progress=lambda i, loss: seen.append(i))
    b, _ = gatys(content, artwork, encoder, cfg)
    assert max(a.shape[-2:]) == 40 and seen == [1, 2, 3, 4]
    assert torch.equal(a, b)


def test_bad_config_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        GatysConfig(optimizer="sgd")
    with pytest.raises(InvalidInputError):
        GatysConfig(init="zeros")


def test_any_memory_layout_is_accepted(encoder: VGGEncoder, photos: list, artwork: torch.Tensor) -> None:
    """A channels-last view straight from a Pillow array (permute, not contiguous) works like a copy."""
    import numpy as np
    from PIL import Image

    hwc = np.array(Image.open(photos[0]).convert("RGB").resize((40, 28)))
    content = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255.0
    assert not content.is_contiguous()
    art = artwork.permute(0, 2, 1).transpose(1, 2)  # same values, non-contiguous
    cfg = GatysConfig(iterations=3, style_size=48)
    a, _ = gatys(content, art, encoder, cfg)
    b, _ = gatys(content.contiguous(), artwork.contiguous(), encoder, cfg)
    assert torch.equal(a, b)
