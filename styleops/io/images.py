"""Image decoding, encoding and resizing for the style-transfer pipeline.

Tensors: decoded pixels are uint8 ``[3, H, W]`` RGB; model-side images are float32
``[..., 3, H, W]`` in ``[0, 1]``.

Decoding goes through Pillow, restricted to ``DECODE_FORMATS`` (no Ghostscript/EPS and other exotic
plugins on untrusted uploads). Limits are checked before pixels are allocated. Pillow's own global
decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, ~89 Mpx warning / ~179 Mpx error) is left
untouched: its error is reported as ``ImageTooLargeError``, so ``max_pixels`` above ~179 Mpx has no
effect, and its warning may still be emitted for images we then reject with our own, stricter limit.

Animations and multi-page files: only frame 0 is decoded; ``DecodedImage.frames`` says how many
there were (counted up to ``MAX_COUNTED_FRAMES``) and an INFO line is logged on ``styleops.io.images``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from styleops.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    InvalidInputError,
    UnsupportedImageError,
)

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 64 * 2**20

DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
"""Pillow formats accepted by ``decode_image`` (JPEG includes camera MPO files)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif")
"""File suffixes of those formats: what the pipeline treats as an image key and training as an
image file (one list for both; runs.keys re-exports it)."""

MAX_COUNTED_FRAMES = 1000
"""GIF frames and TIFF pages are counted by parsing each one (Pillow: ~5 us a GIF frame, ~0.15 ms a
TIFF page, so a crafted 64 MiB TIFF of 1x1 pages took over a minute): counting stops here."""

_ENCODE_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
_MAX_QUALITY = 95  # above 95 JPEG files grow a lot for no visible gain (Pillow's own advice)

# Same table as ImageOps.exif_transpose; applied by hand so we know whether it fired and do not
# re-serialise the EXIF block (which can fail on malformed camera EXIF).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
# What Pillow raises on corrupt data (it treats the same set as "not this format" when opening).
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
# Pillow's AVIF plugin also raises RuntimeError ("Failed to decode image: ...") on corrupt files.
_DECODE_ERRORS = (*_PILLOW_ERRORS, RuntimeError)
# Leading bytes of the accepted formats: names the format in errors raised before Pillow knows it.
_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WEBP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),
    (0, b"MM\x00+", "TIFF"),
    (4, b"ftypavi", "AVIF"),
)
_TIFF_ORIENTATION = 274  # Pillow applies a TIFF's own orientation tag when it loads the image
_SRGB = ImageCms.createProfile("sRGB")

