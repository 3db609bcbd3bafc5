"""Per-image quality metrics recorded in the manifest: content and style loss of an output.

Both are measured on copies shrunk to `size` pixels (longer side) so the cost per image is bounded,
with the same loss network and weights the model was trained with; lower is better.
"""

from __future__ import annotations

import torch
from torch import Tensor

from styleops.imageio import resize_max_side
from styleops.losses import LossWeights, PerceptualLoss
from styleops.vgg import VGGEncoder


class StyleMetrics:
    """`measure(content, output)` -> (content_loss, style_loss) against one artwork."""

    def __init__(self, encoder: VGGEncoder, artwork: Tensor, weights: LossWeights | None = None, *, size: int = 256, style_size: int = 512) -> None:
        """artwork: float [3, H, W] in [0, 1]."""
        device = next(encoder.parameters()).device
        self.loss = PerceptualLoss(encoder, weights)
        self.size, self.device = size, device
        self.grams = self.loss.style_targets(resize_max_side(artwork, style_size)[None].to(device))

    @torch.inference_mode()
    def measure(self, content: Tensor, output: Tensor) -> tuple[float, float]:
        """content, output: float [3, H, W] in [0, 1], same size. Returns weighted (content, style) losses."""
        c = resize_max_side(content, self.size)[None].to(self.device)
        o = resize_max_side(output, self.size)[None].to(self.device)
        terms = self.loss(o, c, self.grams)
        return float(terms.content), float(terms.style)
