"""Magenta's arbitrary stylization network as ported (styleops.models.magenta) and converted
(styleops.io.magenta_weights): against onnxruntime on the original graphs, on real photos and
artworks; any size and batch; tiling; blends; missing or corrupt weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleops.errors import WeightsNotFoundError
from styleops.inference.engine import InferenceEngine
from styleops.inference.tiling import stylize_tiled
from styleops.io.magenta_weights import (
    HOW_TO,
    MAGENTA_FILE,
    MagentaWeights,
    _wheel_models_dir,
    dequantized_initializers,
    install_magenta_weights,
    load_magenta,
)
from styleops.models.magenta import MagentaStylizer, blend_vectors, predictor_input

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = sorted((ROOT / "examples" / "catalog").glob("*.jpg"))
ARTWORKS = sorted(p for p in (ROOT / "examples" / "artwork").rglob("*") if p.suffix in (".jpg", ".png"))


def _pixels(path: Path, square: int | None = None) -> np.ndarray:
    """HWC float32 in [0, 1]; `square`: centre square resized (Lanczos) as the peer feeds its graphs."""
    im = Image.open(path).convert("RGB")
    if square:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((square, square), Image.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None]


def test_the_port_matches_onnxruntime_on_the_original_graphs(magenta: MagentaWeights) -> None:
    """At 384 px on real photos and artworks: style vectors with cosine >= 0.98, and stylized pixels
    within a mean absolute difference of 0.05 of the int8 graph (it fake-quantizes activations)."""
    ort = pytest.importorskip("onnxruntime")
    models = _wheel_models_dir()
    assert models is not None
    predict = ort.InferenceSession(str(models / "arbitrary_predict.onnx"), providers=["CPUExecutionProvider"])
    transform = ort.InferenceSession(str(models / "arbitrary_transform.onnx"), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in transform.get_inputs()]
    diffs = []
    for art in ARTWORKS:
        a = _pixels(art, 256)
        want = predict.run(None, {predict.get_inputs()[0].name: a[None]})[0].reshape(-1)
        with torch.no_grad():
            got = magenta.predictor(_chw(a))[0].numpy()
        assert float(want @ got / np.linalg.norm(want) / np.linalg.norm(got)) >= 0.98, art.name
        for photo in PHOTOS[:2]:
            p = _pixels(photo, 384)
            want_y = transform.run(None, {inputs[0]: p[None], inputs[1]: want.reshape(1, 1, 1, 100)})[0][0]
            with torch.no_grad():
                got_y = magenta.transformer(_chw(p), torch.from_numpy(want)[None])[0].permute(1, 2, 0).numpy()
            diffs.append(float(np.abs(want_y - got_y).mean()))
    assert len(diffs) == 2 * len(ARTWORKS) >= 6
    assert float(np.mean(diffs)) <= 0.05, diffs
    print(f"mean abs diff {np.mean(diffs):.4f} (each {[round(d, 4) for d in diffs]})")


def test_the_port_equals_the_graph_without_its_activation_quantization(magenta: MagentaWeights) -> None:
    """The same graph with its activation Quantize/Dequantize pairs removed (weights dequantized as
    converted) is the float network: the port reproduces it to float rounding."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    models = _wheel_models_dir()
    assert models is not None
    model = onnx.load(str(models / "arbitrary_transform.onnx"))
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    alias = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in weights
    }

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    kept = [n for n in graph.node if n.output[0] not in alias]
    for n in kept:
        n.input[:] = [resolve(i) for i in n.input]
    kept += [onnx.helper.make_node("Identity", [resolve(o.name)], [o.name]) for o in graph.output if o.name in alias]
    del graph.node[:]
    graph.node.extend(kept)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    photo = _pixels(PHOTOS[0], 384)
    style = torch.randn(1, 100, generator=torch.Generator().manual_seed(0))
    names = [i.name for i in session.get_inputs()]
    want = session.run(None, {names[0]: photo[None], names[1]: style.numpy().reshape(1, 1, 1, 100)})[0][0]
    with torch.no_grad():
        got = magenta.transformer(_chw(photo), style)[0].permute(1, 2, 0).numpy()
    assert float(np.abs(want - got).max()) < 1e-4


def test_weights_are_dequantized_per_output_channel() -> None:
    models = _wheel_models_dir()
    assert models is not None
    values, nodes = dequantized_initializers(models / "arbitrary_transform.onnx")
    w = values["transformer/contract/conv1/weights"]
    assert w.dtype == np.float32 and w.shape == (8, 3, 9, 9)
    assert len({float(np.abs(w[c]).max()) for c in range(8)}) == 8  # one scale per output channel
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes)


