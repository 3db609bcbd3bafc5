"""HTML report of a catalog's stylization: contact sheet (inputs x styles) and manifest summary."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from runs import context
from runs.keys import catalog_prefix, is_image_key
from styleops.io.contact_sheet import contact_sheet, fit_to_cell
from styleops.io.images import decode_image, encode_image

SUMMARY_COLUMNS = ["method", "style", "model_version", "ok", "failed", "content_loss", "style_loss", "duration_ms"]


def column(spec: str) -> tuple[str, str]:
    """A contact-sheet column: 'monet' (the per-style model) or 'method:style', e.g. 'swap:monet'."""
    method, sep, style = spec.partition(":")
    return (method, style) if sep else (context.PER_STYLE, spec)


def latest_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The newest row per (image, method, style): what a reader of the catalog sees now."""
    if df.empty:
        return df
    keys = ["image_key", "method", "style"]
    return df.sort_values("finished_at").groupby(keys, as_index=False).tail(1).sort_values(keys)


def newest_outputs(prefix: str, method: str) -> dict[tuple[str, str], str]:
    """{(image_key, style): output_key} of the newest ok row per image and style of `method` in
    catalog `prefix` (what a side-by-side section shows)."""
    rows = context.manifest().read(filters=[("catalog", "=", prefix), ("method", "=", method), ("status", "=", "ok")])
    newest = latest_rows(rows)
    return {(r.image_key, r.style): r.output_key for r in newest.itertuples()}


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, style and version: ok/failed counts, mean losses and mean ms per image."""
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    g = df.groupby(["method", "style", "model_version"])
    out = g.agg(
        ok=("status", lambda s: int((s == "ok").sum())),
        failed=("status", lambda s: int((s == "failed").sum())),
        content_loss=("content_loss", "mean"),
        style_loss=("style_loss", "mean"),
        duration_ms=("duration_ms", "mean"),
    )
    return out.reset_index()[SUMMARY_COLUMNS]


def loss_curve_svg(
    history: list[dict[str, Any]], *, width: int = 360, height: int = 160, keys: tuple[str, ...] = ("content", "style")
) -> str:
    """A small inline SVG line chart of training losses (log scale) against step."""
    import math

    points = [h for h in history if all(h.get(k, 0) > 0 for k in keys)]
    if len(points) < 2:
        return "<p>no loss curve</p>"
    steps = [h["step"] for h in points]
    logs = {k: [math.log10(h[k]) for h in points] for k in keys}
    lo, hi = min(min(v) for v in logs.values()), max(max(v) for v in logs.values())
    pad, span = 30, (hi - lo) or 1.0

    def xy(step: float, value: float) -> str:
        x = pad + (step - steps[0]) / ((steps[-1] - steps[0]) or 1) * (width - 2 * pad)
        return f"{x:.1f},{height - pad - (value - lo) / span * (height - 2 * pad):.1f}"

    colors = {"content": "#1f77b4", "style": "#d62728", "tv": "#2ca02c", "total": "#444"}
    lines = "".join(
        f'<polyline fill="none" stroke="{colors.get(k, "#000")}" stroke-width="1.5" '
        f'points="{" ".join(xy(s_, v) for s_, v in zip(steps, vals))}"/>'
        f'<text x="{width - pad}" y="{14 + 12 * i}" font-size="11" text-anchor="end" '
        f'fill="{colors.get(k, "#000")}">{k}</text>'
        for i, (k, vals) in enumerate(logs.items())
    )
    axes = (
        f'<text x="{pad}" y="{height - 8}" font-size="10">step {steps[0]}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end">{steps[-1]}</text>'
        f'<text x="2" y="{pad}" font-size="10">1e{hi:.1f}</text>'
        f'<text x="2" y="{height - pad}" font-size="10">1e{lo:.1f}</text>'
    )
    return f'<svg width="{width}" height="{height}" role="img" aria-label="loss curve">{lines}{axes}</svg>'


def _thumb(data: bytes, cell: int) -> tuple[Any, str]:
    pixels = fit_to_cell(decode_image(data).pixels, cell)
    return pixels, "data:image/jpeg;base64," + base64.b64encode(encode_image(pixels, "jpeg", quality=85)).decode()


def write_report(
    out_dir: Path,
    catalog: str,
    styles: list[str] | dict[str, list[str]],
    *,
    cell: int = 256,
    title: str = "StyleOps run",
    sections: dict[str, str] | None = None,
) -> Path:
    """Write `index.html`, `contact_sheet.png` and `manifest.csv` for `catalog` into `out_dir`.

    styles: the contact sheet's columns, 'monet' (per-style model) or 'method:style' ('swap:monet');
    or {heading: columns}: one table per group on the page, each with the inputs' column, so a wide
    sheet fits a laptop screen (contact_sheet.png keeps every column in one image).
    sections: more of the page after the contact sheet, {heading: HTML}.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = catalog_prefix(catalog)
    st = context.store()
    groups = styles if isinstance(styles, dict) else {"": list(styles)}
    columns = [column(s) for group in groups.values() for s in group]
    df = context.manifest().read(filters=[("catalog", "=", prefix)])
    df = df[[(m, s) in columns for m, s in zip(df["method"], df["style"])]] if not df.empty else df
    current = latest_rows(df)
    images = sorted(i.key for i in st.list(prefix) if is_image_key(i.key))
    outputs = {(r.image_key, r.method, r.style): r for r in current.itertuples() if r.status == "ok"}

    grid, html_cells = [], []  # per image: the pixels of every column; the <td> of the input and each column
    for key in images:
        try:
            pixels, uri = _thumb(st.get_bytes(key), cell)
            cells = [f'<td><img src="{uri}" alt="{html.escape(key)}"><div>{html.escape(key[len(prefix) :])}</div></td>']
        except Exception as exc:  # an undecodable input still gets its row, with the reason
            pixels, cells = (
                None,
                [f'<td class="bad">{html.escape(key[len(prefix) :])}<br>{html.escape(type(exc).__name__)}</td>'],
            )
        row_pixels = [pixels]
        for method, style in columns:
            r = outputs.get((key, method, style))
            if r is None:
                failed = current[
                    (current.image_key == key) & (current["style"] == style) & (current["method"] == method)
                ]
                reason = failed["error"].iloc[0] if not failed.empty else "not stylized"
                cells.append(f'<td class="bad">{html.escape(str(reason))[:200]}</td>')
                row_pixels.append(None)
                continue
            p, uri = _thumb(st.get_bytes(r.output_key), cell)
            row_pixels.append(p)
            cells.append(
                f'<td><img src="{uri}" alt="{html.escape(r.output_key)}">'
                f"<div>{_losses(r.content_loss, r.style_loss)}</div></td>"
            )
        grid.append(row_pixels)
        html_cells.append(cells)

    if grid:
        (out_dir / "contact_sheet.png").write_bytes(encode_image(contact_sheet(grid, cell=cell), "png"))
    df.to_csv(out_dir / "manifest.csv", index=False)
    summary = summarize(df)
    curves = _curves(current, [s for m, s in columns if m == context.PER_STYLE])
    failures = (
        df[df.status == "failed"][["image_key", "method", "style", "error_class", "error"]]
        if not df.empty
        else pd.DataFrame()
    )
    page = _PAGE.format(
        title=html.escape(title),
        catalog=html.escape(st.uri(prefix)),
        n_images=len(images),
        n_rows=len(df),
        sheet=_grouped_tables(
            groups, [_style_header(st, current, method, style, cell // 2) for method, style in columns], html_cells
        ),
        summary=summary.to_html(index=False, float_format=lambda v: f"{v:,.1f}", border=0),
        failures=failures.to_html(index=False, border=0) if not failures.empty else "<p>none</p>",
        curves=curves,
        sections="".join(f"<h2>{html.escape(h)}</h2>\n{body}\n" for h, body in (sections or {}).items()),
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _grouped_tables(groups: dict[str, list[str]], headers: list[str], cells: list[list[str]]) -> str:
    """One <table class="grid"> per group (its heading above it), each row the input's cell then
    the group's columns. `headers` and each row of `cells` (after the input cell) follow the
    groups' columns in order."""
    parts, start = [], 0
    for heading, group in groups.items():
        span = slice(start, start + len(group))
        rows = "\n".join("<tr>" + row[0] + "".join(row[1:][span]) + "</tr>" for row in cells)
        parts.append(
            (f"<h3>{html.escape(heading)}</h3>\n" if heading else "")
            + f'<table class="grid"><tr><th>input</th>{"".join(headers[span])}</tr>\n{rows}\n</table>'
        )
        start += len(group)
    return "\n".join(parts)


def _style_header(st: Any, current: pd.DataFrame, method: str, style: str, size: int) -> str:
    """Column header: style, method and version, and thumbnails of the artwork (per-style: from
    the model card; other methods: the style's first artwork/<style>/ image; a blend
    'a=0.500,b=0.500': each of its styles' artwork, side by side)."""
    versions = (
        sorted({r.model_version for r in current.itertuples() if r.style == style and r.method == method})
        if not current.empty
        else []
    )
    label = f"<th>{html.escape(style)}" + ("" if method == context.PER_STYLE else f" · {html.escape(method)}")
    if not versions:
        return label + "</th>"
    try:
        if method == context.PER_STYLE:
            art_keys = [context.registry().card(context.PER_STYLE, style, versions[-1])["artwork_key"]]
        else:
            styles = [part.partition("=")[0] for part in style.split(",")]
            art_keys = [next(i.key for i in st.list(f"artwork/{name}/") if is_image_key(i.key)) for name in styles]
        thumbs = "".join(
            f'<img src="{_thumb(st.get_bytes(key), size if len(art_keys) <= 2 else 2 * size // len(art_keys))[1]}" '
            f'alt="{html.escape(key)}" style="display:inline-block">'
            for key in art_keys
        )
        return f"{label}<br><small>{html.escape(versions[-1])}</small><div>{thumbs}</div></th>"
    except Exception:  # the artwork may have been removed since: the column still has its name
        return label + "</th>"


def _curves(current: pd.DataFrame, styles: list[str]) -> str:
    """One loss-curve chart per (style, model version) seen in the rows, from the model cards."""
    if current.empty:
        return "<p>none</p>"
    reg, parts = context.registry(), []
    for style, version in sorted(
        {
            (r.style, r.model_version)
            for r in current.itertuples()
            if r.style in styles and r.method == context.PER_STYLE
        }
    ):
        card = reg.card(context.PER_STYLE, style, version)
        parts.append(
            f"<figure><figcaption>{html.escape(style)} {html.escape(version)} "
            f"({card['metrics'].get('steps', '?')} steps, "
            f"init {html.escape(str(card.get('init_from') or 'scratch'))})</figcaption>"
            f"{loss_curve_svg(card.get('loss_curve', []))}</figure>"
        )
    return '<div class="curves">' + "".join(parts) + "</div>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} \
td, th {{ padding: 6px; text-align: center; vertical-align: top; font-size: 13px; }}
table.grid img {{ display: block; margin: auto; }} td.bad {{ background: #fde8e8; color: #900; max-width: 256px; }}
.dataframe td, .dataframe th {{ border-bottom: 1px solid #ddd; text-align: right; }}
.curves {{ display: flex; flex-wrap: wrap; gap: 1em; }} figure {{ margin: 0; }} figcaption {{ font-size: 13px; }}
</style></head><body>
<h1>{title}</h1>
<p>Catalog <code>{catalog}</code>: {n_images} images, {n_rows} manifest rows. \
Losses are the training objective's weighted
terms measured on each output (lower is closer to the photo's content / the artwork's style).</p>
<h2>Contact sheet</h2>
{sheet}
{sections}<h2>Manifest summary</h2>
{summary}
<h2>Training loss curves</h2>
{curves}
<h2>Failures</h2>
{failures}
<p>Full rows: <a href="manifest.csv">manifest.csv</a> · one image: <a href="contact_sheet.png">contact_sheet.png</a></p>
</body></html>
"""


def _losses(content: float | None, style: float | None) -> str:
    """A contact-sheet cell's caption: its losses, or that they were not measured (--no-metrics,
    or outside a --metrics-sample)."""
    if pd.isna(content) or pd.isna(style):
        return "not measured"
    return f"content {content:,.0f} · style {style:,.0f}"
