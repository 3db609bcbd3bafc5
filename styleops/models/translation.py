"""Image-to-image translation networks: Pix2Pix's U-Net generator and PatchGAN discriminator
(Isola et al. 2017), and CycleGAN's pair of generators (Zhu et al. 2017).

Follows junyanz/pytorch-CycleGAN-and-pix2pix (`networks.py`) with these departures:
- Upsampling is a resize-convolution (nearest x2, reflection-padded 3x3 conv) instead of the
  reference's 4x4 transposed convolution: no checkerboard artefacts.
- Instance normalization (the reference's `--norm instance`; pix2pix's default is batch norm
  with batch size 1, which is instance norm in train mode) without affine parameters or running
  statistics, so train and eval mode normalize alike and inference needs no batch.
- Any input size: the U-Net pads (replicate) to a multiple of 2**depth and crops back, where the
  reference insists on multiples of 256.
- Images are RGB in [0, 1] at every interface, as everywhere in styleops; the nets map to the
  reference's [-1, 1] inside (and the generator's tanh back), so its loss weights keep their meaning.
- CycleGAN's generators are `TransformerNet` (Johnson's ResNet generator, which the reference's
  `resnet_9blocks` is) with the `logit_residual` output: each starts as the identity and its
  output is always a valid image (the reference starts at random with a tanh).

Determinism: dropout (the U-Net's noise source) is active in train mode only; `eval()` gives
identical bytes on reruns (the reference keeps dropout at test time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.transformer import TransformerNet

DIRECTIONS = ("AtoB", "BtoA")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def _to_signed(x: Tensor) -> Tensor:
    return x * 2 - 1


class UNetGenerator(nn.Module):
    """Pix2Pix's U-Net: [N, 3, H, W] in [0, 1] -> [N, 3, H, W] in [0, 1] (any H, W >= 1).

    depth: number of stride-2 downsamplings (reference: 8 for 256 px crops, 7 for 128 px);
    the bottleneck is 1x1 at crops of 2**depth px. channels: width of the first layer (reference
    ngf = 64); layer i has channels * min(2**i, 8). dropout: p of the dropout after the
    bottleneck-side up layers (the reference's `depth - 5` middle blocks; 0.5).
    """

    def __init__(self, channels: int = 64, depth: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        if depth < 5 or channels <= 0 or not 0 <= dropout < 1:
            raise InvalidInputError(
                f"UNetGenerator needs depth >= 5, channels > 0 and 0 <= dropout < 1, got {depth}, {channels}, {dropout}"
            )
        self.channels, self.depth, self.dropout = channels, depth, float(dropout)
        width = [channels * min(2**i, 8) for i in range(depth)]
        self.downs = nn.ModuleList()
        for i in range(depth):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(3 if i == 0 else width[i - 1], width[i], 4, 2, 1))
            if 0 < i < depth - 1:
                layers.append(_norm(width[i]))
            self.downs.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList()
        for i in range(depth):
            cin = width[i] if i == depth - 1 else 2 * width[i]
            cout = 3 if i == 0 else width[i - 1]
            layers = [
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(cin, cout, 3),
            ]
            if i > 0:
                layers.append(_norm(cout))
            if dropout and 4 <= i <= depth - 2:
                layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this many pixels."""
        return 2**self.depth

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 3, H, W] in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InvalidInputError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.multiple
        y = F.pad(_to_signed(x), (0, (-w) % m, 0, (-h) % m), mode="replicate")
        skips = []
        for down in self.downs:
            y = down(y)
            skips.append(y)
        y = self.ups[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            y = self.ups[i](torch.cat([y, skips[i]], 1))
        return (torch.tanh(y[..., :h, :w]) + 1) / 2

    def config(self) -> dict[str, int | float]:
        return {"channels": self.channels, "depth": self.depth, "dropout": self.dropout}


class PatchDiscriminator(nn.Module):
    """The reference's `NLayerDiscriminator`: [N, in_channels, H, W] in [0, 1] -> real/fake logits
    [N, 1, H', W'], one per overlapping patch. With layers=3: 70x70 px receptive field per logit,
    H' = H/8 - 2 (H >= 32). Pix2Pix conditions on the input: in_channels = 6 (input and output)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        if layers < 1 or channels <= 0:
            raise InvalidInputError(f"PatchDiscriminator needs layers >= 1 and channels > 0, got {layers}, {channels}")
        self.in_channels, self.channels, self.layers = in_channels, channels, layers
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, layers + 1):
            prev, width = width, channels * min(2**n, 8)
            seq += [nn.Conv2d(prev, width, 4, 2 if n < layers else 1, 1), _norm(width), nn.LeakyReLU(0.2)]
        seq.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(_to_signed(x))

    def config(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "channels": self.channels, "layers": self.layers}


class CycleGenerators(nn.Module):
    """CycleGAN's two generators in one module (one registry version holds both directions):
    `a_to_b` (G) and `b_to_a` (F), each a `TransformerNet` (logit_residual output).
    forward(x, direction): [N, 3, H, W] in [0, 1] -> the same shape in (0, 1)."""

    def __init__(self, channels: int = 32, n_residual: int = 6) -> None:
        super().__init__()
        self.channels, self.n_residual = channels, n_residual
        self.a_to_b = TransformerNet(channels, n_residual, output="logit_residual")
        self.b_to_a = TransformerNet(channels, n_residual, output="logit_residual")

    def forward(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        return self.generator(direction)(x)

    def generator(self, direction: str) -> TransformerNet:
        """The generator of `direction` ('AtoB' or 'BtoA')."""
        if direction not in DIRECTIONS:
            raise InvalidInputError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return self.a_to_b if direction == "AtoB" else self.b_to_a

    def config(self) -> dict[str, int]:
        return {"channels": self.channels, "n_residual": self.n_residual}


class OneDirection(nn.Module):
    """One direction of a `CycleGenerators`, as a plain image-to-image module for the inference
    engine: [N, 3, H, W] in [0, 1] -> the same shape."""

    def __init__(self, pair: CycleGenerators, direction: str) -> None:
        super().__init__()
        self.net = pair.generator(direction)
        self.direction = direction

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
