"""Decoders that invert a VGG encoder from a named layer back to pixels.

The AdaIN decoder (Huang & Belongie 2017: from relu4_1) and the style-swap inverse network
(Chen & Schmidt 2016: from relu3_1) are the same construction: the encoder's layers in reverse,
each conv mirrored (C_out -> C_in, 3x3, reflection padding, ReLU), each max-pool replaced by
nearest-neighbour x2 upsampling, no normalization layers. Output: [N, 3, H, W], unclamped RGB
in [0, 1] units.
"""

from __future__ import annotations

from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.vgg import build_vgg_features, layer_names


class VGGDecoder(nn.Sequential):
    """Mirror of `arch`'s trunk up to `from_layer` (a relu or conv name).

    `paint_scale`: the multiple of the output size the stylizers run it at by default (the photo
    upsampled, the painting shrunk back): its strokes have a size in pixels, so above 1 they are
    finer relative to the picture and more of the photo's shapes stay (docs/quality.md). Recorded
    in its config only when not 1, so earlier files are unchanged."""

    def __init__(self, from_layer: str = "relu4_1", arch: str = "vgg16", paint_scale: float = 1.0) -> None:
        if not 1.0 <= paint_scale <= 4.0:
            raise InvalidInputError(f"paint_scale must be in [1, 4], got {paint_scale}")
        names = layer_names(arch)
        if from_layer not in names or not from_layer.startswith(("relu", "conv")):
            raise InvalidInputError(f"cannot decode from {from_layer!r}; use a conv/relu layer of {arch}")
        encoder = build_vgg_features(arch)[: names.index(from_layer) + 1]
        layers: list[nn.Module] = []
        for module in reversed(list(encoder)):
            if isinstance(module, nn.Conv2d):
                last = module.in_channels == 3
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(module.out_channels, module.in_channels, 3)]
                if not last:
                    layers.append(nn.ReLU(inplace=True))
            elif isinstance(module, nn.MaxPool2d):
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        super().__init__(*layers)
        self.from_layer, self.arch, self.paint_scale = from_layer, arch, float(paint_scale)

    def forward(self, features: Tensor) -> Tensor:  # type: ignore[override]
        """features [N, C, h, w] at `from_layer` -> images [N, 3, h * 2^pools, w * 2^pools]."""
        return super().forward(features)

    def config(self) -> dict[str, str | float]:
        extra = {"paint_scale": self.paint_scale} if self.paint_scale != 1.0 else {}
        return {"from_layer": self.from_layer, "arch": self.arch, **extra}
