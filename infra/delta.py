"""Delta Lake tables on the object store: deltalake storage options and a race-safe append.

Concurrent commits are safe because delta-rs writes each commit file `_delta_log/<n>.json`
with a conditional put (`If-None-Match: *`, object_store's `conditional_put=etag`): a writer
that loses the race gets 412, re-reads the log, checks for conflicts and retries as `n+1`.
This needs a store that honours the header (AWS S3 since 2024, MinIO, R2, SeaweedFS);
delta-rs >= 1.0 has no other S3 commit protocol (the DynamoDB lock was removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import CommitProperties
from pyarrow.parquet import filters_to_expression

from infra.store import ObjectStore, WriteOutsideScopeError, validate_key

# A blind append only fails a commit when another writer committed first, so N concurrent
# writers need at most N-1 retries each; the default (15) is too low for a wide Dask fan-out.
MAX_COMMIT_RETRIES = 200

Filters = list[tuple[str, str, Any]] | list[list[tuple[str, str, Any]]]


def delta_storage_options(store: ObjectStore) -> dict[str, str]:
    """deltalake `storage_options` for the store's endpoint, credentials and region."""
    connection = store.connection
    options = {
        "AWS_REGION": connection.get("region") or "us-east-1",
        # Commit with put-if-absent (the delta-rs default since 0.23, pinned here on purpose).
        "AWS_CONDITIONAL_PUT": "etag",
    }
    endpoint = connection.get("endpoint_url")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if connection.get("access_key"):
        options["AWS_ACCESS_KEY_ID"] = connection["access_key"]
    if connection.get("secret_key"):
        options["AWS_SECRET_ACCESS_KEY"] = connection["secret_key"]
    return options


def table_uri(store: ObjectStore, prefix: str) -> str:
    """`s3://bucket/prefix` for a table under `prefix`."""
    return store.uri(validate_key(prefix.strip("/")))


class StoreDeltaTable:
    """An append-only Delta table of `schema` under a store prefix (created by the first append)."""

    def __init__(self, store: ObjectStore, prefix: str, schema: pa.Schema, *, partition_by: Sequence[str] = ()) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.uri = table_uri(store, self.prefix)
        self.schema = schema
        self.partition_by = list(partition_by)
        self.options = delta_storage_options(store)

    def open(self) -> DeltaTable | None:
        """The table at its latest version, or None if it does not exist yet."""
        try:
            return DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            return None

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri, storage_options=self.options)

    def version(self) -> int:
        """The latest version, -1 if the table does not exist."""
        table = self.open()
        return -1 if table is None else table.version()

    def append(self, data: pa.Table) -> int:
        """Append `data` (of `schema`) in one commit; returns that commit's version."""
        self._check_writable()
        table = self.open() or self._create()
        # "merge": a table created before a nullable column was added to `schema` gains it.
        write_deltalake(table, data, mode="append", schema_mode="merge", commit_properties=_retrying())
        return table.version()

    def read_arrow(self, *, filters: Filters | None = None, columns: list[str] | None = None) -> pa.Table:
        """Rows matching DNF `filters` (files pruned by partition values and statistics)."""
        table = self.open()
        if table is None:
            empty = self.schema.empty_table()
            return empty.select(columns) if columns is not None else empty
        dataset = table.to_pyarrow_dataset(file_pruning_predicate=filters or None)
        return dataset.to_table(columns=columns, filter=filters_to_expression(filters) if filters else None)

    def history(self) -> list[dict[str, Any]]:
        """Commit infos, newest first ([] if the table does not exist)."""
        table = self.open()
        return [] if table is None else table.history()

    def compact(self, partition_filters: list[tuple[str, str, Any]] | None = None) -> dict[str, Any]:
        """Bin-pack small files (optionally only in matching partitions); optimize metrics."""
        self._check_writable()
        table = self.open()
        if table is None:
            return {}
        return table.optimize.compact(partition_filters=partition_filters, commit_properties=_retrying())

    def _create(self) -> DeltaTable:
        """Create the table as version 0; a writer that loses the creation race uses the winner's."""
        try:
            return DeltaTable.create(
                self.uri,
                schema=self.schema,
                partition_by=self.partition_by or None,
                mode="error",
                storage_options=self.options,
                # No retry: a retried CREATE would land as version 1 and replace the metadata.
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        except DeltaError:
            table = self.open()
            if table is None:
                raise
            return table

    def _check_writable(self) -> None:
        """deltalake writes around ObjectStore, so its write scope is enforced here."""
        scope = self.store.writable_prefixes
        if scope is not None and not f"{self.prefix}/".startswith(scope):
            raise WriteOutsideScopeError(f"{self.uri} is outside the writable prefixes {scope}")


def _retrying() -> CommitProperties:
    return CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES)
