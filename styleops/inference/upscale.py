"""Super-resolution in the stream: `UpscaleEngine` upscales images, `Upscaled` upscales the outputs of
another engine (a stylization), so one shard writes one output made by both models.

Both satisfy `styleops.inference.stream.StylizeEngine`. The network has no normalization, so it
always runs tiled with a halo of its receptive radius: exact (to float rounding), and the peak
memory is one tile's, whatever the image size. Images thinner than the network's 5 px minimum are
edge-padded to it and cropped back.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.device import resolve_device
from styleops.errors import DeviceOutOfMemoryError, ImageError, ImageTooLargeError, InvalidInputError
from styleops.inference.engine import _release_cached_memory, is_out_of_memory, prepare_image, shrunk_size
from styleops.inference.stream import StylizeEngine
from styleops.inference.tiling import halo_spans
from styleops.models.super_resolution import MIN_SIDE, SuperResolutionNet, receptive_radius

DEFAULT_TILE = 256  # LR px per tile core: ~1 GB of activations for 32 channels at x4


@torch.inference_mode()
def upscale_tiled(model: SuperResolutionNet, lr: Tensor, tile: int = 128, halo: int | None = None) -> Tensor:
    """`upscale` tile by tile: [N, 3, h, w] in [0, 1] -> [N, 3, h*s, w*s] clamped to [0, 1].

    The LR image is cut into cores of `tile` x `tile` px; each runs inside a window extended by
    `halo` px (default `receptive_radius(model)`) where that is not an image border, so at the
    borders the window's reflection padding is the whole image's. With no normalization the
    result equals `upscale(model, lr)` up to float rounding (different conv blockings).
    Peak memory: one window's activations (at HR resolution in the last stages)."""
    if tile < MIN_SIDE:
        raise InvalidInputError(f"tile must be >= {MIN_SIDE} LR px, got {tile}")
    halo = receptive_radius(model) if halo is None else halo
    if halo < 0:
        raise InvalidInputError(f"halo must be >= 0, got {halo}")
    dev = next(model.parameters()).device
    s = model.scale
    n, c, h, w = lr.shape
    out = torch.empty(n, c, h * s, w * s, device=dev)
    rows, cols = halo_spans(h, tile, halo), halo_spans(w, tile, halo)
    # A last core thinner than MIN_SIDE still runs inside a window of core + halo, which is wide
    # enough unless the whole image is that thin (then `model` refuses it, as for upscale).
    for y0, y1, wy0, wy1 in rows:
        for x0, x1, wx0, wx1 in cols:
            y = model(lr[:, :, wy0:wy1, wx0:wx1].to(dev))
            core = y[:, :, (y0 - wy0) * s : (y1 - wy0) * s, (x0 - wx0) * s : (x1 - wx0) * s]
            out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = core.clamp(0, 1)
    return out


class UpscaleEngine:
    """uint8 [3, H, W] in (shrunk to `max_side` first, if set) -> float [3, h*s, w*s] in [0, 1] out.

    batch_size is 1: every image runs alone, tile by tile (sizes differ, and tiles bound memory)."""

    batch_size = 1

    def __init__(
        self,
        model: SuperResolutionNet,
        *,
        device: str | torch.device = "auto",
        max_side: int | None = None,
        tile: int = DEFAULT_TILE,
        max_output_pixels: int | None = None,
    ) -> None:
        """max_output_pixels: an image whose output would have more pixels is refused (its
        ImageTooLargeError) before any work on it, here and in `Upscaled`."""
        if tile < MIN_SIDE:
            raise InvalidInputError(f"tile must be >= {MIN_SIDE} px, got {tile}")
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.scale = model.scale
        self.max_side, self.tile, self.max_output_pixels = max_side, tile, max_output_pixels

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an h x w input comes out at."""
        sh, sw = shrunk_size(h, w, self.max_side)
        return sh * self.scale, sw * self.scale

    def bucket(self, h: int, w: int) -> Hashable:
        return shrunk_size(h, w, self.max_side)

    def prepare(self, image: Tensor) -> Tensor:
        """uint8 [3, H, W] -> float [3, h, w] in [0, 1] on the engine's device, shrunk to max_side."""
        return prepare_image(image, self.device, self.max_side)

    def upscale(self, x: Tensor, tile: int | None = None) -> Tensor:
        """float [3, h, w] in [0, 1] -> [3, h*s, w*s] in [0, 1], on the engine's device, in tiles of
        `tile` LR px (default: the engine's)."""
        h, w = x.shape[-2:]
        ph, pw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
        lr = F.pad(x[None].to(self.device), (0, pw, 0, ph), mode="replicate") if ph or pw else x[None].to(self.device)
        y = upscale_tiled(self.model, lr, tile=tile or self.tile)
        return y[0, :, : h * self.scale, : w * self.scale]

    def refusal(self, h: int, w: int) -> ImageTooLargeError | None:
        """The error for an h x w (prepared) image whose output would be over max_output_pixels, else None."""
        oh, ow = h * self.scale, w * self.scale
        if self.max_output_pixels is None or oh * ow <= self.max_output_pixels:
            return None
        return ImageTooLargeError(
            f"the x{self.scale} output would be {ow}x{oh} = {oh * ow:,} pixels, over the limit of "
            f"{self.max_output_pixels:,} (lower --max-side, or raise STYLEOPS_MAX_IMAGE_PIXELS)"
        )

    def try_upscale(self, x: Tensor) -> Tensor | ImageError:
        """`upscale`; or this image's error: over max_output_pixels (refused before any work), or out
        of memory (after half-size tiles down to 32 px)."""
        refused = self.refusal(*x.shape[-2:])
        if refused is not None:
            return refused
        tile = self.tile
        while True:
            try:
                return self.upscale(x, tile)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
                if not is_out_of_memory(exc):
                    raise
                _release_cached_memory(self.device)
                if tile <= 32:
                    h, w = x.shape[-2:]
                    return DeviceOutOfMemoryError(
                        f"out of {self.device.type} memory upscaling a {h}x{w} image x{self.scale} "
                        f"even in {tile} px tiles: {str(exc).splitlines()[0][:200]}"
                    )
                tile //= 2

    def try_stylize(self, prepared: Sequence[Tensor]) -> list[Tensor | ImageError]:
        """One upscaled image (or its error) per prepared image, in order."""
        return [self.try_upscale(x) for x in prepared]


class Upscaled:
    """`first`'s outputs upscaled by `upscaler`: same buckets, batches and prepare as `first`,
    outputs `upscaler.scale` times larger. An image `first` could not do keeps its error."""

    def __init__(self, first: StylizeEngine, upscaler: UpscaleEngine) -> None:
        self.first, self.upscaler = first, upscaler
        self.batch_size = first.batch_size
        self.device = first.device

    def bucket(self, h: int, w: int) -> Hashable:
        return self.first.bucket(h, w)

    def prepare(self, image: Tensor) -> Tensor:
        return self.first.prepare(image)

    def try_stylize(self, prepared: Sequence[Tensor]) -> list[Tensor | Exception]:
        """Images whose upscaled output would be over the pixel cap are refused before `first` runs."""
        out: list[Tensor | Exception | None] = [self.upscaler.refusal(*x.shape[-2:]) for x in prepared]
        todo = [i for i, refused in enumerate(out) if refused is None]
        for i, y in zip(todo, self.first.try_stylize([prepared[i] for i in todo]), strict=True):
            out[i] = y if isinstance(y, Exception) else self.upscaler.try_upscale(y)
        return out  # type: ignore[return-value]
