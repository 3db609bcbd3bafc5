"""Unit tests for styleops.io.images: inputs are built with Pillow in memory."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, JpegImagePlugin

from styleops.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    InvalidInputError,
    StyleOpsError,
    UnsupportedImageError,
)
from styleops.io.images import (
    DecodedImage,
    content_type,
    decode_image,
    encode_image,
    read_image,
    resize_max_side,
    sha256_hex,
    to_float,
    to_uint8,
)

CATALOG_JPEG = Path(__file__).resolve().parents[2] / "examples" / "catalog" / "kodim03.jpg"
WHITE = [255, 255, 255]


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _row(mode: str, values: list[object]) -> Image.Image:
    """A 1-row image of ``len(values)`` pixels."""
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


def _palette_row() -> Image.Image:
    image = _row("P", [0, 1])
    image.putpalette([255, 0, 0, 0, 0, 255])
    return image


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny, valid-CRC PNG whose IHDR declares ``width`` x ``height`` RGB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _rgb_list(decoded: DecodedImage) -> list[list[int]]:
    return decoded.pixels.permute(1, 2, 0).reshape(-1, 3).tolist()


def _wide(mode: str, values: list[int | float], dtype: str) -> Image.Image:
    return Image.frombytes(mode, (len(values), 1), np.array(values, dtype=dtype).tobytes())


MODE_CASES = [
    # id, source bytes, expected format, expected source mode, expected RGB per pixel, tolerance
    ("rgb", _save(_row("RGB", [(10, 20, 30), (200, 100, 0)]), "PNG"), "PNG", "RGB", [[10, 20, 30], [200, 100, 0]], 0),
    ("l", _save(_row("L", [0, 77, 255]), "PNG"), "PNG", "L", [[0] * 3, [77] * 3, WHITE], 0),
    ("one_bit", _save(_row("1", [0, 1]), "PNG"), "PNG", "1", [[0] * 3, WHITE], 0),
    ("la", _save(_row("LA", [(100, 0), (100, 255)]), "PNG"), "PNG", "LA", [WHITE, [100] * 3], 0),
    ("palette", _save(_palette_row(), "PNG"), "PNG", "P", [[255, 0, 0], [0, 0, 255]], 0),
    ("palette_transparency", _save(_palette_row(), "PNG", transparency=1), "PNG", "P", [[255, 0, 0], WHITE], 0),
    ("gif_palette", _save(_palette_row(), "GIF"), "GIF", "P", [[255, 0, 0], [0, 0, 255]], 0),
    (
        "rgba",
        _save(_row("RGBA", [(10, 20, 30, 0), (10, 20, 30, 255), (0, 0, 0, 128)]), "PNG"),
        "PNG",
        "RGBA",
        [WHITE, [10, 20, 30], [127] * 3],
        1,
    ),
    (
        "rgb_trns",
        _save(_row("RGB", [(10, 20, 30), (1, 2, 3)]), "PNG", transparency=(10, 20, 30)),
        "PNG",
        "RGB",
        [WHITE, [1, 2, 3]],
        0,
    ),
    ("l_trns", _save(_row("L", [7, 8]), "PNG", transparency=7), "PNG", "L", [WHITE, [8] * 3], 0),
    (
        "webp_rgba",
        _save(_row("RGBA", [(0, 0, 0, 0), (0, 255, 0, 255)]), "WEBP", lossless=True),
        "WEBP",
        "RGBA",
        [WHITE, [0, 255, 0]],
        0,
    ),
    (
        "cmyk_tiff",
        _save(_row("CMYK", [(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)]), "TIFF"),
        "TIFF",
        "CMYK",
        [WHITE, [0, 0, 0], [0, 255, 255]],
        0,
    ),
    ("cmyk_jpeg", _save(Image.new("CMYK", (8, 1), (0, 0, 0, 0)), "JPEG"), "JPEG", "CMYK", [WHITE] * 8, 2),
    (
        "i16_png",
        _save(_wide("I;16", [0, 32768, 65535, 257], "<u2"), "PNG"),
        "PNG",
        "I;16",
        [[0] * 3, [128] * 3, WHITE, [1] * 3],
        0,
    ),
    (
        "i16b_tiff",
        _save(_wide("I;16B", [0, 32768, 65535], ">u2"), "TIFF"),
        "TIFF",
        "I;16B",
        [[0] * 3, [128] * 3, WHITE],
        0,
    ),
    (
        "i32_tiff",
        _save(_wide("I", [-5, 32768, 65535, 70000], "<i4"), "TIFF"),
        "TIFF",
        "I",
        [[0] * 3, [128] * 3, WHITE, WHITE],
        0,
    ),
    ("float_tiff", _save(_wide("F", [127.6, -3.0, 300.0], "<f4"), "TIFF"), "TIFF", "F", [[128] * 3, [0] * 3, WHITE], 0),
    ("bmp", _save(_row("RGB", [(1, 2, 3)]), "BMP"), "BMP", "RGB", [[1, 2, 3]], 0),
]


@pytest.mark.parametrize(
    ("data", "fmt", "mode", "expected", "atol"),
    [case[1:] for case in MODE_CASES],
    ids=[case[0] for case in MODE_CASES],
)
def test_decode_mode_table(data: bytes, fmt: str, mode: str, expected: list[list[int]], atol: int) -> None:
    decoded = decode_image(data)
    assert decoded.pixels.dtype == torch.uint8
    assert decoded.pixels.shape == (3, 1, len(expected))
    assert decoded.pixels.is_contiguous()
    assert (decoded.format, decoded.mode, decoded.frames) == (fmt, mode, 1)
    assert decoded.exif_transposed is False
    got = torch.tensor(_rgb_list(decoded))
    assert (got - torch.tensor(expected)).abs().max().item() <= atol, _rgb_list(decoded)


def test_real_catalog_photo() -> None:
    decoded = read_image(CATALOG_JPEG)
    with Image.open(CATALOG_JPEG) as reference:
        expected = torch.from_numpy(np.asarray(reference.convert("RGB")).copy()).permute(2, 0, 1)
    assert (decoded.format, decoded.mode, decoded.frames) == ("JPEG", "RGB", 1)
    assert torch.equal(decoded.pixels, expected)
    assert decoded.pixels.shape[0] == 3 and min(decoded.pixels.shape[1:]) >= 256


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 1)])
def test_tiny_and_extreme_aspect_ratio(size: tuple[int, int]) -> None:
    decoded = decode_image(_save(Image.new("RGB", size, (9, 8, 7)), "PNG"))
    assert decoded.pixels.shape == (3, size[1], size[0])
    assert decoded.pixels[:, 0, 0].tolist() == [9, 8, 7]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_exif_orientation_6_rotates_clockwise(fmt: str) -> None:
    image = Image.new("RGB", (4, 2), (0, 0, 255))
    image.putpixel((0, 0), (255, 0, 0))  # top-left of the stored image
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    decoded = decode_image(_save(image, fmt, exif=exif, **options))
    assert decoded.exif_transposed is True
    assert decoded.pixels.shape == (3, 4, 2)  # 4x2 stored -> 2 wide, 4 high displayed
    if fmt != "JPEG":  # a lone pixel bleeds under JPEG; the lossless formats pin the corner exactly
        assert decoded.pixels[:, 0, 1].tolist() == [255, 0, 0]  # stored top-left -> top-right
        assert decoded.pixels[:, 0, 0].tolist() == [0, 0, 255]


def test_exif_orientation_1_is_not_transposed() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    decoded = decode_image(_save(Image.new("RGB", (4, 2)), "PNG", exif=exif))
    assert decoded.exif_transposed is False
    assert decoded.pixels.shape == (3, 2, 4)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_decodes_first_frame(fmt: str) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (5, 4), colour) for colour in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    decoded = decode_image(data)
    assert (decoded.format, decoded.frames) == (fmt, 3)
    assert decoded.pixels.shape == (3, 4, 5)
    assert decoded.pixels.reshape(3, -1).unique(dim=1).tolist() == [[255], [0], [0]]


def _noise_image() -> Image.Image:
    generator = np.random.default_rng(0)
    return Image.fromarray(generator.integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("fmt", "data"),
    [("JPEG", CATALOG_JPEG.read_bytes()), ("PNG", _save(_noise_image(), "PNG"))],
    ids=["jpeg", "png"],
)
def test_truncated_file_fails(fmt: str, data: bytes) -> None:
    with pytest.raises(ImageDecodeError, match=fmt):
        decode_image(data[: len(data) // 2])


def test_random_bytes_named_jpg_fail(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError, match="not a recognised image format") as info:
        read_image(path)
    assert info.value.error_class == "decode_error"


def test_format_outside_allow_list_is_not_recognised() -> None:
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_image(_save(Image.new("RGB", (2, 2)), "PPM"))


def test_zero_bytes_fail(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="empty file"):
        decode_image(b"")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty file"):
        read_image(tmp_path / "empty.png")


def test_huge_declared_size_is_too_large() -> None:
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(_png_header_only(100_000, 100_000))
    assert info.value.error_class == "too_large"


def test_huge_declared_size_without_pillow_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our own check must still hold
    with pytest.raises(ImageTooLargeError, match="100000x100000"):
        decode_image(_png_header_only(100_000, 100_000))


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_too_large() -> None:
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        decode_image(_png_header_only(10_000, 10_000))  # between Pillow's warning and error caps


def test_max_pixels_is_checked() -> None:
    data = _save(Image.new("RGB", (10, 10)), "PNG")
    assert decode_image(data, max_pixels=100).pixels.shape == (3, 10, 10)
    with pytest.raises(ImageTooLargeError, match="10x10 = 100 pixels"):
        decode_image(data, max_pixels=99)


def test_max_bytes_is_checked(tmp_path: Path) -> None:
    data = _save(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(data, max_bytes=len(data) - 1)
    path = tmp_path / "small.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        read_image(path, max_bytes=len(data) - 1)
    assert read_image(str(path), max_bytes=len(data)).pixels.shape == (3, 10, 10)


def test_zero_sized_image_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's readers refuse zero sizes themselves; the guard covers any that does not.
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: Image.new("RGB", (0, 3)))
    with pytest.raises(UnsupportedImageError) as info:
        decode_image(b"anything")
    assert info.value.error_class == "unsupported_image"


def test_invalid_limits() -> None:
    with pytest.raises(InvalidInputError):
        decode_image(b"x", max_pixels=0)


def test_error_hierarchy() -> None:
    for error in (ImageDecodeError, ImageTooLargeError, UnsupportedImageError):
        assert issubclass(error, ImageError) and issubclass(error, StyleOpsError)
    assert issubclass(InvalidInputError, ValueError)


def _random_pixels(height: int = 17, width: int = 23) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def test_png_round_trip_is_exact() -> None:
    pixels = _random_pixels()
    decoded = decode_image(encode_image(pixels, "PNG"))
    assert decoded.format == "PNG"
    assert torch.equal(decoded.pixels, pixels)
    assert torch.equal(decode_image(encode_image(to_float(pixels), "png")).pixels, pixels)


def test_float_pixels_are_clamped() -> None:
    pixels = torch.tensor([-1.0, 0.5, 2.0]).reshape(1, 1, 3).expand(3, 1, 3)
    assert _rgb_list(decode_image(encode_image(pixels, "png"))) == [[0] * 3, [128] * 3, WHITE]


def test_jpeg_round_trip_is_close() -> None:
    pixels = read_image(CATALOG_JPEG).pixels
    data = encode_image(pixels, "JPEG", quality=90)
    decoded = decode_image(data)
    assert decoded.format == "JPEG" and decoded.pixels.shape == pixels.shape
    assert (decoded.pixels.float() - pixels.float()).abs().mean().item() < 3.0
    with Image.open(io.BytesIO(data)) as image:
        assert JpegImagePlugin.get_sampling(image) == 2  # 4:2:0


def test_webp_is_decodable() -> None:
    pixels = torch.full((3, 20, 30), 128, dtype=torch.uint8)
    decoded = decode_image(encode_image(pixels, "WebP", quality=80))
    assert decoded.format == "WEBP" and decoded.pixels.shape == (3, 20, 30)
    assert (decoded.pixels.float() - 128).abs().max().item() <= 3


@pytest.mark.parametrize("quality", [0, 96, 90.0, True, -5])
def test_invalid_quality(quality: object) -> None:
    with pytest.raises(InvalidInputError, match="quality"):
        encode_image(_random_pixels(), "jpeg", quality=quality)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["gif", "bmp", "", "jpeg2000"])
def test_invalid_encode_format(fmt: str) -> None:
    with pytest.raises(InvalidInputError, match="format"):
        encode_image(_random_pixels(), fmt)


@pytest.mark.parametrize(
    "pixels",
    [
        torch.zeros(4, 5, 5, dtype=torch.uint8),
        torch.zeros(5, 5, dtype=torch.uint8),
        torch.zeros(3, 0, 5, dtype=torch.uint8),
        torch.zeros(3, 5, 5, dtype=torch.int64),
        torch.full((3, 5, 5), float("nan")),
    ],
    ids=["four_channels", "two_dims", "empty", "int64", "nan"],
)
def test_invalid_encode_pixels(pixels: torch.Tensor) -> None:
    with pytest.raises(InvalidInputError):
        encode_image(pixels, "png")


def test_content_type() -> None:
    assert content_type("jpeg") == "image/jpeg"
    assert content_type("JPEG") == "image/jpeg"
    assert content_type("MPO") == "image/jpeg"
    assert content_type("png") == "image/png"
    assert content_type("WebP") == "image/webp"
    with pytest.raises(InvalidInputError):
        content_type("exe")


def test_to_float_and_to_uint8_round_trip() -> None:
    every_value = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 1, 256).expand(2, 3, 1, 256)
    as_float = to_float(every_value)
    assert as_float.dtype == torch.float32 and as_float.shape == every_value.shape
    assert as_float.min().item() == 0.0 and as_float.max().item() == 1.0
    assert torch.equal(to_uint8(as_float), every_value)
    assert to_uint8(torch.tensor([-0.5, 0.4 / 255, 0.6 / 255, 1.5])).tolist() == [0, 0, 1, 255]
    assert to_uint8(every_value) is every_value
    with pytest.raises(InvalidInputError):
        to_float(as_float)


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((3, 200, 300), 150, (3, 100, 150)),  # 300x200 -> 150x100
        ((3, 300, 200), 150, (3, 150, 100)),
        ((2, 3, 200, 300), 150, (2, 3, 100, 150)),
        ((3, 1, 2000), 100, (3, 1, 100)),
        ((3, 333, 100), 100, (3, 100, 30)),
    ],
)
def test_resize_max_side_keeps_aspect_ratio(shape: tuple[int, ...], max_side: int, expected: tuple[int, ...]) -> None:
    x = torch.full(shape, 0.25)
    out = resize_max_side(x, max_side)
    assert out.shape == expected
    assert torch.allclose(out, torch.full(expected, 0.25))


@pytest.mark.parametrize("max_side", [None, 300, 1000])
def test_resize_max_side_never_upsizes(max_side: int | None) -> None:
    x = torch.rand(3, 200, 300)
    assert resize_max_side(x, max_side) is x


def test_resize_max_side_is_antialiased() -> None:
    stripes = torch.zeros(1, 64, 64)
    stripes[..., ::2] = 1.0  # one-pixel stripes average to grey when downsized 8x
    out = resize_max_side(stripes, 8)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.02)


@pytest.mark.parametrize(
    ("x", "max_side"),
    [
        (torch.zeros(3, 10, 10), 0),
        (torch.zeros(3, 10, 10, dtype=torch.uint8), 5),
        (torch.zeros(10, 10), 5),
    ],
)
def test_resize_max_side_rejects_bad_input(x: torch.Tensor, max_side: int) -> None:
    with pytest.raises(InvalidInputError):
        resize_max_side(x, max_side)


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_module_does_not_import_pipeline_dependencies() -> None:
    code = (
        "import sys, styleops.io.images, styleops.errors; "
        "print(sorted({'prefect', 'boto3', 'pandas'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
