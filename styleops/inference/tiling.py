"""Tiled inference for images too large for one forward pass, with whole-image instance-norm stats.

Run naively tile by tile, an instance-normalized network normalizes each tile with that tile's own
mean/variance, so neighbouring tiles get different colours and contrast and seams show. Here every
instance-norm layer (`nn.InstanceNorm2d`, `ConditionalInstanceNorm2d`) is temporarily patched
(its `forward` swapped, never the model's code) to normalize with the *whole-image* per-(sample,
channel) mean and variance, measured tile by tile; the tiles' outputs then equal `model(x)`.

Geometry (input pixels; `multiple` = 4, the two stride-2 convs): the image is padded at the
bottom/right to a multiple of 4 exactly as `TransformerNet.forward` pads it, then cut into *cores*
that partition it, with edges at multiples of 4 (so they stay aligned at 1/2 and 1/4 resolution).
Each core runs inside a *window* of at most `tile` px a side: the core plus a halo of `overlap` px
on each side that is not an image border. At an image border the window stops at the border, so
the network's own reflection padding there is the same as for the whole image. Outputs within
`overlap - receptive radius` px of a core are exact (`receptive_radius`: 17 + 8 * n_residual px for
`TransformerNet`, 57 for 5 residual blocks, so overlap 64); neighbouring outputs are blended with
linear ramps over `feather` px each side of a core edge (default: that exact margin).

Statistics (exact, `global_norm_stats`): layer k's input depends on the statistics that layers < k
normalize with, so there is one pass over the windows per norm layer, in call order. Pass k
normalizes layers < k with their final whole-image statistics and accumulates the per-(sample,
channel) mean and variance of layer k's input over the cores only, at that layer's resolution (each
position counted once; per-window moments merged in float64 with Chan's formula), then stops the
forward right there. Cheaper alternatives were measured and rejected: re-estimating all layers in
each full pass (fixed point, starting from per-tile stats) does not converge, it blows up by 1e10
within 8 passes on the trained example models; statistics of a downscaled image are not those of
the full-size one (the networks are not scale-invariant).
Cost: L partial passes (L = 15 for 5 residual blocks) ~ 6.4 forwards of the windows for
`TransformerNet` (the residual blocks and decoder dominate), plus the final pass; windows cover
~1.6x the image area at tile 512, overlap 64. Measured on 1024x1024, one CPU thread, tile 512:
~7.5-9x the untiled time. Peak memory: one window's activations plus the input, the output and
[N, C] accumulators per layer. Stats are reusable (`stats=`) for the same image and style.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.magenta import StyleNorm
from styleops.models.multistyle import ConditionalInstanceNorm2d
from styleops.models.palette import PaletteMatch, palette_of
from styleops.models.transformer import TransformerNet
from styleops.ops.adain import ChannelNormalize

Span = tuple[int, int, int, int]
"""(core start, core end, window start, window end) along one axis, in pixels, ends exclusive."""


@dataclass
class NormStats:
    """Whole-image statistics of the instance-norm layers' inputs, one entry per norm call in a
    forward (= module order for the networks here).

    mean, var: float64 (float32 on MPS) tensors [N, C] (biased variance, as instance norm uses).
    passes: tile passes run to get them (each stopped right after its layer).
    """

    mean: list[Tensor]
    var: list[Tensor]
    passes: int = 0


class _Moments:
    """Running count, mean and sum of squared deviations of one layer's input (Chan et al. merge)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, core: Tensor) -> None:
        """Merge the per-(sample, channel) moments of a [N, C, h, w] core region."""
        n = core.shape[-2] * core.shape[-1]
        if n == 0:
            return
        var, mean = torch.var_mean(core.float(), dim=(-2, -1), correction=0)
        acc_dtype = torch.float32 if core.device.type == "mps" else torch.float64
        mean, m2 = mean.to(acc_dtype), var.to(acc_dtype) * n
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[Tensor, Tensor]:
        if self.mean is None or self.m2 is None:
            raise InvalidInputError("an instance-norm layer never saw any pixels: cannot tile this model")
        return self.mean, self.m2 / self.count


class _StopForward(Exception):
    """Raised by the layer being measured: the rest of the network is not needed in that pass."""


