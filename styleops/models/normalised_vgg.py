"""The AdaIN paper's encoder (Huang & Belongie 2017): ImageNet VGG19 up to relu4_1, "normalised"
(Gatys et al.: each conv rescaled so its mean activation over ImageNet is 1), with reflection
padding and a first 1x1 conv that maps RGB in [0, 1] to the Caffe input (BGR, 0-255, ImageNet
mean subtracted). A network trained for recognition: its features decode to paintings where the
HED trunk's (an edge detector, `styleops.models.hed`) decode to an embossed relief
(docs/quality.md, issue 30). Weights: `styleops.io.adain_weights`.

Input: images [N, 3, H, W], RGB in [0, 1]. Output: {layer: features [N, C, h, w]} for the layers
asked (relu1_1, relu2_1, relu3_1, relu4_1: AdaIN's style layers), like `VGGEncoder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.vgg import checked_images, named_outputs, subset

# (in, out) channels of the convs up to conv4_1, "pool" for the max-pools: VGG19's first 10 convs.
_CONVS = [(3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool"]
_CONVS += [(128, 256), (256, 256), (256, 256), (256, 256), "pool", (256, 512)]
_NAMES = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4", "relu4_1"]


def build_normalised_vgg19() -> nn.Sequential:
    """The trunk with the module indices of the published `vgg_normalised` state dict (0: the 1x1
    conv; then pad, conv, relu per conv; ceil-mode max-pools), cut after relu4_1 (31 modules)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for spec in _CONVS:
        if spec == "pool":
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(spec[0], spec[1], 3), nn.ReLU()]
    return nn.Sequential(*layers)


def _relu_indices() -> dict[int, str]:
    return {
        i: _NAMES[n] for n, i in enumerate(i for i, m in enumerate(build_normalised_vgg19()) if isinstance(m, nn.ReLU))
    }


class NormalisedVGG19(nn.Module):
    """Frozen normalised VGG19 returning the requested relu layers; `arch` is 'vgg19', so a
    `VGGDecoder(from_layer, 'vgg19')` pairs with it (`styleops.inference.arbitrary`)."""

    arch = "vgg19"

    def __init__(self, state_dict: Mapping[str, Tensor], layers: Iterable[str] = ("relu4_1",)) -> None:
        super().__init__()
        self.layers = tuple(dict.fromkeys(layers))
        unknown = [n for n in self.layers if n not in _NAMES]
        if unknown or not self.layers:
            raise InvalidInputError(f"the normalised VGG19 exposes {', '.join(_NAMES)}; asked {list(self.layers)}")
        features = build_normalised_vgg19()
        features.load_state_dict({k: v for k, v in state_dict.items() if int(k.split(".")[0]) < len(features)})
        index = {name: i for i, name in _relu_indices().items()}
        self.features = features[: max(index[n] for n in self.layers) + 1]
        self._index = {index[n]: n for n in self.layers}
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """images [N, 3, H, W] RGB in [0, 1] -> {layer: features [N, C, h, w]}; `layers`: only these
        (of the encoder's), the network run no deeper than the deepest of them."""
        return named_outputs(self.features, checked_images(images), subset(self._index, layers))

    def train(self, mode: bool = True) -> NormalisedVGG19:
        """Frozen: stays in eval mode whatever its parent does."""
        return super().train(False)
