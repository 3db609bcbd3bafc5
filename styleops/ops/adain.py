"""Adaptive instance normalization (Huang & Belongie 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from styleops.errors import InvalidInputError


def mean_std(features: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per sample and channel mean and std over space: [N, C, H, W] -> two [N, C, 1, 1] (fp32)."""
    if features.dim() != 4:
        raise InvalidInputError(f"expected features [N, C, H, W], got {tuple(features.shape)}")
    f = features.float()
    var = f.var(dim=(2, 3), keepdim=True, unbiased=False)
    return f.mean(dim=(2, 3), keepdim=True), (var + eps).sqrt()


def adain(content_features: Tensor, style_features: Tensor, eps: float = 1e-5) -> Tensor:
    """sigma(s) * (c - mu(c)) / sigma(c) + mu(s), per sample and channel over space.

    content [N, C, H, W]; style [N, C, h, w] or [1, C, h, w] (broadcast); returns [N, C, H, W].
    """
    if content_features.shape[1] != style_features.shape[1]:
        raise InvalidInputError(
            f"channel mismatch: content has {content_features.shape[1]}, style {style_features.shape[1]}"
        )
    c_mean, c_std = mean_std(content_features, eps)
    s_mean, s_std = mean_std(style_features, eps)
    return ((content_features.float() - c_mean) / c_std * s_std + s_mean).to(content_features.dtype)


class ChannelNormalize(nn.Module):
    """(f - mu(f)) / sigma(f) per sample and channel over space: AdaIN's normalization as a module,
    so `styleops.inference.tiling` can give it whole-image statistics (like an affine-free instance norm).

    [N, C, H, W] -> float32 [N, C, H, W]; exactly `mean_std`'s arithmetic (biased variance, eps).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: Tensor) -> Tensor:
        mean, std = mean_std(features, self.eps)
        return (features.float() - mean) / std
