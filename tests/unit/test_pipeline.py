"""The shard pipeline (styleops.inference.stream) and the engine's answers to large images and device
out-of-memory (styleops.inference.engine): batches split, then tiles, then a failed image, never a crash."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from styleops.errors import DeviceOutOfMemoryError, ImageDecodeError
from styleops.inference.arbitrary import AdaINStylizer
from styleops.inference.engine import InferenceEngine
from styleops.inference.stream import Job, StreamStylizer, bucketed
from styleops.io.images import decode_image, encode_image, plain_jpeg_size, to_float
from styleops.models.decoder import VGGDecoder
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder, build_vgg_features

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "catalog"


class OutOfMemoryAbove(nn.Module):
    """Wraps a net; raises the CUDA out-of-memory error for inputs over `limit` elements."""

    def __init__(self, net: nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.calls = net, limit, Counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls[tuple(x.shape)] += 1
        if x.numel() > self.limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {x.numel() * 4 * 64 // 2**20} MiB (simulated)"
            )
        return self.net(x)


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet(channels=8, n_residual=2).eval()


def _photos(n: int, side: int) -> list[torch.Tensor]:
    out = []
    for path in sorted(EXAMPLES.glob("*.jpg"))[:n]:
        with Image.open(path) as im:
            out.append(
                torch.from_numpy(__import__("numpy").array(im.convert("RGB").resize((side, side * 3 // 4))))
                .permute(2, 0, 1)
                .contiguous()
            )
    return out


def test_out_of_memory_splits_the_batch_and_every_image_completes(net: TransformerNet) -> None:
    images = _photos(4, 96)
    plain = InferenceEngine(net, batch_size=4, max_side=None, tile_size=None)
    expected = plain.stylize_prepared([plain.prepare(i) for i in images])
    limited = OutOfMemoryAbove(net, limit=2 * 3 * 80 * 96)  # fits 2 images at a time, not 4
    engine = InferenceEngine(limited, batch_size=4, max_side=None, tile_size=None)
    out = engine.try_stylize([engine.prepare(i) for i in images])
    assert engine.oom_splits == 1 and engine.tiled_images == 0
    assert limited.calls == Counter({(4, 3, 80, 96): 1, (2, 3, 80, 96): 2})
    for a, b in zip(expected, out, strict=True):
        assert torch.equal(a, b)


def test_out_of_memory_alone_tiles_the_image_then_fails_only_that_image(net: TransformerNet) -> None:
    big, small = torch.randint(0, 256, (3, 384, 256), dtype=torch.uint8), _photos(1, 64)[0]
    plain = InferenceEngine(net, batch_size=1, max_side=None, tile_size=None)
    expected = plain.stylize_prepared([plain.prepare(big)])[0]
    engine = InferenceEngine(
        OutOfMemoryAbove(net, limit=3 * 256 * 256), batch_size=1, max_side=None, tile_size=None, min_tile=128
    )
    (tiled,) = engine.try_stylize([engine.prepare(big)])
    assert engine.tiled_images == 1 and isinstance(tiled, torch.Tensor)
    assert (tiled - expected).abs().max().item() < 1e-4  # whole-image statistics: tiles match

    hopeless = InferenceEngine(
        OutOfMemoryAbove(net, limit=3 * 64 * 64), batch_size=2, max_side=None, tile_size=None, min_tile=128
    )
    results = hopeless.try_stylize([hopeless.prepare(big), hopeless.prepare(small)])
    assert isinstance(results[0], DeviceOutOfMemoryError) and results[0].error_class == "out_of_memory"
    assert str(results[0]).startswith(
        "out of cpu memory for a 384x256 image even in 144 px tiles: CUDA out of memory"
    )  # the smallest tile holding two 64 px halos
    assert isinstance(results[1], torch.Tensor) and results[1].shape == (3, 48, 64)  # the other image is unaffected
    with pytest.raises(DeviceOutOfMemoryError):
        hopeless.stylize_prepared([hopeless.prepare(big)])


def test_engine_tiles_images_over_tile_size_with_no_seam(net: TransformerNet) -> None:
    x = torch.randint(0, 256, (3, 300, 520), dtype=torch.uint8)
    whole = InferenceEngine(net, max_side=None, tile_size=None)
    tiled = InferenceEngine(net, max_side=None, tile_size=256)
    a = whole.stylize_prepared([whole.prepare(x)])[0]
    b = tiled.stylize_prepared([tiled.prepare(x)])[0]
    assert tiled.tiled_images == 1 and whole.tiled_images == 0
    assert b.shape == a.shape == (3, 300, 520)
    assert (a - b).abs().max().item() < 1e-4


def test_adain_tiles_with_whole_image_statistics() -> None:
    """AdaIN's normalization is a module the tiler gives whole-image statistics: tiled output is
    close to untiled (VGG reaches further than the 128 px halo, so close, not exact)."""
    torch.manual_seed(0)
    encoder = VGGEncoder(build_vgg_features("vgg16").state_dict(), ["relu3_1"], "vgg16").eval()
    model = AdaINStylizer(encoder, VGGDecoder("relu3_1"), [torch.rand(3, 64, 64)]).eval()
    x = _photos(1, 448)[0]
    whole = InferenceEngine(model, max_side=None, tile_size=None)
    tiled = InferenceEngine(model, max_side=None, tile_size=384)
    a = whole.stylize_prepared([whole.prepare(x)])[0]
    b = tiled.stylize_prepared([tiled.prepare(x)])[0]
    assert tiled.tiled_images == 1
    assert (a - b).abs().mean().item() < 2e-3


def test_bucketed_batches_hold_one_size_and_memory_stays_bounded() -> None:
    sizes = [(64, 64), (32, 48), (64, 64), (32, 48), (16, 16)] * 6
    jobs = [Job(i, in_size=s) for i, s in enumerate(sizes)]
    jobs[7].error = ImageDecodeError("bad")
    batches = list(bucketed(jobs, lambda j: j.in_size, batch_size=4, max_pending=5))
    assert sorted(j.item for b in batches for j in b) == list(range(30))
    assert all(len({j.in_size for j in b}) == 1 and len(b) <= 4 for b in batches)
    assert [j.item for j in next(b for b in batches if b[0].error is not None)] == [7]

    # Memory: after each batch leaves, at most max_pending jobs are held (read from the input, not
    # yet yielded); without the bound these three interleaved sizes would hold up to 9.
    def held_after_each_batch(max_pending: int) -> list[int]:
        pulled, emitted, held = 0, 0, []

        def source() -> Iterator[Job[int]]:
            nonlocal pulled
            for job in jobs:
                pulled += 1
                yield job

        for b in bucketed(source(), lambda j: j.in_size, batch_size=4, max_pending=max_pending):
            emitted += len(b)
            held.append(pulled - emitted)
        return held

    bounded, unbounded = held_after_each_batch(5), held_after_each_batch(10**6)
    assert max(bounded) <= 5 and bounded[-1] == 0
    assert max(unbounded) > 5


def test_stream_overlaps_and_records_each_image_once(net: TransformerNet) -> None:
    good = [encode_image(p, "jpeg") for p in _photos(6, 80)]
    data = {f"img{i}": d for i, d in enumerate(good)} | {"broken": good[0][:200], "not-an-image": b"hello"}
    engine = InferenceEngine(net, max_side=64)
    stream = StreamStylizer(
        engine,
        load=data.__getitem__,
        write=lambda job: (job.item, job.error, job.encoded, job.out_size),
        limits=(10**7, 10**7),
        threads=3,
        depth=4,
    )
    results = {r[0]: r[1:] for r in stream.run(list(data))}
    assert sorted(results) == sorted(data) and stream.stats.images == 8 and stream.stats.failed == 2
    assert type(results["broken"][0]) is ImageDecodeError and type(results["not-an-image"][0]) is ImageDecodeError
    for i, photo in enumerate(_photos(6, 80)):
        error, encoded, size = results[f"img{i}"]
        assert error is None and size == (48, 64)
        expected = engine.stylize_prepared([engine.prepare(decode_image(good[i]).pixels)])[0]
        assert encoded == encode_image(expected, "jpeg")  # the same bytes as the plain path


def test_plain_jpeg_size_admits_only_what_a_plain_decoder_gets_right() -> None:
    def jpeg(mode: str, exif: int | None = None) -> bytes:
        buf, im = io.BytesIO(), Image.new(mode, (40, 30))
        kw = {}
        if exif is not None:
            e = Image.Exif()
            e[0x0112] = exif
            kw["exif"] = e
        im.save(buf, "JPEG", **kw)
        return buf.getvalue()

    assert plain_jpeg_size(jpeg("RGB")) == (30, 40)
    assert plain_jpeg_size(jpeg("L")) == (30, 40)
    assert plain_jpeg_size(jpeg("RGB", exif=1)) == (30, 40)
    assert plain_jpeg_size(jpeg("RGB", exif=6)) is None  # rotated: decode_image turns it upright
    assert plain_jpeg_size(jpeg("CMYK")) is None
    assert plain_jpeg_size(jpeg("RGB")[:-40]) is None  # truncated
    assert plain_jpeg_size(jpeg("RGB"), max_pixels=1000) is None
    assert plain_jpeg_size(encode_image(to_float(torch.zeros(3, 8, 8, dtype=torch.uint8)), "png")) is None


def test_compiled_engine_times_each_new_shape_once_and_a_new_instance_reuses_the_graphs() -> None:
    """`compile=True` (Dynamo, here with its eager backend: the graph capture without the C++
    build) gives the eager outputs; the first batch of each shape is counted as compiling, later
    ones are not; and an engine over a fresh instance of the same net (the next shard's model)
    captures no new graph."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    first, second = TransformerNet(channels=8, n_residual=1), TransformerNet(channels=8, n_residual=1)
    x, y = torch.rand(2, 3, 32, 48), torch.rand(1, 3, 48, 32)
    engine = InferenceEngine(first, device="cpu", compile=True, compile_backend="eager")
    assert engine.compile_s == 0.0
    assert torch.allclose(engine.run_batch(x), first(x).clamp(0, 1), atol=1e-6)
    after_one = engine.compile_s
    engine.run_batch(x)
    assert engine.compile_s == after_one > 0  # the same shape again: nothing new
    engine.run_batch(y)
    assert engine.compile_s > after_one
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1

    again = InferenceEngine(second, device="cpu", compile=True, compile_backend="eager")
    assert torch.allclose(again.run_batch(x), second(x).clamp(0, 1), atol=1e-6)
    assert counters["stats"]["unique_graphs"] == graphs  # reused across instances: no recompilation
    assert not InferenceEngine(first, device="cpu").compiled


def test_every_fast_stylizer_compiles_to_one_graph_without_breaks() -> None:
    """What `STYLEOPS_COMPILE` compiles: a graph break would split the fused kernels (and AdaIN's
    fused normalize/affine is the compiler's to make), so each stylizer must trace whole."""
    from styleops.inference.arbitrary import SwapStylizer
    from styleops.models.multistyle import Conditioned, MultiStyleTransformerNet
    from styleops.models.palette import palette_of
    from styleops.ops import build_patch_bank

    torch.manual_seed(0)
    encoder = VGGEncoder(build_vgg_features("vgg16").state_dict(), ["relu3_1"], "vgg16").eval()
    art = torch.rand(3, 48, 48)
    with torch.no_grad():
        bank = build_patch_bank([encoder(art[None])["relu3_1"]], 3)
    stylizers = {
        "per-style": TransformerNet(channels=8, n_residual=1),
        "multi-style blend": Conditioned(MultiStyleTransformerNet(2, channels=8, n_residual=1), [0.7, 0.3]),
        "adain": AdaINStylizer(encoder, VGGDecoder("relu3_1"), [art], palette=True),
        "swap": SwapStylizer(encoder, VGGDecoder("relu3_1"), bank, palette=palette_of(art)),
    }
    for name, model in stylizers.items():
        with torch.inference_mode():
            explained = torch._dynamo.explain(model.eval())(torch.rand(2, 3, 48, 48))
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), (name, explained.break_reasons)
