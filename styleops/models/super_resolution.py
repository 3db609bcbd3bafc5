"""Johnson et al. (2016) super-resolution network: x2, x4 or x8, resize-convolution upsampling.

Layout (Johnson's supplementary material, with two deliberate changes):
9x9 conv (3 -> C) + ReLU, `blocks` residual blocks (3x3 conv, ReLU, 3x3 conv, plus the identity),
log2(scale) upsampling stages (nearest x2, 3x3 conv, ReLU), 9x9 output conv (C -> 3). Every conv is
reflection padded, so any input size works (at least `MIN_SIDE` px a side) and the output is
exactly `scale` times the input in each dimension.

Changes from the paper:
- No normalization (Johnson used batch norm). With no statistics over the image, each output
  pixel depends only on input pixels within `receptive_radius` (LR px), so tiled inference with a
  halo of that many pixels is exact (`styleops.inference.upscale.upscale_tiled`), and train/eval
  mode do the same thing.
- Resize-convolutions (nearest x2 + 3x3 conv) instead of Johnson's stride-1/2 (transposed) convs:
  no checkerboard artefacts.
- `residual=True` (the default): y = bicubic(x) + f(x), with f's output conv initialised to zero,
  so the untrained net is the bicubic baseline and training learns only the missing detail. The
  bicubic is torch's antialiased one (Keys a = -0.5, PIL's kernel; float, not quantized). After
  300 CPU steps on x4 it was 0.85 dB above bicubic where the direct output (Johnson's) was 0.75 dB
  below it (30 BSD100 images; docs/super_resolution.md).

Units: images are float RGB in [0, 1]. The raw output is unclamped; `upscale` clamps it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.transformer import ConvNormAct, ResidualBlock

SCALES = (2, 4, 8)
MIN_SIDE = 5  # the 9x9 input conv reflection-pads 4 px, which needs at least 5 px


def bicubic(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, C, h, w] float -> [N, C, *size]: PIL's bicubic kernel (a = -0.5), antialiased when
    shrinking, float in and out (no rounding, no clamping)."""
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


class PlainResidualBlock(ResidualBlock):
    """x + conv3x3(relu(conv3x3(x))), reflection padded, no normalization; [N, C, h, w] -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, norm=None)


class ResizeConv(nn.Module):
    """Nearest-neighbour x2 upsampling, 3x3 conv, ReLU: [N, C, h, w] -> [N, C, 2h, 2w]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvNormAct(channels, channels, 3, norm=None)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class SuperResolutionNet(nn.Module):
    """LR image [N, 3, h, w] in [0, 1] -> HR estimate [N, 3, h*scale, w*scale] (unclamped).

    scale: 2, 4 or 8 (log2(scale) resize-conv stages). channels: width of every hidden layer
    (Johnson: 64). blocks: residual blocks at LR resolution (Johnson: 4). residual: output is
    bicubic(x) + f(x) (see the module docstring) rather than f(x).
    """

    def __init__(self, scale: int = 4, channels: int = 64, blocks: int = 4, residual: bool = True) -> None:
        super().__init__()
        if scale not in SCALES:
            raise InvalidInputError(f"scale must be one of {SCALES}, got {scale!r}")
        if channels <= 0 or blocks < 0:
            raise InvalidInputError(f"channels must be > 0 and blocks >= 0, got {channels} and {blocks}")
        self.scale, self.channels, self.blocks, self.residual = scale, channels, blocks, bool(residual)
        c = channels
        self.head = ConvNormAct(3, c, 9, norm=None)
        self.body = nn.Sequential(*[PlainResidualBlock(c) for _ in range(blocks)])
        self.upsample = nn.Sequential(*[ResizeConv(c) for _ in range(int(math.log2(scale)))])
        self.tail = ConvNormAct(c, 3, 9, norm=None, act=False)
        if self.residual:
            last = self.tail[1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3, h, w] in [0, 1], h and w >= MIN_SIDE -> [N, 3, h*scale, w*scale], unclamped."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InvalidInputError(f"expected LR images [N, 3, h, w], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise InvalidInputError(f"LR images need at least {MIN_SIDE} px a side, got {h}x{w}")
        y = self.tail(self.upsample(self.body(self.head(x))))
        if self.residual:
            y = y + bicubic(x, (h * self.scale, w * self.scale))
        return y

    def config(self) -> dict[str, int | bool]:
        """Constructor arguments (saved in the safetensors header so `from_safetensors` rebuilds it)."""
        return {"scale": self.scale, "channels": self.channels, "blocks": self.blocks, "residual": self.residual}


def receptive_radius(model: SuperResolutionNet) -> int:
    """LR pixels each side that one output pixel can depend on (an upper bound).

    9x9 head: 4; each residual block: 2; each resize-conv stage: 1 (radius 1 at 2^k resolution
    reaches at most 1 LR px after the nearest upsampling); 9x9 tail: ceil(4 / scale); the bicubic
    base (2 LR px) runs in parallel and reaches less far than the sum."""
    return 4 + 2 * model.blocks + int(math.log2(model.scale)) + math.ceil(4 / model.scale)


@torch.inference_mode()
def upscale(model: SuperResolutionNet, lr: Tensor) -> Tensor:
    """[N, 3, h, w] (or [3, h, w]) LR in [0, 1] -> HR clamped to [0, 1], same batch layout."""
    single = lr.dim() == 3
    dev = next(model.parameters()).device
    out = model(lr[None].to(dev) if single else lr.to(dev)).clamp_(0, 1)
    return out[0] if single else out
