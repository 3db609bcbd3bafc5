"""Bad-input suite (issue 7): every bad image ends in a typed ImageError with a message that says
what is wrong (in the pipeline: a `failed` manifest row with its `error_class`), never in a crash,
a hang or a huge allocation; odd-but-valid images decode to the right upright 8-bit RGB pixels.

All inputs are generated here (Pillow or raw bytes) or cut from examples/catalog/*.jpg. No Prefect
server, no real model weights: pipeline code (runs.shard.download_item, the artwork checks) reads the
real store, one bucket of the session's embedded SeaweedFS over HTTP (`fault_store`,
tests/faults/conftest.py), and runs small randomly initialised networks.
"""

from __future__ import annotations

import io
import logging
import struct
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageCms, ImageFile, features

from infra.settings import Settings
from infra.store import InvalidKeyError, ObjectNotFoundError, ObjectStore, ObjectTooLargeError, StoreError, validate_key
from runs import context
from runs.keys import output_key
from runs.methods.base import MIN_ARTWORK_SIDE, checked_artworks
from runs.shard import Fetched, download_item, write_row
from runs.spec import StylizeParams
from styleops.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    InvalidInputError,
    UnsupportedImageError,
)
from styleops.evaluation.metrics import StyleMetrics, min_side, pad_to_min_side
from styleops.inference.color import preserve_colors
from styleops.inference.engine import InferenceEngine
from styleops.inference.gatys import GatysConfig, GatysEngine
from styleops.inference.stream import Job, StreamStylizer
from styleops.io import images as imageio
from styleops.io.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    decode_image,
    read_image,
)
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder, build_vgg_features

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog"
PHOTOS = sorted(CATALOG.glob("*.jpg"))
WHITE = [255, 255, 255]
ACCEPTED = "accepted: JPEG, PNG, WEBP, GIF, BMP, TIFF, AVIF"
LIMITS = (DEFAULT_MAX_PIXELS, DEFAULT_MAX_BYTES)  # what the pipeline passes by default (Settings)


# ---- input builders -------------------------------------------------------------------------
def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _photo(size: tuple[int, int] | None = None) -> Image.Image:
    """kodim05 as RGB, optionally resized (a real photo, not a synthetic pattern)."""
    with Image.open(CATALOG / "kodim05.jpg") as image:
        rgb = image.convert("RGB")
    return rgb if size is None else rgb.resize(size, Image.Resampling.BILINEAR)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    width: int,
    height: int,
    *,
    depth: int = 8,
    color_type: int = 2,
    rows: bytes | None = None,
    trns: bytes | None = None,
) -> bytes:
    """A hand-built PNG (valid CRCs): any bit depth / colour type Pillow cannot write itself.

    rows: the unfiltered scanlines (filter byte added here); None = a tiny IDAT that does NOT hold
    width x height pixels (a decompression-bomb header).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    if rows is None:
        idat = zlib.compress(b"\x00" * 16)
    else:
        stride = len(rows) // height
        idat = zlib.compress(b"".join(b"\x00" + rows[i * stride : (i + 1) * stride] for i in range(height)))
    extra = _png_chunk(b"tRNS", trns) if trns is not None else b""
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def _png16(pixels: list[tuple[int, ...]], color_type: int, trns: tuple[int, ...] | None = None) -> bytes:
    """One row of 16-bit samples (big-endian, as PNG stores them)."""
    raw = np.array(pixels, dtype=">u2").tobytes()
    trns_bytes = None if trns is None else struct.pack(f">{len(trns)}H", *trns)
    return _png(len(pixels), 1, depth=16, color_type=color_type, rows=raw, trns=trns_bytes)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose SOF0 header is patched to declare width x height."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG"))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    j = data.index(b"\x2c")  # image descriptor
    data[j + 5 : j + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (4, 4)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _webp_declaring(width: int, height: int) -> bytes:
    """A lossless 4x4 WebP whose VP8L header declares width x height (14 bits each, <= 16384)."""
    data = bytearray(_save(Image.new("RGB", (4, 4)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def _tiff(width: int, height: int, pages: int = 1) -> bytes:
    """A little-endian 8-bit grey TIFF of `pages` IFDs sharing one 2-byte strip (so a declared size
    above 1x1 is a bomb header, and many pages cost ~110 bytes each)."""
    n_tags = 9
    ifd_size = 2 + 12 * n_tags + 4
    out = [b"II*\x00", struct.pack("<I", 10), b"\x80\x80"]  # header, first IFD at 10, strip at 8
    for page in range(pages):
        at = 10 + page * ifd_size
        tags = [
            (256, 4, width),
            (257, 4, height),
            (258, 3, 8),
            (259, 3, 1),
            (262, 3, 1),
            (273, 4, 8),
            (277, 3, 1),
            (278, 4, height),
            (279, 4, 2),
        ]
        out.append(struct.pack("<H", n_tags))
        out += [struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags]
        out.append(struct.pack("<I", at + ifd_size if page < pages - 1 else 0))
    return b"".join(out)


def _gif_frames(n: int) -> bytes:
    """A 1x1 GIF of n frames, ~23 bytes each (the cheapest way to make Pillow count a lot)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (
        b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    )
    return header + frame * n + b"\x3b"


def _rgb(decoded: DecodedImage) -> list[list[int]]:
    """Pixels as a flat list of [r, g, b], row-major."""
    return decoded.pixels.permute(1, 2, 0).reshape(-1, 3).tolist()


def _hwc(decoded: DecodedImage) -> np.ndarray:
    return decoded.pixels.permute(1, 2, 0).numpy()


# ---- catalog objects in the real store ----------------------------------------------------------
def _listed(st: ObjectStore, key: str) -> tuple[str, str, int]:
    """(key, etag, size) of one stored object, from a listing as plan_catalog_task makes them."""
    (item,) = [(i.key, i.etag, i.size) for i in st.list(key) if i.key == key]
    return item


@dataclass
class Loaded:
    """What a shard's load stage made of one catalog object."""

    job: Job[Fetched]
    pixels: torch.Tensor | None
    error: Exception | None
    sha256: str | None


def _fetch(st: ObjectStore, item: tuple[str, str, int], limits: tuple[int, int]) -> Loaded:
    """The shard's load stage (download in runs.shard, decode in styleops.inference.stream) for one item."""
    stream = StreamStylizer(
        None,
        load=lambda f: download_item(st, f, limits[1]),
        write=lambda job: job,
        limits=limits,
        expected_errors=(StoreError, InvalidInputError),
    )
    job = stream.load_one(Fetched(*item))
    return Loaded(job, job._pixels, job.error, job.item.sha256)


