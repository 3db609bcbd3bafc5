"""Batched inference for feed-forward style networks.

Images of mixed sizes are grouped into size buckets: each image is (optionally) shrunk so its
longer side is at most `max_side` (aspect ratio kept), then reflection-padded up to a multiple of
`bucket_multiple` pixels; images with the same padded size run as one batch and are cropped back.
Runs under `torch.inference_mode`, with autocast on GPUs and optionally `torch.compile`, or on a
CPU with onnxruntime (`backend`).
Memory format is NCHW by default everywhere: channels_last measured slower for these
instance-normalized nets on CPU (25%) and on an H100 (1.07x-1.40x; docs/benchmarks.md).

Large images and device memory (`try_stylize`): an image whose longer side is over `tile_size`
runs tiled (`styleops.inference.tiling`: whole-image instance-norm statistics, feathered overlaps), and a
batch that runs out of device memory is split in halves, then an image alone is tiled, with
tiles halved down to `min_tile`; only then does that image get a `DeviceOutOfMemoryError`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.device import autocast, autocast_dtype, resolve_device
from styleops.errors import DeviceOutOfMemoryError, InvalidInputError
from styleops.inference.onnx_backend import OnnxRuntimeModule
from styleops.inference.tiling import known_radius, stylize_tiled
from styleops.io.images import resize_max_side, to_float, to_uint8

_log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device (CUDA, MPS) or host allocator out-of-memory error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def shrunk_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """(H, W) after `resize_max_side` (same rounding), without touching pixels."""
    if max_side is None or max(h, w) <= max_side:
        return h, w
    return (max_side, max(1, round(w * max_side / h))) if h >= w else (max(1, round(h * max_side / w)), max_side)


def plan_buckets(
    sizes: Sequence[tuple[int, int]], batch_size: int, multiple: int = 16
) -> list[tuple[tuple[int, int], list[int]]]:
    """Group image indices by padded size; returns [(padded (H, W), [indices...]), ...] in chunks of batch_size."""
    if batch_size <= 0 or multiple <= 0:
        raise InvalidInputError("batch_size and multiple must be > 0")
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (h, w) in enumerate(sizes):
        groups[(-(-h // multiple) * multiple, -(-w // multiple) * multiple)].append(i)
    return [(size, idx[j : j + batch_size]) for size, idx in groups.items() for j in range(0, len(idx), batch_size)]


def _pad_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[C, H, W] -> [C, *size], reflection padding at bottom/right (replicate when too small to reflect)."""
    ph, pw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if not (ph or pw):
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]


