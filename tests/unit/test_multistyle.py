"""Conditional instance norm and the multi-style network (groundwork for issue 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from styleops.errors import InvalidInputError
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.models.multistyle import (
    ConditionalInstanceNorm2d,
    MultiStyleTransformerNet,
    StyleCondition,
    style_weights,
)
from tests.training_configs import small_train


def _randomize(net: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))


def test_one_hot_cin_is_instance_norm_with_that_styles_affine() -> None:
    cond = StyleCondition()
    norm = ConditionalInstanceNorm2d(4, 3, cond)
    _randomize(norm)
    x = torch.randn(2, 4, 5, 6)
    cond.weights = style_weights(1, 3, 2)
    expected = F.instance_norm(x, weight=norm.gammas[1], bias=norm.betas[1], eps=1e-5)
    torch.testing.assert_close(norm(x), expected)


def test_style_weights_normalize_and_reject_bad_input() -> None:
    torch.testing.assert_close(style_weights([2.0, 0.0, 2.0], 3, 2), torch.tensor([[0.5, 0.0, 0.5]] * 2))
    assert style_weights(2, 3, 1).tolist() == [[0.0, 0.0, 1.0]]
    for bad in (3, -1, [1.0, 2.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 0.0]):
        with pytest.raises(InvalidInputError):
            style_weights(bad, 3, 1)


def test_blend_with_weight_one_is_exactly_that_style() -> None:
    net = MultiStyleTransformerNet(3, channels=4, n_residual=1).eval()
    _randomize(net)
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        assert torch.equal(net(x, 2), net(x, [0.0, 0.0, 5.0]))
        a, b, mid = net(x, 0), net(x, 1), net(x, [1.0, 1.0, 0.0])
    assert not torch.allclose(a, b) and not torch.allclose(mid, a) and not torch.allclose(mid, b)


def test_added_style_trains_alone_and_leaves_old_styles_unchanged() -> None:
    net = MultiStyleTransformerNet(2, channels=4, n_residual=1)
    _randomize(net)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = [net(x, s) for s in range(2)]
    new = net.add_style(init_from=0)
    assert new == 2 and net.n_styles == 3
    params = net.freeze_all_but_style(new)
    assert {id(p) for p in params} == {id(p) for p in net.parameters() if p.requires_grad}
    assert len(params) == 2 * len(net.norms())
    opt = torch.optim.Adam(params, lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(x, new).mean().backward()
        opt.step()
    with torch.no_grad():
        for s in range(2):
            assert torch.equal(net(x, s), before[s])
        assert not torch.equal(net(x, new), before[0])


def test_multistyle_weights_round_trip_through_safetensors() -> None:
    net = MultiStyleTransformerNet(3, channels=4, n_residual=1).eval()
    _randomize(net)
    again = from_safetensors(to_safetensors(net.state_dict(), "MultiStyleTransformerNet", net.config()))
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(again(x, [0.2, 0.3, 0.5]), net(x, [0.2, 0.3, 0.5]))


def test_train_multistyle_then_add_a_style(tmp_path, encoder, photos, artwork) -> None:  # noqa: ANN001 - fixtures
    from styleops.training.engine import add_style, train_multistyle

    cfg = small_train(
        steps=6, batch_size=1, image_size=48, style_size=96, channels=4, checkpoint_every=3, seed=1, warmup_steps=100
    )
    arts = [artwork, artwork.flip(-1).roll(7, dims=1)]
    base = train_multistyle(cfg, photos, arts, encoder, workdir=tmp_path / "multi", device="cpu")
    assert (
        base.model_config
        == {"channels": 4, "n_residual": 1, "n_styles": 2, "output": "logit_residual", "palette": True}
        and len(base.history) == 6
    )
    resumed = train_multistyle(cfg, photos, arts, encoder, workdir=tmp_path / "multi", device="cpu")
    assert resumed.resumed_from == 6  # finished checkpoint: nothing left to do

    net = MultiStyleTransformerNet(2, 4, 1, output="logit_residual", palette=True).eval()
    net.load_state_dict(base.state_dict)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        before = [net(x, s) for s in range(2)]
    added = add_style(cfg, photos, arts[1], encoder, base.state_dict, 2, workdir=tmp_path / "add", device="cpu")
    assert added.model_config["n_styles"] == 3
    grown = MultiStyleTransformerNet(3, 4, 1, output="logit_residual", palette=True).eval()
    grown.load_state_dict(added.state_dict)
    changed = {
        k for k, v in added.state_dict.items() if k not in base.state_dict or not torch.equal(v, base.state_dict[k])
    }
    palettes = {"palette_mean", "palette_sqrt_cov"}  # one row per style: a row was appended
    assert changed and all(k.endswith((".gammas.2", ".betas.2")) or k in palettes for k in changed)
    for k in palettes:
        assert added.state_dict[k].shape[0] == 3 and torch.equal(added.state_dict[k][:2], base.state_dict[k])
    with torch.no_grad():
        for s in range(2):
            assert torch.equal(grown(x, s), before[s])