@dataclass
class _TileContext:
    """What the patched norms need to know about the pass and the window being run.

    mode "local": normalize with the window's own statistics (the unpatched behaviour) and, when
    `record`, accumulate every call's core moments. mode "global": normalize call i with stats[i];
    call number `collect` instead accumulates its core moments into record[0] and stops the forward.
    """

    mode: str = "local"
    stats: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # per call (mean, var) [N, C] fp32
    record: list[_Moments] | None = None
    collect: int | None = None
    window: tuple[int, int] = (0, 0)  # window (h, w) at input resolution
    core: Span = (0, 0, 0, 0)  # core (y0, y1, x0, x1) relative to the window, input resolution
    calls: int = 0  # norm calls so far in this window's forward


def instance_norms(model: nn.Module) -> list[nn.Module]:
    """The instance-norm layers whose statistics depend on the image, in module order.

    `nn.InstanceNorm2d` (unless it uses tracked running stats in eval mode),
    `ConditionalInstanceNorm2d`, Magenta's `StyleNorm` and AdaIN's `ChannelNormalize`.
    """
    norms: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, ConditionalInstanceNorm2d | StyleNorm | ChannelNormalize):
            norms.append(m)
        elif isinstance(m, nn.InstanceNorm2d) and not (m.track_running_stats and not m.training):
            norms.append(m)
    return norms


def receptive_radius(model: nn.Module) -> int:
    """Receptive-field radius in input px of a `TransformerNet` (or subclass): 17 + 8 * n_residual.

    Each 3x3 conv at 1/4 resolution reaches 4 px (8 per residual block); the 9x9 convs, stride-2
    convs and nearest upsampling add 17 px, their grid quantization included (measured: the
    farthest input pixel that changes an output pixel, over all phases mod 4). Other networks of
    that layout state theirs as a `receptive_radius` attribute (`MagentaTransformer`); a wrapper
    with a `.net` (a fixed style) has its net's. Raises for other models.
    """
    radius = known_radius(model)
    if radius is None:
        raise InvalidInputError(f"receptive_radius knows TransformerNet only, got {type(model).__name__}")
    return radius


def known_radius(model: nn.Module) -> int | None:
    """The receptive radius of `model` (or of its `.net`) in px when it is known, else None."""
    net = getattr(model, "net", model)
    if isinstance(net, TransformerNet):
        return 17 + 8 * net.n_residual
    radius = getattr(net, "receptive_radius", None)
    return radius if isinstance(radius, int) else None


def _affine(norm: nn.Module, x: Tensor) -> tuple[Tensor, Tensor] | None:
    """The norm's scale and shift as [N or 1, C] tensors, or None when it has none."""
    if isinstance(norm, ConditionalInstanceNorm2d):
        w = norm.condition.weights
        if w is None:
            raise InvalidInputError("no style weights set: call the network with a style")
        gamma = w.to(x.dtype) @ torch.stack(list(norm.gammas)).to(x.dtype)
        beta = w.to(x.dtype) @ torch.stack(list(norm.betas)).to(x.dtype)
        return gamma, beta
    if isinstance(norm, StyleNorm):
        return norm.scale_shift(x.dtype)
    if isinstance(norm, nn.InstanceNorm2d) and norm.affine:
        assert norm.weight is not None and norm.bias is not None
        return norm.weight[None].to(x.dtype), norm.bias[None].to(x.dtype)
    return None


