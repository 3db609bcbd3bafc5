"""Translation side by side: HED line drawings of catalog photos to translate back (edges -> photo),
and a page section (and sheet) of drawing | each Pix2Pix model's output | the original photo."""

from __future__ import annotations

import html
from pathlib import Path

from safetensors.torch import load_file

from infra.settings import get_settings
from runs import context
from runs.keys import catalog_prefix, is_image_key
from runs.methods.pix2pix import METHOD
from runs.reports.catalog import newest_outputs
from runs.reports.super_resolution import data_uri
from styleops.data.makers import edge_drawing
from styleops.io.contact_sheet import contact_sheet, fit_to_cell
from styleops.io.images import decode_image, encode_image, resize_max_side, to_float
from styleops.io.weights import install_hed_side_weights, load_vgg_state_dict
from styleops.models.hed import HEDEdges

PIX2PIX = METHOD.name  # the method's (runs.methods.pix2pix)


def make_drawings(source: str, target: str, max_side: int, limit: int | None = None) -> list[str]:
    """PNG line drawings (HED edges, `styleops make-pairs --kind edges`'s A side) of the photos of
    catalog `source`, shrunk to `max_side` px, into catalog `target` under the same names."""
    cache = get_settings().cache_dir
    hed = HEDEdges(load_vgg_state_dict("hed", cache_dir=cache), load_file(install_hed_side_weights(cache)))
    st, src, dst = context.store(), catalog_prefix(source), catalog_prefix(target)
    written = []
    for key in sorted(i.key for i in st.list(src) if is_image_key(i.key))[:limit]:
        photo = resize_max_side(to_float(decode_image(st.get_bytes(key)).pixels), max_side)
        out = dst + Path(key[len(src) :]).with_suffix(".png").as_posix()
        st.put(out, encode_image(edge_drawing(hed, photo), "png"), content_type="image/png")
        written.append(out)
    return written


def edges_comparison(out_dir: Path, original: str, drawings: str, models: list[str], *, cell: int = 240) -> str:
    """An HTML section: per drawing of catalog `drawings`, the drawing, each Pix2Pix model's newest
    output, and the photo of catalog `original` it was drawn from; writes `translation.png`."""
    st = context.store()
    lo, hi = catalog_prefix(drawings), catalog_prefix(original)
    outputs = newest_outputs(lo, PIX2PIX)
    originals = {Path(i.key[len(hi) :]).stem: i.key for i in st.list(hi) if is_image_key(i.key)}
    grid, body = [], []
    for key in sorted(i.key for i in st.list(lo) if is_image_key(i.key)):
        stem = Path(key).stem
        if stem not in originals:
            continue
        named = {"drawing": decode_image(st.get_bytes(key)).pixels}
        named.update({m: decode_image(st.get_bytes(outputs[(key, m)])).pixels for m in models if (key, m) in outputs})
        named["photo"] = decode_image(st.get_bytes(originals[stem])).pixels
        cells = [fit_to_cell(x, cell) for x in named.values()]
        grid.append(cells)
        body.append(
            "<tr>"
            + "".join(
                f'<td><img src="{data_uri(c)}" alt="{html.escape(n)}"><div>{html.escape(n)}</div></td>'
                for c, n in zip(cells, named, strict=True)
            )
            + "</tr>"
        )
    if not grid:
        return "<p>no translated images</p>"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "translation.png").write_bytes(encode_image(contact_sheet(grid, cell=cell), "png"))
    return (
        f"<p>HED line drawings of <code>{html.escape(hi)}</code> (in <code>{html.escape(lo)}</code>), "
        "translated back into photos by the shipped Pix2Pix model, beside the photo they were drawn from. "
        "The model never saw these photos.</p>"
        f'<table class="grid">{"".join(body)}</table>'
    )
