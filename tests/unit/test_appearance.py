"""Appearance measures (styleops.evaluation.appearance): values worked out by hand on tiny images,
and on real photos."""

from __future__ import annotations

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.evaluation.appearance import (
    appearance,
    colour_ratio,
    gradient_magnitude,
    luminance,
    sliced_wasserstein,
    structure,
    texture_ratio,
    wasserstein_1d,
)
from styleops.io.images import read_image, resize_max_side, to_float


def test_luminance_and_gradient_by_hand() -> None:
    img = torch.zeros(3, 2, 2)
    img[0] = 1.0  # pure red
    assert torch.allclose(luminance(img), torch.full((2, 2), 0.299))
    lum = torch.tensor([[0.0, 0.3], [0.4, 0.0]])
    # forward differences at (0, 0): dx = 0.3, dy = 0.4 -> 0.5
    assert torch.allclose(gradient_magnitude(lum), torch.tensor([[0.5]]))


def test_wasserstein_1d_of_shifted_samples_is_the_shift() -> None:
    a = torch.linspace(0, 1, 1000)
    assert wasserstein_1d(a, a + 0.25) == pytest.approx(0.25, abs=1e-6)
    assert wasserstein_1d(a, a) == 0.0
    # different sample sizes of the same distribution: close to 0
    assert wasserstein_1d(torch.linspace(0, 1, 1000), torch.linspace(0, 1, 333)) < 2e-3


def test_sliced_wasserstein_of_a_constant_shift_is_its_mean_projection() -> None:
    a = torch.rand(3, 500, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.3, 0.0, 0.0])[:, None]
    d = sliced_wasserstein(a, a + shift, directions=256)
    # each direction u moves every point by 0.3*u_r: W1 = 0.3*E|u_r| = 0.3 * 0.5 for u uniform on the sphere
    assert d == pytest.approx(0.15, rel=0.1)


def test_photo_scores_against_itself_and_a_flat_image() -> None:
    photo = resize_max_side(to_float(read_image("examples/catalog/kodim05.jpg").pixels), 120)
    art = resize_max_side(to_float(read_image("examples/artwork/monet/monet.jpg").pixels), 200)
    same = appearance(photo, photo, art)
    assert same.structure == pytest.approx(1.0, abs=1e-6)
    assert same.colour == pytest.approx(1.0) and same.texture == pytest.approx(1.0)
    flat = torch.full_like(photo, 0.5)
    assert structure(flat, photo) == 0.0  # no gradient at all: no correlation
    assert texture_ratio(flat, photo, art) > 1.0  # a flat image has no brushwork: further than the photo
    # the artwork itself, cropped to the photo's size, has the artwork's palette: ratio well below 1
    crop = art[:, : photo.shape[1], : photo.shape[2]]
    assert crop.shape == photo.shape
    assert colour_ratio(crop, photo, art) < 0.5
    assert texture_ratio(crop, photo, art) < 0.5


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        structure(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(InvalidInputError):
        colour_ratio(torch.rand(1, 8, 8), torch.rand(1, 8, 8), torch.rand(3, 8, 8))