def _failed_row(base: dict[str, Any], loaded: Loaded) -> dict[str, Any]:
    """The manifest row the shard writes for an image whose load failed (no request made)."""
    return write_row(None, {"catalog": "catalog/demo/", **base}, loaded.job, StylizeParams())  # type: ignore[arg-type]


def _fetch_one(st: ObjectStore, data: bytes, key: str) -> Loaded:
    """runs.shard.download_item of one catalog object holding `data`, with the default limits."""
    st.put(key, data)
    return _fetch(st, _listed(st, key), LIMITS)


# ---- 1. empty files --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["empty.jpg", "empty.png", "empty.webp", "empty.gif"])
def test_zero_byte_file_is_a_decode_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="^empty file$") as info:
        read_image(tmp_path / name)
    assert info.value.error_class == "decode_error"


# ---- 2. truncated files ----------------------------------------------------------------------
@pytest.mark.parametrize("photo", PHOTOS, ids=[p.stem for p in PHOTOS])
def test_every_catalog_jpeg_cut_in_half_fails(photo: Path) -> None:
    data = photo.read_bytes()
    assert decode_image(data).pixels.shape[0] == 3  # the whole file is fine
    with pytest.raises(ImageDecodeError, match=r"^truncated or corrupt JPEG data: image file is truncated"):
        decode_image(data[: len(data) // 2])


_PHOTO_PNG = _save(_photo((256, 192)), "PNG")
_PHOTO_FILES = {
    "jpeg": (PHOTOS[0].read_bytes(), "JPEG"),
    "progressive_jpeg": (_save(_photo((256, 192)), "JPEG", progressive=True), "JPEG"),
    "png": (_PHOTO_PNG, "PNG"),
    "webp": (_save(_photo((256, 192)), "WEBP", quality=80), "WEBP"),
    "gif": (_save(_photo((128, 96)), "GIF"), "GIF"),
    "tiff": (_save(_photo((128, 96)), "TIFF"), "TIFF"),
    "bmp": (_save(_photo((128, 96)), "BMP"), "BMP"),
}


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
@pytest.mark.parametrize("kind", list(_PHOTO_FILES))
def test_truncated_photo_fails_naming_the_format(kind: str, fraction: float) -> None:
    data, fmt = _PHOTO_FILES[kind]
    cut = data[: int(len(data) * fraction)]
    with pytest.raises(ImageDecodeError, match=rf"^truncated or corrupt {fmt} data") as info:
        decode_image(cut)
    assert info.value.error_class == "decode_error"


def test_png_missing_only_its_iend_chunk_still_decodes() -> None:
    """Documented leniency: every pixel is there, only the 12-byte end marker is lost."""
    full = decode_image(_PHOTO_PNG)
    cut = decode_image(_PHOTO_PNG[:-12])
    assert torch.equal(cut.pixels, full.pixels)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff", "JPEG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"II*\x00", "TIFF"),
    ],
    ids=["png", "jpeg", "gif", "webp", "tiff"],
)
def test_signature_only_names_the_format(data: bytes, fmt: str) -> None:
    with pytest.raises(ImageDecodeError, match=rf"^truncated or corrupt {fmt} data"):
        decode_image(data)


# ---- 3. not an image at all, whatever the extension ------------------------------------------
NOT_IMAGES = {
    "text": b"hello, this is a text file\n" * 20,
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "postscript": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # no Ghostscript, ever
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "html": b"<!doctype html><html><body>404 not found</body></html>",
    "elf": b"\x7fELF\x02\x01\x01" + bytes(100),
    "nul_bytes": bytes(4096),
    "one_byte": b"\xff",
    "ico": _save(Image.new("RGB", (16, 16)), "ICO"),  # a real image, but not an accepted format
    "ppm": _save(Image.new("RGB", (4, 4)), "PPM"),
    "tga": _save(Image.new("RGB", (4, 4)), "TGA"),
}


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize("kind", list(NOT_IMAGES))
def test_non_image_bytes_with_an_image_extension(tmp_path: Path, kind: str, ext: str) -> None:
    path = tmp_path / f"photo{ext}"
    path.write_bytes(NOT_IMAGES[kind])
    with pytest.raises(ImageDecodeError, match=rf"^not a recognised image format \({ACCEPTED}\)$"):
        read_image(path)


