"""Per-image quality metrics recorded in the manifest: content and style loss of an output.

Both are measured on copies shrunk to `size` pixels (longer side) so the cost per image is bounded,
with the same loss network and weights the model was trained with; lower is better.

Tiny or very elongated images (a 1x1 pixel, a 4000x100 banner that is 256x6 once shrunk) are
measured too: a copy whose shorter side is below what the loss network can pool down
(`min_side`: 8 px for VGG16 up to relu4_3) is padded to that size first (`pad_to_min_side`).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.io.images import resize_max_side
from styleops.losses.perceptual import LossWeights, PerceptualLoss
from styleops.models.vgg import VGGEncoder


def min_side(encoder: VGGEncoder) -> int:
    """The smallest height and width `encoder` accepts: 2 ** (2x2 max-pools before its deepest
    layer), e.g. 8 px for VGG16 up to relu4_3 (8 -> 4 -> 2 -> 1), 4 px up to relu3_3.

    Smaller inputs make torch's max-pool raise 'Output size is too small'.
    """
    return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in encoder.features)


def pad_to_min_side(x: Tensor, side: int) -> Tensor:
    """Pad [N, C, H, W] at the bottom/right so H and W are at least `side`; `x` itself if they are.

    Reflection padding when the image is large enough to reflect (pad < size, e.g. 256x6 -> 256x8),
    else replicate (its edge pixels repeated, e.g. 1x1 -> 8x8 of that pixel). Crop the padded
    result with `[..., :H, :W]`.
    """
    h, w = x.shape[-2:]
    ph, pw = max(0, side - h), max(0, side - w)
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def in_sample(name: str, rate: float) -> bool:
    """Whether the image called `name` (its key) is in the measured share `rate` (0, 1] of a
    catalog: the first 8 bytes of sha256(name), as a fraction of 2**64, are below `rate`. The
    same names are picked in every run, by any worker; rate 1 picks every name."""
    if rate >= 1.0:
        return True
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") < rate * 2**64


class StyleMetrics:
    """`measure(content, output)` -> (content_loss, style_loss) against one artwork."""

    def __init__(
        self,
        encoder: VGGEncoder,
        artwork: Tensor,
        weights: LossWeights | None = None,
        *,
        size: int = 256,
        style_size: int = 512,
    ) -> None:
        """artwork: float [3, H, W] in [0, 1]."""
        device = next(encoder.parameters()).device
        self.loss = PerceptualLoss(encoder, weights)
        self.size, self.device = size, device
        self.min_side = min_side(encoder)
        self.grams = self.loss.style_targets(resize_max_side(artwork, style_size)[None].to(device))

    @torch.inference_mode()
    def measure(self, content: Tensor, output: Tensor) -> tuple[float, float]:
        """content, output: float [3, H, W] in [0, 1], same size. Returns weighted (content, style) losses.

        Any size is measured: both are shrunk to `size` px on the longer side (never enlarged),
        then, when the shorter side is below `self.min_side` (8 px for VGG16 to relu4_3), both are
        padded the same way to that size (`pad_to_min_side`: reflected, or edge pixels repeated),
        so a 1x1, 1x4000 or 4000x100 image gets finite losses instead of a max-pool error.
        """
        c = pad_to_min_side(resize_max_side(content, self.size)[None], self.min_side).to(self.device)
        o = pad_to_min_side(resize_max_side(output, self.size)[None], self.min_side).to(self.device)
        terms = self.loss(o, c, self.grams)
        return float(terms.content), float(terms.style)
