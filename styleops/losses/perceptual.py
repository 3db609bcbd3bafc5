"""Perceptual losses (Johnson et al. 2016; Gatys et al. 2016).

Units: features are whatever the VGG weights produce (Caffe-scale for the HED trunk, about 58x
torchvision's ImageNet trunk), so the default weights in `LossWeights` are tuned for the HED trunk.
Every loss returns a scalar averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.vgg import VGGEncoder


def gram_matrix(features: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, C, C] Gram matrices normalized by C*H*W, always computed in fp32."""
    n, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared feature difference; both [N, C, H, W]."""
    return F.mse_loss(features.float(), target.float())


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Squared Frobenius distance between Gram matrices, mean over entries and batch.

    `target_gram` is [1, C, C] (one artwork, broadcast) or [N, C, C].
    """
    gram = gram_matrix(features)
    return ((gram - target_gram.float()) ** 2).mean()


def total_variation(images: Tensor) -> Tensor:
    """Anisotropic total variation of [N, C, H, W]: mean absolute difference of neighbours."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dh + dw


@dataclass(frozen=True)
class LossWeights:
    """Layer names and weights of a perceptual loss. Defaults: Johnson et al., tuned for the HED trunk."""

    content_layers: Mapping[str, float] = field(default_factory=lambda: {"relu2_2": 1.0})
    # Per-layer weights even out the Gram distances, which fall ~100-200x per block (docs/architecture.md).
    style_layers: Mapping[str, float] = field(
        default_factory=lambda: {"relu1_2": 1.0, "relu2_2": 1e2, "relu3_3": 1e4, "relu4_3": 1e6}
    )
    content_weight: float = 2.0
    style_weight: float = 5.0
    tv_weight: float = 10.0
    pixel_weight: float = 0.0  # inverse-network training only: MSE to the source image where there is one
    # Penalty on output values outside [0, 1] (mean squared excess): what `stylize` clamps away.
    range_weight: float = 0.0
    # True: the layer weights above are multipliers of per-layer scales measured on the data
    # (`calibrate`); training and Gatys replace them with the measured absolute weights.
    calibrate: bool = False

    def __post_init__(self) -> None:
        if not self.content_layers and not self.style_layers:
            raise InvalidInputError("a perceptual loss needs at least one content or style layer")
        for name, value in {**self.content_layers, **self.style_layers}.items():
            if value < 0:
                raise InvalidInputError(f"layer weight for {name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields (layer mappings as dicts), as cards record them."""
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.content_layers, *self.style_layers]))


@dataclass(frozen=True)
class LossTerms:
    """Weighted loss terms (scalars). `total` is what gets minimized."""

    total: Tensor
    content: Tensor
    style: Tensor
    tv: Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "content", "style", "tv")}


class PerceptualLoss(nn.Module):
    """Content + style + TV loss through a frozen VGG encoder.

    Usage: `grams = loss.style_targets(artwork)` once, then `loss(output, content, grams)` per step.
    """

    def __init__(self, encoder: VGGEncoder, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        missing = [n for n in self.weights.layers if n not in encoder.layers]
        if missing:
            raise InvalidInputError(f"encoder does not expose layers {missing} (it has {list(encoder.layers)})")
        self.encoder = encoder

    @torch.no_grad()
    def style_targets(self, style_images: Tensor) -> dict[str, Tensor]:
        """[S, 3, H, W] artwork(s) in [0, 1] -> {layer: Gram [S, C, C]} (fp32)."""
        feats = self.encoder(style_images)
        return {name: gram_matrix(feats[name]) for name in self.weights.style_layers}

    def forward(
        self,
        output: Tensor,
        content: Tensor,
        style_grams: Mapping[str, Tensor],
        content_features: Mapping[str, Tensor] | None = None,
        weights: LossWeights | None = None,
    ) -> LossTerms:
        """output, content: [N, 3, H, W] in [0, 1]; style_grams from `style_targets`;
        content_features: `encoder(content)` if already computed (optimizing one image: Gatys);
        weights: this call's weights (same layers), e.g. one style's calibrated weights."""
        w = weights or self.weights
        if w.calibrate:
            raise InvalidInputError(
                "a calibrated loss recipe must be calibrated first (styleops.losses.perceptual.calibrate)"
            )
        out_feats = self.encoder(output)
        with torch.no_grad():
            content_feats = (
                content_features
                if content_features is not None
                else (self.encoder(content, layers=w.content_layers) if w.content_layers else {})
            )
        c = sum(
            (lw * content_loss(out_feats[n], content_feats[n]) for n, lw in w.content_layers.items()),
            output.new_zeros((), dtype=torch.float32),
        )
        s = sum(
            (lw * style_loss(out_feats[n], style_grams[n]) for n, lw in w.style_layers.items()),
            output.new_zeros((), dtype=torch.float32),
        )
        tv = total_variation(output.float())
        content_term, style_term, tv_term = w.content_weight * c, w.style_weight * s, w.tv_weight * tv
        if w.range_weight:
            out = output.float()
            tv_term = tv_term + w.range_weight * (out - out.clamp(0, 1)).pow(2).mean()  # reported with the TV term
        return LossTerms(content_term + style_term + tv_term, content_term, style_term, tv_term)


@dataclass(frozen=True)
class Calibration:
    """What `calibrate` measured: per-layer distances on the calibration pair (loss-network units)."""

    content_energy: dict[str, float]  # mean squared feature of the photos, per content layer
    style_distance: dict[str, float]  # Gram distance photos -> artwork, per style layer


@torch.no_grad()
def measure_calibration(encoder: VGGEncoder, weights: LossWeights, photos: Tensor, artwork: Tensor) -> Calibration:
    """Per-layer scales of the loss on a calibration pair.

    photos: [N, 3, H, W] in [0, 1] (the content the model will see); artwork: [1, 3, h, w] or [3, h, w].
    Content: the photos' mean squared activation at each content layer (the content distance of
    an image that kept nothing of them). Style: the mean over photos of the Gram distance
    (`style_loss`) between each photo and the artwork at each style layer.
    """
    art = artwork[None] if artwork.dim() == 3 else artwork
    feats = encoder(photos)
    art_feats = encoder(art)
    energy = {n: float(feats[n].float().pow(2).mean()) for n in weights.content_layers}
    # style_loss averages over the batch: the mean over photos of each photo's distance
    distance = {n: float(style_loss(feats[n], gram_matrix(art_feats[n]))) for n in weights.style_layers}
    return Calibration(energy, distance)


def calibrate(weights: LossWeights, calibration: Calibration) -> LossWeights:
    """Absolute layer weights from a calibrated recipe: multiplier / measured scale, per layer.

    On the calibration pair the result gives every style layer a Gram distance of exactly its
    multiplier (1 by default), and the content term of an image that kept nothing of the photos
    (zero features) is 1 per layer. Weights that are not a calibrated recipe are returned as is.
    """
    if not weights.calibrate:
        return weights
    tiny = 1e-12
    content = {n: m / max(calibration.content_energy[n], tiny) for n, m in weights.content_layers.items()}
    style = {n: m / max(calibration.style_distance[n], tiny) for n, m in weights.style_layers.items()}
    return replace(weights, content_layers=content, style_layers=style, calibrate=False)
