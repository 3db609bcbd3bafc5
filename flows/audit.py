"""Flow: audit the run manifest against the object store and write an HTML report (runs.reports.audit).

audit rows (outputs present and intact, failures, duplicates, outliers, stale models) -> orphans
under stylized/ -> coverage of a catalog by the styles' production models -> report + artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from runs.keys import artifact_key, catalog_prefix
from runs.outputs import KINDS, count_findings
from runs.reports.audit import summary_markdown, write_audit_report
from tasks.audit import audit_rows_task, coverage_task, orphan_findings, orphans_task, sample_sheet_task


@flow(name="audit-manifests")
def audit_manifests(
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    catalog: str | None = None,
    styles: list[str] | None = None,
    out_dir: str = "audit-output",
    mad_k: float = 5.0,
) -> dict[str, Any]:
    """Audit the manifest rows of a run / finished_at range (ISO dates, `until` inclusive) / catalog.

    Coverage (every catalog image stylized by each style's production per-style model) is checked
    when both `catalog` and `styles` are given. Orphans are looked for under stylized/<set>/ of the
    catalog, or all of stylized/. Returns {"critical", "warnings", "findings", "counts", "report",
    "repairs"}; a non-zero "critical" means outputs are missing, altered, or not there for a
    catalog image. "repairs": the `styleops stylize ... --repair` commands that re-render the
    missing and altered ones, with their counts (runs.audit.repairs).
    """
    if styles and catalog is None:
        raise ValueError("coverage of styles needs a catalog")
    prefix = catalog_prefix(catalog) if catalog is not None else None
    rows = audit_rows_task(run_id, since, until, prefix, mad_k)
    orphans = orphans_task("stylized/" + (prefix.split("/")[1] + "/" if prefix else ""))
    coverage = coverage_task(prefix, list(styles)) if prefix and styles else None
    findings = [*rows["findings"], *orphan_findings(orphans), *(coverage["findings"] if coverage else [])]
    sheet = sample_sheet_task(rows["samples"])
    counts = count_findings(findings)
    scope = {
        "run_id": run_id,
        "since": since,
        "until": until,
        "catalog": prefix,
        "styles": list(styles) if styles else None,
    }
    report = write_audit_report(Path(out_dir), scope, rows, coverage, findings, sheet)
    create_markdown_artifact(
        key=artifact_key("audit", run_id or (prefix and prefix.split("/")[1]) or "all"),
        markdown=summary_markdown(scope, counts, rows),
        description="audit of the run manifest against the object store",
    )
    return {
        "critical": counts["critical"],
        "warnings": counts["warnings"],
        "findings": findings,
        "counts": {k: counts[k] for k in KINDS},
        "report": str(report),
        "repairs": rows["repairs"],
    }
