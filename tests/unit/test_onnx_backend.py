"""onnxruntime as the CPU backend (`styleops.inference.onnx_backend`): what it is chosen for, that it
gives torch's outputs on real photos, and that a net it cannot run right stays on torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.inference import onnx_backend
from styleops.inference.engine import InferenceEngine
from styleops.inference.onnx_backend import OnnxRuntimeEncoder, chosen_backend
from styleops.io.images import read_image, to_float
from styleops.io.magenta_weights import MagentaWeights
from styleops.models.magenta import MagentaStyleNet
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("setting", "device", "expected"),
    [
        ("auto", CPU, "onnxruntime"),  # installed with the test extra
        ("onnxruntime", CPU, "onnxruntime"),
        ("torch", CPU, "torch"),
        ("auto", CUDA, "torch"),
        ("onnxruntime", CUDA, "torch"),  # GPUs always run torch
    ],
)
def test_the_backend_is_onnxruntime_on_a_cpu_where_installed_and_torch_elsewhere(
    setting: str, device: torch.device, expected: str
) -> None:
    assert chosen_backend(setting, device) == expected


def test_without_onnxruntime_auto_is_torch_and_asking_for_it_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    assert chosen_backend("auto", CPU) == "torch"
    with pytest.raises(InvalidInputError, match="pip install onnxruntime"):
        chosen_backend("onnxruntime", CPU)
    with pytest.raises(InvalidInputError, match="backend must be one of auto, torch, onnxruntime"):
        chosen_backend("tensorrt", CPU)


def _photos(paths: list[Path]) -> list[Tensor]:
    return [read_image(p).pixels for p in paths[:3]]


def test_the_pretrained_per_style_net_on_onnxruntime_paints_what_torch_paints(
    magenta: MagentaWeights, photos: list[Path]
) -> None:
    """Real photos of three sizes, outputs uint8: within 1 level of torch's, nearly all equal."""
    torch.manual_seed(0)
    net = MagentaStyleNet.from_pretrained(magenta.transformer, torch.randn(1, 100) * 0.5)
    images = _photos(photos)
    on_torch = InferenceEngine(net, device="cpu", max_side=200)
    on_ort = InferenceEngine(net, device="cpu", max_side=200, backend="onnxruntime")
    assert (on_torch.backend, on_ort.backend) == ("torch", "onnxruntime")
    for a, b in zip(on_torch.stylize(images), on_ort.stylize(images), strict=True):
        assert a.shape == b.shape
        diff = (a.int() - b.int()).abs()
        assert diff.max() <= 1
        assert (diff > 0).float().mean() < 0.001


def test_a_net_that_does_not_export_stays_on_torch_with_the_same_output(photos: list[Path]) -> None:
    """The palette (an eigendecomposition) has no ONNX operator: torch runs the net, unchanged."""
    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=1, output="logit_residual", palette=True)
    images = _photos(photos)
    engine = InferenceEngine(net, device="cpu", max_side=96, backend="onnxruntime")
    assert engine.backend == "torch"
    expected = InferenceEngine(net, device="cpu", max_side=96).stylize(images)
    assert all(torch.equal(a, b) for a, b in zip(engine.stylize(images), expected, strict=True))


