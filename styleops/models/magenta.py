"""Magenta's arbitrary image stylization network (Ghiasi et al. 2017), ported to plain PyTorch.

Two networks, trained by Magenta on ~80,000 paintings and the ImageNet photos, read from the graphs
TF Lite distributes (`styleops.io.magenta_weights` converts them; docs/quality.md):
- `StylePredictor`: a MobileNetV2 trunk (width 1.0, TF "SAME" padding) with a 1x1 projection:
  an artwork [N, 3, 256, 256] RGB in [0, 1] -> its style vector [N, 100].
- `MagentaTransformer`: Johnson's layout at 8/16/32 channels (reflection-padded 9x9 3->8,
  3x3/2 8->16, 3x3/2 16->32 with bias and ReLU; 5 residual blocks; nearest x2 upsampling then
  3x3 32->16, 16->8 and 9x9 8->3, then a sigmoid). Every residual and upsampling convolution ends
  in a conditional instance norm (`StyleNorm`) whose scale and shift are linear maps of the style
  vector. Photo [N, 3, H, W] in [0, 1] and style [N or 1, 100] -> [N, 3, H, W] in (0, 1), any
  H and W (padded at the bottom/right to multiples of 4, reflecting, then cropped back).

`MagentaStylizer` fixes a style vector (or blend, with the paper's `alpha` towards the photo's own
vector) so that the network is an image-to-image module for the inference engine and tiling.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.multistyle import style_weights

STYLE_DIM = 100  # length of a style vector
PREDICTOR_SIZE = 256  # the predictor's input side (px): artworks are centre-cropped and resized to it
NORM_EPS = 1e-5  # the graph's instance-norm epsilon (its int8 constant 127 x scale 7.874e-8)
RECEPTIVE_RADIUS = 57  # px: 9x9 (4) + 3x3/2 (1 + 2) + 10 residual 3x3 at 1/4 (40) + up 3x3 (2 + 1) + 9x9 (4), +3 grid


def _pad4(x: Tensor) -> Tensor:
    """Pad [N, C, H, W] at the bottom/right to multiples of 4, as `TransformerNet` and tiling pad."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % 4, (-w) % 4
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")


_STYLE: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar("magenta_style", default=None)
"""The style vector [N or 1, 100] of the transformer forward running in this thread (or task)."""


class StyleNorm(nn.Module):
    """Conditional instance norm: (x - mean) / sqrt(var + eps) * gamma(s) + beta(s), where gamma and
    beta are linear maps of the style vector s [N, 100] (the graph's 1x1 convolutions `Conv_1`, `Conv`).

    The vector of the forward being run is `_STYLE`'s (set by `MagentaTransformer.conditioned`)."""

    def __init__(self, channels: int, style_dim: int = STYLE_DIM, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.gamma = nn.Linear(style_dim, channels)
        self.beta = nn.Linear(style_dim, channels)

    def scale_shift(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """gamma, beta [N or 1, C] of the current style vector."""
        style = _STYLE.get()
        if style is None:
            raise InvalidInputError("no style vector set: call the network with a style")
        s = style.to(dtype)
        return self.gamma(s), self.beta(s)

    def forward(self, x: Tensor) -> Tensor:
        gamma, beta = self.scale_shift(x.dtype)
        y = F.instance_norm(x, eps=self.eps)
        return y * gamma[:, :, None, None] + beta[:, :, None, None]


class _PadConv(nn.Sequential):
    """Reflection pad (kernel // 2) then a convolution (no bias before a norm: the norm's mean
    subtraction cancels it exactly)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride, bias=bias))


class _Residual(nn.Module):
    """x + norm2(conv2(relu(norm1(conv1(x))))): no ReLU after the sum, as in the graph."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = _PadConv(channels, channels, 3, bias=False), StyleNorm(channels)
        self.conv2, self.norm2 = _PadConv(channels, channels, 3, bias=False), StyleNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))


