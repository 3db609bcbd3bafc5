"""Batched inference for feed-forward style networks.

Images of mixed sizes are grouped into size buckets: each image is (optionally) shrunk so its
longer side is at most `max_side` (aspect ratio kept), then reflection-padded up to a multiple of
`bucket_multiple` pixels; images with the same padded size run as one batch and are cropped back.
Runs under `torch.inference_mode`, with autocast on GPUs and optionally `torch.compile`.
Memory format is NCHW by default everywhere: channels_last measured slower for these
instance-normalized nets on CPU (25%) and on an H100 (1.07x-1.40x; docs/benchmarks.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.device import autocast, autocast_dtype, resolve_device
from styleops.errors import InvalidInputError
from styleops.imageio import resize_max_side, to_float, to_uint8


def plan_buckets(sizes: Sequence[tuple[int, int]], batch_size: int, multiple: int = 16) -> list[tuple[tuple[int, int], list[int]]]:
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
        bucket_multiple: int = 16,
    ) -> None:
        """batch_size defaults by device: 8 on CUDA, 1 on CPU, where batching measured slower.
        compile: `torch.compile` the model (CUDA: 2.0-2.4x the images/s at 1024 px on an H100,
        after a compilation per size bucket; docs/benchmarks.md)."""
        self.device = resolve_device(device)
        gpu = self.device.type == "cuda"
        self.dtype = autocast_dtype(self.device, precision)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        if compile:
            self.model = torch.compile(self.model)
        self.batch_size = batch_size or (8 if gpu else 1)
        self.max_side, self.bucket_multiple = max_side, bucket_multiple

    def prepare(self, image: Tensor) -> Tensor:
        """uint8 [3, H, W] -> float [3, h, w] in [0, 1], shrunk to max_side."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise InvalidInputError(f"expected an image [3, H, W], got {tuple(image.shape)}")
        return resize_max_side(to_float(image), self.max_side)

    @torch.inference_mode()
    def run_batch(self, batch: Tensor) -> Tensor:
        """float [N, 3, H, W] in [0, 1] -> float [N, 3, H, W] in [0, 1] on the CPU."""
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.dtype):
            y = self.model(x)
        return y.float().clamp_(0, 1).cpu()

    def stylize(self, images: Sequence[Tensor]) -> list[Tensor]:
        """Stylize uint8 images [3, H, W] of any sizes; results in input order."""
        prepared = [self.prepare(img) for img in images]
        return [to_uint8(y) for y in self.stylize_prepared(prepared)]

    def stylize_prepared(self, prepared: Sequence[Tensor]) -> list[Tensor]:
        """Float [3, h, w] images (already shrunk) -> float results, batched by size bucket."""
        out: list[Tensor | None] = [None] * len(prepared)
        sizes = [tuple(p.shape[-2:]) for p in prepared]
        for padded, indices in plan_buckets(sizes, self.batch_size, self.bucket_multiple):
            batch = torch.stack([_pad_to(prepared[i], padded) for i in indices])
            result = self.run_batch(batch)
            for j, i in enumerate(indices):
                h, w = sizes[i]
                out[i] = result[j, :, :h, :w]
        return out  # type: ignore[return-value]


def stylize_one_at_a_time(model: nn.Module, images: Sequence[Tensor], device: str | torch.device = "cpu") -> list[Tensor]:
    """The plain loop (no batching, no channels_last, no autocast): the benchmark baseline."""
    dev = resolve_device(device)
    model = model.eval().to(dev)
    results = []
    with torch.no_grad():
        for img in images:
            results.append(to_uint8(model(to_float(img)[None].to(dev)).clamp(0, 1)[0].cpu()))
    return results
