"""The audit's pages: index.html (scope, findings by kind, failures, coverage, a daily chart and
sample outputs), findings.json and the Prefect artifact's markdown. Plain strings in, files out."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from runs.outputs import CRITICAL, KINDS, SEVERITY, count_findings

MAX_TABLE_FINDINGS = 1000  # the page lists this many; findings.json has them all


def _scope_text(scope: dict[str, Any]) -> str:
    parts = [f"{k} {v if not isinstance(v, list) else ', '.join(v)}" for k, v in scope.items() if v]
    return "; ".join(parts) or "every manifest row"


def summary_markdown(scope: dict[str, Any], counts: dict[str, int], rows: dict[str, Any]) -> str:
    """The artifact: scope, row counts and one line per finding kind."""
    lines = [
        f"# Manifest audit: {counts['critical']} critical, {counts['warnings']} warnings",
        "",
        (
            f"Scope: {_scope_text(scope)}. {rows['rows']} rows read, {rows['latest']} latest, "
            f"{rows['checked']} outputs checked, {rows['failed']} failed."
        ),
        "",
        "| kind | severity | count |",
        "|---|---|---|",
    ]
    lines += [f"| {kind} | {SEVERITY[kind]} | {counts[kind]} |" for kind in KINDS]
    return "\n".join(lines) + "\n"


def daily_chart_svg(daily: list[dict[str, Any]], *, width: int = 520, height: int = 180) -> str:
    """Bars: ok images per day; line (right axis): mean style loss per day."""
    if not daily:
        return "<p>no rows</p>"
    pad, n = 34, len(daily)
    top = max(d["images"] for d in daily) or 1
    slot = (width - 2 * pad) / n
    inner = height - 2 * pad
    bars = "".join(
        f'<rect x="{pad + i * slot + slot * 0.15:.1f}" y="{height - pad - d["images"] / top * inner:.1f}" '
        f'width="{slot * 0.7:.1f}" height="{d["images"] / top * inner:.1f}" fill="#9ecae1">'
        f"<title>{d['date']}: {d['images']} images</title></rect>"
        for i, d in enumerate(daily)
    )
    losses = [(i, d["style_loss"]) for i, d in enumerate(daily) if d["style_loss"] is not None]
    line = ""
    if losses:
        lo, hi = min(v for _, v in losses), max(v for _, v in losses)
        span = (hi - lo) or 1.0
        pts = [(pad + (i + 0.5) * slot, height - pad - ((v - lo) / span * 0.8 + 0.1) * inner) for i, v in losses]
        line = (
            f'<polyline fill="none" stroke="#d62728" stroke-width="1.5" '
            f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>'
            + "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#d62728"/>' for x, y in pts)
            + (
                f'<text x="{width - 2}" y="{pad - 6}" font-size="10" text-anchor="end" fill="#d62728">'
                f"style loss {lo:,.0f}–{hi:,.0f}</text>"
            )
        )
    axes = (
        f'<text x="2" y="{pad - 6}" font-size="10" fill="#3182bd">{top} images</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="10">{daily[0]["date"]}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end">{daily[-1]["date"]}</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="images and mean style loss per day">'
        f"{bars}{line}{axes}</svg>"
    )


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _findings_table(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "<p>none</p>"
    order = sorted(
        findings,
        key=lambda f: (
            f["severity"] != CRITICAL,
            KINDS.index(f["kind"]),
            f.get("image_key") or "",
            f.get("output_key") or "",
        ),
    )
    rows = "".join(
        f'<tr class="{f["severity"]}"><td>{_cell(f["kind"])}</td><td>{_cell(f["severity"])}</td>'
        f"<td>{_cell(f.get('image_key'))}</td>"
        f"<td>{_cell(f.get('style'))}</td><td><code>{_cell(f.get('output_key'))}</code></td><td>{_cell(f['detail'])}</td></tr>"
        for f in order[:MAX_TABLE_FINDINGS]
    )
    more = f"<p>{len(order) - MAX_TABLE_FINDINGS} more in findings.json</p>" if len(order) > MAX_TABLE_FINDINGS else ""
    return (
        "<table><tr><th>kind</th><th>severity</th><th>image</th><th>style</th><th>output</th><th>detail</th></tr>"
        f"{rows}</table>{more}"
    )


def _counts_table(counts: dict[str, int]) -> str:
    rows = "".join(
        f'<tr class="{SEVERITY[k] if counts[k] else ""}"><td>{k}</td><td>{SEVERITY[k]}</td><td>{counts[k]}</td></tr>'
        for k in KINDS
    )
    return f"<table><tr><th>kind</th><th>severity</th><th>count</th></tr>{rows}</table>"


def _failed_table(failed: dict[str, dict[str, Any]]) -> str:
    if not failed:
        return "<p>none</p>"
    rows = "".join(
        f"<tr><td>{_cell(c)}</td><td>{v['count']}</td><td>{'<br>'.join(_cell(k) for k in v['samples'])}</td></tr>"
        for c, v in failed.items()
    )
    return f"<table><tr><th>error class</th><th>rows</th><th>sample images</th></tr>{rows}</table>"


def _coverage_table(coverage: dict[str, Any] | None) -> str:
    if coverage is None:
        return "<p>not checked (give a catalog and styles)</p>"
    rows = "".join(
        f"<tr><td>{_cell(s)}</td><td>{_cell(v['version'] or 'none in production')}</td>"
        f"<td>{v['covered']}</td><td>{v['uncovered']}</td></tr>"
        for s, v in coverage["styles"].items()
    )
    return (
        f"<p><code>{_cell(coverage['catalog'])}</code>: {coverage['images']} images</p>"
        "<table><tr><th>style</th><th>production</th><th>covered</th><th>uncovered</th></tr>"
        f"{rows}</table>"
    )


def _sheet_table(pairs: list[dict[str, Any]]) -> str:
    if not pairs:
        return "<p>no intact ok outputs</p>"

    def img(uri: str | None, alt: str) -> str:
        return f'<img src="{uri}" alt="{_cell(alt)}">' if uri else '<span class="bad">unreadable</span>'

    rows = "".join(
        f"<tr><td>{img(p['input_uri'], p['image_key'])}<div>{_cell(p['image_key'])}</div></td>"
        f"<td>{img(p['output_uri'], p['output_key'])}"
        f"<div>{_cell(p['style'])} {_cell(p['model_version'])}</div></td></tr>"
        for p in pairs
    )
    return f'<table class="grid"><tr><th>input</th><th>output</th></tr>{rows}</table>'


def write_audit_report(
    out_dir: Path,
    scope: dict[str, Any],
    rows: dict[str, Any],
    coverage: dict[str, Any] | None,
    findings: list[dict[str, Any]],
    sheet: dict[str, Any],
) -> Path:
    """index.html (+ findings.json, contact_sheet.png when there are samples) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = count_findings(findings)
    (out_dir / "findings.json").write_text(
        json.dumps({"scope": scope, "counts": counts, "findings": findings}, indent=1, sort_keys=True), encoding="utf-8"
    )
    if sheet.get("png"):
        (out_dir / "contact_sheet.png").write_bytes(sheet["png"])
    page = _PAGE.format(
        title=f"StyleOps manifest audit: {counts['critical']} critical, {counts['warnings']} warnings",
        scope=_cell(_scope_text(scope)),
        n_rows=rows["rows"],
        n_latest=rows["latest"],
        n_checked=rows["checked"],
        n_failed=rows["failed"],
        counts=_counts_table(counts),
        findings=_findings_table(findings),
        failed=_failed_table(rows["failed_by_class"]),
        coverage=_coverage_table(coverage),
        sheet=_sheet_table(sheet.get("pairs", [])),
        chart=daily_chart_svg(rows["daily"]),
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }} \
td, th {{ padding: 4px 8px; text-align: left; vertical-align: top; font-size: 13px; border-bottom: 1px solid #ddd; }}
tr.critical td {{ background: #fde8e8; color: #900; }} tr.warning td {{ background: #fff6dd; }}
table.grid img {{ display: block; }} .bad {{ color: #900; }}
</style></head><body>
<h1>{title}</h1>
<p>Scope: {scope}. {n_rows} manifest rows read; {n_latest} latest per image, style, model and params;
{n_checked} ok outputs downloaded and checked against their recorded size and sha256; {n_failed} failed.</p>
<h2>Findings by kind</h2>
{counts}
<h2>Findings</h2>
{findings}
<h2>Failed rows by error class</h2>
{failed}
<h2>Coverage</h2>
{coverage}
<h2>Images and mean style loss per day</h2>
{chart}
<h2>Sample outputs</h2>
{sheet}
<p>All findings: <a href="findings.json">findings.json</a></p>
</body></html>
"""
