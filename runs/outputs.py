"""Is an output still what its manifest row says? The checks the audit makes and a repair plans
with, and the vocabulary of their findings.

Findings are plain dicts: {"kind", "severity", "image_key"?, "style"?, "output_key"?, "detail"}
(optional fields only where they apply); the kinds are listed in runs/audit.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from infra.store import IntegrityError, ObjectNotFoundError, ObjectStore

CRITICAL, WARNING = "critical", "warning"
SEVERITY = {
    "missing_output": CRITICAL,
    "tampered_output": CRITICAL,
    "uncovered": CRITICAL,
    "duplicate": WARNING,
    "outlier": WARNING,
    "stale": WARNING,
    "orphan": WARNING,
}
KINDS = tuple(SEVERITY)
CHECK_WORKERS = 8  # concurrent output checks (network bound)


def finding(
    kind: str, detail: str, *, image_key: str | None = None, style: str | None = None, output_key: str | None = None
) -> dict[str, Any]:
    """One finding; its severity follows from its kind."""
    f: dict[str, Any] = {"kind": kind, "severity": SEVERITY[kind]}
    for name, value in (("image_key", image_key), ("style", style), ("output_key", output_key)):
        if value is not None:
            f[name] = value
    f["detail"] = detail
    return f


def count_findings(findings: Iterable[dict[str, Any]]) -> dict[str, int]:
    """{"critical": n, "warnings": n, <kind>: n for every kind}."""
    findings = list(findings)
    by_kind = Counter(f["kind"] for f in findings)
    return {
        "critical": sum(f["severity"] == CRITICAL for f in findings),
        "warnings": sum(f["severity"] == WARNING for f in findings),
        **{kind: by_kind.get(kind, 0) for kind in KINDS},
    }


def check_output(st: ObjectStore, row: dict[str, Any]) -> dict[str, Any] | None:
    """A missing_output or tampered_output finding for one `ok` row, or None if its output is intact."""
    return inspect_output(st, row)[0]


def inspect_output(st: ObjectStore, row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """`check_output`'s finding, with the etag of the object it judged (None when there is none):
    a repair overwrites a tampered output only if it still has that etag (If-Match)."""
    where = {"image_key": row["image_key"], "style": row["style"], "output_key": row.get("output_key")}
    key = row.get("output_key")
    if not present(key):
        return finding("missing_output", "ok row names no output_key", **{**where, "output_key": None}), None
    info = st.head(key)
    if info is None:
        return finding("missing_output", f"{st.uri(key)} does not exist (run {row['run_id']})", **where), None
    if present(row.get("bytes_out")) and info.size != int(row["bytes_out"]):
        return finding(
            "tampered_output", f"size {info.size} but the manifest recorded {int(row['bytes_out'])}", **where
        ), info.etag
    try:
        got = st.get(key)
    except ObjectNotFoundError:  # deleted between head and get
        return finding("missing_output", f"{st.uri(key)} does not exist (run {row['run_id']})", **where), None
    except IntegrityError as exc:
        return finding("tampered_output", f"bytes do not match the store's recorded sha256: {exc}", **where), info.etag
    if got.sha256 != row.get("output_sha256"):
        return finding(
            "tampered_output", f"sha256 {got.sha256} but the manifest recorded {row.get('output_sha256')}", **where
        ), got.etag
    return None, got.etag


def check_outputs(
    st: ObjectStore, rows: list[dict[str, Any]], workers: int = CHECK_WORKERS
) -> list[dict[str, Any] | None]:
    """`check_output` for each row, concurrently, in order. Other store errors (the store
    unreachable) are raised: the audit cannot tell whether those outputs are intact."""
    return [f for f, _etag in inspect_outputs(st, rows, workers)]


def inspect_outputs(
    st: ObjectStore, rows: list[dict[str, Any]], workers: int = CHECK_WORKERS
) -> list[tuple[dict[str, Any] | None, str | None]]:
    """`inspect_output` for each row, concurrently, in order (store errors raised as in `check_outputs`)."""
    if not rows:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(rows)))) as pool:
        return list(pool.map(lambda r: inspect_output(st, r), rows))


def present(value: Any) -> bool:
    """Not None, NaN, NaT or NA."""
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # array-likes: present
        return True
