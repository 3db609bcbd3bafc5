"""Pair makers: turn photos into (A, B) training pairs with no outside data. Every maker maps a
photo [3, H, W] float RGB in [0, 1] to its A side; the photo itself is the B side, except for
`painted`, whose B side is the painting and A the photo.

- `edge_drawing`: HED edges as a black-on-white line drawing (how the reference's
  edges2shoes / edges2handbags were made), for edges -> photo.
- `grayscale`: Rec. 601 luminance in all three channels, for grayscale -> colour.
- `painted`: a style model's rendering (a per-style net or Gatys), for photo -> painting.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from styleops.errors import InvalidInputError
from styleops.models.hed import HEDEdges

MAKERS = ("edges", "gray", "painted")
_LUMA = (0.299, 0.587, 0.114)


def grayscale(photo: Tensor) -> Tensor:
    """[3, H, W] in [0, 1] -> [3, H, W]: the luminance in every channel."""
    weights = torch.tensor(_LUMA, dtype=photo.dtype, device=photo.device).view(3, 1, 1)
    return (photo * weights).sum(0, keepdim=True).expand(3, -1, -1).contiguous()


def edge_drawing(hed: HEDEdges, photo: Tensor, low: float = 0.55, high: float = 0.85) -> Tensor:
    """[3, H, W] in [0, 1] -> [3, H, W]: black strokes where HED's edge probability is above
    `high`, white below `low`, a ramp between (HED's raw map is grey over textured areas; the
    reference thresholded it too)."""
    if not 0 <= low < high <= 1:
        raise InvalidInputError(f"need 0 <= low < high <= 1, got {low}, {high}")
    p = hed(photo[None])[0]
    ink = ((p - low) / (high - low)).clamp(0, 1)
    return (1 - ink).expand(3, -1, -1).contiguous()


def painted(style: Callable[[Tensor], Tensor], photo: Tensor) -> Tensor:
    """[3, H, W] in [0, 1] -> [3, H, W] in [0, 1]: `style` ([N, 3, H, W] -> same) applied and clamped."""
    with torch.inference_mode():
        return style(photo[None])[0].clamp(0, 1)


def split_side_by_side(image: Tensor) -> tuple[Tensor, Tensor]:
    """The reference's aligned AB format: [C, H, 2W] -> (A [C, H, W], B [C, H, W]), A on the left."""
    w = image.shape[-1]
    if w % 2:
        raise InvalidInputError(f"a side-by-side AB image has an even width, got {w} px")
    return image[..., : w // 2], image[..., w // 2 :]
