"""Gatys et al. (2016) style transfer by optimizing the pixels, for single hero images.

Slow by nature (each iteration runs the loss network forward and backward): use `progress` to
show it. Coarse-to-fine: with `scales=(256, 512)` the image is first optimized at 256 px on its
longer side, then upsampled and refined at 512 px.

Any image size works: at a scale where the image's shorter side is below what the loss network can
pool down (`styleops.evaluation.metrics.min_side`: 8 px for VGG16 up to relu4_3), the optimized image is
padded to that size (`styleops.evaluation.metrics.pad_to_min_side`) and cropped back, so a 1x1 pixel or a
4000x1 strip comes out stylized at its own size instead of failing in the max-pools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError
from styleops.evaluation.metrics import min_side, pad_to_min_side
from styleops.inference.color import COLOR_MODES, preserve_colors
from styleops.io.images import resize_max_side
from styleops.losses.perceptual import LossWeights, PerceptualLoss, calibrate, measure_calibration
from styleops.models.vgg import VGGEncoder


@dataclass(frozen=True)
class GatysConfig:
    """Optimization settings; `scales` are longer-side sizes in pixels, None = the content's size."""

    iterations: int = 300  # per scale
    optimizer: str = "lbfgs"  # lbfgs | adam
    lr: float | None = None  # default 1.0 for L-BFGS, 0.02 for Adam
    init: str = "content"  # content | noise
    loss: LossWeights = field(default_factory=LossWeights)
    scales: tuple[int, ...] | None = None
    style_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam") or self.init not in ("content", "noise") or self.iterations < 1:
            raise InvalidInputError(
                f"bad Gatys config: optimizer={self.optimizer!r} init={self.init!r} iterations={self.iterations}"
            )


def gatys(
    content: Tensor,
    artwork: Tensor,
    encoder: VGGEncoder,
    config: GatysConfig | None = None,
    *,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Tensor, list[float]]:
    """content, artwork: float [3, H, W] in [0, 1] -> (image [3, h, w] in [0, 1], loss per iteration).

    The output has the content's size, or the last scale's. `progress(iteration, loss)` is called
    after every iteration (counted over all scales). Images with a side below `min_side(encoder)`
    at a scale are optimized padded to it there and cropped back (see the module docstring).
    """
    cfg = config or GatysConfig()
    # Any layout in (a permuted view of a Pillow array, say): L-BFGS flattens gradients with .view().
    content, artwork = content.contiguous(), artwork.contiguous()
    device = next(encoder.parameters()).device
    art = resize_max_side(artwork, cfg.style_size)[None].to(device)
    weights = cfg.loss
    if weights.calibrate:  # measured on this photo (at its final size) and this artwork
        photo = pad_to_min_side(
            resize_max_side(content, (cfg.scales or (None,))[-1])[None].to(device), min_side(encoder)
        )
        weights = calibrate(weights, measure_calibration(encoder, weights, photo, art))
    loss_fn = PerceptualLoss(encoder, weights)
    grams = loss_fn.style_targets(art)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[float] = []
    image: Tensor | None = None
    smallest = min_side(encoder)
    for size in cfg.scales or (None,):
        target = resize_max_side(content, size)[None].to(device)
        h, w = target.shape[-2:]
        if image is None:
            start = target.clone() if cfg.init == "content" else torch.rand(target.shape, generator=g).to(device)
        else:
            start = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        padded = _optimize(
            pad_to_min_side(start, smallest), pad_to_min_side(target, smallest), grams, loss_fn, cfg, history, progress
        )
        image = padded[..., :h, :w]
    assert image is not None
    return image[0].clamp(0, 1).cpu(), history


def _optimize(
    start: Tensor,
    target: Tensor,
    grams: dict[str, Tensor],
    loss_fn: PerceptualLoss,
    cfg: GatysConfig,
    history: list[float],
    progress: Callable[[int, float], None] | None,
) -> Tensor:
    x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    with torch.no_grad():
        target_features = loss_fn.encoder(target)  # once, not at every evaluation

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(x, target, grams, target_features).total
        loss.backward()
        history.append(float(loss.detach()))
        if progress:
            progress(len(history), history[-1])
        return loss

    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [x], lr=cfg.lr or 1.0, max_iter=cfg.iterations, history_size=50, line_search_fn="strong_wolfe"
        )
        opt.step(closure)  # one call runs up to `iterations` iterations
    else:
        opt = torch.optim.Adam([x], lr=cfg.lr or 0.02)
        for _ in range(cfg.iterations):
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)
    return x.detach()


class GatysEngine:
    """Many images, one optimization each, behind the `InferenceEngine` interface (batch size 1).

    artwork: float [3, H, W] in [0, 1]. levels > 1: coarse-to-fine, each image optimized at
    1/2^(levels-1), ..., 1/2, 1 of its size (`config.scales` is ignored then). color: 'none',
    'luminance' or 'histogram' (`styleops.inference.color.preserve_colors`). `progress(iteration, loss)` is
    called after every iteration of every image (iterations restart at 1 for each image).
    No minimum image size: an image too small or too thin for the loss network at some level is
    optimized padded and cropped back (module docstring), so it never fails a shard.
    """

    batch_size = 1

    def __init__(
        self,
        encoder: VGGEncoder,
        artwork: Tensor,
        config: GatysConfig | None = None,
        *,
        max_side: int | None = None,
        levels: int = 1,
        color: str = "none",
        progress: Callable[[int, float], None] | None = None,
    ) -> None:
        if not 1 <= levels <= 4:
            raise InvalidInputError(f"levels must be 1 to 4, got {levels}")
        if color not in COLOR_MODES:
            raise InvalidInputError(f"colour preservation must be one of {COLOR_MODES}, got {color!r}")
        self.encoder, self.artwork, self.config = encoder.eval(), artwork, config or GatysConfig()
        self.max_side, self.levels, self.color, self.progress = max_side, levels, color, progress
        self.device = next(self.encoder.parameters()).device

    def bucket(self, h: int, w: int) -> tuple[int, int]:
        """Each image is optimized alone: its own size."""
        return (h, w)

    def prepare(self, image: Tensor) -> Tensor:
        """uint8 [3, H, W] -> float [3, h, w] in [0, 1], shrunk to max_side."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise InvalidInputError(f"expected an image [3, H, W], got {tuple(image.shape)}")
        return resize_max_side(image.float() / 255.0 if image.dtype == torch.uint8 else image, self.max_side)

    def stylize_prepared(self, prepared: list[Tensor]) -> list[Tensor]:
        """Float [3, h, w] images -> float [3, h, w] results in [0, 1], on the CPU."""
        out = []
        for x in prepared:
            cfg = self.config
            if self.levels > 1:
                longer = max(x.shape[-2:])
                cfg = replace(cfg, scales=tuple(max(16, longer >> (self.levels - 1 - i)) for i in range(self.levels)))
            with torch.enable_grad():
                y = gatys(x, self.artwork, self.encoder, cfg, progress=self.progress)[0]
            out.append(preserve_colors(x, y, self.color))
        return out

    def try_stylize(self, prepared: list[Tensor]) -> list[Tensor]:
        """`stylize_prepared` (the stream's call; an error fails the batch of one, as before)."""
        return self.stylize_prepared(prepared)