class _Upsample(nn.Module):
    """Nearest upsampling by `factor` (1: none), conv, style norm."""

    def __init__(self, cin: int, cout: int, kernel: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv, self.norm = _PadConv(cin, cout, kernel, bias=False), StyleNorm(cout)

    def forward(self, x: Tensor) -> Tensor:
        if self.factor != 1:
            x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.norm(self.conv(x))


class MagentaTransformer(nn.Module):
    """The style transfer network: photo [N, 3, H, W] in [0, 1], style [N or 1, 100] -> [N, 3, H, W] in (0, 1)."""

    receptive_radius = RECEPTIVE_RADIUS

    def __init__(self) -> None:
        super().__init__()
        self.contract = nn.ModuleList([_PadConv(3, 8, 9), _PadConv(8, 16, 3, 2), _PadConv(16, 32, 3, 2)])
        self.residual = nn.ModuleList([_Residual(32) for _ in range(5)])
        self.expand = nn.ModuleList([_Upsample(32, 16, 3, 2), _Upsample(16, 8, 3, 2), _Upsample(8, 3, 9, 1)])

    def norms(self) -> list[StyleNorm]:
        return [m for m in self.modules() if isinstance(m, StyleNorm)]

    @contextlib.contextmanager
    def conditioned(self, style: Tensor) -> Iterator[None]:
        """Every norm layer uses `style` [N or 1, 100] within the block, in this thread only: the
        shards of a run share one cached network across threads."""
        if style.dim() != 2 or style.shape[-1] != STYLE_DIM:
            raise InvalidInputError(f"a style vector is [N, {STYLE_DIM}], got {tuple(style.shape)}")
        token = _STYLE.set(style)
        try:
            yield
        finally:
            _STYLE.reset(token)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        with self.conditioned(style):
            y = _pad4(x)
            for conv in self.contract:
                y = F.relu(conv(y))
            for block in self.residual:
                y = block(y)
            y = F.relu(self.expand[0](y))
            y = F.relu(self.expand[1](y))
            y = torch.sigmoid(self.expand[2](y))
        return y[..., :h, :w]


class _SameConv(nn.Module):
    """TF "SAME" convolution: stride 2 pads 0 before and 1 after (for the even sizes here), stride 1
    pads k // 2 each side; then an optional ReLU6 (the graph's batch norms are folded into the bias)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel > 1:
            if self.stride == 1:
                p = self.kernel // 2
                x = F.pad(x, (p, p, p, p))
            else:  # TF SAME: total padding max(k - s, k - (size % s) ... ), extra on the bottom/right
                h, w = x.shape[-2:]
                ph = max(self.kernel - (self.stride if h % self.stride == 0 else h % self.stride), 0)
                pw = max(self.kernel - (self.stride if w % self.stride == 0 else w % self.stride), 0)
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        y = self.conv(x)
        return F.relu6(y) if self.act else y


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project (linear), + x when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = _SameConv(cin, hidden, 1) if expand != 1 else None
        self.depthwise = _SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = _SameConv(hidden, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.skip else y


# (expansion, output channels, repeats, first stride): MobileNetV2's table
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class StylePredictor(nn.Module):
    """Artwork [N, 3, H, W] RGB in [0, 1] (256 x 256 as trained; see `predictor_input`) -> style vector [N, 100]."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_SameConv(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in _MOBILENET_V2:
            for i in range(repeats):
                blocks.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        blocks.append(_SameConv(cin, 1280, 1))
        self.trunk = nn.Sequential(*blocks)
        self.head = nn.Linear(1280, STYLE_DIM)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x).mean((2, 3)))


def predictor_input(image: Tensor, size: int = PREDICTOR_SIZE) -> Tensor:
    """An image [3, H, W] or [N, 3, H, W] in [0, 1] -> its centre square, resized to size x size
    (antialiased bicubic, clamped to [0, 1]): what the predictor was trained on."""
    x = image if image.dim() == 4 else image[None]
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def style_vector(predictor: StylePredictor, artwork: Tensor) -> Tensor:
    """An artwork [3, H, W] (any size) in [0, 1] -> its style vector [1, 100] (`predictor_input`)."""
    return predictor(predictor_input(artwork.to(next(predictor.parameters()).device)))


def blend_vectors(vectors: Tensor, weights: Tensor) -> Tensor:
    """Style vectors [S, 100] mixed by non-negative weights [S] (normalized to sum 1) -> [1, 100]."""
    if vectors.dim() != 2 or weights.shape != vectors.shape[:1]:
        raise InvalidInputError(
            f"need vectors [S, 100] and weights [S], got {tuple(vectors.shape)}, {tuple(weights.shape)}"
        )
    if (weights < 0).any() or not weights.sum() > 0:
        raise InvalidInputError("blend weights must be non-negative and not all zero")
    w = (weights / weights.sum()).to(vectors.dtype)
    return (w[:, None] * vectors).sum(0, keepdim=True)