_log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded, upright RGB image and facts about its source file."""

    pixels: torch.Tensor  # uint8 [3, H, W], RGB, upright (EXIF orientation applied)
    format: str  # Pillow format: "JPEG", "MPO", "PNG", "WEBP", "GIF", ...
    mode: str  # Pillow mode of the source: "L", "P", "RGBA", "CMYK", "I;16", ...
    frames: int  # >1 for animations and multi-page files (at most MAX_COUNTED_FRAMES); frame 0 is decoded
    exif_transposed: bool  # True when a non-identity EXIF orientation was applied


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> DecodedImage:
    """Decode encoded image bytes to upright uint8 RGB ``[3, H, W]``.

    Alpha and transparency (including a 16-bit grey's tRNS) are composited over white; 16-bit
    greys are scaled (v / 257), not clipped; 16-bit colour is reduced by Pillow to its high byte.
    Animations and multi-page files: frame 0 only (see ``DecodedImage.frames``; logged at INFO).
    Raises ImageDecodeError, ImageTooLargeError (from the byte count or the declared size, before
    any pixel buffer is allocated) or UnsupportedImageError.
    """
    _check_limits(max_pixels, max_bytes)
    if not data:
        raise ImageDecodeError("empty file")
    _check_bytes(len(data), max_bytes)
    with _pillow_errors(_sniff_format(data), max_pixels):
        opened = Image.open(io.BytesIO(data), formats=DECODE_FORMATS)
    with opened:
        fmt = opened.format or "unknown"
        _check_size(opened.size, max_pixels, fmt)
        with _pillow_errors(fmt, max_pixels):
            frames = _count_frames(opened)
            tiff_orientation = _tiff_orientation(opened)
            opened.load()
        if frames > 1:
            more = "+" if frames >= MAX_COUNTED_FRAMES else ""
            _log.info("%s image has %d%s frames; decoded frame 0 only", fmt, frames, more)
        mode = opened.mode
        # Pillow applies (and removes) a TIFF's orientation tag itself while loading.
        applied_by_pillow = tiff_orientation is not None and _tiff_orientation(opened) is None
        method = _orientation_transpose(opened)
        upright = opened if method is None else opened.transpose(method)
        pixels = _rgb_pixels(upright, fmt)
    return DecodedImage(pixels, fmt, mode, frames, method is not None or applied_by_pillow)


def plain_jpeg_size(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[int, int] | None:
    """(H, W) when ``data`` is a complete RGB or greyscale JPEG within the caps that needs no EXIF
    rotation: one that a plain JPEG decoder (``torchvision.io.decode_jpeg``, nvJPEG on a GPU)
    turns into the same upright pixels as ``decode_image``. None for anything else (CMYK,
    rotated, truncated: no end-of-image marker, over a cap, not a JPEG), which goes through
    ``decode_image``. Reads the header only."""
    if not data or len(data) > max_bytes or _sniff_format(data) != "JPEG" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L") or _orientation_transpose(im) is not None:
                return None
            w, h = im.size
    except (*_PILLOW_ERRORS, Image.DecompressionBombError):
        return None
    return (h, w) if 0 < w * h <= max_pixels else None


def read_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> DecodedImage:
    """``decode_image`` of a local file; the byte cap is checked before reading."""
    path = Path(path)
    _check_limits(max_pixels, max_bytes)
    _check_bytes(path.stat().st_size, max_bytes)
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)  # bounded even if the file grew since stat()
    return decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes)


def encode_image(pixels: torch.Tensor, format: str = "jpeg", *, quality: int = 90) -> bytes:
    """Encode uint8 ``[3, H, W]`` or float ``[3, H, W]`` in [0, 1] (clamped) as jpeg|png|webp.

    JPEG: optimised Huffman tables, 4:2:0 chroma. PNG: lossless (quality unused). WebP: lossy,
    method 4. ``quality`` must be an int in 1..95 for every format.
    """
    pil_format = _ENCODE_FORMATS.get(format.lower()) if isinstance(format, str) else None
    if pil_format is None:
        raise InvalidInputError(f"format must be one of jpeg, png, webp; got {format!r}")
    if type(quality) is not int or not 1 <= quality <= _MAX_QUALITY:
        raise InvalidInputError(f"quality must be an int in 1..{_MAX_QUALITY}; got {quality!r}")
    image = Image.fromarray(_hwc_uint8(pixels))
    options: dict[str, object] = {
        "JPEG": {"quality": quality, "optimize": True, "subsampling": "4:2:0"},
        "PNG": {},
        "WEBP": {"quality": quality, "method": 4},
    }[pil_format]
    out = io.BytesIO()
    image.save(out, pil_format, **options)
    return out.getvalue()


def content_type(format: str) -> str:
    """MIME type of a Pillow or encode format name, case-insensitive ("png" -> "image/png")."""
    try:
        return _CONTENT_TYPES[format.upper()]
    except (KeyError, AttributeError):
        raise InvalidInputError(f"no content type known for format {format!r}") from None


def to_float(pixels_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> float32 ``[..., 3, H, W]`` in [0, 1]."""
    if pixels_uint8.dtype != torch.uint8:
        raise InvalidInputError(f"to_float expects uint8 pixels; got {pixels_uint8.dtype}")
    return pixels_uint8.to(torch.float32).div_(255.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float ``[..., 3, H, W]`` in [0, 1] -> uint8 (x * 255 rounded, clamped); uint8 passes."""
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise InvalidInputError(f"to_uint8 expects a float or uint8 tensor; got {x.dtype}")
    return x.detach().mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def resize_max_side(x: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Downsize float ``[C, H, W]`` or ``[N, C, H, W]`` so max(H, W) <= max_side, keeping aspect.

    Antialiased bilinear; never upsizes; returns ``x`` itself when no resize is needed.
    """
    if x.ndim not in (3, 4) or not x.is_floating_point():
        shape = tuple(x.shape)
        raise InvalidInputError(f"expected float [C,H,W] or [N,C,H,W]; got {x.dtype} {shape}")
    if max_side is None:
        return x
    if max_side < 1:
        raise InvalidInputError(f"max_side must be >= 1 or None; got {max_side}")
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    if h >= w:
        size = (max_side, max(1, round(w * max_side / h)))
    else:
        size = (max(1, round(h * max_side / w)), max_side)
    batch = x if x.ndim == 4 else x.unsqueeze(0)
    out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if x.ndim == 4 else out.squeeze(0)


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _hwc_uint8(pixels: torch.Tensor) -> np.ndarray:
    """uint8 or finite float ``[3, H, W]`` -> contiguous uint8 ``[H, W, 3]`` numpy array."""
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 3 or pixels.shape[0] != 3:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise InvalidInputError(f"expected pixels [3, H, W]; got {shape}")
    if pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise InvalidInputError(f"cannot encode an empty image {tuple(pixels.shape)}")
    if pixels.is_floating_point() and not bool(torch.isfinite(pixels).all()):
        raise InvalidInputError("float pixels contain NaN or infinity")
    return to_uint8(pixels).permute(1, 2, 0).contiguous().cpu().numpy()


def _check_limits(max_pixels: int, max_bytes: int) -> None:
    if max_pixels < 1 or max_bytes < 1:
        raise InvalidInputError(f"limits must be positive; got {max_pixels=} {max_bytes=}")


def _check_bytes(n_bytes: int, max_bytes: int) -> None:
    if n_bytes > max_bytes:
        raise ImageTooLargeError(f"file is {n_bytes} bytes, over the limit of {max_bytes} bytes")


def _check_size(size: tuple[int, int], max_pixels: int, fmt: str) -> None:
    """Reject by the declared size, before any pixel buffer is allocated."""
    w, h = size
    if w < 1 or h < 1:
        raise UnsupportedImageError(f"{fmt} image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLargeError(f"{fmt} image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")


def _sniff_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with, else None (for messages only)."""
    for offset, magic, fmt in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return fmt
    return None


def _count_frames(image: Image.Image) -> int:
    """Frames in the file: declared counts as they are, GIF/TIFF walks stopped at MAX_COUNTED_FRAMES.

    The walk is what Pillow's own ``n_frames`` does for these two formats (frame headers only, no
    pixels), followed by the same rewind to frame 0.
    """
    if image.format not in ("GIF", "TIFF") or not hasattr(image, "_seek"):
        return getattr(image, "n_frames", 1)
    if not image.is_animated:
        return 1
    count = 1
    try:
        while count < MAX_COUNTED_FRAMES:
            if image.format == "GIF":
                image._seek(image.tell() + 1, False)  # type: ignore[attr-defined]
            else:
                image._seek(image.tell() + 1)  # type: ignore[attr-defined]
            count += 1
    except EOFError:
        pass
    image.seek(0)
    return count


def _tiff_orientation(image: Image.Image) -> int | None:
    """A TIFF's non-identity orientation tag (read without loading pixels), else None."""
    tags = getattr(image, "tag_v2", None)
    if tags is None:
        return None
    try:
        value = tags.get(_TIFF_ORIENTATION)
    except _PILLOW_ERRORS:
        return None
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else None


def _bomb_limit(max_pixels: int, factor: int) -> int:
    """The pixel limit that Pillow's guard (``factor`` x MAX_IMAGE_PIXELS) and ours both imply."""
    pillow = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow is None else min(max_pixels, factor * int(pillow))


@contextmanager
def _pillow_errors(fmt: str | None, max_pixels: int) -> Iterator[None]:
    """Translate Pillow's exceptions into StyleOps image errors."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow refuses above 2x MAX_IMAGE_PIXELS, before our own check can see the size; its
        # warning (above 1x) arrives as an exception only where warnings are turned into errors.
        limit = _bomb_limit(max_pixels, 2 if isinstance(e, Image.DecompressionBombError) else 1)
        what = f"{fmt} image" if fmt else "image"
        raise ImageTooLargeError(f"{what} is over the limit of {limit} pixels (decompression bomb guard: {e})") from e
    except UnidentifiedImageError as e:
        accepted = ", ".join(DECODE_FORMATS)
        if fmt:
            raise ImageDecodeError(
                f"truncated or corrupt {fmt} data: the file starts like {fmt} but its header cannot be read"
            ) from e
        raise ImageDecodeError(f"not a recognised image format (accepted: {accepted})") from e
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(f"truncated or corrupt {fmt or 'image'} data: {e}") from e


def _orientation_transpose(image: Image.Image) -> Image.Transpose | None:
    """Transpose that makes the image upright per its EXIF orientation; None if none is needed.

    Malformed EXIF is ignored: a broken tag must not reject an otherwise good photo.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except _PILLOW_ERRORS:
        return None
    return _ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None


def _rgb_pixels(image: Image.Image, fmt: str) -> torch.Tensor:
    """Loaded image of any mode -> uint8 RGB ``[3, H, W]``."""
    try:
        if image.mode in _WIDE_GRAY_MODES or image.mode == "F":
            gray = torch.from_numpy(_gray_to_uint8(image))
            return gray.expand(3, *gray.shape).contiguous()
        rgb = np.asarray(_to_rgb_image(image))
    except ValueError as e:  # Pillow: "conversion from X to Y not supported"
        raise UnsupportedImageError(f"cannot convert {fmt} mode {image.mode} to RGB: {e}") from e
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def _gray_to_uint8(image: Image.Image) -> np.ndarray:
    """``I;16*``/``I`` (16-bit scale, v / 257 rounded) or ``F`` (0..255 scale) -> uint8 [H, W].

    A ``transparency`` grey value (a 16-bit PNG's tRNS) becomes white, as for 8-bit images.
    """
    values = np.asarray(image)
    if image.mode == "F":
        return np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)
    wide = np.clip(values, 0, 65535).astype(np.int32)
    gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int) and not isinstance(transparent, bool):
        gray[values == transparent] = 255
    return gray


def _to_rgb_image(image: Image.Image) -> Image.Image:
    """8-bit modes -> RGB; alpha/``transparency`` composited over white; CMYK via its ICC."""
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK -> sRGB through the embedded ICC profile; naive conversion when absent or broken."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as e:
            _log.warning("ignoring unusable CMYK ICC profile: %s", e)
    return image.convert("RGB")
