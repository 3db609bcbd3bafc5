"""Linear colour transfer: give an image another image's RGB mean and covariance.

The map is x -> sqrt(C_t) sqrt(C_s)^-1 (x - mu_s) + mu_t per pixel (the "linear Monge-Kantorovich"
colour transfer Gatys et al. 2017 use in "Controlling perceptual factors"), with (mu_s, C_s) the
source image's statistics and (mu_t, C_t) the target palette's. Everything is float RGB in [0, 1]
units; covariances are population covariances (defined for a single pixel), plus `EPS` on the
diagonal so that a flat image stays invertible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from styleops.errors import InvalidInputError

EPS = 1e-5


@dataclass(frozen=True)
class Palette:
    """RGB statistics of an image: mean [3] and the square root of its covariance [3, 3] (fp32)."""

    mean: Tensor
    sqrt_cov: Tensor


def sqrtm_psd(m: Tensor) -> Tensor:
    """Square root of symmetric positive semi-definite matrices [..., 3, 3] (eigen-decomposition)."""
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(-1, -2)


def palette_of(images: Tensor) -> Palette:
    """[3, H, W] or [N, 3, H, W] float RGB -> their RGB mean [.., 3] and sqrt covariance [.., 3, 3]."""
    x = images[None] if images.dim() == 3 else images
    if x.dim() != 4 or x.shape[1] != 3:
        raise InvalidInputError(f"expected RGB images [3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
    pixels = x.float().flatten(2)  # [N, 3, P]
    mean = pixels.mean(2)
    centred = pixels - mean[..., None]
    cov = centred @ centred.transpose(1, 2) / pixels.shape[2] + EPS * torch.eye(3, device=x.device)
    root = sqrtm_psd(cov)
    return Palette(mean, root) if images.dim() == 4 else Palette(mean[0], root[0])


def recolour(images: Tensor, target: Palette, source: Palette | None = None) -> Tensor:
    """[N, 3, H, W] images -> the same images with `target`'s RGB mean and covariance (unclamped).

    target: mean [3] and sqrt_cov [3, 3] (one palette for the batch) or [N, 3] and [N, 3, 3].
    source: the images' own statistics (`palette_of(images)`, the default); pass them to recolour
    part of an image (a tile) exactly as the whole image would be.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise InvalidInputError(f"expected RGB images [N, 3, H, W], got {tuple(images.shape)}")
    src = source or palette_of(images)
    x = images.float()
    n = x.shape[0]
    t_mean, t_root = target.mean.float().expand(n, 3), target.sqrt_cov.float().expand(n, 3, 3)
    s_mean, s_root = src.mean.float().expand(n, 3), src.sqrt_cov.float().expand(n, 3, 3)
    transform = t_root @ torch.linalg.inv(s_root)  # [N, 3, 3]
    y = torch.einsum("nij,njhw->nihw", transform, x - s_mean[..., None, None]) + t_mean[..., None, None]
    return y.to(images.dtype)


def blend_palettes(palettes: list[Palette], weights: list[float] | Tensor) -> Palette:
    """sum_i w_i * palette_i of means [3] and sqrt covariances [3, 3] (weights normalized here)."""
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (len(palettes),) or len(palettes) == 0 or (w < 0).any() or w.sum() <= 0:
        raise InvalidInputError(f"need one non-negative weight per palette, not all zero; got {w.tolist()}")
    w = w / w.sum()
    mean = sum(wi * p.mean.float().cpu() for wi, p in zip(w, palettes, strict=True))
    root = sum(wi * p.sqrt_cov.float().cpu() for wi, p in zip(w, palettes, strict=True))
    return Palette(mean, root)  # type: ignore[arg-type]


class PaletteMatch(nn.Module):
    """The last step of an arbitrary-style stylizer: its output y [N, 3, H, W] given the RGB mean
    and covariance of the artwork's palette, blended with the photo x's own by `alpha` (1: the
    artwork's, 0: the photo's). The decoders of swap and AdaIN keep the photo's shapes and the
    artwork's strokes but lose its colours (docs/quality.md); this puts them back, as the palette
    start does for per-style nets. Unclamped, like the decoders' outputs.

    `deferred`: forward returns y unchanged. `styleops.inference.tiling` sets it while the windows
    run, then calls `match` once on the whole output, so tiled and untiled outputs agree; that is
    why it must be the model's final step."""

    def __init__(self, target: Palette, alpha: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in [0, 1], got {alpha}")
        self.register_buffer("target_mean", target.mean.float().reshape(3).clone())
        self.register_buffer("target_sqrt_cov", target.sqrt_cov.float().reshape(3, 3).clone())
        self.alpha, self.deferred = alpha, False

    def match(self, y: Tensor, x: Tensor) -> Tensor:
        """y [N, 3, H, W] (the whole output), x [N, 3, H, W] (the whole photo) -> recoloured y."""
        target = Palette(self.target_mean, self.target_sqrt_cov)
        if self.alpha < 1.0:
            photo = palette_of(x)
            a = self.alpha
            target = Palette(
                a * self.target_mean + (1 - a) * photo.mean, a * self.target_sqrt_cov + (1 - a) * photo.sqrt_cov
            )
        return recolour(y, target)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        return y if self.deferred else self.match(y, x)
