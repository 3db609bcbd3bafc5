"""Appearance measures of a stylized image that no training loss can game.

None of them looks through a VGG network, so a model trained on a Gram loss cannot score well on
them by matching Gram matrices while looking wrong. All take float images [3, H, W], RGB in [0, 1].

- `structure(output, photo)`: Pearson correlation of the luminance gradient magnitudes of output
  and photo at half resolution (1 = every edge where the photo has it; Gatys@100 gets about 0.8).
- `colour_ratio(output, photo, artwork)`: sliced Wasserstein distance between the output's RGB
  pixels and the artwork's, as a fraction of the photo's (0 = the artwork's palette; 1 = no change).
- `texture_ratio(output, photo, artwork)`: 1-D Wasserstein distance between log gradient-magnitude
  distributions, output vs artwork, averaged over two scales (full and half resolution), as a
  fraction of the photo's.

The artwork and the images may differ in size: the distributions are compared by quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError

_LUMA = (0.299, 0.587, 0.114)
_QUANTILES = 512
_DIRECTIONS = 64
_LOG_EPS = 1e-3  # gradient magnitudes below ~1/1000 of full scale count as flat


def _check(image: Tensor, name: str) -> Tensor:
    if image.dim() != 3 or image.shape[0] != 3:
        raise InvalidInputError(f"{name} must be [3, H, W], got {tuple(image.shape)}")
    return image.detach().float().cpu().clamp(0, 1)


def luminance(image: Tensor) -> Tensor:
    """[3, H, W] RGB -> [H, W] luma (Rec. 601 weights)."""
    w = torch.tensor(_LUMA, dtype=image.dtype).view(3, 1, 1)
    return (image * w).sum(0)


def gradient_magnitude(lum: Tensor) -> Tensor:
    """[H, W] -> [H-1, W-1] magnitude of forward differences (units of intensity per pixel)."""
    dx = lum[:-1, 1:] - lum[:-1, :-1]
    dy = lum[1:, :-1] - lum[:-1, :-1]
    return torch.sqrt(dx * dx + dy * dy)


def _half(lum: Tensor) -> Tensor:
    """[H, W] -> [H//2, W//2] by 2x2 averaging (the image must be at least 4x4)."""
    return F.avg_pool2d(lum[None, None], 2)[0, 0]


def structure(output: Tensor, photo: Tensor) -> float:
    """Correlation in [-1, 1] of the half-resolution luminance gradient magnitudes; same sizes."""
    out, ph = _check(output, "output"), _check(photo, "photo")
    if out.shape != ph.shape:
        raise InvalidInputError(f"output {tuple(out.shape)} and photo {tuple(ph.shape)} must have the same size")
    a = gradient_magnitude(_half(luminance(out))).flatten()
    b = gradient_magnitude(_half(luminance(ph))).flatten()
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def _quantiles(values: Tensor, n: int = _QUANTILES) -> Tensor:
    """[..., M] -> [..., n] evenly spaced quantiles (midpoints) along the last dimension."""
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.quantile(values.double(), q, dim=-1).movedim(0, -1)


def _subsample(values: Tensor, limit: int, seed: int = 0) -> Tensor:
    """At most `limit` entries along the last dim (a seeded random subset; torch.quantile's cap)."""
    if values.shape[-1] <= limit:
        return values
    idx = torch.randperm(values.shape[-1], generator=torch.Generator().manual_seed(seed))[:limit]
    return values[..., idx]


def wasserstein_1d(a: Tensor, b: Tensor) -> float:
    """W1 distance between two 1-D samples of any sizes, by quantile matching."""
    qa, qb = _quantiles(_subsample(a.flatten(), 1 << 20)), _quantiles(_subsample(b.flatten(), 1 << 20))
    return float((qa - qb).abs().mean())


def sliced_wasserstein(a: Tensor, b: Tensor, directions: int = _DIRECTIONS, seed: int = 0) -> float:
    """Sliced W1 between pixel sets a [3, ...] and b [3, ...] over fixed random unit directions."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(directions, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    pa = d @ _subsample(a.reshape(3, -1).double(), 1 << 18)
    pb = d @ _subsample(b.reshape(3, -1).double(), 1 << 18)
    return float((_quantiles(pa) - _quantiles(pb)).abs().mean())


def colour_ratio(output: Tensor, photo: Tensor, artwork: Tensor) -> float:
    """SWD(output, artwork) / SWD(photo, artwork) over RGB pixels."""
    out, ph, art = _check(output, "output"), _check(photo, "photo"), _check(artwork, "artwork")
    base = sliced_wasserstein(ph, art)
    return sliced_wasserstein(out, art) / base if base > 0 else float("nan")


def _log_gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    """Log gradient magnitudes of the luminance at full and half resolution."""
    lum = luminance(image)
    return tuple(torch.log(gradient_magnitude(x) + _LOG_EPS) for x in (lum, _half(lum)))  # type: ignore[return-value]


def texture_ratio(output: Tensor, photo: Tensor, artwork: Tensor) -> float:
    """Mean over two scales of W1(log|grad| output, artwork) / W1(log|grad| photo, artwork)."""
    out, ph, art = (
        _log_gradients(_check(x, n)) for x, n in ((output, "output"), (photo, "photo"), (artwork, "artwork"))
    )
    ratios = []
    for o, p, a in zip(out, ph, art):
        base = wasserstein_1d(p, a)
        ratios.append(wasserstein_1d(o, a) / base if base > 0 else float("nan"))
    return sum(ratios) / len(ratios)


@dataclass(frozen=True)
class Appearance:
    """The three measures of one output (see the module docstring)."""

    structure: float
    colour: float
    texture: float


def appearance(output: Tensor, photo: Tensor, artwork: Tensor) -> Appearance:
    """All three measures; output and photo [3, H, W] of the same size, artwork [3, h, w]."""
    return Appearance(
        structure(output, photo), colour_ratio(output, photo, artwork), texture_ratio(output, photo, artwork)
    )
