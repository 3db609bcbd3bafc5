"""Audit of the run manifest against the object store (the checks; tasks/audit.py adds Prefect's
names and run logger): are the outputs it names still there, with the bytes it recorded; what
failed; what looks off; what is not covered.

Findings are plain dicts: {"kind", "severity", "image_key"?, "style"?, "output_key"?, "detail"}
(optional fields only where they apply; runs.outputs, which checks the outputs). Kinds and their
severity:

    missing_output   critical  an `ok` row's output object is gone
    tampered_output  critical  its size or sha256 differs from the row (or fails the store's own check)
    uncovered        critical  a catalog image without an `ok` row for a style's production version
    duplicate        warning   `ok` rows of the same input bytes, model and params with different outputs
    outlier          warning   style_loss more than k x MAD from its (style, model_version) median
    stale            warning   an `ok` per-style row whose style has a newer production version
    orphan           warning   an object under stylized/ that no manifest row names

Only the latest row per (catalog, image_key, style, model_version, params_hash) counts for the
output checks, outliers, stale rows and failures: what a reader of the catalog sees now.
"""

from __future__ import annotations

import base64
import json
import math
import shlex
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from infra.registry import RegistryError
from runs import context, methods
from runs.keys import catalog_prefix, is_image_key
from runs.outputs import check_outputs, count_findings, finding, present
from runs.spec import RunSpec, params_from_dict

GROUP = ["catalog", "image_key", "style", "model_version", "params_hash"]
COLUMNS = [
    *GROUP,
    "run_id",
    "method",
    "input_etag",
    "output_key",
    "output_sha256",
    "bytes_out",
    "status",
    "error_class",
    "error",
    "style_loss",
    "finished_at",
    "params_json",
]
OUTLIER_MIN_ROWS = 5  # fewer rows per (style, model_version) give no meaningful median absolute deviation
MAX_SAMPLES = 8  # sample ok outputs for the report's contact sheet
MAX_FAILED_SAMPLES = 5  # sample image keys per error class