class _WidthBaked(nn.Module):
    """Branches on its input's width: a trace keeps its sample's branch for every width."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.5 if x.shape[-1] > 300 else x


def test_a_graph_that_baked_a_shape_in_is_caught_and_torch_runs_the_net() -> None:
    engine = InferenceEngine(_WidthBaked(), device="cpu", backend="onnxruntime")
    assert engine.backend == "torch"
    x = torch.rand(3, 32, 320)
    assert torch.equal(engine.stylize_prepared([x])[0], x * 0.5)


def test_the_encoder_on_onnxruntime_returns_torchs_layers_for_every_subset(
    encoder: VGGEncoder, artwork: Tensor
) -> None:
    ort = OnnxRuntimeEncoder(encoder)
    x = torch.nn.functional.interpolate(artwork[None], size=(96, 144), mode="area")
    for layers in (None, ("relu2_2",), ("relu1_2", "relu3_3")):
        want = encoder(x, layers=layers)
        got = ort(x, layers=layers)
        assert list(got) == list(want)
        for name in want:
            assert got[name].shape == want[name].shape
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)
    assert ort.layers == encoder.layers
    assert next(ort.parameters()).device == CPU  # what StyleMetrics reads its device from


class _NoExport(nn.Module):
    onnx_export = False

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.5


def test_a_net_that_says_it_cannot_export_is_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap's and AdaIN's stylizers say so (`onnx_export = False`): torch's exporter would print its
    whole graph on stderr for each shard before failing. Checked on a part of the net, too."""

    def no_export(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("export was tried")

    monkeypatch.setattr(onnx_backend, "export", no_export)
    wrapped = nn.Sequential(nn.Identity(), _NoExport())
    for net in (_NoExport(), wrapped):
        engine = InferenceEngine(net, device="cpu", backend="onnxruntime")
        assert engine.backend == "torch"
        x = torch.rand(3, 16, 16)
        assert torch.equal(engine.stylize_prepared([x])[0], x * 0.5)


def _small_net(seed: int) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(channels=8, n_residual=1).eval()


def _count_exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the modules `onnx_backend.export` is called on from now on (it still exports)."""
    calls: list[str] = []
    real = onnx_backend.export

    def counted(module: nn.Module, *args: object, **kwargs: object) -> bytes | None:
        calls.append(type(module).__name__)
        return real(module, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_backend, "export", counted)
    return calls


def test_an_export_kept_on_disk_serves_a_later_process_without_exporting_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process (here: a new module object with the same weights) reads the graph the first
    one kept, checks it against torch, and runs it: no second export. Other weights, another graph."""
    calls = _count_exports(monkeypatch)
    x = torch.rand(3, 48, 80)
    first = InferenceEngine(_small_net(0), device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    assert first.backend == "onnxruntime" and calls == ["TransformerNet"]
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    again = InferenceEngine(_small_net(0), device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    assert again.backend == "onnxruntime" and calls == ["TransformerNet"]
    assert torch.equal(again.stylize_prepared([x])[0], first.stylize_prepared([x])[0])
    other = InferenceEngine(_small_net(1), device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    assert other.backend == "onnxruntime" and calls == ["TransformerNet", "TransformerNet"]
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    with torch.no_grad():
        torch.testing.assert_close(
            other.stylize_prepared([x])[0], _small_net(1)(x[None])[0].clamp(0, 1), atol=1e-4, rtol=0
        )


def test_a_kept_graph_that_does_not_match_its_net_is_exported_anew(tmp_path: Path) -> None:
    """The file under a net's digest holds another net's graph (a stale or planted file): the check
    on reading catches it, and the net's own graph replaces it."""
    net, stranger = _small_net(0), _small_net(1)
    samples = onnx_backend.check_inputs()
    digest = onnx_backend.graph_digest(net, samples, 1, ("16",))
    planted = onnx_backend.export(stranger, samples)
    assert planted is not None
    (tmp_path / f"{digest}.onnx").write_bytes(planted)
    engine = InferenceEngine(net, device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    assert engine.backend == "onnxruntime"
    assert (tmp_path / f"{digest}.onnx").read_bytes() != planted
    x = torch.rand(3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(engine.stylize_prepared([x])[0], net(x[None])[0].clamp(0, 1), atol=1e-4, rtol=0)


def test_a_net_that_did_not_export_is_remembered_on_disk_and_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_exports(monkeypatch)
    assert InferenceEngine(_WidthBaked(), device="cpu", backend="onnxruntime", onnx_cache=tmp_path).backend == "torch"
    assert calls == ["_WidthBaked"] and len(list(tmp_path.glob("*.torch"))) == 1
    assert InferenceEngine(_WidthBaked(), device="cpu", backend="onnxruntime", onnx_cache=tmp_path).backend == "torch"
    assert calls == ["_WidthBaked"]


def test_the_digest_follows_weights_and_plain_attributes_not_the_object() -> None:
    samples = onnx_backend.check_inputs()
    a, b = _small_net(0), _small_net(0)
    assert onnx_backend.graph_digest(a, samples, 1, ()) == onnx_backend.graph_digest(b, samples, 1, ())
    b.some_scale = 0.5  # a plain attribute a forward might read (as Magenta's alpha)
    assert onnx_backend.graph_digest(a, samples, 1, ()) != onnx_backend.graph_digest(b, samples, 1, ())
    with torch.no_grad():
        next(iter(a.parameters())).add_(1e-6)
    assert onnx_backend.graph_digest(a, samples, 1, ()) != onnx_backend.graph_digest(_small_net(0), samples, 1, ())
    assert onnx_backend.graph_digest(a, samples, 1, ("16",)) != onnx_backend.graph_digest(a, samples, 1, ("32",))


def test_the_cache_keeps_the_most_recently_used_graphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_backend, "MAX_CACHED_GRAPHS", 2)
    for seed in range(3):
        InferenceEngine(_small_net(seed), device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    kept = {p.name for p in tmp_path.glob("*.onnx")}
    samples = onnx_backend.check_inputs()
    digests = [onnx_backend.graph_digest(_small_net(s), samples, 1, ("16",)) for s in range(3)]
    assert kept == {f"{digests[1]}.onnx", f"{digests[2]}.onnx"}


def test_a_graph_has_one_session_per_thread_count_in_a_process() -> None:
    """The check of an export and the shards' engines share it (built once; `run` is thread-safe)."""
    graph = onnx_backend.export(_small_net(0), onnx_backend.check_inputs())
    assert graph is not None
    one = onnx_backend.session(graph, threads=1)
    assert onnx_backend.session(graph, threads=1) is one
    assert onnx_backend.session(bytes(graph), threads=1) is one  # by content, not by object
    assert onnx_backend.session(graph, threads=2) is not one


@pytest.mark.parametrize(("cin", "cout", "kernel", "bias"), [(8, 3, 9, False), (32, 3, 9, True), (5, 4, 7, True)])
def test_a_convolution_at_half_resolution_computes_the_same_function(
    cin: int, cout: int, kernel: int, bias: bool
) -> None:
    """`SpaceToDepthConv` on odd and even sizes, including ones barely over the kernel."""
    torch.manual_seed(cin)
    conv = nn.Conv2d(cin, cout, kernel, bias=bias)
    s2d = onnx_backend.SpaceToDepthConv(conv)
    for h, w in ((kernel, kernel), (kernel + 1, kernel + 4), (37, 50), (64, 33)):
        x = torch.randn(2, cin, h, w)
        with torch.no_grad():
            want, got = conv(x), s2d(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_export_form_rewrites_the_last_convolution_of_a_transformer_and_nothing_else() -> None:
    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=1, output="direct").eval()  # its last convolution not zero
    form = onnx_backend.export_form(net)
    assert form is not net and isinstance(net.decoder[-1][1], nn.Conv2d)  # the net itself untouched
    assert isinstance(form.decoder[-1][1], onnx_backend.SpaceToDepthConv)
    rewritten = [m for m in form.modules() if isinstance(m, onnx_backend.SpaceToDepthConv)]
    assert len(rewritten) == 1  # the first 9x9 (3 -> 8) has more outputs; the 3x3s are small kernels
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(form(x), net(x), atol=1e-5, rtol=0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3))
    assert onnx_backend.export_form(plain) is plain
