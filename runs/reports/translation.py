"""Translation side by side: a look learned from before/after pairs. A page section (and sheet)
of, per catalog photo, the photo, the look itself (the output of the method and style that painted
the B side of the Pix2Pix model's training pairs) and each Pix2Pix model's output."""

from __future__ import annotations

import html
from pathlib import Path

from runs import context
from runs.keys import catalog_prefix, is_image_key
from runs.methods.pix2pix import METHOD
from runs.reports.catalog import column, newest_outputs
from runs.reports.super_resolution import image_row, write_contact_sheet
from styleops.io.contact_sheet import fit_to_cell
from styleops.io.images import decode_image

PIX2PIX = METHOD.name  # the method's (runs.methods.pix2pix)


def learned_look(
    out_dir: Path, catalog: str, target: str, models: list[str], *, cell: int = 240, limit: int | None = None
) -> str:
    """An HTML section: per photo of catalog `catalog` (the first `limit`) that a Pix2Pix model of
    `models` translated, the photo, the newest output of `target` ('method:style', the look the
    models learned from pairs) and each model's newest output; writes `translation.png`."""
    st = context.store()
    prefix = catalog_prefix(catalog)
    method, style = column(target)
    looks, outputs = newest_outputs(prefix, method), newest_outputs(prefix, PIX2PIX)
    grid, body = [], []
    for key in sorted(i.key for i in st.list(prefix) if is_image_key(i.key)):
        translated = [m for m in models if (key, m) in outputs]
        if not translated:
            continue
        if limit is not None and len(grid) >= limit:
            break
        named = {"photo": decode_image(st.get_bytes(key)).pixels}
        if (key, style) in looks:
            named[f"target: {target}"] = decode_image(st.get_bytes(looks[(key, style)])).pixels
        named.update({f"pix2pix: {m}": decode_image(st.get_bytes(outputs[(key, m)])).pixels for m in translated})
        cells = [fit_to_cell(x, cell) for x in named.values()]
        grid.append(cells)
        body.append(image_row(cells, list(named), [html.escape(n) for n in named]))
    if not grid:
        return "<p>no translated images</p>"
    write_contact_sheet(out_dir / "translation.png", grid, cell)
    return (
        f"<p>Photos of <code>{html.escape(prefix)}</code>, the look <code>{html.escape(target)}</code> gives "
        "them, and the shipped Pix2Pix model, which learned that look from before/after pairs "
        "(<code>styleops make-pairs --kind painted</code>: other photos and their paintings). "
        "The model never saw these photos.</p>"
        f'<table class="grid">{"".join(body)}</table>'
    )
