"""VGG16/VGG19 feature encoder with named layers (`conv1_1`, `relu1_1`, ... `relu5_4`).

Input: float images [N, 3, H, W], RGB in [0, 1]. The encoder applies the ImageNet normalization
itself, so callers never think about it. Output: a dict from layer name to features [N, C, h, w].
Weights come from torchvision's ImageNet download or a local file (see `styleops.io.weights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from styleops.errors import InvalidInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def layer_names(arch: str = "vgg16") -> list[str]:
    """Names of `torchvision.models.<arch>().features` modules, in order (pools are `pool<i>`)."""
    if arch not in _BLOCKS:
        raise InvalidInputError(f"unknown VGG architecture {arch!r}; expected one of {sorted(_BLOCKS)}")
    names: list[str] = []
    for block, n_convs in enumerate(_BLOCKS[arch], start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def build_vgg_features(arch: str = "vgg16") -> nn.Sequential:
    """The convolutional trunk with torchvision's module indices (so its state dicts load as is)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for block, n_convs in enumerate(_BLOCKS[arch], start=1):
        out_ch = min(64 * 2 ** (block - 1), 512)
        for _ in range(n_convs):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = out_ch
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGGEncoder(nn.Module):
    """Frozen VGG trunk that returns the requested named layers.

    The trunk is cut after the deepest requested layer, so asking for `relu2_2` runs 9 modules.
    """

    def __init__(self, state_dict: Mapping[str, Tensor], layers: Iterable[str], arch: str = "vgg16") -> None:
        super().__init__()
        names = layer_names(arch)
        self.arch = arch
        self.layers = tuple(dict.fromkeys(layers))
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise InvalidInputError(
                f"unknown {arch} layers {unknown}; valid: {', '.join(n for n in names if n.startswith('relu'))}"
            )
        if not self.layers:
            raise InvalidInputError("VGGEncoder needs at least one layer")
        with torch.device("meta"):  # no random init of ~15M weights (0.2 s) that the load replaces
            features = build_vgg_features(arch)
        weights = {k: v.to(torch.float32) for k, v in _strip_prefix(state_dict, len(features)).items()}
        features.load_state_dict(weights, assign=True)
        depth = max(names.index(n) for n in self.layers) + 1
        self.features = features[:depth]
        self._index = {names.index(n): n for n in self.layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """images [N, 3, H, W] RGB in [0, 1] -> {layer: features [N, C, h, w]}; `layers`: only these
        (of the encoder's), the network run no deeper than the deepest of them."""
        x = (checked_images(images) - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return named_outputs(self.features, x, subset(self._index, layers))

    def train(self, mode: bool = True) -> VGGEncoder:
        """The loss network stays in eval mode whatever its parent does."""
        return super().train(False)


def named_outputs(features: nn.Sequential, x: Tensor, index: Mapping[int, str]) -> dict[str, Tensor]:
    """Run `features` on x, keeping the output of module i as `index[i]`: {layer: [N, C, h, w]};
    it stops after the last module `index` names."""
    out: dict[str, Tensor] = {}
    last = max(index, default=-1)
    for i, module in enumerate(features):
        if i > last:
            break
        x = module(x)
        if i in index:
            out[index[i]] = x
    return out


def checked_images(images: Tensor) -> Tensor:
    """`images` if it is [N, 3, H, W], else InvalidInputError."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise InvalidInputError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    return images


def subset(index: Mapping[int, str], layers: Iterable[str] | None) -> Mapping[int, str]:
    """`index` ({module position: layer}) restricted to `layers` (None: all of it);
    InvalidInputError for a layer it does not have."""
    if layers is None:
        return index
    wanted = set(layers)
    missing = wanted - set(index.values())
    if missing:
        raise InvalidInputError(f"the encoder does not expose {sorted(missing)}; it has {sorted(index.values())}")
    return {i: n for i, n in index.items() if n in wanted}


def _strip_prefix(state_dict: Mapping[str, Tensor], n_modules: int) -> dict[str, Tensor]:
    """Accept `features.0.weight` (torchvision full model) or `0.weight` keys; drop classifier keys."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        k = key[len("features.") :] if key.startswith("features.") else key
        head = k.split(".", 1)[0]
        if head.isdigit() and int(head) < n_modules:
            out[k] = value
    return out
