"""Colour preservation: luminance-only transfer and mean/covariance colour matching."""

from __future__ import annotations

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.inference.color import luminance_only, match_colors, rgb_to_yiq, yiq_to_rgb


def test_yiq_round_trip() -> None:
    x = torch.rand(2, 3, 4, 5)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5, rtol=0)


def test_luminance_only_takes_luma_from_stylized_and_chroma_from_content() -> None:
    torch.manual_seed(0)
    content = 0.3 + 0.4 * torch.rand(3, 8, 8)  # mid-range: no clamping
    stylized = 0.3 + 0.4 * torch.rand(3, 8, 8)
    out = luminance_only(content, stylized)
    assert out.shape == (3, 8, 8)
    got, c, s = rgb_to_yiq(out[None]), rgb_to_yiq(content[None]), rgb_to_yiq(stylized[None])
    torch.testing.assert_close(got[:, :1], s[:, :1], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[:, 1:], c[:, 1:], atol=1e-5, rtol=0)
    with pytest.raises(InvalidInputError):
        luminance_only(content, torch.rand(3, 4, 4))


def test_match_colors_gives_the_reference_mean_and_covariance() -> None:
    torch.manual_seed(1)
    base = torch.rand(3, 16, 16)
    source = 0.4 + 0.2 * base  # low contrast, no clamping after the transform
    reference = torch.stack([0.3 + 0.3 * base[0], 0.5 + 0.1 * base[1] + 0.1 * base[0], 0.2 + 0.2 * base[2]])
    out = match_colors(source, reference)
    torch.testing.assert_close(out.flatten(1).mean(1), reference.flatten(1).mean(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(out.flatten(1)), torch.cov(reference.flatten(1)), atol=1e-4, rtol=1e-3)
