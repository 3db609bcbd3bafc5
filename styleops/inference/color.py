"""Colour preservation (Gatys et al. 2017, "Controlling perceptual factors"): keep the photo's colours.

Two methods, both on float RGB images in [0, 1], [3, H, W] or [N, 3, H, W]:
- `luminance_only(content, stylized)`: the stylized luminance with the content's chrominance (YIQ).
- `match_colors(source, reference)`: a linear map giving `source` the per-image RGB mean and
  covariance of `reference` (applied to the artwork before stylizing, or to an output).
`preserve_colors(content, stylized, mode)` applies either to a finished output, so every method
(per-style, multi-style, swap, AdaIN, Gatys) gets the same option; `ColorPreserving` wraps a
stylizing network with it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.palette import palette_of, recolour

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


def _batched(x: Tensor) -> Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise InvalidInputError(f"expected RGB images [3, H, W] or [N, 3, H, W], got {tuple(x.shape)}")
    return x.float()


def rgb_to_yiq(x: Tensor) -> Tensor:
    """[N, 3, H, W] RGB -> YIQ (Y in [0, 1])."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(x.device), x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_YIQ).to(x.device), x)


def luminance_only(content: Tensor, stylized: Tensor) -> Tensor:
    """Y of `stylized`, I and Q of `content` (same size), clamped to [0, 1]; shape of `stylized`."""
    c, s = _batched(content), _batched(stylized)
    if c.shape[-2:] != s.shape[-2:]:
        raise InvalidInputError(f"content {tuple(c.shape[-2:])} and stylized {tuple(s.shape[-2:])} sizes differ")
    yiq = torch.cat([rgb_to_yiq(s)[:, :1], rgb_to_yiq(c)[:, 1:]], dim=1)
    out = yiq_to_rgb(yiq).clamp(0, 1)
    return out if stylized.dim() == 4 else out[0]


def match_colors(source: Tensor, reference: Tensor) -> Tensor:
    """`source` with the RGB mean and covariance of `reference` (per image), clamped to [0, 1]."""
    s, r = _batched(source), _batched(reference)
    if len(r) not in (1, len(s)):
        raise InvalidInputError(f"{len(r)} references for {len(s)} images")
    result = recolour(s, palette_of(r)).clamp(0, 1)
    return result if source.dim() == 4 else result[0]


COLOR_MODES = ("none", "luminance", "histogram")


def preserve_colors(content: Tensor, stylized: Tensor, mode: str) -> Tensor:
    """Keep the photo's colours in an output: 'luminance' (stylized Y, photo IQ), 'histogram'
    (output's RGB mean/covariance matched to the photo's) or 'none'. Same shapes in and out."""
    if mode == "none":
        return stylized
    if mode == "luminance":
        return luminance_only(content, stylized)
    if mode == "histogram":
        return match_colors(stylized, content)
    raise InvalidInputError(f"colour preservation must be one of {COLOR_MODES}, got {mode!r}")


class ColorPreserving(nn.Module):
    """`model(x)` followed by `preserve_colors(x, ., mode)`; x [N, 3, H, W] in [0, 1]."""

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in COLOR_MODES:
            raise InvalidInputError(f"colour preservation must be one of {COLOR_MODES}, got {mode!r}")
        self.model, self.mode = model, mode

    def forward(self, x: Tensor) -> Tensor:
        y = self.model(x)
        return preserve_colors(x, y.float().clamp(0, 1), self.mode) if self.mode != "none" else y
