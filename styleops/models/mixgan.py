"""MIXGAN (Hao, Yu and Zheng, IJCAI 2018): content from one domain, style from another, made
fully convolutional so it translates a catalog photo of any size (encode -> mixture-decode).

The paper's mixture generator has a content decoder G_c, fed by an adversarial autoencoder
whose code a latent discriminator pushes towards a Gaussian, and a mixture decoder G_m that turns
G_c's features into images a PatchGAN judges against the style domain. Its public code is an
unfinished TensorFlow 1 snapshot; this follows the paper, with these departures:
- The code is a spatial map [N, code, H/4, W/4] (one Gaussian vector per 4x4 px cell), not one
  vector per image, and the latent discriminator is a stack of 1x1 convolutions judging each
  cell's vector: the network is fully convolutional, so a photo of any size has a code.
- G_m reads G_c's features at all three scales (H/4, H/2, H) and outputs
  sigmoid(logit(G_c(z)) + f), with f's last convolution zero at init: it starts at the content
  reconstruction and learns the style on top (as the per-style nets do), so the photo's edges are
  there from the first step.
- Encoder and decoders are Johnson-style (reflection padding, instance norm, resize-convolution).
Images are RGB in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.transformer import ConvNormAct, ResidualBlock, UpsampleConv

_EPS = 1.0 / 512


class MixGenerator(nn.Module):
    """Encoder E, content decoder G_c and mixture decoder G_m.

    forward(x): [N, 3, H, W] in [0, 1] -> the mixture [N, 3, H, W] in (0, 1) (content of x,
    style of the style domain). `encode`, `reconstruct` and `mix` expose the parts training needs.
    channels: first-layer width c (the code side has 4c); code: channels of the latent map."""

    def __init__(self, channels: int = 32, code: int = 8, blocks: int = 2) -> None:
        super().__init__()
        if channels <= 0 or code <= 0 or blocks < 0:
            raise InvalidInputError(
                f"MixGenerator needs channels, code > 0 and blocks >= 0, got {channels}, {code}, {blocks}"
            )
        c = channels
        self.channels, self.code, self.blocks = channels, code, blocks
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 7),
            ConvNormAct(c, 2 * c, 3, 2),
            ConvNormAct(2 * c, 4 * c, 3, 2),
            *[ResidualBlock(4 * c) for _ in range(blocks)],
            nn.Conv2d(4 * c, code, 1),
        )
        self.content_head = nn.Sequential(
            nn.Conv2d(code, 4 * c, 1), nn.ReLU(), *[ResidualBlock(4 * c) for _ in range(blocks)]
        )
        self.content_up1, self.content_up2 = UpsampleConv(4 * c, 2 * c), UpsampleConv(2 * c, c)
        self.content_out = ConvNormAct(c, 3, 7, norm=None, act=False)
        self.mix_in = ConvNormAct(4 * c, 4 * c, 3)
        self.mix_up1, self.mix_up2 = UpsampleConv(4 * c, 2 * c), UpsampleConv(4 * c, c)
        self.mix_out = ConvNormAct(2 * c, 3, 7, norm=None, act=False)
        nn.init.zeros_(self.mix_out[1].weight)
        nn.init.zeros_(self.mix_out[1].bias)

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")

    def encode(self, x: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] -> code [N, code, ceil(H/4), ceil(W/4)]."""
        return self.encoder(self._pad(x))

    def _content(self, z: Tensor) -> tuple[list[Tensor], Tensor]:
        f1 = self.content_head(z)
        f2 = self.content_up1(f1)
        f3 = self.content_up2(f2)
        return [f1, f2, f3], torch.sigmoid(self.content_out(f3))

    def reconstruct(self, z: Tensor) -> Tensor:
        """code -> G_c's image [N, 3, 4h, 4w] in (0, 1)."""
        return self._content(z)[1]

    def mix(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """code -> (the mixture, G_c's reconstruction), both [N, 3, 4h, 4w] in (0, 1)."""
        (f1, f2, f3), recon = self._content(z)
        y = self.mix_up1(self.mix_in(f1))
        y = self.mix_up2(torch.cat([y, f2], 1))
        y = self.mix_out(torch.cat([y, f3], 1))
        base = torch.logit(recon.clamp(_EPS, 1 - _EPS))
        return torch.sigmoid(base + y), recon

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] -> the mixture, same shape."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InvalidInputError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        return self.mix(self.encode(x))[0][..., :h, :w]

    def config(self) -> dict[str, int]:
        return {"channels": self.channels, "code": self.code, "blocks": self.blocks}


class LatentDiscriminator(nn.Module):
    """The AAE's discriminator: code [N, code, h, w] -> logits [N, 1, h, w], one per code vector
    (1x1 convolutions: real = drawn from the prior, fake = encoded)."""

    def __init__(self, code: int = 8, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(code, width, 1), nn.LeakyReLU(0.2), nn.Conv2d(width, width, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 1, 1),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
