"""The manifest audit's Prefect tasks: names and the run logger over runs/audit.py, where
the checks live (findings, their kinds and severities, repairs, coverage, the sample sheet)."""

from __future__ import annotations

from typing import Any

from prefect import task

from runs import audit
from runs.audit import (  # re-exported: the audit flow, its report and the tests read them here too
    MAX_FAILED_SAMPLES,
    MAX_SAMPLES,
    duplicate_findings,
    latest,
    orphan_findings,
    outlier_findings,
    parse_when,
    read_rows,
    repair_command,
    repairs,
)
from tasks import common

__all__ = [
    "MAX_FAILED_SAMPLES",
    "MAX_SAMPLES",
    "audit_rows_task",
    "coverage_task",
    "duplicate_findings",
    "latest",
    "orphan_findings",
    "orphans_task",
    "outlier_findings",
    "parse_when",
    "read_rows",
    "repair_command",
    "repairs",
    "sample_sheet_task",
]


@task(name="audit-rows")
def audit_rows_task(
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    catalog: str | None = None,
    mad_k: float = 5.0,
) -> dict[str, Any]:
    """`runs.audit.audit_rows`: the selected manifest rows checked against the store."""
    return audit.audit_rows(run_id, since, until, catalog, mad_k, log=common.logger())


@task(name="audit-orphans")
def orphans_task(prefix: str = "stylized/") -> list[str]:
    """`runs.audit.orphans`: objects under `prefix` that no manifest row names, sorted."""
    return audit.orphans(prefix, log=common.logger())


@task(name="audit-coverage")
def coverage_task(catalog: str, styles: list[str]) -> dict[str, Any]:
    """`runs.audit.coverage`: every catalog image needs an `ok` row of each style's production version."""
    return audit.coverage(catalog, styles, log=common.logger())


@task(name="audit-sample-sheet")
def sample_sheet_task(samples: list[dict[str, Any]], cell: int = 128) -> dict[str, Any]:
    """`runs.audit.sample_sheet`: thumbnails of sample outputs next to their inputs."""
    return audit.sample_sheet(samples, cell)
