"""Flow: the nightly catalog run. Once per date: every scheduled style over the catalog, then an audit.

Each style runs with its production version, so after a promotion the run redoes exactly the
images whose outputs came from another version ("restyled" in the summary); everything else is
already done and skipped by the plan.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.audit import audit_manifests
from flows.stylize_catalog import stylize_catalog
from runs.context import PER_STYLE
from runs.keys import artifact_key
from runs.spec import RunSpec
from tasks.nightly import claim_nightly_task, complete_nightly_task, nightly_date


@flow(name="nightly-catalog")
def nightly_catalog(
    catalog: str,
    styles: list[str],
    run_date: str | None = None,
    timezone: str = "UTC",
    method: str = PER_STYLE,
    model: str | None = None,
    max_side: int | None = 1024,
    format: str = "jpeg",
    quality: int = 90,
    shard_size: int = 64,
    audit: bool = True,
    audit_dir: str = "audit-output",
) -> dict[str, Any]:
    """Stylize catalog/<catalog>/ with each of `styles` (production versions), once per date.

    run_date: YYYY-MM-DD (default: the scheduled start's date in `timezone`). A second run for
    the same date and settings returns {"status": "skipped"} without work. With `audit`, the
    manifest of the catalog is audited afterwards (coverage of the styles for per-style runs).
    """
    if not styles:
        raise ValueError("a nightly run needs at least one style")
    date = nightly_date(run_date, timezone)
    spec = {
        "styles": sorted(styles),
        "method": method,
        "model": model,
        "max_side": max_side,
        "format": format,
        "quality": quality,
    }
    claim = claim_nightly_task(catalog, date, spec)
    if not claim["claimed"]:
        return {
            "status": "skipped",
            "date": date,
            "catalog": catalog,
            "reason": f"{claim['status']} by {claim['by']}",
            "claim": claim["key"],
        }
    runs = [
        stylize_catalog(
            RunSpec.create(
                catalog,
                style,
                method=method,
                model=model,
                max_side=max_side,
                format=format,
                quality=quality,
                shard_size=shard_size,
            )
        )
        for style in styles
    ]
    summary: dict[str, Any] = {
        "status": "completed",
        "date": date,
        "catalog": catalog,
        "claim": claim["key"],
        "runs": runs,
    }
    if audit:
        found = audit_manifests(
            catalog=catalog, styles=list(styles) if method == PER_STYLE else None, out_dir=audit_dir
        )
        summary["audit"] = {
            "critical": found["critical"],
            "warnings": found["warnings"],
            "counts": found["counts"],
            "report": found["report"],
        }
    create_table_artifact(
        key=artifact_key("nightly", catalog),
        table=[
            {k: r[k] for k in ("style", "model_version", "images", "already_done", "restyled", "ok", "failed")}
            for r in runs
        ],
        description=f"nightly run of catalog {catalog} for {date}"
        + (
            f"; audit: {summary['audit']['critical']} critical, {summary['audit']['warnings']} warnings"
            if audit
            else ""
        ),
    )
    complete_nightly_task(
        claim,
        {k: v for k, v in summary.items() if k != "runs"}
        | {"runs": [{k: r[k] for k in ("style", "model_version", "ok", "failed")} for r in runs]},
    )
    return summary
