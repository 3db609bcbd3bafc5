"""Contact sheets: a grid of images (inputs x styles) as one picture."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_to_cell(image: Tensor, cell: int) -> Tensor:
    """uint8 [3, H, W] -> uint8 [3, cell, cell]: shrunk to fit, aspect kept, centred on white."""
    h, w = image.shape[-2:]
    scale = cell / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(
        image[None].float(), size=(nh, nw), mode="bilinear", antialias=scale < 1, align_corners=False
    )[0]
    canvas = torch.full((3, cell, cell), 255.0)
    top, left = (cell - nh) // 2, (cell - nw) // 2
    canvas[:, top : top + nh, left : left + nw] = small
    return canvas.round().clamp(0, 255).to(torch.uint8)


def contact_sheet(rows: Sequence[Sequence[Tensor | None]], cell: int = 192, gap: int = 4) -> Tensor:
    """Grid of uint8 [3, H, W] images (None leaves a grey cell) -> uint8 [3, H', W'] on white."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    sheet = torch.full((3, gap + n_rows * (cell + gap), gap + n_cols * (cell + gap)), 255, dtype=torch.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = gap + i * (cell + gap), gap + j * (cell + gap)
            sheet[:, y : y + cell, x : x + cell] = fit_to_cell(image, cell) if image is not None else 200
    return sheet
