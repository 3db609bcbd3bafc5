"""The run manifest: one Delta row per input image, style and attempt, partitioned by run_id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from infra.delta import Filters, StoreDeltaTable
from infra.store import ObjectStore

_UTC = pa.timestamp("us", tz="UTC")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("flow_run_id", pa.string()),
        pa.field("shard_id", pa.string()),
        pa.field("attempt", pa.int32()),
        pa.field("catalog", pa.string()),
        pa.field("image_key", pa.string(), nullable=False),
        pa.field("input_etag", pa.string()),
        pa.field("input_sha256", pa.string()),
        pa.field("bytes_in", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("style", pa.string()),
        pa.field("method", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("output_key", pa.string()),
        pa.field("output_sha256", pa.string()),
        pa.field("bytes_out", pa.int64()),
        pa.field("out_width", pa.int32()),
        pa.field("out_height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_class", pa.string()),
        pa.field("error", pa.string()),
        pa.field("content_loss", pa.float64()),
        pa.field("style_loss", pa.float64()),
        pa.field("duration_ms", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("started_at", _UTC),
        pa.field("finished_at", _UTC),
        pa.field("code_version", pa.string()),
        # Added after the first release (tables written before it read it as null; appends merge it in):
        pa.field(
            "params_json", pa.string()
        ),  # every setting and input behind the output: colour mode, alpha, bank/artwork sha256s, ...
    ]
)
STATUSES = ("ok", "failed", "skipped")
PERMANENT_ERRORS = ("decode_error", "too_large", "unsupported_image")  # styleops.errors ImageError classes
PARTITION_BY = ("run_id",)
_REQUIRED = [f.name for f in MANIFEST_SCHEMA if not f.nullable]

Rows = Sequence[Mapping[str, Any]] | pa.Table | pd.DataFrame


class ManifestError(Exception):
    """Rows that do not fit the manifest schema; nothing was written."""


class ManifestTable:
    """The manifest Delta table under `prefix` of the store."""

    def __init__(self, store: ObjectStore, prefix: str = "manifest") -> None:
        self._table = StoreDeltaTable(store, prefix, MANIFEST_SCHEMA, partition_by=PARTITION_BY)
        self.uri = self._table.uri

    def append(self, rows: Rows) -> int:
        """Append `rows` in one commit and return its version (no commit for no rows).

        Missing optional columns become null; naive datetimes are taken as UTC.
        """
        data = conform(rows)
        if data.num_rows == 0:
            return self.version()
        return self._table.append(data)

    def exists(self) -> bool:
        return self._table.exists()

    def version(self) -> int:
        """The latest version, -1 before the first append."""
        return self._table.version()

    def read_arrow(self, *, filters: Filters | None = None, columns: list[str] | None = None) -> pa.Table:
        """Rows matching DNF `filters`, e.g. `[("run_id", "=", "r1"), ("status", "=", "ok")]`."""
        return self._table.read_arrow(filters=filters, columns=columns)

    def read(self, **kw: Any) -> pd.DataFrame:
        """`read_arrow(**kw)` as pandas (timestamps tz-aware UTC)."""
        return self.read_arrow(**kw).to_pandas()

    def completed(self, *, catalog: str, style: str, model_version: str, params_hash: str) -> dict[str, str]:
        """image_key -> input_etag of the latest `ok` row of that catalog, style, model and params."""
        return self._latest(catalog, style, model_version, params_hash, [("status", "=", "ok")])

    def completed_rows(
        self, *, catalog: str, style: str, model_version: str, params_hash: str
    ) -> dict[str, dict[str, Any]]:
        """image_key -> the latest `ok` row that `completed` goes by, with what its output should
        be: {"image_key", "input_etag", "run_id", "style", "model_version", "output_key",
        "output_sha256", "bytes_out", "finished_at"} (what tasks.audit.check_output checks)."""
        columns = [
            "image_key",
            "input_etag",
            "run_id",
            "style",
            "model_version",
            "output_key",
            "output_sha256",
            "bytes_out",
            "finished_at",
        ]
        done = self._latest_rows(catalog, style, model_version, params_hash, [("status", "=", "ok")], columns)
        return {row["image_key"]: row for row in done.to_pylist()}

    def ok_elsewhere(self, *, catalog: str, style: str, params_hash: str, exclude: tuple[str, ...]) -> set[str]:
        """Image keys with an `ok` row of that catalog, style and params by a model version not in `exclude`."""
        filters = [
            ("catalog", "=", catalog),
            ("style", "=", style),
            ("params_hash", "=", params_hash),
            ("status", "=", "ok"),
        ]
        rows = self.read_arrow(filters=filters, columns=["image_key", "model_version"])
        return {
            k
            for k, v in zip(rows["image_key"].to_pylist(), rows["model_version"].to_pylist(), strict=True)
            if v not in exclude
        }

    def failed_permanently(self, *, catalog: str, style: str, model_version: str, params_hash: str) -> dict[str, str]:
        """image_key -> input_etag of `failed` rows whose error cannot go away without new bytes
        (decode errors, size caps): retrying the same etag would only add another failed row."""
        return self._latest(
            catalog,
            style,
            model_version,
            params_hash,
            [("status", "=", "failed"), ("error_class", "in", list(PERMANENT_ERRORS))],
        )

    def _latest(self, catalog: str, style: str, model_version: str, params_hash: str, extra: Filters) -> dict[str, str]:
        done = self._latest_rows(
            catalog, style, model_version, params_hash, extra, ["image_key", "input_etag", "finished_at"]
        )
        return dict(zip(done["image_key"].to_pylist(), done["input_etag"].to_pylist(), strict=True))

    def _latest_rows(
        self, catalog: str, style: str, model_version: str, params_hash: str, extra: Filters, columns: list[str]
    ) -> pa.Table:
        """The matching rows with an input_etag, oldest first (so a dict built from them keeps the latest)."""
        filters = [
            ("catalog", "=", catalog),
            ("style", "=", style),
            ("model_version", "=", model_version),
            ("params_hash", "=", params_hash),
            *extra,
        ]
        done = self.read_arrow(filters=filters, columns=columns)
        done = done.filter(pc.is_valid(done["input_etag"]))
        return done.sort_by([("finished_at", "ascending", "at_start")])

    def compact(self, *, run_id: str | None = None) -> dict[str, Any]:
        """Compact small files (only the run's partition if given); optimize metrics."""
        return self._table.compact([("run_id", "=", run_id)] if run_id is not None else None)

    def history(self) -> list[dict[str, Any]]:
        """Commit infos, newest first."""
        return self._table.history()


def conform(rows: Rows) -> pa.Table:
    """`rows` as a table of exactly MANIFEST_SCHEMA, or ManifestError."""
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, pa.Table):
        _check_names(rows.column_names)
        given: dict[str, Any] = {name: rows[name] for name in rows.column_names}
    else:
        rows = list(rows)
        if not rows:
            return MANIFEST_SCHEMA.empty_table()
        names = list(dict.fromkeys(k for r in rows for k in r))
        _check_names(names)
        given = {name: [r.get(name) for r in rows] for name in names}
    columns = [_column(given.get(f.name), len(rows), f) for f in MANIFEST_SCHEMA]
    table = pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA)
    _check_values(table)
    return table


