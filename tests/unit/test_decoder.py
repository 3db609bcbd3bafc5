"""VGG-mirror decoders (AdaIN decoder, style-swap inverse network)."""

from __future__ import annotations

import pytest
import torch

from styleops.errors import InvalidInputError
from styleops.models.decoder import VGGDecoder
from styleops.models.vgg import VGGEncoder, build_vgg_features


@pytest.mark.parametrize(
    ("layer", "arch", "channels", "scale"),
    [("relu4_1", "vgg19", 512, 8), ("relu3_1", "vgg16", 256, 4), ("relu1_1", "vgg16", 64, 1)],
)
def test_decoder_inverts_the_encoder_shapes(layer: str, arch: str, channels: int, scale: int) -> None:
    torch.manual_seed(0)
    encoder = VGGEncoder({k: v for k, v in build_vgg_features(arch).state_dict().items()}, [layer], arch)
    decoder = VGGDecoder(layer, arch)
    features = encoder(torch.rand(1, 3, 32, 48))[layer]
    assert features.shape[1] == channels
    out = decoder(features)
    assert out.shape == (1, 3, 32, 48) and features.shape[-2:] == (32 // scale, 48 // scale)
    kinds = {type(m) for m in decoder.modules()}
    assert not kinds & {torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d, torch.nn.ConvTranspose2d}
    convs = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == channels and convs[-1].out_channels == 3


def test_decoder_rejects_pool_and_unknown_layers() -> None:
    for bad in ("pool3", "relu9_1"):
        with pytest.raises(InvalidInputError):
            VGGDecoder(bad)
