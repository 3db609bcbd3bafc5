"""Device selection and mixed-precision policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from styleops.errors import InvalidInputError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} requested but CUDA is not available")
    return dev


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None means full fp32.

    'auto' is bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU (CPU autocast is
    slower than fp32 for these convs).
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """`torch.autocast` when dtype is set, a no-op otherwise."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
