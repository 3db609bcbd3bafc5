"""Tiled inference with whole-image instance-norm statistics (styleops.inference.tiling), on real photos."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.inference.tiling import global_norm_stats, instance_norms, plan_spans, receptive_radius, stylize_tiled
from styleops.io.images import read_image, to_float
from styleops.models.multistyle import ConditionalInstanceNorm2d, MultiStyleTransformerNet
from styleops.models.transformer import TransformerNet
from tests.conftest import one_torch_thread

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIZE = (226, 298)  # not multiples of 4: the net's own bottom/right padding is exercised too
TILE, OVERLAP = 128, 40  # 4 x 5 windows; overlap >= receptive radius (33) + default feather (7)
M = TypeVar("M", bound=nn.Module)


def _photo(name: str) -> Tensor:
    """float [1, 3, *SIZE] in [0, 1]: a catalog photo, downsized."""
    x = to_float(read_image(EXAMPLES / "catalog" / name).pixels)[None]
    return F.interpolate(x, size=SIZE, mode="bilinear", antialias=True, align_corners=False)


def _seeded(make: Callable[[], M], seed: int = 0) -> M:
    """A net with seeded random weights; norm scales/shifts far from identity (per style different)."""
    torch.manual_seed(seed)
    net = make()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                m.bias.copy_(0.3 * torch.randn_like(m.bias))
            elif isinstance(m, ConditionalInstanceNorm2d):
                for g, b in zip(m.gammas, m.betas, strict=True):
                    g.copy_(1 + 0.5 * torch.randn_like(g))
                    b.copy_(0.3 * torch.randn_like(b))
    return net.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    return _seeded(
        lambda: TransformerNet(channels=8, n_residual=2, output="direct")
    )  # unbounded: the norms' effects show in full


@pytest.fixture(scope="module")
def photo() -> Tensor:
    return _photo("kodim23.jpg")


@pytest.fixture(scope="module")
def untiled(net: TransformerNet, photo: Tensor) -> Tensor:
    with torch.no_grad():
        return net(photo)


@pytest.fixture(scope="module")
def tiled(net: TransformerNet, photo: Tensor) -> Tensor:
    return stylize_tiled(net, photo, tile=TILE, overlap=OVERLAP)


def _seams(size: int) -> list[int]:
    """Interior core edges along an axis of `size` px (the net pads to a multiple of 4)."""
    return [c1 for _, c1, _, _ in plan_spans(-(-size // 4) * 4, TILE, OVERLAP)[:-1]]


def _seam_gradient(y: Tensor) -> float:
    """Mean abs difference across the tile seams (rows and columns), [N, 3, H, W] -> scalar."""
    rows, cols = _seams(y.shape[-2]), _seams(y.shape[-1])
    dy = torch.stack([(y[..., r, :] - y[..., r - 1, :]).abs().mean() for r in rows])
    dx = torch.stack([(y[..., :, c] - y[..., :, c - 1]).abs().mean() for c in cols])
    return float(torch.cat([dy, dx]).mean())


def _away_from_seams(y: Tensor, margin: int = 8) -> Tensor:
    """Boolean [H, W] mask: pixels more than `margin` px from every tile seam."""
    h, w = y.shape[-2:]
    mask = torch.ones(h, w, dtype=torch.bool)
    for r in _seams(h):
        mask[max(0, r - margin) : r + margin] = False
    for c in _seams(w):
        mask[:, max(0, c - margin) : c + margin] = False
    return mask


def test_plan_spans_partition_the_axis_into_aligned_cores_with_bounded_windows() -> None:
    for size in (4, 128, 228, 300, 1024, 1028):
        spans = plan_spans(size, TILE, OVERLAP)
        assert spans[0][0] == 0 and spans[-1][1] == size
        for (c0, c1, w0, w1), nxt in zip(spans, spans[1:] + [None], strict=True):
            assert c0 % 4 == 0 and c1 % 4 == 0 and c0 < c1 and w1 - w0 <= TILE
            assert w0 == max(0, c0 - OVERLAP) and w1 == min(size, c1 + OVERLAP)
            if nxt is not None:
                assert nxt[0] == c1
    assert len(plan_spans(228, TILE, OVERLAP)) == 4 and len(plan_spans(300, TILE, OVERLAP)) == 5


def test_tiled_statistics_equal_the_whole_image_statistics(net: TransformerNet, photo: Tensor) -> None:
    norms = instance_norms(net)
    seen: list[tuple[Tensor, Tensor]] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, a: seen.append(torch.var_mean(a[0], dim=(-2, -1), correction=0)))
        for m in norms
    ]
    with torch.no_grad():
        net(photo)
    for h in hooks:
        h.remove()
    stats = global_norm_stats(net, photo, tile=TILE, overlap=OVERLAP)
    assert stats.passes == len(norms) == 9
    for (var, mean), m, v in zip(seen, stats.mean, stats.var, strict=True):
        torch.testing.assert_close(m.float(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v.float(), var, atol=1e-5, rtol=1e-5)
    whole = global_norm_stats(net, photo, tile=512, overlap=OVERLAP)  # one window: one plain forward
    assert whole.passes == 1
    for a, b in zip(whole.mean + whole.var, stats.mean + stats.var, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all("forward" not in m.__dict__ for m in norms)  # the patch is undone


def test_tiled_output_matches_the_untiled_output(tiled: Tensor, untiled: Tensor) -> None:
    assert tiled.shape == untiled.shape
    diff = (tiled - untiled).abs()
    assert untiled.std() > 0.3  # a real, non-flat stylization
    assert diff[..., _away_from_seams(tiled)].max() < 1e-4
    assert diff.max() < 1e-4 and diff.mean() < 1e-5


def test_tiled_output_has_no_seams(net: TransformerNet, photo: Tensor, tiled: Tensor, untiled: Tensor) -> None:
    assert _seam_gradient(tiled) == pytest.approx(_seam_gradient(untiled), rel=0.01)
    # exact enough that even hard cuts (no feathering) leave no seam
    unfeathered = stylize_tiled(net, photo, tile=TILE, overlap=OVERLAP, feather=0)
    assert _seam_gradient(unfeathered) == pytest.approx(_seam_gradient(untiled), rel=0.01)


def test_naive_per_tile_statistics_differ_and_show_seams(net: TransformerNet, photo: Tensor, untiled: Tensor) -> None:
    naive = stylize_tiled(net, photo, tile=TILE, overlap=OVERLAP, global_stats=False)
    assert (naive - untiled).abs().mean() > 0.05  # measured 0.26; feathering cannot hide this
    hard_cuts = stylize_tiled(net, photo, tile=TILE, overlap=OVERLAP, global_stats=False, feather=0)
    assert _seam_gradient(hard_cuts) > 1.3 * _seam_gradient(untiled)  # measured 1.43x


def test_multistyle_blend_per_sample_tiled(photo: Tensor) -> None:
    net = _seeded(lambda: MultiStyleTransformerNet(3, channels=8, n_residual=2, output="direct"), seed=1)
    x = torch.cat([photo, _photo("kodim05.jpg")])
    blend = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 3.0]])
    with torch.no_grad():
        expected = net(x, blend)
        other = net(x, 0)
    tiled = stylize_tiled(net, x, tile=TILE, overlap=OVERLAP, style=blend)
    assert (expected - other).abs().mean() > 0.05  # the blend matters
    diff = (tiled - expected).abs()
    assert diff.max() < 1e-4 and diff.mean() < 1e-5
    assert _seam_gradient(tiled) == pytest.approx(_seam_gradient(expected), rel=0.01)


def test_a_tile_larger_than_the_image_is_the_plain_forward(net: TransformerNet, photo: Tensor, untiled: Tensor) -> None:
    torch.testing.assert_close(stylize_tiled(net, photo, tile=512, overlap=OVERLAP), untiled, atol=0, rtol=0)


def test_too_small_overlap_warns(net: TransformerNet, photo: Tensor) -> None:
    assert receptive_radius(net) == 33
    with pytest.warns(UserWarning, match="receptive-field radius"):
        stylize_tiled(net, photo[..., :96, :160], tile=96, overlap=16, feather=4)


def test_logit_residual_output_tiles_like_untiled(photo: Tensor) -> None:
    """The photo skip of the logit-residual output is per pixel: tiles still match the whole image."""
    net = _seeded(lambda: TransformerNet(channels=8, n_residual=2, output="logit_residual"), seed=2)
    with torch.no_grad():
        net.decoder[-1][1].weight.normal_(0.0, 0.05)  # zero at init (the identity): make it paint
        untiled = net(photo)
    tiled = stylize_tiled(net, photo, tile=TILE, overlap=OVERLAP)
    assert (untiled - photo).abs().mean() > 0.05  # it changed the photo
    assert (tiled - untiled).abs().max() < 1e-4
