"""Super-resolution evaluation as the SR literature does it: Y-channel PSNR and SSIM on uint8 images.

Protocol (SRCNN, VDSR, EDSR tables; BasicSR's `calculate_psnr(..., test_y_channel=True)`):
- HR images are cropped at the bottom/right to a multiple of the scale (`degrade`), the LR image
  is the PIL-bicubic downscale by 1/scale, stored as uint8 (no blur by default).
- Outputs are quantized to uint8 first, then converted to Y (ITU-R BT.601, studio range, as
  MATLAB's rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1], so Y is in
  [16, 235]); `border` (= the scale) pixels are cropped at each side before measuring.
  Y is kept as a float, as BasicSR does; MATLAB rounds it to uint8 (`rounded=True`), which gives
  0.005 dB less on BSD100 x4 bicubic (25.956 vs 25.961 dB).
- PSNR with peak 255; SSIM as Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, data range 255, 'valid' filtering, mean of the SSIM map, no automatic downsampling.

Bicubic: `resize_bicubic_pil` is PIL's Image.resize(..., BICUBIC) on uint8 images re-done in
torch: torch's antialiased bicubic (Keys a = -0.5, PIL's kernel and support) applied as PIL does,
horizontal pass, rounding and clamping to uint8, vertical pass, rounding and clamping. Measured on
BSD100 x4: 99.97% of LR values equal PIL's, the rest differ by 1 (PIL's fixed-point weights);
mean bicubic Y-PSNR 25.961 dB here as with PIL itself (published: 25.96). A single 2-D pass
without the intermediate rounding differs from PIL by up to 5 levels at clipped highlights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError
from styleops.models.vgg import VGGEncoder

Y_WEIGHTS = (65.481, 128.553, 24.966)  # per unit of R, G, B in [0, 1]; Y = 16 + ...
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2, DATA_RANGE = 11, 1.5, 0.01, 0.03, 255.0


def as_float(x: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] (0..255) or float in [0, 1] -> float32 in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise InvalidInputError(f"expected uint8 or float images, got {x.dtype}")
    return x.float()


def quantize(x: Tensor) -> Tensor:
    """float [..., 3, H, W] in [0, 1] (or uint8) -> float32 on the uint8 grid: round(255 x) / 255, clamped."""
    return as_float(x).mul(255.0).round_().clamp_(0.0, 255.0).div_(255.0)


def resize_bicubic_pil(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, 3, H, W] or [3, H, W] (uint8, or float in [0, 1]) -> float32 [.., 3, *size] on the uint8 grid.

    PIL's BICUBIC resize of the uint8 image (see the module docstring); antialiased when shrinking."""
    single = x.dim() == 3
    x = quantize(x[None] if single else x)
    h, w = size
    if w != x.shape[-1]:
        x = quantize(F.interpolate(x, size=(x.shape[-2], w), mode="bicubic", antialias=True, align_corners=False))
    if h != x.shape[-2]:
        x = quantize(F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False))
    return x[0] if single else x


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """[N, C, H, W] float -> same: separable Gaussian of `sigma` px, radius ceil(3 sigma), reflection
    padded; sigma 0 is the identity."""
    if sigma <= 0:
        return x
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype).to(x.device)
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def modcrop(hr: Tensor, scale: int) -> Tensor:
    """[..., H, W] -> [..., H - H % scale, W - W % scale] (the top-left part)."""
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def degrade(hr: Tensor, scale: int, *, blur_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """HR [3, H, W] or [N, 3, H, W] (uint8 or float in [0, 1]) -> (HR cropped to a multiple of
    `scale`, LR [.., 3, H // scale, W // scale]), both float32 on the uint8 grid.

    LR: optional Gaussian blur of `blur_sigma` HR px (Johnson et al. trained with 1.0; the standard
    benchmark protocol, and the default, has none), then the PIL bicubic downscale."""
    if scale < 1:
        raise InvalidInputError(f"scale must be >= 1, got {scale}")
    hr = quantize(modcrop(hr, scale))
    h, w = hr.shape[-2:]
    if h < scale or w < scale:
        raise InvalidInputError(f"image of {h}x{w} px is too small for x{scale}")
    single = hr.dim() == 3
    src = gaussian_blur(hr[None] if single else hr, blur_sigma)
    lr = resize_bicubic_pil(src, (h // scale, w // scale))
    return hr, (lr[0] if single else lr)


def bicubic_upscale(lr: Tensor, scale: int) -> Tensor:
    """The bicubic baseline: LR [.., 3, h, w] -> [.., 3, h*scale, w*scale], PIL bicubic, on the uint8 grid."""
    return resize_bicubic_pil(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))


def rgb_to_y(x: Tensor, *, rounded: bool = False) -> Tensor:
    """[..., 3, H, W] (uint8 or float in [0, 1]) -> Y [..., H, W] float64 in [16, 235] (BT.601).

    The input is quantized to uint8 first. rounded: round Y to an integer, as MATLAB's rgb2ycbcr
    does for uint8 images."""
    if x.dtype == torch.uint8:
        levels = x.double()
    else:
        levels = as_float(x).double().mul(255.0).round_().clamp_(0.0, 255.0)  # float64 all the way: exact
    r, g, b = levels.unbind(-3)
    y = 16.0 + (Y_WEIGHTS[0] * r + Y_WEIGHTS[1] * g + Y_WEIGHTS[2] * b) / 255.0
    return y.round() if rounded else y


def _y_pair(sr: Tensor, hr: Tensor, border: int, rounded: bool) -> tuple[Tensor, Tensor]:
    if sr.shape != hr.shape:
        raise InvalidInputError(f"SR and HR images differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if border < 0 or min(hr.shape[-2:]) <= 2 * border:
        raise InvalidInputError(f"cannot crop {border} px at each border of a {hr.shape[-2]}x{hr.shape[-1]} image")
    ys, yh = rgb_to_y(sr, rounded=rounded), rgb_to_y(hr, rounded=rounded)
    if border:
        ys, yh = ys[..., border:-border, border:-border], yh[..., border:-border, border:-border]
    return ys, yh


def psnr_y(sr: Tensor, hr: Tensor, border: int, *, rounded: bool = False) -> Tensor:
    """Y-channel PSNR in dB (peak 255) of [..., 3, H, W] images, `border` px cropped at each side.

    Both are quantized to uint8 first. Returns float64 [...] (a 0-dim tensor for one image);
    inf where the cropped Y channels are identical."""
    ys, yh = _y_pair(sr, hr, border, rounded)
    mse = (ys - yh).square().mean(dim=(-2, -1))
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalized 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', 11, 1.5)."""
    t = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(t**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_y(sr: Tensor, hr: Tensor, border: int, *, rounded: bool = False) -> Tensor:
    """Y-channel SSIM (Wang et al. 2004; see the module docstring) of [..., 3, H, W] images with
    `border` px cropped at each side. Returns float64 [...] in [-1, 1]; 1 for identical images."""
    ys, yh = _y_pair(sr, hr, border, rounded)
    if min(ys.shape[-2:]) < SSIM_WINDOW:
        raise InvalidInputError(
            f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after the border crop, got {tuple(ys.shape[-2:])}"
        )
    lead = ys.shape[:-2]
    a, b = ys.reshape(-1, 1, *ys.shape[-2:]), yh.reshape(-1, 1, *yh.shape[-2:])
    g = _gaussian_1d(a.dtype, a.device)

    def filt(z: Tensor) -> Tensor:  # 'valid' 11x11 Gaussian filtering, as two 1-D passes (float64)
        return F.conv2d(F.conv2d(z, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a.square(), filt(b * b) - mu_b.square()
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(-3, -2, -1)).reshape(lead)


@torch.no_grad()
def feature_distance(encoder: VGGEncoder, a: Tensor, b: Tensor, layer: str = "relu2_2") -> Tensor:
    """Johnson's feature reconstruction distance: mean over C*H*W of (phi(a) - phi(b))^2 at `layer`.

    a, b: [N, 3, H, W] (uint8 or float in [0, 1]; both quantized first, as the PSNR is). Returns
    float32 [N] in the encoder's feature units (Caffe scale for the HED trunk)."""
    if layer not in encoder.layers:
        raise InvalidInputError(f"encoder does not expose {layer!r} (it has {list(encoder.layers)})")
    dev = encoder.mean.device
    fa = encoder(quantize(a).to(dev))[layer]
    fb = encoder(quantize(b).to(dev))[layer]
    return (fa - fb).float().square().mean(dim=(1, 2, 3)).cpu()


@dataclass(frozen=True)
class SRScores:
    """Mean scores over a test set (per-image values in the lists, in input order)."""

    psnr: float  # dB, Y channel
    ssim: float
    feature: float | None  # relu2_2 feature distance, when an encoder was given
    per_image_psnr: list[float]
    per_image_ssim: list[float]
    per_image_feature: list[float] | None


def evaluate_sr(
    upscaler: Callable[[Tensor], Tensor],
    images: Iterable[Tensor],
    scale: int,
    *,
    encoder: VGGEncoder | None = None,
    layer: str = "relu2_2",
    blur_sigma: float = 0.0,
) -> SRScores:
    """Score `upscaler` (LR [1, 3, h, w] float on the uint8 grid -> [1, 3, h*scale, w*scale] float in
    [0, 1]) on HR `images` ([3, H, W] uint8 or float in [0, 1]), one at a time: `degrade`, upscale,
    quantize, Y-PSNR and Y-SSIM with `scale` px borders, and the `layer` feature distance (whole
    image) when `encoder` is given. `bicubic_upscale` scores the bicubic baseline."""
    return evaluate_methods({"method": upscaler}, images, scale, encoder=encoder, layer=layer, blur_sigma=blur_sigma)[
        "method"
    ]


@torch.no_grad()
def evaluate_methods(
    upscalers: Mapping[str, Callable[[Tensor], Tensor]],
    images: Iterable[Tensor],
    scale: int,
    *,
    encoder: VGGEncoder | None = None,
    layer: str = "relu2_2",
    blur_sigma: float = 0.0,
) -> dict[str, SRScores]:
    """`evaluate_sr` of several upscalers on the same images, each image degraded (and its ground
    truth's features computed) once: {name: SRScores}."""
    per: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in upscalers}
    if encoder is not None and layer not in encoder.layers:
        raise InvalidInputError(f"encoder does not expose {layer!r} (it has {list(encoder.layers)})")
    dev = encoder.mean.device if encoder is not None else None
    for image in images:
        hr, lr = degrade(image, scale, blur_sigma=blur_sigma)
        target = encoder(hr[None].to(dev))[layer] if encoder is not None else None
        for name, upscaler in upscalers.items():
            sr = quantize(upscaler(lr[None]).detach().cpu())[0]
            if sr.shape != hr.shape:
                raise InvalidInputError(f"{name} returned {tuple(sr.shape)} for an HR image of {tuple(hr.shape)}")
            psnrs, ssims, feats = per[name]
            psnrs.append(float(psnr_y(sr, hr, scale)))
            ssims.append(float(ssim_y(sr, hr, scale)))
            if encoder is not None and target is not None:  # feature_distance, with the target's features computed once
                feats.append(float((encoder(sr[None].to(dev))[layer] - target).float().square().mean()))
    if not any(p for p, _, _ in per.values()):
        raise InvalidInputError("no images to evaluate")

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    return {
        name: SRScores(mean(p), mean(s), mean(f) if f else None, p, s, f if encoder is not None else None)
        for name, (p, s, f) in per.items()
    }