def prepare_image(image: Tensor, device: torch.device, max_side: int | None) -> Tensor:
    """uint8 [3, H, W] (any device) -> float [3, h, w] in [0, 1] on `device`, shrunk to max_side."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise InvalidInputError(f"expected an image [3, H, W], got {tuple(image.shape)}")
    if image.device != device and image.device.type == "cpu" and device.type == "cuda":
        image = image.pin_memory()  # page-locked: the copy below runs asynchronously
    return resize_max_side(to_float(image.to(device, non_blocking=True)), max_side)


class InferenceEngine:
    """Stylize many images with one network: uint8 [3, H, W] in, uint8 [3, h, w] out.

    Output size equals the input size after the `max_side` shrink (never upscaled).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        max_side: int | None = None,
        precision: str = "auto",
        channels_last: bool = False,
        compile: bool = False,
        compile_backend: str = "inductor",
        backend: str = "torch",
        onnx_cache: Path | None = None,
        bucket_multiple: int = 16,
        tile_size: int | None = 2048,
        min_tile: int = 256,
    ) -> None:
        """batch_size defaults by device: 8 on CUDA, 1 on CPU, where batching measured slower.
        compile: `torch.compile` the model (CUDA: 2.0-2.4x the images/s at 1024 px on an H100,
        after a compilation per size bucket; docs/benchmarks.md). The first batch of each new
        shape compiles: its seconds add up in `compile_s` and are logged. Graphs are Dynamo's,
        keyed by the network's code and guarded on shapes, not on this instance, so a later
        engine in the same process (the next shard) over a model of the same class and sizes
        reuses them.
        backend: 'torch', or 'onnxruntime' on a CPU (`styleops.inference.onnx_backend`: the model
        exported and checked once; where it does not export or match, torch runs it, and
        `self.backend` says which did; it replaces `compile`); onnx_cache: a folder where the
        export is kept for later processes (`onnx_backend.cached_export`).
        tile_size: images with a longer side over this many px run tiled (None: never, unless out
        of memory); min_tile: the smallest tile tried after out-of-memory errors."""
        self.device = resolve_device(device)
        gpu = self.device.type == "cuda"
        self.dtype = autocast_dtype(self.device, precision)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if gpu:
            torch.backends.cudnn.benchmark = True  # fixed bucket sizes: let cuDNN pick the fastest kernels once
        self.model = self.eager_model = model.eval().to(self.device, memory_format=self.memory_format)
        self.backend = "torch"
        if backend == "onnxruntime" and self.device.type == "cpu":
            exported = OnnxRuntimeModule.from_module(self.eager_model, bucket_multiple, onnx_cache)
            if exported is not None:
                self.model, self.backend, compile = exported, "onnxruntime", False
        self.compiled = compile
        if compile:
            self.model = torch.compile(self.model, backend=compile_backend)
        self.compile_s = 0.0  # seconds spent in first batches of a new shape (compiling), when compiled
        self._shapes_seen: set[tuple[int, ...]] = set()
        self.batch_size = batch_size or (8 if gpu else 1)
        self.max_side, self.bucket_multiple = max_side, bucket_multiple
        if tile_size is not None and tile_size < min_tile:
            raise InvalidInputError(f"tile_size {tile_size} is under min_tile {min_tile}")
        self.tile_size, self.min_tile = tile_size, min_tile
        self.tiled_images = 0  # images that ran tiled (too large, or after out-of-memory)
        self.oom_splits = 0  # batches split in halves after out-of-memory

    def _note_compile(self, shape: tuple[int, ...], started: float) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self._shapes_seen.add(shape)
        self.compile_s += seconds
        _log.info("compiled the model for batches of %s in %.1f s (first batch of this shape)", list(shape), seconds)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an image of h x w px comes out at (after the max_side shrink)."""
        return shrunk_size(h, w, self.max_side)

    def bucket(self, h: int, w: int) -> tuple[int, int]:
        """The padded size an h x w input (before the shrink) is batched at."""
        oh, ow = self.output_size(h, w)
        m = self.bucket_multiple
        return -(-oh // m) * m, -(-ow // m) * m

    def prepare(self, image: Tensor) -> Tensor:
        """uint8 [3, H, W] (any device) -> float [3, h, w] in [0, 1] on the engine's device, shrunk to max_side."""
        return prepare_image(image, self.device, self.max_side)

    @torch.inference_mode()
    def run_batch(self, batch: Tensor, *, to_cpu: bool = True) -> Tensor:
        """float [N, 3, H, W] in [0, 1] -> float [N, 3, H, W] in [0, 1] (on the CPU unless not to_cpu)."""
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        first = self.compiled and tuple(x.shape) not in self._shapes_seen
        started = time.perf_counter()
        with autocast(self.device, self.dtype):
            y = self.model(x)
        if first:
            self._note_compile(tuple(x.shape), started)
        y = y.float().clamp_(0, 1)
        return y.cpu() if to_cpu else y

    def stylize(self, images: Sequence[Tensor]) -> list[Tensor]:
        """Stylize uint8 images [3, H, W] of any sizes; results in input order."""
        prepared = [self.prepare(img) for img in images]
        return [to_uint8(y) for y in self.stylize_prepared(prepared)]

    def stylize_prepared(self, prepared: Sequence[Tensor]) -> list[Tensor]:
        """Float [3, h, w] images (already shrunk) -> float results on the CPU, batched by size
        bucket; raises DeviceOutOfMemoryError where `try_stylize` gives one."""
        results = self.try_stylize(prepared)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return [r.cpu() for r in results]  # type: ignore[union-attr]

    def try_stylize(self, prepared: Sequence[Tensor]) -> list[Tensor | DeviceOutOfMemoryError]:
        """Float [3, h, w] images -> float [3, h, w] results in [0, 1] on the engine's device, in
        input order, batched by size bucket; out of memory never raises (see the module doc)."""
        out: list[Tensor | DeviceOutOfMemoryError | None] = [None] * len(prepared)
        sizes = [tuple(p.shape[-2:]) for p in prepared]
        for padded, indices in plan_buckets(sizes, self.batch_size, self.bucket_multiple):
            self._fit(prepared, indices, padded, out)
        return out  # type: ignore[return-value]

    def _fit(self, prepared: Sequence[Tensor], indices: list[int], padded: tuple[int, int], out: list) -> None:
        """Run one bucket's batch; halve it on out-of-memory; tile an image too large alone."""
        if len(indices) == 1 and self.tile_size is not None and max(padded) > self.tile_size:
            out[indices[0]] = self._tiled(prepared[indices[0]], self.tile_size)
            return
        try:
            result = self.run_batch(torch.stack([_pad_to(prepared[i], padded) for i in indices]), to_cpu=False)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            if not is_out_of_memory(exc):
                raise
            _release_cached_memory(self.device)
            if len(indices) > 1:
                self.oom_splits += 1
                half = len(indices) // 2
                self._fit(prepared, indices[:half], padded, out)
                self._fit(prepared, indices[half:], padded, out)
            else:
                out[indices[0]] = self._tiled(
                    prepared[indices[0]], _round_down(max(padded) // 2, self.bucket_multiple), exc
                )
            return
        for j, i in enumerate(indices):
            h, w = prepared[i].shape[-2:]
            out[i] = result[j, :, :h, :w]

    @torch.inference_mode()
    def _tiled(self, x: Tensor, tile: int, cause: BaseException | None = None) -> Tensor | DeviceOutOfMemoryError:
        """One image [3, h, w] in tiles of `tile` px, halved after each out-of-memory down to min_tile."""
        m = self.bucket_multiple
        overlap = _tile_overlap(self.eager_model, m)
        # Tiling patches the norm layers for the image's statistics: on a private copy, since the
        # shards of a run share one cached model across threads (and the other shard may be mid-batch).
        model = copy.deepcopy(self.eager_model)
        h, w = x.shape[-2:]
        padded = _pad_to(x.to(self.device), (-(-h // m) * m, -(-w // m) * m))[None]
        self.tiled_images += 1
        while True:
            tile = max(_round_down(tile, m), self.min_tile, 2 * overlap + m)
            try:
                with autocast(self.device, self.dtype):
                    y = stylize_tiled(model, padded, tile=tile, overlap=overlap, multiple=m)
                return y[0, :, :h, :w].float().clamp_(0, 1)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
                if not is_out_of_memory(exc):
                    raise
                _release_cached_memory(self.device)
                cause = exc
                if tile <= max(self.min_tile, 2 * overlap + m):
                    return DeviceOutOfMemoryError(
                        f"out of {self.device.type} memory for a {h}x{w} image even in {tile} px tiles: "
                        f"{str(cause).splitlines()[0][:200]}"
                    )
                tile //= 2


def _round_down(n: int, multiple: int) -> int:
    return max(multiple, n // multiple * multiple)


def _tile_overlap(model: nn.Module, multiple: int) -> int:
    """Halo px for tiling `model`: its receptive radius plus a 16 px feather when known (`known_radius`)
    (exact), else 128 px (VGG encoders reach further; the result is then close, not exact)."""
    known = known_radius(model)  # a TransformerNet, or a net with a fixed style (`.net`)
    radius = known + 16 if known is not None else 128
    return -(-radius // multiple) * multiple


def _release_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back after an out-of-memory error."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def stylize_one_at_a_time(
    model: nn.Module, images: Sequence[Tensor], device: str | torch.device = "cpu"
) -> list[Tensor]:
    """The plain loop (no batching, no channels_last, no autocast): the benchmark baseline."""
    dev = resolve_device(device)
    model = model.eval().to(dev)
    results = []
    with torch.no_grad():
        for img in images:
            results.append(to_uint8(model(to_float(img)[None].to(dev)).clamp(0, 1)[0].cpu()))
    return results
