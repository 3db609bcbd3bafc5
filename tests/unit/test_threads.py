"""One network shared by threads: the shards of a catalog run share the cached model of a version
(`runs.context.load_model`), so a conditioned forward must see its own style in every thread."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from styleops.io.magenta_weights import MagentaWeights
from styleops.models.magenta import MagentaStyleNet
from styleops.models.multistyle import MultiStyleTransformerNet


def _race(net: nn.Module, styles: list[int], x: Tensor, rounds: int = 25) -> list[list[Tensor]]:
    """Each style's forward, run `rounds` times in its own thread, all threads at once."""
    results: list[list[Tensor]] = [[] for _ in styles]
    errors: list[BaseException] = []
    start = threading.Barrier(len(styles))

    def work(i: int) -> None:
        start.wait()
        try:
            with torch.inference_mode():
                for _ in range(rounds):
                    results[i].append(net(x, styles[i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(styles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def _nets(magenta: MagentaWeights) -> dict[str, Callable[[], nn.Module]]:
    def pretrained() -> nn.Module:
        return MagentaStyleNet.from_pretrained(magenta.transformer, torch.randn(3, 100) * 0.5)

    def dumoulin() -> nn.Module:
        net = MultiStyleTransformerNet(3, channels=8, n_residual=1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.3)  # styles that differ
        return net

    return {"magenta": pretrained, "multi-style": dumoulin}


@pytest.mark.parametrize("kind", ["magenta", "multi-style"])
def test_threads_sharing_a_network_each_get_their_own_styles_output(kind: str, magenta: MagentaWeights) -> None:
    torch.manual_seed(0)
    net = _nets(magenta)[kind]().eval()
    x = torch.rand(1, 3, 48, 48)
    styles = [0, 1, 2]
    with torch.inference_mode():
        alone = [net(x, s) for s in styles]
    assert not torch.equal(alone[0], alone[1])
    for i, outputs in enumerate(_race(net, styles, x)):
        assert all(torch.equal(y, alone[i]) for y in outputs)


def test_a_multi_style_network_copies_and_pickles_with_its_shared_condition() -> None:
    net = MultiStyleTransformerNet(2, channels=8, n_residual=1).eval()
    x = torch.rand(1, 3, 32, 32)
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(n.condition is twin.condition for n in twin.norms())
        with torch.inference_mode():
            assert torch.equal(twin(x, 1), net(x, 1))


def test_an_image_tiled_in_one_thread_leaves_the_shared_networks_batches_alone_in_another() -> None:
    """Tiling patches the norm layers for the whole image's statistics; the shard beside it runs
    plain batches through the same cached network at the same time."""
    from styleops.inference.engine import InferenceEngine
    from styleops.models.transformer import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=1).eval()
    big, small = torch.rand(3, 96, 160), torch.rand(3, 48, 48)
    tiling = InferenceEngine(net, device="cpu", tile_size=64, min_tile=32)  # 96x160: tiled
    plain = InferenceEngine(net, device="cpu", tile_size=None)
    want_big, want_small = tiling.stylize_prepared([big])[0], plain.stylize_prepared([small])[0]
    assert tiling.tiled_images == 1
    results: dict[str, list[Tensor]] = {"big": [], "small": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(name: str, engine: InferenceEngine, x: Tensor, rounds: int) -> None:
        start.wait()
        try:
            for _ in range(rounds):
                results[name].append(engine.stylize_prepared([x])[0])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=("big", tiling, big, 6)),
        threading.Thread(target=work, args=("small", plain, small, 60)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(torch.equal(y, want_big) for y in results["big"])
    assert all(torch.equal(y, want_small) for y in results["small"])