def _core(ctx: _TileContext, x: Tensor) -> Tensor:
    """The core region of a layer's input x [N, C, h, w], scaled from the window's input size."""
    if x.dim() != 4:
        raise InvalidInputError(f"tiled instance norm expects [N, C, H, W], got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    (wh, ww), (y0, y1, x0, x1) = ctx.window, ctx.core
    coords = []
    for a, size, full in ((y0, h, wh), (y1, h, wh), (x0, w, ww), (x1, w, ww)):
        if (a * size) % full:
            raise InvalidInputError(f"layer of size {h}x{w} does not align with a {wh}x{ww} window; raise `multiple`")
        coords.append(a * size // full)
    return x[..., coords[0] : coords[1], coords[2] : coords[3]]


def _patched_forward(
    norm: nn.Module, original: Callable[[Tensor], Tensor], ctx: _TileContext
) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        i = ctx.calls
        ctx.calls += 1
        if ctx.mode == "local":
            if ctx.record is not None:
                while len(ctx.record) <= i:
                    ctx.record.append(_Moments())
                ctx.record[i].add(_core(ctx, x))
            return original(x)
        if i == ctx.collect:
            assert ctx.record is not None
            ctx.record[0].add(_core(ctx, x))
            raise _StopForward
        if i >= len(ctx.stats):
            raise InvalidInputError(f"instance-norm call {i} has no whole-image statistics")
        mean, var = ctx.stats[i]
        rstd = (var + float(getattr(norm, "eps", 1e-5))).rsqrt()
        y = ((x.float() - mean[:, :, None, None]) * rstd[:, :, None, None]).to(x.dtype)
        affine = _affine(norm, y)
        if affine is not None:
            gamma, beta = affine
            y = y * gamma[:, :, None, None] + beta[:, :, None, None]
        return y

    return forward


@contextlib.contextmanager
def _patch_norms(norms: list[nn.Module], ctx: _TileContext) -> Iterator[None]:
    """Swap each norm's `forward` for one driven by `ctx`; restored on exit."""
    saved = [m.__dict__.get("forward") for m in norms]
    try:
        for m in norms:
            m.forward = _patched_forward(m, m.forward, ctx)  # type: ignore[method-assign]
        yield
    finally:
        for m, old in zip(norms, saved, strict=True):
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old  # type: ignore[method-assign]


def halo_spans(size: int, tile: int, halo: int) -> list[Span]:
    """Cut one axis of `size` px into cores of at most `tile` px (the last one may be thinner),
    each with its window: the core plus `halo` px each side, clipped to the image. For networks
    without normalization, whose outputs depend only on inputs within their receptive radius."""
    return [(a, min(size, a + tile), max(0, a - halo), min(size, a + tile + halo)) for a in range(0, size, tile)]


def plan_spans(size: int, tile: int, overlap: int, multiple: int = 4) -> list[Span]:
    """Cut one axis of `size` px (a multiple of `multiple`) into cores with windows <= `tile` px.

    Cores partition [0, size) with edges at multiples of `multiple`; each window is its core plus
    `overlap` px each side, clipped to the image. The fewest windows are used, with the slack spread
    evenly (border cores, which have one halo only, get `overlap` px more). One span when it fits.
    """
    if size % multiple or tile % multiple or overlap % multiple:
        raise InvalidInputError(f"size {size}, tile {tile} and overlap {overlap} must be multiples of {multiple}")
    if size <= tile:
        return [(0, size, 0, size)]
    step = tile - 2 * overlap  # the largest interior core
    if step < multiple:
        raise InvalidInputError(f"tile {tile} leaves no core after a {overlap} px halo on both sides")
    n = 2 + max(0, -(-(size - 2 * (tile - overlap)) // step))
    while True:
        caps = [tile - overlap] + [step] * (n - 2) + [tile - overlap]
        total, acc, edges = sum(caps), 0, [0]
        for cap in caps:
            acc += cap
            edges.append(round(acc * size / total / multiple) * multiple)
        spans = [(a, b, max(0, a - overlap), min(size, b + overlap)) for a, b in zip(edges, edges[1:], strict=False)]
        if all(w1 - w0 <= tile and b > a for a, b, w0, w1 in spans):
            return spans
        n += 1


def _windows(hp: int, wp: int, tile: int, overlap: int, multiple: int) -> list[tuple[Span, Span]]:
    return [
        (sy, sx) for sy in plan_spans(hp, tile, overlap, multiple) for sx in plan_spans(wp, tile, overlap, multiple)
    ]


def _pad(x: Tensor, multiple: int) -> Tensor:
    """Pad H, W at the bottom/right to multiples of `multiple`, as `TransformerNet.forward` does."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _check(x: Tensor, tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    if x.dim() != 4 or not x.is_floating_point():
        raise InvalidInputError(f"expected a float batch [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
    if multiple < 1 or overlap < 0 or tile < multiple:
        raise InvalidInputError(
            f"need multiple >= 1, overlap >= 0 and tile >= multiple; got {multiple}, {overlap}, {tile}"
        )
    # windows and halos at multiples of `multiple`: tile rounded down, overlap rounded up
    return tile - tile % multiple, -(-overlap // multiple) * multiple


def _model_device(model: nn.Module, x: Tensor) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else x.device


def _to_device(stats: NormStats, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    return [
        (m.to(device, torch.float32), v.to(device, torch.float32)) for m, v in zip(stats.mean, stats.var, strict=True)
    ]


def _run_windows(
    model: nn.Module,
    xp: Tensor,
    windows: list[tuple[Span, Span]],
    ctx: _TileContext,
    device: torch.device,
    forward_kwargs: dict[str, Any],
) -> Iterator[tuple[Span, Span, Tensor | None]]:
    """Run the model on every window (with `ctx` describing it); yields the spans and the output,
    or None when a norm layer stopped the forward."""
    for sy, sx in windows:
        (cy0, cy1, wy0, wy1), (cx0, cx1, wx0, wx1) = sy, sx
        ctx.window, ctx.core, ctx.calls = (wy1 - wy0, wx1 - wx0), (cy0 - wy0, cy1 - wy0, cx0 - wx0, cx1 - wx0), 0
        try:
            y: Tensor | None = model(xp[..., wy0:wy1, wx0:wx1].to(device), **forward_kwargs)
        except _StopForward:
            y = None
        yield sy, sx, y


@contextlib.contextmanager
def _whole_image_hooks(model: nn.Module, x: Tensor) -> Iterator[None]:
    """Modules that condition on the whole image (a `whole_image(x)` context manager, e.g.
    `MagentaStylizer`'s own style vector) see the whole image, not each window."""
    with contextlib.ExitStack() as stack:
        for m in model.modules():
            hook = getattr(m, "whole_image", None)
            if callable(hook):
                stack.enter_context(hook(x.to(_model_device(model, x))))
        yield


@contextlib.contextmanager
def _whole_image_palette(model: nn.Module, x: Tensor) -> Iterator[None]:
    """A palette-start `TransformerNet` recolours each window with the whole image's colour
    statistics, as `model(x)` would (`TransformerNet.source_palette`)."""
    if not (isinstance(model, TransformerNet) and model.palette):
        yield
        return
    source = palette_of(x.to(_model_device(model, x)))
    model.source_palette = source
    try:
        yield
    finally:
        model.source_palette = None


@contextlib.contextmanager
def _deferred_palette(model: nn.Module) -> Iterator[PaletteMatch | None]:
    """An arbitrary-style stylizer's final `PaletteMatch` waits for the whole output: the windows
    run without it, and the caller applies `match` once to the stitched image with the whole
    photo's palette, as `model(x)` would."""
    found = [m for m in model.modules() if isinstance(m, PaletteMatch)]
    if len(found) > 1:
        raise InvalidInputError(f"{len(found)} PaletteMatch steps in one model: only a final one can be tiled")
    if not found:
        yield None
        return
    found[0].deferred = True
    try:
        yield found[0]
    finally:
        found[0].deferred = False


@torch.no_grad()
def global_norm_stats(
    model: nn.Module,
    x: Tensor,
    *,
    tile: int = 512,
    overlap: int = 64,
    multiple: int = 4,
    **forward_kwargs: Any,
) -> NormStats:
    """Whole-image mean/var of every instance-norm layer's input, computed exactly, tile by tile.

    x: float [N, C, H, W], the model's input (RGB in [0, 1] here); tile/overlap as in
    `stylize_tiled` (the result does not depend on them when overlap >= the receptive radius).
    One pass over the windows per norm layer k, each stopped right after layer k's input is
    measured, with layers < k normalized by their (already final) whole-image statistics.
    """
    tile, overlap = _check(x, tile, overlap, multiple)
    norms = instance_norms(model)
    if not norms:
        raise InvalidInputError("the model has no instance-norm layers")
    xp = _pad(x, multiple)
    device = _model_device(model, x)
    windows = _windows(xp.shape[-2], xp.shape[-1], tile, overlap, multiple)
    ctx = _TileContext()
    means: list[Tensor] = []
    vars_: list[Tensor] = []
    with (
        _patch_norms(norms, ctx),
        _whole_image_palette(model, x),
        _deferred_palette(model),
        _whole_image_hooks(model, x),
    ):
        if len(windows) == 1:  # the window is the image: one ordinary forward measures every layer
            ctx.mode, ctx.record = "local", []
            for _ in _run_windows(model, xp, windows, ctx, device, forward_kwargs):
                pass
            moments = [m.result() for m in ctx.record]
            return NormStats([m for m, _ in moments], [v for _, v in moments], passes=1)
        ctx.mode = "global"
        for k in range(len(norms)):
            ctx.collect, ctx.record = k, [_Moments()]
            ctx.stats = _to_device(NormStats(means, vars_), device)
            for _, _, y in _run_windows(model, xp, windows, ctx, device, forward_kwargs):
                if y is not None:
                    raise InvalidInputError(
                        f"the forward made only {ctx.calls} instance-norm calls, expected {len(norms)}"
                    )
            mean, var = ctx.record[0].result()
            means.append(mean)
            vars_.append(var)
    return NormStats(means, vars_, passes=len(norms))


def _ramp(n: int, core0: int, core1: int, start: int, feather: int, size: int) -> Tensor:
    """1-D blend weights [n] of positions start..start+n-1 (within [core0 - f, core1 + f)): linear
    ramps 0 -> 1 over core0 +- f and 1 -> 0 over core1 +- f, none at the image borders (0, size)."""
    i = torch.arange(n, dtype=torch.float32) + start + 0.5
    w = torch.ones(n)
    if feather > 0 and core0 > 0:
        w = torch.minimum(w, ((i - (core0 - feather)) / (2 * feather)).clamp(0, 1))
    if feather > 0 and core1 < size:
        w = torch.minimum(w, (((core1 + feather) - i) / (2 * feather)).clamp(0, 1))
    return w


@torch.no_grad()
def stylize_tiled(
    model: nn.Module,
    x: Tensor,
    *,
    tile: int = 512,
    overlap: int = 64,
    feather: int | None = None,
    global_stats: bool = True,
    stats: NormStats | None = None,
    multiple: int = 4,
    **forward_kwargs: Any,
) -> Tensor:
    """`model(x, **forward_kwargs)` computed in windows of at most `tile` px a side.

    x: float [N, 3, H, W] in [0, 1], on any device (the windows run on the model's device); returns
    float [N, 3, H, W], unclamped, on x's device. forward_kwargs go to every call (e.g. `style=`).
    tile, overlap: window side and halo width in px (rounded down / up to multiples of `multiple`);
    overlap >= receptive radius + feather makes the result exact. feather: px each side of a core
    edge over which neighbouring outputs are blended with linear ramps (None: overlap - receptive
    radius for a `TransformerNet`, at most overlap // 2; overlap // 4 for other models).
    global_stats=False: the naive version, each window normalized with its own statistics (seams).
    stats: `global_norm_stats` of the same x and forward_kwargs, to reuse; else computed here.
    multiple: window alignment (4: two stride-2 convs); x is padded to it as `TransformerNet` pads.
    A single window covering the image is just `model(x)`.
    """
    tile, overlap = _check(x, tile, overlap, multiple)
    radius = known_radius(model)
    if radius is not None and overlap < radius:
        warnings.warn(
            f"overlap {overlap} px < the receptive-field radius {radius} px: tiles will not match model(x)",
            stacklevel=2,
        )
    if feather is None:
        feather = overlap // 4 if radius is None else max(0, min(overlap - radius, overlap // 2))
    if not 0 <= feather <= overlap:
        raise InvalidInputError(f"feather must be in [0, overlap={overlap}], got {feather}")
    h, w = x.shape[-2:]
    xp = _pad(x, multiple)
    hp, wp = xp.shape[-2:]
    windows = _windows(hp, wp, tile, overlap, multiple)
    device = _model_device(model, x)
    if len(windows) == 1:
        return model(x.to(device), **forward_kwargs).to(x.device)
    norms = instance_norms(model)
    ctx = _TileContext(mode="local")
    if global_stats and norms:
        if stats is None:
            stats = global_norm_stats(model, x, tile=tile, overlap=overlap, multiple=multiple, **forward_kwargs)
        ctx.mode, ctx.stats = "global", _to_device(stats, device)
    out: Tensor | None = None
    weight = torch.zeros(hp, wp, device=x.device)
    with (
        _patch_norms(norms, ctx),
        _whole_image_palette(model, x),
        _deferred_palette(model) as palette,
        _whole_image_hooks(model, x),
    ):
        for (cy0, cy1, wy0, wy1), (cx0, cx1, wx0, wx1), y in _run_windows(
            model, xp, windows, ctx, device, forward_kwargs
        ):
            assert y is not None
            y = y.to(x.device, torch.float32)
            if out is None:
                out = torch.zeros(*y.shape[:2], hp, wp, device=x.device)
            ky0, ky1 = max(wy0, cy0 - feather), min(wy1, cy1 + feather)
            kx0, kx1 = max(wx0, cx0 - feather), min(wx1, cx1 + feather)
            w2 = (
                _ramp(ky1 - ky0, cy0, cy1, ky0, feather, hp)[:, None]
                * _ramp(kx1 - kx0, cx0, cx1, kx0, feather, wp)[None, :]
            )
            w2 = w2.to(x.device)
            out[..., ky0:ky1, kx0:kx1] += y[..., ky0 - wy0 : ky1 - wy0, kx0 - wx0 : kx1 - wx0] * w2
            weight[ky0:ky1, kx0:kx1] += w2
    assert out is not None
    out = out.div_(weight)[..., :h, :w]
    if palette is not None:
        out = palette.match(out.to(device), x.to(device)).to(x.device)
    return out.to(x.dtype)
