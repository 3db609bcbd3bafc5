"""Super-resolution side by side: low-resolution copies of catalog photos to upscale, and a page
section (and sheet) of crops, bicubic | each model | the original, with each crop's Y-PSNR."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import torch

from runs import context
from runs.keys import catalog_prefix, is_image_key
from runs.reports.catalog import newest_outputs
from styleops.evaluation.super_resolution import bicubic_upscale, degrade, psnr_y
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import decode_image, encode_image, to_uint8

UPSCALE = "upscale"  # the method's name (runs.methods.upscale)


def make_low_resolution(source: str, target: str, scale: int, limit: int | None = None) -> list[str]:
    """PNG copies of the photos of catalog `source`, downscaled by `scale` (PIL bicubic, no blur:
    the literature's protocol), into catalog `target` under the same names; returns their keys."""
    st, src, dst = context.store(), catalog_prefix(source), catalog_prefix(target)
    keys = sorted(i.key for i in st.list(src) if is_image_key(i.key))[:limit]
    written = []
    for key in keys:
        _, lr = degrade(decode_image(st.get_bytes(key)).pixels, scale)
        out = dst + Path(key[len(src) :]).with_suffix(".png").as_posix()
        st.put(out, encode_image(to_uint8(lr), "png"), content_type="image/png")
        written.append(out)
    return written


def comparison(
    out_dir: Path, original: str, low: str, models: list[str], scale: int, *, crop: int = 160, cell: int = 240
) -> str:
    """An HTML section comparing, per low-resolution photo of catalog `low`, centre crops of `crop`
    HR px: bicubic, each model's newest `upscale` output (models: super-resolution model names),
    and the original from catalog `original`; writes `super_resolution.png` (the same grid)."""
    st = context.store()
    lo, hi = catalog_prefix(low), catalog_prefix(original)
    outputs = newest_outputs(lo, UPSCALE)
    originals = {Path(i.key[len(hi) :]).stem: i.key for i in st.list(hi) if is_image_key(i.key)}
    grid, body = [], []
    for key in sorted(i.key for i in st.list(lo) if is_image_key(i.key)):
        stem = Path(key).stem
        if stem not in originals:
            continue
        hr, lr = degrade(decode_image(st.get_bytes(originals[stem])).pixels, scale)
        candidates = {"bicubic": bicubic_upscale(lr, scale)}
        for model in models:
            if (key, model) in outputs:
                candidates[model] = decode_image(st.get_bytes(outputs[(key, model)])).pixels.float() / 255
        h, w = hr.shape[-2:]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        window = (slice(None), slice(top, top + crop), slice(left, left + crop))
        cells = [to_uint8(x[window]) for x in (*candidates.values(), hr)]
        grid.append(cells)
        scores = [f"{float(psnr_y(x, hr, scale)):.2f} dB" for x in candidates.values()]
        names = [*candidates, "original"]
        captions = [f"{html.escape(n)}: {s}" for n, s in zip(names, [*scores, html.escape(stem)], strict=True)]
        body.append(image_row(cells, names, captions, f' width="{cell}"'))
    if not grid:
        return "<p>no upscaled images</p>"
    write_contact_sheet(out_dir / "super_resolution.png", grid, cell)
    return (
        f"<p>Photos of <code>{html.escape(hi)}</code> shrunk x{scale} (PIL bicubic) into "
        f"<code>{html.escape(lo)}</code>, then upscaled x{scale}: centre crops of {crop} px, "
        "shown enlarged; Y-PSNR of the whole image against the original (higher is closer; the "
        "perceptual model trades PSNR for sharper texture by design).</p>"
        f'<table class="grid">{"".join(body)}</table>'
    )


def data_uri(pixels: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "png")).decode()


def image_row(cells: Sequence[torch.Tensor], names: Sequence[str], captions: Sequence[str], img_attrs: str = "") -> str:
    """An HTML table row of images inline, each with its name as alt text and its caption (HTML)
    below; `img_attrs` go into every img tag."""
    return (
        "<tr>"
        + "".join(
            f'<td><img src="{data_uri(c)}"{img_attrs} alt="{html.escape(n)}"><div>{caption}</div></td>'
            for c, n, caption in zip(cells, names, captions, strict=True)
        )
        + "</tr>"
    )


def write_contact_sheet(path: Path, grid: list[list[torch.Tensor]], cell: int) -> None:
    """`grid`'s contact sheet (cells of `cell` px) as a PNG at `path`, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(contact_sheet(grid, cell=cell), "png"))