# ---- reading the manifest ------------------------------------------------------------------------
def parse_when(value: str | None, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime (naive ones taken as UTC). A bare date is
    its midnight, or with `end` the next midnight (so `until="2026-03-01"` includes that day)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=UTC)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO date (2026-03-01) or date-time, got {value!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def manifest_filters(
    run_id: str | None = None, since: str | None = None, until: str | None = None, catalog: str | None = None
) -> list[tuple[str, str, Any]]:
    """DNF filters for the manifest: run, catalog prefix, finished_at from `since` to `until` (both
    included; a bare-date `until` includes its whole day)."""
    start, stop = parse_when(since), parse_when(until, end=True)
    whole_days = (
        until is not None and len(until) == 10
    )  # a bare date `until` includes its day: stop is the next midnight, excluded
    if start is not None and stop is not None and (start > stop or (start == stop and whole_days)):
        raise ValueError(f"since ({since}) must not come after until ({until})")
    filters: list[tuple[str, str, Any]] = []
    if run_id is not None:
        filters.append(("run_id", "=", run_id))
    if catalog is not None:
        filters.append(("catalog", "=", catalog_prefix(catalog)))
    if start is not None:
        filters.append(("finished_at", ">=", start))
    if stop is not None:
        filters.append(("finished_at", "<" if whole_days else "<=", stop))
    return filters


def read_rows(
    run_id: str | None = None, since: str | None = None, until: str | None = None, catalog: str | None = None
) -> pd.DataFrame:
    """The manifest rows the audit looks at (COLUMNS only)."""
    filters = manifest_filters(run_id, since, until, catalog)
    return context.manifest().read(filters=filters or None, columns=COLUMNS)


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """The newest row (by finished_at) per (catalog, image_key, style, model_version, params_hash)."""
    if df.empty:
        return df
    ordered = df.sort_values("finished_at", na_position="first", kind="stable")
    return (
        ordered.groupby(GROUP, dropna=False, sort=False)
        .tail(1)
        .sort_values(["image_key", "style", "model_version"], kind="stable")
        .reset_index(drop=True)
    )


# ---- checks on rows --------------------------------------------------------------------------------
def repairs(rows: list[dict[str, Any]], checks: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """What re-renders the missing and tampered outputs among `rows` (`ok` rows and their
    `check_outputs` findings): one {"command", "catalog", "style", "model_version", "missing",
    "tampered"} per run setting (catalog, style, method, model version, params), sorted."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row, found in zip(rows, checks, strict=True):
        if found is None or found["kind"] not in ("missing_output", "tampered_output"):
            continue
        key = tuple(str(row.get(k)) for k in ("catalog", "style", "method", "model_version", "params_hash"))
        group = groups.setdefault(
            key,
            {
                "command": repair_command(row),
                "catalog": row["catalog"],
                "style": row["style"],
                "model_version": row["model_version"],
                "missing": 0,
                "tampered": 0,
            },
        )
        group["missing" if found["kind"] == "missing_output" else "tampered"] += 1
    return [groups[k] for k in sorted(groups)]


def repair_command(row: dict[str, Any]) -> str:
    """`styleops stylize ... --repair` for a manifest row: the spec of its run (`RunSpec.cli_args`)
    from its catalog, style (or blend), method, the model and version its method's label pins
    (`Method.pinned`) and its params_json, so the rerun plans the same model version and params
    hash and redoes only the broken outputs."""
    try:
        settings = json.loads(row.get("params_json") or "{}")
    except (TypeError, ValueError):
        settings = {}
    params = params_from_dict({**settings, "method": row.get("method") or context.PER_STYLE})
    method = methods.find(params.method)  # None: a plug-in no longer registered, named as it was
    model, version = method.pinned(str(row.get("model_version") or "")) if method is not None else (None, None)
    spec = RunSpec(str(row["catalog"]), str(row["style"]), model=model, version=version, params=params)
    return shlex.join(["styleops", "stylize", *spec.cli_args(), "--repair"])


def duplicate_findings(df: pd.DataFrame) -> list[dict[str, Any]]:
    """`ok` rows of the same image, style, model, params and input bytes (etag) whose outputs differ:
    the same inputs should give the same output, so one of them was replaced or is not reproducible.
    (Rows of other input bytes, a catalog image changed since, are expected to differ.)"""
    ok = df[(df["status"] == "ok") & df["output_sha256"].notna()]
    found = []
    for keys, group in ok.groupby([*GROUP, "input_etag"], dropna=False, sort=True):
        shas = sorted(set(group["output_sha256"]))
        if len(shas) > 1:
            record = dict(zip([*GROUP, "input_etag"], keys, strict=True))
            runs = sorted(set(group["run_id"]))
            out = group.sort_values("finished_at", na_position="first")["output_key"].iloc[-1]
            found.append(
                finding(
                    "duplicate",
                    (
                        f"{len(group)} ok rows ({record['model_version']}, params {record['params_hash']}; "
                        f"runs {', '.join(runs)}) with {len(shas)} different output sha256s"
                    ),
                    image_key=record["image_key"],
                    style=record["style"],
                    output_key=out if present(out) else None,
                )
            )
    return found


def outlier_findings(current_ok: pd.DataFrame, k: float = 5.0) -> list[dict[str, Any]]:
    """Rows whose style_loss is more than `k` median absolute deviations from the median of their
    (style, model_version). Groups of fewer than OUTLIER_MIN_ROWS rows, or with a MAD of 0, are skipped."""
    found = []
    rows = current_ok[current_ok["style_loss"].notna()]
    for (style, version), group in rows.groupby(["style", "model_version"], sort=True):
        losses = group["style_loss"].astype(float)
        if len(losses) < OUTLIER_MIN_ROWS:
            continue
        median = float(losses.median())
        mad = float((losses - median).abs().median())
        if not mad > 0:
            continue
        for r in group.itertuples():
            distance = abs(float(r.style_loss) - median) / mad
            if math.isfinite(distance) and distance > k:
                found.append(
                    finding(
                        "outlier",
                        (
                            f"style_loss {r.style_loss:,.1f} is {distance:.1f} x MAD ({mad:,.1f}) "
                            f"from the median {median:,.1f} of {style} {version}"
                        ),
                        image_key=r.image_key,
                        style=style,
                        output_key=r.output_key if present(r.output_key) else None,
                    )
                )
    return found


def version_number(version: Any) -> int | None:
    """'v0012' -> 12; anything else (a multi-style 'name/v0002') -> None."""
    if isinstance(version, str) and version[:1] == "v" and version[1:].isdigit():
        return int(version[1:])
    return None


def production_versions(styles: Iterable[str]) -> dict[str, str | None]:
    """style -> its per-style production version (None: none promoted, or not a model name)."""
    reg, found = context.registry(), {}
    for style in sorted(set(styles)):
        try:
            found[style] = reg.production(context.PER_STYLE, style)
        except RegistryError:
            found[style] = None
    return found


def stale_findings(current_ok: pd.DataFrame, production: dict[str, str | None]) -> list[dict[str, Any]]:
    """Per-style `ok` rows made by an older model than the style's production version."""
    found = []
    rows = current_ok[current_ok["method"] == context.PER_STYLE]
    for r in rows.itertuples():
        prod = production.get(r.style)
        mine, newest = version_number(r.model_version), version_number(prod)
        if mine is not None and newest is not None and newest > mine:
            found.append(
                finding(
                    "stale",
                    f"made with {r.model_version}; production is {prod}",
                    image_key=r.image_key,
                    style=r.style,
                    output_key=r.output_key if present(r.output_key) else None,
                )
            )
    return found


def failed_by_class(current: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """error_class -> {"count", "samples": first image keys} of the latest rows that failed."""
    failed = current[current["status"] == "failed"]
    out = {}
    for error_class, group in failed.groupby(failed["error_class"].fillna("unknown"), sort=True):
        keys = sorted(group["image_key"])
        out[str(error_class)] = {"count": len(group), "samples": keys[:MAX_FAILED_SAMPLES]}
    return out


def daily_stats(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per UTC day of finished_at: ok and failed rows, and the mean style_loss of the ok ones."""
    rows = df[df["finished_at"].notna()]
    if rows.empty:
        return []
    days = rows["finished_at"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    out = []
    for day, group in rows.groupby(days, sort=True):
        ok = group[group["status"] == "ok"]
        losses = ok["style_loss"].dropna()
        out.append(
            {
                "date": str(day),
                "images": len(ok),
                "failed": int((group["status"] == "failed").sum()),
                "style_loss": float(losses.mean()) if len(losses) else None,
            }
        )
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values."""
    return [{k: (v if present(v) else None) for k, v in r.items()} for r in df.astype(object).to_dict("records")]


def audit_rows(
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    catalog: str | None = None,
    mad_k: float = 5.0,
    *,
    log: context.Logger = context.log,
) -> dict[str, Any]:
    """Audit the manifest rows selected by run, finished_at range (ISO dates; `until` inclusive) and
    catalog against the store: every latest `ok` row's output is downloaded and checked.

    Returns {"rows", "latest", "ok", "failed", "checked", "findings", "failed_by_class", "daily", "samples", "repairs"}:
    samples are up to MAX_SAMPLES intact ok outputs {"image_key", "output_key", "style", "model_version"};
    repairs the `styleops stylize ... --repair` commands that re-render the missing and tampered outputs
    (see `repairs`).
    """
    df = read_rows(run_id, since, until, catalog)
    current = latest(df)
    current_ok = current[current["status"] == "ok"] if not current.empty else current
    st = context.store()
    ok_records = _records(current_ok)
    checks = check_outputs(st, ok_records)
    findings = [f for f in checks if f is not None]
    if not df.empty:
        findings += duplicate_findings(df)
        findings += outlier_findings(current_ok, mad_k)
        findings += stale_findings(
            current_ok, production_versions(current_ok.loc[current_ok["method"] == context.PER_STYLE, "style"])
        )
    intact = [r for r, f in zip(ok_records, checks, strict=True) if f is None]
    samples = [{k: r[k] for k in ("image_key", "output_key", "style", "model_version")} for r in intact[:MAX_SAMPLES]]
    result = {
        "rows": len(df),
        "latest": len(current),
        "ok": len(current_ok),
        "failed": int((current["status"] == "failed").sum()) if not current.empty else 0,
        "checked": len(ok_records),
        "findings": findings,
        "failed_by_class": failed_by_class(current) if not current.empty else {},
        "daily": daily_stats(df) if not df.empty else [],
        "samples": samples,
        "repairs": repairs(ok_records, checks),
    }
    counts = count_findings(findings)
    log.info(
        "audited %d manifest rows (%d latest, %d outputs checked): %d critical, %d warnings",
        result["rows"],
        result["latest"],
        result["checked"],
        counts["critical"],
        counts["warnings"],
    )
    return result


def orphans(prefix: str = "stylized/", *, log: context.Logger = context.log) -> list[str]:
    """Objects under `prefix` that no manifest row (of any status or run) names as its output_key, sorted."""
    named = set(context.manifest().read_arrow(columns=["output_key"])["output_key"].drop_null().to_pylist())
    orphans = sorted(info.key for info in context.store().list(prefix) if info.key not in named)
    log.info("%d objects under %s that no manifest row names", len(orphans), prefix)
    return orphans


def orphan_findings(keys: Iterable[str]) -> list[dict[str, Any]]:
    return [finding("orphan", "no manifest row names this object", output_key=key) for key in keys]


def coverage(catalog: str, styles: list[str], *, log: context.Logger = context.log) -> dict[str, Any]:
    """Every image of catalog/<set>/ needs an `ok` per-style row of each style's production version
    for its current bytes (same input etag, any params). Missing ones are `uncovered` findings,
    with the latest failure as the reason when there is one; a style with no production version
    is one `uncovered` finding without an image key.

    Returns {"catalog", "images", "styles": {style: {"version", "covered", "uncovered"}}, "findings"}.
    """
    prefix = catalog_prefix(catalog)
    images = {info.key: info.etag for info in context.store().list(prefix) if is_image_key(info.key)}
    production = production_versions(styles)
    rows = context.manifest().read(
        filters=[("catalog", "=", prefix), ("method", "=", context.PER_STYLE)],
        columns=["image_key", "style", "model_version", "input_etag", "status", "error_class", "finished_at"],
    )
    findings, per_style = [], {}
    for style in dict.fromkeys(styles):
        version = production[style]
        if version is None:
            findings.append(finding("uncovered", f"{style} has no production per-style version", style=style))
            per_style[style] = {"version": None, "covered": 0, "uncovered": len(images)}
            continue
        mine = rows[(rows["style"] == style) & (rows["model_version"] == version)].sort_values(
            "finished_at", na_position="first"
        )
        ok = set(
            zip(
                mine.loc[mine["status"] == "ok", "image_key"],
                mine.loc[mine["status"] == "ok", "input_etag"],
                strict=True,
            )
        )
        failures = {
            (r.image_key, r.input_etag): r.error_class for r in mine[mine["status"] == "failed"].itertuples()
        }  # latest wins
        uncovered = 0
        for key, etag in sorted(images.items()):
            if (key, etag) in ok:
                continue
            uncovered += 1
            reason = failures.get((key, etag))
            detail = f"no ok row for {style} {version} with the current bytes (etag {etag})" + (
                f"; latest attempt failed: {reason}" if reason else ""
            )
            findings.append(finding("uncovered", detail, image_key=key, style=style))
        per_style[style] = {"version": version, "covered": len(images) - uncovered, "uncovered": uncovered}
    log.info(
        "coverage of %s (%d images): %s",
        prefix,
        len(images),
        ", ".join(f"{s} {v['version']} {v['covered']}/{len(images)}" for s, v in per_style.items()),
    )
    return {"catalog": prefix, "images": len(images), "styles": per_style, "findings": findings}


def sample_sheet(samples: list[dict[str, Any]], cell: int = 128) -> dict[str, Any]:
    """Thumbnails of sample outputs next to their inputs: {"pairs": [{..sample, "input_uri",
    "output_uri"}] (JPEG data URIs, None where unreadable), "png": a contact sheet (bytes) or None}."""
    from styleops.io.contact_sheet import contact_sheet, fit_to_cell
    from styleops.io.images import decode_image, encode_image

    st = context.store()

    def thumb(key: str) -> tuple[Any, str | None]:
        try:
            pixels = fit_to_cell(decode_image(st.get_bytes(key)).pixels, cell)
        except Exception:  # noqa: BLE001 - gone or undecodable since: an empty cell, the audit goes on
            return None, None
        return pixels, "data:image/jpeg;base64," + base64.b64encode(encode_image(pixels, "jpeg", quality=85)).decode()

    pairs, grid = [], []
    for s in samples:
        (inp, in_uri), (out, out_uri) = thumb(s["image_key"]), thumb(s["output_key"])
        pairs.append({**s, "input_uri": in_uri, "output_uri": out_uri})
        grid.append([inp, out])
    png = encode_image(contact_sheet(grid, cell=cell), "png") if grid else None
    return {"pairs": pairs, "png": png}
