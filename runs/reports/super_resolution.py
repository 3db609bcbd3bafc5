"""Super-resolution side by side: low-resolution copies of catalog photos to upscale, and a page
section (and sheet) of crops, bicubic | each model | the original, with each crop's Y-PSNR."""

from __future__ import annotations

import base64
import html
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
        body.append(
            "<tr>"
            + "".join(
                f'<td><img src="{data_uri(c)}" width="{cell}" alt="{html.escape(n)}">'
                f"<div>{html.escape(n)}: {s}</div></td>"
                for c, n, s in zip(cells, [*candidates, "original"], [*scores, html.escape(stem)], strict=True)
            )
            + "</tr>"
        )
    if not grid:
        return "<p>no upscaled images</p>"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "super_resolution.png").write_bytes(encode_image(contact_sheet(grid, cell=cell), "png"))
    return (
        f"<p>Photos of <code>{html.escape(hi)}</code> shrunk x{scale} (PIL bicubic) into "
        f"<code>{html.escape(lo)}</code>, then upscaled x{scale}: centre crops of {crop} px, "
        "shown enlarged; Y-PSNR of the whole image against the original (higher is closer; the "
        "perceptual model trades PSNR for sharper texture by design).</p>"
        f'<table class="grid">{"".join(body)}</table>'
    )


def data_uri(pixels: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "png")).decode()