class MagentaStylizer(nn.Module):
    """The transformer with a fixed style: photo [N, 3, H, W] in [0, 1] -> [N, 3, H, W] in (0, 1).

    style: [1, 100] (a vector, or a blend from `blend_vectors`). alpha < 1 (needs `predictor`)
    moves each photo's conditioning towards its own predicted vector: alpha * style + (1 - alpha) *
    own (the paper's interpolation; 0 paints the photo in its own style). Under tiling the own
    vector is the whole image's (`whole_image`), so tiles equal the untiled result."""

    def __init__(
        self,
        transformer: MagentaTransformer,
        style: Tensor,
        alpha: float = 1.0,
        predictor: StylePredictor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in [0, 1], got {alpha}")
        if alpha < 1.0 and predictor is None:
            raise InvalidInputError("alpha < 1 needs the style predictor (the photo's own vector)")
        self.net, self.alpha = transformer, float(alpha)
        self.predictor = predictor if alpha < 1.0 else None
        self.register_buffer("style", style.detach().reshape(1, STYLE_DIM).float())
        self._own: Tensor | None = None  # the whole image's own vector while tiling

    def vectors(self, x: Tensor) -> Tensor:
        """The conditioning [N or 1, 100] for photos x [N, 3, H, W]."""
        if self.predictor is None:
            return self.style
        own = self._own if self._own is not None else self.predictor(predictor_input(x))
        return self.alpha * self.style + (1.0 - self.alpha) * own

    @contextlib.contextmanager
    def whole_image(self, x: Tensor) -> Iterator[None]:
        """While the image x runs in tiles, condition every tile on the whole image's own vector."""
        self._own = self.predictor(predictor_input(x)) if self.predictor is not None else None
        try:
            yield
        finally:
            self._own = None

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, self.vectors(x))


class MagentaStyleNet(nn.Module):
    """Per-style and multi-style models from the pretrained start: the transformer with one learned
    style vector per style (`styles` [S, 100]), a registry family's architecture.

    forward(x, style): photo [N, 3, H, W] in [0, 1], a style index or weights over the styles ([S] or
    [N, S], normalized; a blend mixes the vectors) -> [N, 3, H, W] in (0, 1). A per-style model
    has S = 1 and is called with x alone. Built from the pretrained weights and the artworks'
    predicted vectors by `from_pretrained`, then fine-tuned (the vectors, or everything) or not."""

    receptive_radius = RECEPTIVE_RADIUS

    def __init__(self, n_styles: int = 1) -> None:
        super().__init__()
        if n_styles < 1:
            raise InvalidInputError(f"a style net needs at least one style, got {n_styles}")
        self.transformer = MagentaTransformer()
        self.styles = nn.Parameter(torch.zeros(n_styles, STYLE_DIM))

    @classmethod
    def from_pretrained(cls, transformer: MagentaTransformer, vectors: Tensor) -> MagentaStyleNet:
        """A copy of `transformer` with `vectors` [S, 100] (the predictor's, for each artwork)."""
        net = cls(vectors.shape[0])
        net.transformer.load_state_dict(transformer.state_dict())
        with torch.no_grad():
            net.styles.copy_(vectors)
        return net

    @property
    def n_styles(self) -> int:
        return self.styles.shape[0]

    def forward_weighted(self, x: Tensor, weights: Tensor) -> Tensor:
        """weights [N, S], rows summing to 1 (checked by the caller: `Conditioned`)."""
        return self.transformer(x, weights.to(self.styles.dtype) @ self.styles)

    def forward(self, x: Tensor, style: int | Tensor = 0) -> Tensor:
        if isinstance(style, int):  # one style: its vector (what a one-hot weighting gives, exactly)
            style_weights(style, self.n_styles, 1)  # the index check
            return self.transformer(x, self.styles[style : style + 1].expand(x.shape[0], -1))
        return self.forward_weighted(x, style_weights(style, self.n_styles, x.shape[0]).to(x.device))

    def add_style(self, vector: Tensor) -> int:
        """Append a style (its predicted vector [100]); the others are untouched. Returns its index."""
        with torch.no_grad():
            self.styles = nn.Parameter(torch.cat([self.styles.detach(), vector.reshape(1, STYLE_DIM).to(self.styles)]))
        return self.n_styles - 1

    def config(self) -> dict[str, int]:
        """Constructor arguments (saved in model cards so weights can be rebuilt)."""
        return {"n_styles": self.n_styles}