def test_any_size_and_batch_give_the_single_image_result(magenta: MagentaWeights) -> None:
    torch.manual_seed(0)
    style = torch.randn(1, 100)
    net = MagentaStylizer(magenta.transformer, style)
    a, b = torch.rand(1, 3, 70, 93), torch.rand(1, 3, 70, 93)  # not multiples of 4
    with torch.no_grad():
        alone = torch.cat([net(a), net(b)])
        batch = net(torch.cat([a, b]))
    assert alone.shape == (2, 3, 70, 93)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    assert float(alone.min()) > 0 and float(alone.max()) < 1  # a sigmoid output


@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_tiled_equals_untiled(magenta: MagentaWeights, alpha: float) -> None:
    """Tiles normalize with whole-image statistics and (alpha < 1) the whole image's own vector."""
    photo = _chw(_pixels(PHOTOS[1]))[..., :300, :420]
    style = magenta.predictor(predictor_input(_chw(_pixels(ARTWORKS[0])))).detach()
    net = MagentaStylizer(magenta.transformer, style, alpha=alpha, predictor=magenta.predictor)
    with torch.no_grad():
        whole = net(photo)
        tiled = stylize_tiled(net, photo, tile=192, overlap=64)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_the_engine_tiles_a_large_image_like_the_whole(magenta: MagentaWeights) -> None:
    net = MagentaStylizer(magenta.transformer, torch.randn(1, 100, generator=torch.Generator().manual_seed(1)))
    image = (torch.rand(3, 260, 300) * 255).to(torch.uint8)
    whole = InferenceEngine(net, device="cpu", tile_size=None).stylize([image])[0]
    tiled_engine = InferenceEngine(net, device="cpu", tile_size=256)
    tiled = tiled_engine.stylize([image])[0]
    assert tiled_engine.tiled_images == 1
    assert int((whole.int() - tiled.int()).abs().max()) <= 1


def test_a_blend_at_weight_one_is_the_style_alone(magenta: MagentaWeights) -> None:
    gen = torch.Generator().manual_seed(2)
    vectors = torch.randn(2, 100, generator=gen)
    photo = torch.rand(1, 3, 64, 64, generator=gen)
    blended = blend_vectors(vectors, torch.tensor([1.0, 0.0]))
    assert torch.equal(blended, vectors[:1])
    with torch.no_grad():
        assert torch.equal(
            MagentaStylizer(magenta.transformer, blended)(photo),
            MagentaStylizer(magenta.transformer, vectors[:1])(photo),
        )
    half = blend_vectors(vectors, torch.tensor([2.0, 2.0]))  # weights are normalized
    torch.testing.assert_close(half, vectors.mean(0, keepdim=True))


def test_alpha_zero_paints_the_photo_in_its_own_style(magenta: MagentaWeights) -> None:
    photo = _chw(_pixels(PHOTOS[2]))[..., :128, :128]
    own = magenta.predictor(predictor_input(photo)).detach()
    art = torch.randn(1, 100, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        at_zero = MagentaStylizer(magenta.transformer, art, alpha=0.0, predictor=magenta.predictor)(photo)
        with_own = MagentaStylizer(magenta.transformer, own)(photo)
    torch.testing.assert_close(at_zero, with_own, atol=1e-5, rtol=0)


def test_missing_or_corrupt_weights_name_the_install_command(magenta_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="styleops weights install"):
        load_magenta(cache_dir=tmp_path)
    corrupt = bytearray(magenta_file.read_bytes())
    corrupt[-100] ^= 0xFF
    (tmp_path / MAGENTA_FILE).write_bytes(bytes(corrupt))
    with pytest.raises(WeightsNotFoundError, match="corrupt or not the pinned weights") as info:
        load_magenta(cache_dir=tmp_path)
    assert HOW_TO in str(info.value)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(magenta_file.read_bytes()[:1000])
    with pytest.raises(WeightsNotFoundError, match="styleops weights install"):
        load_magenta(truncated)


def test_install_is_pinned_and_idempotent(magenta_file: Path) -> None:
    digest = hashlib.sha256(magenta_file.read_bytes()).hexdigest()
    assert load_magenta(cache_dir=magenta_file.parent).sha256 == digest
    assert install_magenta_weights(magenta_file.parent) == magenta_file  # a pinned file is kept