def _check_names(names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        raise ManifestError(f"duplicate columns: {sorted(n for n in set(names) if names.count(n) > 1)}")
    unknown = sorted(set(names) - set(MANIFEST_SCHEMA.names))
    if unknown:
        raise ManifestError(f"unknown columns: {unknown}")
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise ManifestError(f"missing required columns: {missing}")


def _column(values: pa.ChunkedArray | list[Any] | None, num_rows: int, field: pa.Field) -> pa.ChunkedArray | pa.Array:
    """One column cast safely to its type (types of Python values inferred first: 1.5 never becomes 1)."""
    if values is None:
        return pa.nulls(num_rows, field.type)
    try:
        array = pa.array(values) if isinstance(values, list) else values
        return pc.cast(array, options=pc.CastOptions(field.type, allow_time_truncate=True))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ManifestError(f"column {field.name} does not fit {field.type}: {exc}") from exc


def _check_values(table: pa.Table) -> None:
    for name in _REQUIRED:
        if table[name].null_count:
            raise ManifestError(f"{table[name].null_count} rows have a null {name}")
    bad = pc.invert(pc.is_in(table["status"], value_set=pa.array(STATUSES)))
    if pc.any(bad).as_py():
        values = sorted(set(table["status"].filter(bad).to_pylist()))
        raise ManifestError(f"status must be one of {STATUSES}, got {values}")
