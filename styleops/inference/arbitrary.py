"""Stylizers for any artwork, no network trained per style: `x -> y`, [N, 3, H, W] in [0, 1].

- `SwapStylizer` (Chen & Schmidt 2016): encode to the bank's layer, style-swap against the
  artwork's patch bank, decode with the inverse network; one forward pass. Optionally the photo's
  features first take the artwork's channel statistics (`normalise`: patches match by shape, not
  by tone) and the swapped features are mixed with those (`swap_weight` < 1).
- `AdaINStylizer` (Huang & Belongie 2017): encode to relu4_1, give the content features the
  channel-wise mean and std of the artwork's (or a weighted blend of several artworks'), mix with
  the content features by `alpha`, decode.
- Both can end with `PaletteMatch` (`palette=`): the decoded output gets the artwork's RGB mean and
  covariance (for AdaIN blended with the photo's by `alpha`). The decoders keep shapes and strokes
  but lose the artwork's colours; measured in docs/quality.md.
H and W must be multiples of 2^(pooling layers before the decoder's layer) (4 for relu3_1, 8 for
relu4_1); `styleops.inference.engine.InferenceEngine` pads to multiples of 16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.decoder import VGGDecoder
from styleops.models.palette import Palette, PaletteMatch, blend_palettes, palette_of
from styleops.models.vgg import VGGEncoder
from styleops.ops import PatchBank, bank_statistics, mean_std, style_swap
from styleops.ops.adain import ChannelNormalize


def _check_pair(encoder: VGGEncoder, decoder: VGGDecoder) -> str:
    layer = decoder.from_layer
    if layer not in encoder.layers or encoder.arch != decoder.arch:
        raise InvalidInputError(
            f"decoder inverts {decoder.arch}/{layer} but the encoder exposes {encoder.arch} {list(encoder.layers)}"
        )
    return layer


def painted_at(paint: nn.Module, x: Tensor, scale: float) -> Tensor:
    """`paint(x)` run on x [N, 3, H, W] upsampled `scale` times (bicubic, clamped to [0, 1]) and
    shrunk back to H x W (area): finer strokes relative to the picture. scale 1: `paint(x)`."""
    if scale == 1.0:
        return paint(x)
    big = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return F.interpolate(paint(big), size=x.shape[-2:], mode="area")


def _checked_scale(scale: float) -> float:
    if not 1.0 <= scale <= 4.0:
        raise InvalidInputError(f"scale must be in [1, 4], got {scale}")
    return float(scale)


class SwapStylizer(nn.Module):
    """Encoder -> `style_swap` with `bank` -> inverse network [-> `PaletteMatch` to `palette`, the
    artwork's (`palette_of`) or a blend of the bank's artworks' (`blend_palettes`)].

    normalise: before matching, give the photo's features the channel-wise mean and std of the
    bank's artwork features (`bank_statistics`; AdaIN). swap_weight in [0, 1]: the decoded features
    are swap_weight x swapped + (1 - swap_weight) x the photo's (normalised, if so) features;
    1 with normalise off is Chen & Schmidt's style swap.
    """

    onnx_export = False  # its paint scale resizes by the input's size; torch runs it (onnx_backend)

    def __init__(
        self,
        encoder: VGGEncoder,
        decoder: VGGDecoder,
        bank: PatchBank,
        *,
        chunk_size: int = 512,
        palette: Palette | None = None,
        scale: float = 1.0,
        normalise: bool = False,
        swap_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.layer = _check_pair(encoder, decoder)
        self.encoder, self.decoder, self.bank, self.chunk_size = encoder, decoder, bank, chunk_size
        self.scale = _checked_scale(scale)  # paint at this multiple of the size (`painted_at`)
        self.palette = PaletteMatch(palette) if palette is not None else None
        if bank.channels != self._channels():
            raise InvalidInputError(
                f"the patch bank has {bank.channels} channels but {decoder.arch}/{self.layer} has {self._channels()}: "
                "built at another layer?"
            )
        if not 0.0 <= swap_weight <= 1.0:
            raise InvalidInputError(f"swap_weight must be in [0, 1], got {swap_weight}")
        self.swap_weight = float(swap_weight)
        self.normalise = ChannelNormalize() if normalise else None
        if normalise:  # the artwork's channel statistics, [1, C, 1, 1]
            mean, std = bank_statistics(bank)
            self.register_buffer("style_mean", mean)
            self.register_buffer("style_std", std)

    def _channels(self) -> int:
        return next(m for m in self.decoder.modules() if isinstance(m, nn.Conv2d)).in_channels

    def forward(self, x: Tensor) -> Tensor:
        y = painted_at(self._swap, x, self.scale)
        return y if self.palette is None else self.palette(y, x)

    def _swap(self, x: Tensor) -> Tensor:
        f = self.encoder(x)[self.layer]
        c = self.normalise(f) * self.style_std + self.style_mean if self.normalise is not None else f.float()
        t = style_swap(c, self.bank, chunk_size=self.chunk_size)
        if self.swap_weight < 1.0:
            t = self.swap_weight * t + (1.0 - self.swap_weight) * c
        return self.decoder(t.to(f.dtype))


class AdaINStylizer(nn.Module):
    """Encoder -> AdaIN towards the artworks' statistics (blended by `weights`) -> decoder.

    artworks: images [3, H, W] (or [1, 3, H, W]) in [0, 1]; weights: non-negative, normalized here
    (default: equal). alpha in [0, 1]: 1 = full style, 0 = the decoded content features.
    palette: end with `PaletteMatch` to the artworks' blended RGB palette (measured at the size
    the artworks are given), itself blended with the photo's by alpha.
    """

    onnx_export = False  # adaptive pooling to the input's size has no ONNX export; torch runs it

    def __init__(
        self,
        encoder: VGGEncoder,
        decoder: VGGDecoder,
        artworks: Sequence[Tensor],
        weights: Sequence[float] | None = None,
        *,
        alpha: float = 1.0,
        palette: bool = False,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.layer = _check_pair(encoder, decoder)
        self.scale = _checked_scale(scale)  # paint at this multiple of the size (`painted_at`)
        if not artworks:
            raise InvalidInputError("AdaIN needs at least one artwork")
        w = torch.as_tensor(weights if weights is not None else [1.0] * len(artworks), dtype=torch.float32)
        if w.shape != (len(artworks),) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InvalidInputError(
                f"blend weights must be {len(artworks)} finite non-negative numbers, not all zero; got {w.tolist()}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in [0, 1], got {alpha}")
        w = w / w.sum()
        device = next(encoder.parameters()).device
        means, stds = [], []
        with torch.no_grad():
            for art in artworks:
                m, s = mean_std(encoder((art if art.dim() == 4 else art[None]).to(device))[self.layer])
                means.append(m)
                stds.append(s)
        # sum_i w_i AdaIN(c, s_i) = norm(c) * sum_i w_i sigma_i + sum_i w_i mu_i: blend the statistics.
        self.register_buffer("style_mean", sum(wi * m for wi, m in zip(w, means)))  # [1, C, 1, 1]
        self.register_buffer("style_std", sum(wi * s for wi, s in zip(w, stds)))
        self.encoder, self.decoder, self.alpha = encoder, decoder, alpha
        self.normalize = ChannelNormalize()
        self.palette = (
            PaletteMatch(blend_palettes([palette_of(a.float().cpu()) for a in artworks], w), alpha).to(device)
            if palette
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        y = painted_at(self._adain, x, self.scale)
        return y if self.palette is None else self.palette(y, x)

    def _adain(self, x: Tensor) -> Tensor:
        f = self.encoder(x)[self.layer]
        t = self.normalize(f) * self.style_std + self.style_mean
        if self.alpha < 1.0:
            t = self.alpha * t + (1.0 - self.alpha) * f.float()
        return self.decoder(t.to(f.dtype))  # the statistics in fp32, the decoder in the encoder's (autocast) dtype
