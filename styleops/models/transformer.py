"""Johnson et al. (2016) image transformation network, with Ulyanov's instance normalization.

Reflection padding everywhere, two stride-2 downsamplings, residual blocks, and nearest-neighbour
upsampling followed by a convolution (no transposed convs, so no checkerboard artefacts).
Input and output: float images [N, 3, H, W], RGB in [0, 1]. H and W need not be multiples of 4:
the net pads and crops back.

Output parameterization (`output=`; the class default is Johnson's `direct`, the training default
`logit_residual` with the palette start below):
- `"direct"`: y = f(x), unbounded (Johnson et al.); `stylize` clamps it.
- `"logit_residual"`: y = sigmoid(logit(x) + f(x)), with f's last convolution initialised to zero.
  The untrained net is the identity (it starts where Gatys starts: at the photo) and its output
  is always a valid image, so the training loss is measured on exactly
  what `stylize` delivers. Measured on one 128 px photo (docs/quality.md): the direct output lost
  the subject (structure 0.07) and stalled at 6.6x Gatys@100's objective after 300 steps; this
  one kept it (0.89) and reached 2.1x. Trained on many photos from the photo itself it keeps every
  subject but moves colour away from the artwork; from the palette start below it does not.
- `"residual"`: y = x + f(x), f's last convolution zero at init (the identity too), unbounded;
  train it with `LossWeights.range_weight` so it learns to stay in [0, 1].

Palette start (`palette=True`, residual outputs only): the base image is not the photo x but the
photo recoloured with the artwork's RGB mean and covariance (`styleops.models.palette.recolour`; the
artwork's statistics are buffers of the net, set by `set_palette` before training and saved with
the weights). The untrained net then already has the artwork's palette and every edge of the
photo; training only has to learn the brushwork (docs/quality.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.palette import Palette, recolour

NormFactory = Callable[[int], nn.Module]
OUTPUTS = ("logit_residual", "residual", "direct")
_LOGIT_EPS = 1.0 / 512  # inputs are clamped to [eps, 1 - eps] before the logit (0 and 255 stay finite)


def instance_norm(channels: int) -> nn.Module:
    """Per-sample, per-channel normalization with a learned scale and shift."""
    return nn.InstanceNorm2d(channels, affine=True)


class ConvNormAct(nn.Sequential):
    """Reflection pad -> conv -> norm -> ReLU (the norm and ReLU optional)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        *,
        norm: NormFactory | None = instance_norm,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm is not None:
            layers.append(norm(cout))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + (conv-norm-relu-conv-norm)(x), channel count unchanged (norm None: no normalization)."""

    def __init__(self, channels: int, norm: NormFactory | None = instance_norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm), ConvNormAct(channels, channels, 3, norm=norm, act=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2 upsampling then ConvNormAct."""

    def __init__(self, cin: int, cout: int, norm: NormFactory = instance_norm) -> None:
        super().__init__()
        self.conv = ConvNormAct(cin, cout, 3, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(nn.Module):
    """The feed-forward stylization network.

    `channels` is the width of the first layer (Johnson: 32; 16 is a fast "slim" variant that
    runs ~3x faster on CPU); the bottleneck has 4x that many channels. `output`: see the module
    docstring.
    """

    def __init__(
        self,
        channels: int = 32,
        n_residual: int = 5,
        norm: NormFactory = instance_norm,
        output: str = "direct",
        palette: bool = False,
        n_palettes: int | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise InvalidInputError(f"output must be one of {OUTPUTS}, got {output!r}")
        if palette and output == "direct":
            raise InvalidInputError("a palette start needs a residual output (logit_residual or residual)")
        c = channels
        self.channels, self.n_residual, self.output, self.palette = channels, n_residual, output, palette
        # The photo's own colour statistics, when the caller runs part of it (a tile): see `recolour`.
        self.source_palette: Palette | None = None
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 9, norm=norm),
            ConvNormAct(c, 2 * c, 3, 2, norm=norm),
            ConvNormAct(2 * c, 4 * c, 3, 2, norm=norm),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c, norm) for _ in range(n_residual)])
        self.decoder = nn.Sequential(
            UpsampleConv(4 * c, 2 * c, norm), UpsampleConv(2 * c, c, norm), ConvNormAct(c, 3, 9, norm=None, act=False)
        )
        if output != "direct":
            last = self.decoder[-1][1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        if palette:  # the artwork's RGB mean [3] and sqrt covariance [3, 3] ([S, ...]: one per style)
            lead = () if n_palettes is None else (n_palettes,)
            self.register_buffer("palette_mean", torch.full((*lead, 3), 0.5))  # neutral grey until set_palette
            self.register_buffer("palette_sqrt_cov", torch.eye(3).expand(*lead, 3, 3) * 0.25)

    def set_palette(self, palette: Palette, style: int | None = None) -> None:
        """Store the artwork's colour statistics (`styleops.models.palette.palette_of(artwork)`);
        `style`: which style's, for a net with one palette per style."""
        if not self.palette:
            raise InvalidInputError("this network has no palette start")
        index = ... if style is None else style
        self.palette_mean[index].copy_(palette.mean)
        self.palette_sqrt_cov[index].copy_(palette.sqrt_cov)

    def target_palette(self, x: Tensor) -> Palette:
        """The palette the base image of batch x [N, 3, H, W] is recoloured to."""
        return Palette(self.palette_mean, self.palette_sqrt_cov)

    def base(self, x: Tensor) -> Tensor:
        """The image a residual output starts from: x, or x recoloured to the palette."""
        if not self.palette:
            return x
        return recolour(x, self.target_palette(x), self.source_palette)

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 3, H, W]: in (0, 1) for "logit_residual", unclamped for "direct"."""
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 4, (-w) % 4
        xp = x
        if pad_h or pad_w:
            xp = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        y = self.decoder(self.residuals(self.encoder(xp)))[..., :h, :w]
        if self.output == "direct":
            return y
        base = self.base(x)
        if self.output == "residual":
            return base + y
        return torch.sigmoid(torch.logit(base.clamp(_LOGIT_EPS, 1 - _LOGIT_EPS)) + y)

    def config(self) -> dict[str, int | str | bool]:
        """Constructor arguments (saved in model cards so weights can be rebuilt)."""
        config: dict[str, int | str | bool] = {
            "channels": self.channels,
            "n_residual": self.n_residual,
            "output": self.output,
        }
        if self.palette:  # absent from older models' configs
            config["palette"] = True
        return config