# ---- 4. decompression bombs and the byte cap -------------------------------------------------
BOMBS = {
    # id: (bytes, format named in the message, declared width, height)
    "png": (_png(100_000, 100_000), "PNG", 100_000, 100_000),
    "jpeg": (_jpeg_declaring(65_500, 65_500), "JPEG", 65_500, 65_500),  # JPEG's maximum is 65535
    "gif": (_gif_declaring(65_535, 65_535), "GIF", 65_535, 65_535),
    "bmp": (_bmp_declaring(100_000, 100_000), "BMP", 100_000, 100_000),
    "webp": (_webp_declaring(16_383, 16_383), "WEBP", 16_383, 16_383),  # WebP's maximum is 16383
    "tiff": (_tiff(100_000, 100_000), "TIFF", 100_000, 100_000),
}


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any accepted format's loader runs: refusal must come from the header."""

    def forbidden(self: Image.Image, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{type(self).__name__}.load() called: pixels were about to be decoded")

    from PIL import (
        AvifImagePlugin,
        BmpImagePlugin,
        GifImagePlugin,
        JpegImagePlugin,
        MpoImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    plugins = [
        AvifImagePlugin.AvifImageFile,
        BmpImagePlugin.BmpImageFile,
        GifImagePlugin.GifImageFile,
        JpegImagePlugin.JpegImageFile,
        MpoImagePlugin.MpoImageFile,
        PngImagePlugin.PngImageFile,
        TiffImagePlugin.TiffImageFile,
        WebPImagePlugin.WebPImageFile,
    ]
    classes = {c for plugin in plugins for c in plugin.__mro__ if "load" in c.__dict__}
    assert ImageFile.ImageFile in classes
    for cls in classes:
        monkeypatch.setattr(cls, "load", forbidden)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pillow_guard", [True, False], ids=["pillow_guard", "own_check_only"])
@pytest.mark.parametrize("kind", list(BOMBS))
def test_bomb_header_is_refused_before_decoding(
    kind: str, pillow_guard: bool, monkeypatch: pytest.MonkeyPatch, no_pixel_decoding: None
) -> None:
    data, fmt, width, height = BOMBS[kind]
    assert len(data) < 1024  # tiny in bytes, billions of pixels declared
    if not pillow_guard:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    message = str(info.value)
    assert f"over the limit of {DEFAULT_MAX_PIXELS}" in message
    assert info.value.error_class == "too_large"
    if pillow_guard:  # Pillow refuses inside Image.open, before the size reaches our own check
        assert f"pixels (decompression bomb guard: Image size ({width * height} pixels)" in message
        assert message.startswith(f"{fmt} image" if kind != "bmp" else "image")
    else:
        assert message == (
            f"{fmt} image is {width}x{height} = {width * height} pixels, over the limit of {DEFAULT_MAX_PIXELS}"
        )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, at 10000x10000
@pytest.mark.parametrize(
    ("width", "height"),
    [(8000, 8000), (10_000, 10_000)],  # above our 50 Mpx; the second above Pillow's 89 Mpx warning
)
def test_size_between_our_cap_and_pillows_is_refused_by_ours(width: int, height: int, no_pixel_decoding: None) -> None:
    with pytest.raises(
        ImageTooLargeError,
        match=rf"^PNG image is {width}x{height} = {width * height} "
        rf"pixels, over the limit of {DEFAULT_MAX_PIXELS}$",
    ):
        decode_image(_png(width, height))


def test_cap_above_pillows_guard_reports_the_limit_that_applied(no_pixel_decoding: None) -> None:
    with pytest.raises(ImageTooLargeError, match=r"^PNG image is over the limit of 178956970 pixels"):
        decode_image(_png(20_000, 20_000), max_pixels=10**9)  # 400 Mpx: under ours, over Pillow's


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_as_error_reports_the_limit_that_applied(no_pixel_decoding: None) -> None:
    with pytest.raises(ImageTooLargeError, match=r"^PNG image is over the limit of 89478485 pixels"):
        decode_image(_png(10_000, 10_000), max_pixels=10**9)


def test_file_above_the_byte_cap_is_refused_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as f:  # sparse: no disk used
        f.write(_PHOTO_PNG[:64])
        f.truncate(DEFAULT_MAX_BYTES + 1)
    opened: list[Path] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    with pytest.raises(
        ImageTooLargeError,
        match=rf"^file is {DEFAULT_MAX_BYTES + 1} bytes, over the "
        rf"limit of {DEFAULT_MAX_BYTES} bytes$",
    ):
        read_image(path)
    assert opened == []


def test_bytes_above_the_byte_cap_are_refused() -> None:
    with pytest.raises(ImageTooLargeError, match=r"^file is \d+ bytes, over the limit of 1000 bytes$"):
        decode_image(_PHOTO_PNG, max_bytes=1000)


# ---- 5. 16-bit PNG ---------------------------------------------------------------------------
def test_16_bit_grey_png_written_by_pillow_is_scaled() -> None:
    values = [0, 257, 32768, 32896, 65535, 255, 32767]
    image = Image.frombytes("I;16", (len(values), 1), np.array(values, dtype="<u2").tobytes())
    decoded = decode_image(_save(image, "PNG"))
    assert (decoded.format, decoded.mode) == ("PNG", "I;16")
    # round(v * 255 / 65535): 65535 -> 255, 32896 -> 128, 257 -> 1, 255 -> 1 (not clipped to 0)
    assert [p[0] for p in _rgb(decoded)] == [0, 1, 128, 128, 255, 1, 127]
    assert all(p[0] == p[1] == p[2] for p in _rgb(decoded))


SIXTEEN_BIT = {
    # id: (bytes, source mode Pillow reports, expected RGB per pixel)
    "grey": (_png16([(0,), (32896,), (65535,), (255,)], 0), "I;16", [[0] * 3, [128] * 3, WHITE, [1] * 3]),
    # 16-bit colour: Pillow keeps the high byte (v >> 8), so 0x00FF -> 0 where grey gives 1.
    "rgb": (
        _png16([(65535, 32896, 0), (32896, 65535, 255), (0x80FF, 0x7FFF, 0x0100)], 2),
        "RGB",
        [[255, 128, 0], [128, 255, 0], [128, 127, 1]],
    ),
    "grey_trns": (_png16([(32896,), (1000,)], 0, trns=(32896,)), "I;16", [WHITE, [4] * 3]),
    "rgb_trns": (
        _png16([(32896, 32896, 32896), (65535, 0, 0)], 2, trns=(32896, 32896, 32896)),
        "RGB",
        [WHITE, [255, 0, 0]],
    ),
    "grey_alpha": (_png16([(0, 65535), (0, 0), (0, 32896)], 4), "RGBA", [[0] * 3, WHITE, [127] * 3]),
    "rgba": (
        _png16([(65535, 0, 0, 65535), (0, 0, 0, 0), (0, 0, 65535, 32896)], 6),
        "RGBA",
        [[255, 0, 0], WHITE, [127, 127, 255]],
    ),
}


@pytest.mark.parametrize("kind", list(SIXTEEN_BIT))
def test_16_bit_png_to_8_bit_rgb(kind: str) -> None:
    data, mode, expected = SIXTEEN_BIT[kind]
    assert data[24] == 16  # IHDR bit depth
    decoded = decode_image(data)
    assert (decoded.format, decoded.mode) == ("PNG", mode)
    assert decoded.pixels.dtype == torch.uint8 and decoded.pixels.shape == (3, 1, len(expected))
    assert _rgb(decoded) == expected


# ---- 6. CMYK JPEG ----------------------------------------------------------------------------
CMYK_PATCHES = [
    # (C, M, Y, K) -> expected sRGB (naive conversion: no embedded profile)
    ((255, 0, 0, 0), (0, 255, 255)),
    ((0, 255, 0, 0), (255, 0, 255)),
    ((0, 0, 255, 0), (255, 255, 0)),
    ((0, 0, 0, 255), (0, 0, 0)),
    ((0, 0, 0, 0), (255, 255, 255)),
    ((0, 0, 0, 128), (127, 127, 127)),
    ((255, 255, 0, 0), (0, 0, 255)),
]
_SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_patches() -> Image.Image:
    image = Image.new("CMYK", (16 * len(CMYK_PATCHES), 16))
    for i, (cmyk, _) in enumerate(CMYK_PATCHES):
        image.paste(cmyk, (16 * i, 0, 16 * i + 16, 16))
    return image


@pytest.mark.parametrize(
    ("icc", "warning"),
    [(None, None), (b"not an icc profile", "cannot open profile"), (_SRGB_ICC, "cannot build transform")],
    ids=["no_profile", "garbage_profile", "rgb_profile_on_cmyk"],
)
def test_cmyk_jpeg_colours(icc: bytes | None, warning: str | None, caplog: pytest.LogCaptureFixture) -> None:
    options = {"quality": 95} if icc is None else {"quality": 95, "icc_profile": icc}
    data = _save(_cmyk_patches(), "JPEG", **options)
    with caplog.at_level(logging.WARNING, logger="styleops.io.images"):
        decoded = decode_image(data)
    assert (decoded.format, decoded.mode) == ("JPEG", "CMYK")
    assert decoded.pixels.shape == (3, 16, 16 * len(CMYK_PATCHES))
    for i, (_, expected) in enumerate(CMYK_PATCHES):
        centre = decoded.pixels[:, 8, 16 * i + 8].tolist()
        assert np.abs(np.subtract(centre, expected)).max() <= 3, (i, centre, expected)
    logged = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert logged == []
    else:
        assert len(logged) == 1 and logged[0].startswith("ignoring unusable CMYK ICC profile") and warning in logged[0]


# ---- 7. palette, grey+alpha and RGBA: alpha is composited over white -------------------------
def _over_white(rgb: tuple[int, int, int], alpha: int) -> list[int]:
    return [round(c * alpha / 255 + 255 * (1 - alpha / 255)) for c in rgb]


def _palette(colours: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.new("P", (len(colours), 1))
    image.putpalette([v for c in colours for v in c])
    for x in range(len(colours)):
        image.putpixel((x, 0), x)
    return image


ALPHA_CASES = {
    # id: (bytes, source mode, expected RGB per pixel, tolerance)
    "palette_png": (_save(_palette([(255, 0, 0), (0, 0, 255)]), "PNG"), "P", [[255, 0, 0], [0, 0, 255]], 0),
    "palette_png_transparent_index": (
        _save(_palette([(255, 0, 0), (0, 0, 255)]), "PNG", transparency=1),
        "P",
        [[255, 0, 0], WHITE],
        0,
    ),
    "palette_png_partial_alpha": (
        _save(_palette([(0, 0, 0)] * 3), "PNG", transparency=bytes([255, 128, 0])),
        "P",
        [[0, 0, 0], [127] * 3, WHITE],
        0,
    ),
    "palette_gif_transparent_index": (
        _save(_palette([(255, 0, 0), (0, 0, 255)]), "GIF", transparency=1),
        "P",
        [[255, 0, 0], WHITE],
        0,
    ),
    "la_png": (
        _save(Image.frombytes("LA", (3, 1), bytes([0, 255, 0, 128, 0, 0])), "PNG"),
        "LA",
        [[0] * 3, [127] * 3, WHITE],
        0,
    ),
    "rgba_png": (
        _save(
            Image.frombytes("RGBA", (4, 1), bytes([255, 0, 0, 255, 255, 0, 0, 128, 255, 0, 0, 64, 255, 0, 0, 0])), "PNG"
        ),
        "RGBA",
        [_over_white((255, 0, 0), a) for a in (255, 128, 64, 0)],
        1,
    ),
    # fully transparent pixels hide a colour: it must not leak through (white, not green)
    "rgba_hidden_colour": (_save(Image.new("RGBA", (2, 1), (0, 255, 0, 0)), "PNG"), "RGBA", [WHITE, WHITE], 0),
    "rgba_webp_lossless": (
        _save(
            Image.frombytes("RGBA", (2, 1), bytes([0, 0, 255, 255, 0, 255, 0, 0])), "WEBP", lossless=True, exact=True
        ),
        "RGBA",
        [[0, 0, 255], WHITE],
        0,
    ),
}


@pytest.mark.parametrize("kind", list(ALPHA_CASES))
def test_alpha_is_composited_over_white(kind: str) -> None:
    data, mode, expected, atol = ALPHA_CASES[kind]
    decoded = decode_image(data)
    assert decoded.mode == mode
    got = np.array(_rgb(decoded))
    assert np.abs(got - np.array(expected)).max() <= atol, got.tolist()


# ---- 8. EXIF orientation ---------------------------------------------------------------------
# Stored pixels for each orientation, from the upright image: the inverse of what the EXIF spec
# says a viewer does (e.g. 6: "rotate 90 degrees clockwise to display"). Written out here with
# numpy, independently of imageio's own table.
STORED_FROM_UPRIGHT = {
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, 1),  # displayed by rotating 90 degrees clockwise
    7: lambda u: np.rot90(u, 2).transpose(1, 0, 2),  # transverse (self-inverse)
    8: lambda u: np.rot90(u, -1),  # displayed by rotating 90 degrees counter-clockwise
}
UPRIGHT = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2  # 7 wide, 5 high, no symmetry


def _with_orientation(pixels: np.ndarray, fmt: str, orientation: object, **options: Any) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if fmt == "TIFF":  # TIFF carries the tag in its own IFD
        return _save(image, "TIFF", tiffinfo={ExifTags.Base.Orientation: orientation})
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return _save(image, fmt, exif=exif, **options)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_comes_out_upright(orientation: int, fmt: str) -> None:
    stored = STORED_FROM_UPRIGHT[orientation](UPRIGHT)
    options = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    decoded = decode_image(_with_orientation(stored, fmt, orientation, **options))
    assert decoded.exif_transposed is True
    assert decoded.pixels.shape == (3, 5, 7)
    np.testing.assert_array_equal(_hwc(decoded), UPRIGHT)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_comes_out_upright(orientation: int) -> None:
    upright = np.asarray(_photo((128, 96)))  # multiples of 16: JPEG blocks line up after rotation
    stored = STORED_FROM_UPRIGHT[orientation](upright)
    decoded = decode_image(_with_orientation(stored, "JPEG", orientation, quality=95, subsampling=0))
    assert decoded.exif_transposed is True
    assert decoded.pixels.shape == (3, 96, 128)
    error = np.abs(_hwc(decoded).astype(np.int16) - upright.astype(np.int16))
    assert error.mean() < 4.0, error.mean()  # JPEG loss only
    wrong_way = np.abs(np.rot90(_hwc(decoded), 2).astype(np.int16) - upright.astype(np.int16)).mean()
    assert wrong_way > 10 * error.mean()  # the comparison can tell a wrong rotation apart


@pytest.mark.parametrize("orientation", [0, 1, 9, 65535], ids=["zero", "identity", "nine", "max_short"])
def test_meaningless_orientation_leaves_pixels_as_stored(orientation: object) -> None:
    decoded = decode_image(_with_orientation(UPRIGHT, "PNG", orientation))
    assert decoded.exif_transposed is False
    np.testing.assert_array_equal(_hwc(decoded), UPRIGHT)


@pytest.mark.parametrize(
    "exif",
    [
        b"garbage",
        b"Exif\x00\x00garbage",
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff",
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01",
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_malformed_exif_is_ignored(fmt: str, exif: bytes) -> None:
    decoded = decode_image(_save(Image.fromarray(UPRIGHT), fmt, exif=exif))
    assert decoded.exif_transposed is False
    assert decoded.pixels.shape == (3, 5, 7)


# ---- 9. animations and multi-page files: frame 0, and it is said -----------------------------
def _frames() -> list[Image.Image]:
    first = Image.new("RGB", (6, 4), (255, 0, 0))
    first.putpixel((0, 0), (0, 0, 255))  # frame 0 has a mark, so it cannot be confused with a fill
    return [first, Image.new("RGB", (6, 4), (0, 255, 0)), Image.new("RGB", (6, 4), (255, 255, 0))]


ANIMATED = {
    # id: (format, save options, tolerated mean absolute error against frame 0)
    "gif": ("GIF", {"duration": 100, "loop": 0}, 0),
    "webp_lossless": ("WEBP", {"duration": 100, "lossless": True, "exact": True}, 0),
    "webp_lossy": ("WEBP", {"duration": 100, "quality": 90}, 12),  # the 1-px mark blurs
    "apng": ("PNG", {"duration": 100}, 0),
    "multipage_tiff": ("TIFF", {}, 0),
}


@pytest.mark.parametrize("kind", list(ANIMATED))
def test_animation_decodes_frame_0_and_says_so(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    fmt, options, atol = ANIMATED[kind]
    frames = _frames()
    data = _save(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    with caplog.at_level(logging.INFO, logger="styleops.io.images"):
        decoded = decode_image(data)
    assert (decoded.format, decoded.frames) == (fmt, 3)
    errors = [np.abs(_hwc(decoded).astype(np.int16) - np.asarray(f, dtype=np.int16)).mean() for f in frames]
    assert errors[0] <= atol and min(errors[1:]) > 50, errors  # frame 0, not a later or blended one
    assert [r.getMessage() for r in caplog.records] == [f"{fmt} image has 3 frames; decoded frame 0 only"]


def test_still_image_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="styleops.io.images"):
        assert decode_image(_PHOTO_PNG).frames == 1
    assert caplog.records == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("fmt", "data"), [("GIF", _gif_frames(5000)), ("TIFF", _tiff(1, 1, pages=5000))], ids=["gif", "tiff"]
)
def test_frame_counting_stops_at_the_cap(fmt: str, data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Pillow parses every GIF frame / TIFF page to count them (a 64 MiB TIFF of 1x1 pages: over a
    minute): imageio stops at MAX_COUNTED_FRAMES, and frame 0 still decodes."""
    cap = imageio.MAX_COUNTED_FRAMES
    with caplog.at_level(logging.INFO, logger="styleops.io.images"):
        decoded = decode_image(data)
    assert (decoded.format, decoded.frames) == (fmt, cap)
    assert decoded.pixels.shape == (3, 1, 1)
    assert [r.getMessage() for r in caplog.records] == [f"{fmt} image has {cap}+ frames; decoded frame 0 only"]


@pytest.mark.parametrize(
    ("fmt", "data"), [("GIF", _gif_frames(12)), ("TIFF", _tiff(1, 1, pages=12))], ids=["gif", "tiff"]
)
def test_frame_count_below_the_cap_is_exact(fmt: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert decode_image(data).frames == 12
    monkeypatch.setattr(imageio, "MAX_COUNTED_FRAMES", 5)
    assert decode_image(data).frames == 5


# ---- 10. tiny images and extreme aspect ratios -----------------------------------------------
EXTREME_SIZES = [(1, 1), (1, 4000), (4000, 1)]  # (width, height)


@pytest.mark.parametrize("size", EXTREME_SIZES, ids=["1x1", "1x4000", "4000x1"])
@pytest.mark.parametrize(("fmt", "atol"), [("PNG", 0), ("JPEG", 4), ("WEBP", 6), ("GIF", 0), ("BMP", 0), ("TIFF", 0)])
def test_tiny_and_extreme_aspect_ratio_decode(size: tuple[int, int], fmt: str, atol: int) -> None:
    colour = (200, 40, 90) if fmt != "GIF" else (204, 51, 102)  # GIF: a web-safe colour survives quantizing
    decoded = decode_image(_save(Image.new("RGB", size, colour), fmt))
    assert decoded.pixels.shape == (3, size[1], size[0])
    assert np.abs(np.array(decoded.pixels[:, -1, -1].tolist()) - colour).max() <= atol


@pytest.fixture(scope="module")
def random_vgg() -> VGGEncoder:
    """A VGG16 trunk with random weights: the shapes of the real one at no download cost."""
    torch.manual_seed(0)
    return VGGEncoder(build_vgg_features().state_dict(), ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])


@pytest.mark.parametrize("size", EXTREME_SIZES, ids=["1x1", "1x4000", "4000x1"])
def test_feed_forward_engine_handles_tiny_and_extreme_images(size: tuple[int, int]) -> None:
    """The per-style/multi-style path (InferenceEngine pads to 16 px) has no minimum size."""
    torch.manual_seed(0)
    engine = InferenceEngine(TransformerNet(channels=8, n_residual=1), device="cpu", max_side=1024)
    pixels = decode_image(_save(Image.new("RGB", size, (10, 200, 30)), "PNG")).pixels
    x = engine.prepare(pixels)
    (y,) = engine.stylize_prepared([x])
    assert y.shape == x.shape == (3, min(size[1], 1024), min(size[0], 1024))
    assert bool(torch.isfinite(y).all())


@pytest.mark.parametrize(
    ("layer", "side"), [("relu1_2", 1), ("relu2_2", 2), ("relu3_3", 4), ("relu4_3", 8), ("relu5_3", 16)]
)
def test_min_side_of_the_loss_network(layer: str, side: int) -> None:
    """2 ** (max-pools before the deepest layer): 1 px there, after halving, is the least that pools."""
    encoder = VGGEncoder(build_vgg_features().state_dict(), [layer])
    assert min_side(encoder) == side
    encoder(torch.rand(1, 3, side, 3 * side))
    if side > 1:
        with pytest.raises(RuntimeError, match="Output size is too small"):
            encoder(torch.rand(1, 3, side - 1, 3 * side))


def test_pad_to_min_side_reflects_or_repeats_the_edge() -> None:
    strip = torch.arange(6 * 10, dtype=torch.float32).reshape(1, 1, 6, 10)
    padded = pad_to_min_side(strip, 8)
    assert padded.shape == (1, 1, 8, 10)  # only the short side grows, at the bottom
    assert torch.equal(padded[..., :6, :], strip)
    assert torch.equal(padded[..., 6:, :], strip[..., [4, 3], :])  # reflected: 2 < 6 rows
    dot = torch.tensor([0.25, 0.5, 0.75]).reshape(1, 3, 1, 1)
    assert torch.equal(pad_to_min_side(dot, 8), dot.expand(1, 3, 8, 8))  # too small to reflect: repeated
    big = torch.rand(1, 3, 8, 9)
    assert pad_to_min_side(big, 8) is big


@pytest.mark.parametrize(("size", "measured"), [((1, 1), (1, 1)), ((1, 4000), (1, 256)), ((4000, 100), (256, 6))])
def test_metrics_of_a_too_small_image_are_those_of_it_padded(
    size: tuple[int, int], measured: tuple[int, int], random_vgg: VGGEncoder
) -> None:
    """The documented rule: shrunk to 256 px, then padded to 8 px a side (VGG16 to relu4_3)."""
    torch.manual_seed(0)
    content, output = torch.rand(3, size[1], size[0]), torch.rand(3, size[1], size[0])
    meter = StyleMetrics(random_vgg, torch.rand(3, 64, 64))
    assert (meter.size, meter.min_side) == (256, 8)
    got = meter.measure(content, output)
    small = [imageio.resize_max_side(t, 256) for t in (content, output)]
    assert tuple(small[0].shape[-2:]) == (measured[1], measured[0])
    by_hand = meter.measure(*[pad_to_min_side(t[None], 8)[0] for t in small])
    assert got == by_hand and np.isfinite(got).all() and min(got) > 0


@pytest.mark.parametrize(
    ("size", "levels", "shapes"),
    [
        ((1, 1), 1, [(1, 1)]),
        ((4000, 1), 1, [(1, 256)]),
        ((4000, 100), 2, [(3, 128), (6, 256)]),  # both levels below 8 px high
    ],
)
def test_gatys_optimizes_too_small_images_padded_and_keeps_their_size(
    size: tuple[int, int],
    levels: int,
    shapes: list[tuple[int, int]],
    random_vgg: VGGEncoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from styleops.inference import gatys as gatys_module

    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real_optimize = gatys_module._optimize

    def spy(start: torch.Tensor, target: torch.Tensor, *args: Any) -> torch.Tensor:
        seen.append((tuple(start.shape[-2:]), tuple(target.shape[-2:])))
        return real_optimize(start, target, *args)

    monkeypatch.setattr(gatys_module, "_optimize", spy)
    x = torch.rand(3, size[1], size[0], generator=torch.Generator().manual_seed(0))
    engine = GatysEngine(
        random_vgg, torch.rand(3, 64, 64), GatysConfig(iterations=2, optimizer="adam"), max_side=256, levels=levels
    )
    prepared = engine.prepare(x)
    (y,) = engine.stylize_prepared([prepared])
    assert y.shape == prepared.shape == (3, *shapes[-1])
    assert bool(torch.isfinite(y).all()) and 0 <= y.min() and y.max() <= 1
    padded = [(max(8, h), max(8, w)) for h, w in shapes]
    assert seen == [(p, p) for p in padded]


def _tiny_case(size: tuple[int, int], stylizer: str, prepared: tuple[int, int]) -> Any:
    return pytest.param(size, stylizer, prepared, id=f"{size[0]}x{size[1]}-{stylizer}")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("size", "stylizer", "prepared"),
    [
        _tiny_case((1, 1), "per_style_with_metrics", (1, 1)),
        _tiny_case((1, 4000), "per_style_with_metrics", (1024, 1)),  # measured at 1x256: padded to 8x256
        _tiny_case((4000, 1), "per_style_with_metrics", (1, 1024)),
        _tiny_case((4000, 100), "per_style_with_metrics", (26, 1024)),  # a banner: 256x6 when measured
        _tiny_case((4000, 300), "per_style_with_metrics", (77, 1024)),  # 256x19: no padding
        _tiny_case((1, 1), "gatys", (1, 1)),
        _tiny_case((4000, 1), "gatys", (1, 1024)),
        _tiny_case((4000, 100), "gatys", (26, 1024)),
    ],
)
def test_pipeline_stylizes_and_measures_tiny_and_extreme_images(
    size: tuple[int, int], stylizer: str, prepared: tuple[int, int], random_vgg: VGGEncoder, fault_store: ObjectStore
) -> None:
    """The contract: no image is refused for its dimensions, and what _fetch accepts, the shard
    stylizes (at its own size after the max_side shrink) and measures (finite losses)."""
    key = f"catalog/demo/tiny/{size[0]}x{size[1]}-{stylizer}.png"
    fetched = _fetch_one(fault_store, _save(Image.new("RGB", size, (10, 200, 30)), "PNG"), key)
    assert fetched.error is None and fetched.pixels is not None
    assert fetched.pixels.shape == (3, size[1], size[0])
    artwork = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    if stylizer == "gatys":
        engine: Any = GatysEngine(random_vgg, artwork, GatysConfig(iterations=1, optimizer="adam"), max_side=1024)
    else:
        engine = InferenceEngine(TransformerNet(channels=8, n_residual=1), device="cpu", max_side=1024)
    x = engine.prepare(fetched.pixels)
    (y,) = engine.stylize_prepared([x])
    assert y.shape == x.shape == (3, *prepared)
    assert bool(torch.isfinite(y).all())
    content, style = StyleMetrics(random_vgg, artwork).measure(x, y)
    assert np.isfinite([content, style]).all() and content >= 0 and style > 0


def test_histogram_colour_preservation_of_a_single_pixel() -> None:
    x = torch.tensor([0.2, 0.6, 0.4]).reshape(3, 1, 1)
    y = preserve_colors(x, torch.rand(3, 1, 1), "histogram")
    assert y.shape == (3, 1, 1) and torch.allclose(y, x, atol=1e-5)  # one pixel: the photo's colour


# ---- 11. artworks: grayscale -> RGB, and the minimum size -------------------------------------
GREY_ARTWORKS = {
    "l_png": (_save(Image.new("L", (40, 36), 77), "PNG"), 77, 0),
    "l_jpeg": (_save(Image.new("L", (40, 36), 77), "JPEG", quality=95), 77, 2),
    "la_png": (_save(Image.new("LA", (40, 36), (77, 255)), "PNG"), 77, 0),
    "one_bit_png": (_save(Image.new("1", (40, 36), 1), "PNG"), 255, 0),
    "i16_png": (_save(Image.new("I;16", (40, 36), 32896), "PNG"), 128, 0),
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(GREY_ARTWORKS))
def test_grayscale_artwork_becomes_3_channel_rgb(kind: str, fault_store: ObjectStore) -> None:
    data, value, atol = GREY_ARTWORKS[kind]
    key = f"artwork/grey/{kind}.png"
    fault_store.put(key, data)
    pixels, sha = context.artwork_pixels(fault_store, key, Settings())
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 36, 40)
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[1], pixels[2])
    assert (pixels.int() - value).abs().max().item() <= atol
    assert sha == imageio.sha256_hex(data)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("size", "ok"),
    [((32, 32), True), ((64, 48), True), ((31, 200), False), ((16, 16), False), ((1, 4000), False), ((1, 1), False)],
)
def test_artwork_minimum_side(
    size: tuple[int, int], ok: bool, fault_store: ObjectStore, fault_settings: Settings
) -> None:
    style = f"tiny{size[0]}x{size[1]}"  # one style per case: the bucket is shared
    key = f"artwork/{style}/art.png"
    put = fault_store.put(key, _save(Image.new("L", size, 90), "PNG"))
    if ok:
        assert checked_artworks(style) == [(key, put.etag)]
        return
    with pytest.raises(
        InvalidInputError,
        match=rf"^artwork {key} is {size[0]}x{size[1]} px: too small "
        rf"\(at least {MIN_ARTWORK_SIDE} px a side\)$",
    ):
        checked_artworks(style)


@pytest.mark.integration
def test_undecodable_artwork_is_a_clear_error(fault_store: ObjectStore, fault_settings: Settings) -> None:
    fault_store.put("artwork/broken/art.jpg", PHOTOS[0].read_bytes()[:5000])
    with pytest.raises(ImageDecodeError, match="^truncated or corrupt JPEG data"):
        checked_artworks("broken")


# ---- 12. the pipeline: each bad input becomes a failed row -----------------------------------
def _corrupt_avif() -> bytes:
    """An AVIF with one byte changed so that Pillow raises RuntimeError (not one of its usual
    decode errors): found by a deterministic sweep, so it does not depend on encoder output."""
    data = _save(Image.new("RGB", (32, 24), (200, 30, 30)), "AVIF")
    for i in range(len(data)):
        for value in (0x00, 0xFF):
            mutated = data[:i] + bytes([value]) + data[i + 1 :]
            try:
                with Image.open(io.BytesIO(mutated)) as image:
                    image.load()
            except RuntimeError:
                return mutated
            except Exception:  # noqa: BLE001 (the other errors are not what this input is for)
                continue
    pytest.skip("no single-byte AVIF corruption raises RuntimeError with this Pillow")


PIPELINE_BAD = {
    # id: (bytes factory, error class, error message start)
    "empty": (lambda: b"", "decode_error", "empty file"),
    "truncated_jpeg": (lambda: PHOTOS[1].read_bytes()[:20_000], "decode_error", "truncated or corrupt JPEG data"),
    "truncated_png": (lambda: _PHOTO_PNG[: len(_PHOTO_PNG) // 2], "decode_error", "truncated or corrupt PNG data"),
    "text": (lambda: NOT_IMAGES["text"], "decode_error", "not a recognised image format"),
    "pdf": (lambda: NOT_IMAGES["pdf"], "decode_error", "not a recognised image format"),
    "bomb_png": (lambda: BOMBS["png"][0], "too_large", "PNG image is over the limit of 50000000 pixels"),
    "bomb_jpeg": (lambda: BOMBS["jpeg"][0], "too_large", "JPEG image is over the limit of 50000000 pixels"),
    "over_cap_png": (lambda: _png(8000, 8000), "too_large", "PNG image is 8000x8000 = 64000000 pixels"),
    "corrupt_avif": (_corrupt_avif, "decode_error", "truncated or corrupt AVIF data"),
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(PIPELINE_BAD))
def test_bad_catalog_image_becomes_a_failed_row(kind: str, fault_store: ObjectStore) -> None:
    if kind == "corrupt_avif" and not features.check("avif"):
        pytest.skip("Pillow without AVIF")
    make, error_class, message = PIPELINE_BAD[kind]
    data = make()
    key = f"catalog/demo/bad/{kind}.jpg"
    fetched = _fetch_one(fault_store, data, key)
    assert fetched.pixels is None and isinstance(fetched.error, ImageError)
    assert fetched.sha256 == imageio.sha256_hex(data)
    row = _failed_row({}, fetched)
    assert (row["status"], row["error_class"], row["image_key"]) == ("failed", error_class, key)
    assert row["error"].startswith(message), row["error"]
    assert row["input_sha256"] == fetched.sha256 and row["bytes_in"] == len(data)


@pytest.mark.integration
def test_catalog_object_over_the_byte_cap_becomes_a_failed_row(fault_store: ObjectStore) -> None:
    data, key = _PHOTO_PNG, "catalog/demo/cap/big.png"
    fault_store.put(key, data)
    fetched = _fetch(fault_store, _listed(fault_store, key), (DEFAULT_MAX_PIXELS, 1000))
    assert isinstance(fetched.error, ImageTooLargeError) and fetched.pixels is None
    assert fetched.sha256 is None  # its bytes were never read, so never hashed
    row = _failed_row({}, fetched)
    assert (row["status"], row["error_class"], row["bytes_in"]) == ("failed", "too_large", len(data))
    assert row["error"] == f"file is {len(data)} bytes, over the limit of 1000 bytes"  # decode_image's words


@pytest.mark.integration
def test_catalog_object_over_the_byte_cap_is_refused_from_its_listed_size(fault_store: ObjectStore) -> None:
    """Refused with no request at all: the object is deleted after the listing, and the outcome is
    still the byte-cap refusal, not the ObjectNotFoundError a download would have met."""
    data, key = _PHOTO_PNG, "catalog/demo/cap/listed.png"
    fault_store.put(key, data)
    item = _listed(fault_store, key)
    fault_store.delete(key)
    fetched = _fetch(fault_store, item, (DEFAULT_MAX_PIXELS, 1000))
    assert isinstance(fetched.error, ImageTooLargeError), fetched.error
    assert str(fetched.error) == f"file is {len(data)} bytes, over the limit of 1000 bytes"
    under_the_cap = _fetch(fault_store, item, LIMITS)  # the same item under the default cap: a download
    assert isinstance(under_the_cap.error, ObjectNotFoundError)


@pytest.mark.integration
def test_catalog_object_grown_past_the_cap_since_the_listing_is_refused_by_its_content_length(
    fault_store: ObjectStore,
) -> None:
    key = "catalog/demo/cap/grown.png"
    fault_store.put(key, _save(Image.new("RGB", (4, 4)), "PNG"))
    item = _listed(fault_store, key)  # listed small ...
    fault_store.put(key, _PHOTO_PNG)  # ... replaced by a bigger one before the shard reads it
    assert item[2] < 1000 < len(_PHOTO_PNG)
    fetched = _fetch(fault_store, item, (DEFAULT_MAX_PIXELS, 1000))
    assert isinstance(fetched.error, ImageTooLargeError) and fetched.sha256 is None
    row = _failed_row({}, fetched)
    assert row["error_class"] == "too_large"
    assert row["error"] == f"file is {len(_PHOTO_PNG)} bytes, over the limit of 1000 bytes"


@pytest.mark.integration
def test_store_get_refuses_an_object_over_max_bytes_without_reading_it(fault_store: ObjectStore) -> None:
    key, data = "catalog/demo/cap/huge.bin", bytes(range(256)) * (16 * 4096)  # 16 MiB
    fault_store.put(key, data)
    uri = f"s3://{fault_store.bucket}/{key}"
    with pytest.raises(
        ObjectTooLargeError, match=rf"^{uri} is {len(data)} bytes, over the limit of 1000 bytes$"
    ) as info:
        fault_store.get(key, max_bytes=1000)
    assert isinstance(info.value, StoreError) and (info.value.size, info.value.max_bytes) == (len(data), 1000)
    with pytest.raises(ObjectTooLargeError):
        fault_store.get_bytes(key, max_bytes=len(data) - 1)
    assert fault_store.get_bytes(key, max_bytes=len(data)) == data  # at the cap: fine

    def peak_bytes(max_bytes: int | None) -> int:
        tracemalloc.start()
        try:
            try:
                fault_store.get(key, max_bytes=max_bytes)
            except ObjectTooLargeError:
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak_bytes(None) > len(data)  # reading it does show (the measure can tell)
    assert peak_bytes(1000) < len(data) // 16  # refused from the Content-Length: the body stays unread


@pytest.mark.integration
def test_good_catalog_image_is_fetched(fault_store: ObjectStore) -> None:
    data = PHOTOS[0].read_bytes()
    fetched = _fetch_one(fault_store, data, "catalog/demo/my photo é.jpg")
    assert fetched.error is None and fetched.pixels is not None
    assert torch.equal(fetched.pixels, decode_image(data).pixels) and fetched.sha256 == imageio.sha256_hex(data)


# ---- 13. object keys -------------------------------------------------------------------------
SAFE_KEYS = [
    "catalog/demo/my photo.jpg",
    "catalog/demo/ leading space.jpg",
    "catalog/demo/été/café crème.png",  # NFC
    "catalog/demo/cafe\u0301.png",  # NFD: a different key from the NFC one, and just as valid
    "catalog/demo/日本 語/写真.webp",
    "catalog/demo/emoji 🎨.jpg",
    "catalog/demo/a..b.jpg",  # dots inside a name are not a '..' segment
    "catalog/demo/" + "é" * 125 + ".jpg",  # a 254-byte segment (the limit is 255 UTF-8 bytes)
]

UNSAFE_KEYS = {
    "../etc/passwd": "must not contain '.' or '..' segments",
    "catalog/../models/x.jpg": "must not contain '.' or '..' segments",
    "catalog/demo/..": "must not contain '.' or '..' segments",
    "catalog/./demo/x.jpg": "must not contain '.' or '..' segments",
    "/catalog/demo/x.jpg": "must not start with '/'",
    "/": "must not start with '/'",
    "catalog//demo/x.jpg": "must not contain '//' or end with '/'",
    "catalog/demo/": "must not contain '//' or end with '/'",
    "catalog\\demo\\x.jpg": "must not contain a backslash",
    "catalog/demo/x\x00.jpg": "must not contain control characters",
    "catalog/demo/x\n.jpg": "must not contain control characters",
    "catalog/demo/" + "é" * 128: "has a segment longer than 255 UTF-8 bytes",
    "": "must be a non-empty string",
}


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_validate_key_accepts_spaces_and_unicode(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", list(UNSAFE_KEYS))
def test_validate_key_refuses_traversal_and_absolute_keys(key: str) -> None:
    with pytest.raises(InvalidKeyError, match=UNSAFE_KEYS[key].replace("(", r"\(").replace(".", r"\.")) as info:
        validate_key(key)
    assert isinstance(info.value, StoreError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("key", [k for k in SAFE_KEYS if k.startswith("catalog/demo/")])
def test_output_key_stays_under_stylized_set(key: str) -> None:
    params = StylizeParams()
    out = output_key(key, "demo", "wave", "v0001", params)
    prefix = f"stylized/demo/wave/v0001/{params.hash[:8]}/"
    rel = key.removeprefix("catalog/demo/")
    assert out == prefix + (rel if rel.endswith(".jpg") else rel + ".jpg")
    if len(rel.rsplit("/", 1)[-1].encode()) <= 251:  # room for the ".jpg" the output may add
        assert validate_key(out) == out


@pytest.mark.integration
@pytest.mark.parametrize("key", ["catalog/demo/../../models/x.jpg", "catalog/demo/a/../b.jpg"])
def test_traversal_key_from_a_listing_is_a_failed_row_without_any_request(key: str, fault_store: ObjectStore) -> None:
    """S3 itself accepts such keys, so a listing may return one: reading it is refused up front.
    Nothing is stored under the key, so a request would have ended in ObjectNotFoundError."""
    fetched = _fetch(fault_store, (key, "etag", 1234), LIMITS)
    assert isinstance(fetched.error, InvalidKeyError) and fetched.sha256 is None
    row = _failed_row({}, fetched)
    assert (row["status"], row["error_class"]) == ("failed", "store_error")
    assert "must not contain '.' or '..' segments" in row["error"]
    # and the output key it would get could never be written either
    with pytest.raises(InvalidKeyError):
        validate_key(output_key(key, "demo", "wave", "v0001", StylizeParams()))


# ---- 14. a seeded fuzz: corrupted files of every format end in ImageError, quickly -----------
def _fuzz_sources() -> dict[str, bytes]:
    base = _photo((32, 24))
    other = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sources = {
        "jpeg": _save(base, "JPEG"),
        "png": _save(base, "PNG"),
        "bmp": _save(base, "BMP"),
        "tiff_lzw": _save(base, "TIFF", compression="tiff_lzw"),
        "webp": _save(base, "WEBP"),
        "gif_anim": _save(base, "GIF", save_all=True, append_images=[other]),
        "apng": _save(base, "PNG", save_all=True, append_images=[other]),
        "png16": _save(Image.new("I;16", (8, 8), 1000), "PNG"),
    }
    if features.check("avif"):
        sources["avif"] = _save(base, "AVIF")
    return sources


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", list(_fuzz_sources()))
def test_fuzzed_files_end_in_image_errors(fmt: str) -> None:
    data = _fuzz_sources()[fmt]
    rng = np.random.default_rng(7)
    outcomes: dict[str, int] = {}
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        try:
            decoded = decode_image(bytes(mutated))
            assert decoded.pixels.dtype == torch.uint8 and decoded.pixels.shape[0] == 3
            outcome = "ok"
        except (ImageDecodeError, ImageTooLargeError, UnsupportedImageError) as exc:
            outcome = exc.error_class
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 150 and set(outcomes) <= {"ok", "decode_error", "too_large", "unsupported_image"}
