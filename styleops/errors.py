"""Typed errors raised on purpose by StyleOps.

Image errors carry a short, stable ``error_class`` string that is written to manifest rows;
never change an existing value, only add new classes.
"""

from typing import ClassVar


class StyleOpsError(Exception):
    """Base of every error StyleOps raises on purpose."""


class ImageError(StyleOpsError):
    """Base of image problems; ``error_class`` is the manifest's stable label."""

    error_class: ClassVar[str] = "image_error"


class ImageDecodeError(ImageError):
    """Corrupt, truncated, empty or not an image at all."""

    error_class: ClassVar[str] = "decode_error"


class ImageTooLargeError(ImageError):
    """Pixel or byte cap exceeded, including decompression bombs."""

    error_class: ClassVar[str] = "too_large"


class UnsupportedImageError(ImageError):
    """Decodable but unusable (zero-sized, or a mode that cannot become RGB)."""

    error_class: ClassVar[str] = "unsupported_image"


class WeightsNotFoundError(StyleOpsError):
    """Model weights are missing; the message says how to provide them."""


class InvalidInputError(StyleOpsError, ValueError):
    """A caller passed an invalid argument (bad format, quality, shape, dtype...)."""


class DeviceOutOfMemoryError(ImageError):
    """The device ran out of memory for one image even alone and in the smallest tiles."""

    error_class: ClassVar[str] = "out_of_memory"
