"""Delta Lake tables on the object store: deltalake storage options and a race-safe append.

Concurrent commits are safe because delta-rs writes each commit file `_delta_log/<n>.json`
with a conditional put (`If-None-Match: *`, object_store's `conditional_put=etag`): a writer
that loses the race gets 412, re-reads the log, checks for conflicts and retries as `n+1`.
This needs a store that honours the header (AWS S3 since 2024, MinIO, R2, SeaweedFS);
delta-rs >= 1.0 has no other S3 commit protocol (the DynamoDB lock was removed).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import CommitProperties
from pyarrow.parquet import filters_to_expression

from infra.store import ObjectStore, WriteOutsideScopeError, validate_key

# A blind append only fails a commit when another writer committed first, so N concurrent
# writers need at most N-1 retries each; the default (15) is too low for a wide Dask fan-out.
MAX_COMMIT_RETRIES = 200

# How deltalake rides out a flaky or restarting store (tests/faults/test_store_faults.py).
# object_store retries a request on 5xx answers and connection errors, but gives up early: its
# backoff draws each wait from [init, base x previous wait], so with its defaults (100 ms, x2,
# 10 retries) the 10 retries are spent in ~2.6 s (median), less than SeaweedFS needs after a
# restart to serve existing objects again (up to ~4.5 s of 500s measured). 250 ms, x2 up to 5 s,
# 30 retries: at least ~13 s (0.1th percentile), ~33 s median, at most retry_timeout.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0  # a whole request, body included (object_store's default is 30 s)
MAX_RETRIES = 30
RETRY_TIMEOUT_S = 60.0
BACKOFF_INIT_S, BACKOFF_MAX_S, BACKOFF_BASE = 0.25, 5.0, 2.0
# What object_store does not retry: a commit (`If-None-Match: *` put of `_delta_log/<n>.json`)
# that timed out or was cut after it was sent (not idempotent: it may have landed), and an answer
# whose body is cut (even the 404 of `_last_checkpoint` read on every open). `append` then looks
# for its own commit (a unique id in commitInfo) and writes again only if it is not there; reads
# are tried again whole.
COMMIT_ATTEMPTS = 6  # writes of one append, 0.25, 0.5, 1, 2, 4 s apart
READ_ATTEMPTS = 3
_AGAIN_BACKOFF_S = 0.25
APPEND_ID_KEY = "styleops.append_id"

T = TypeVar("T")
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


def delta_client_options() -> dict[str, str]:
    """deltalake `storage_options` for how to ride out a flaky store: object_store's client
    timeouts (ClientConfigKey) and retries (delta-rs's keys), from the constants above."""
    return {
        "connect_timeout": _duration(CONNECT_TIMEOUT_S),
        "timeout": _duration(REQUEST_TIMEOUT_S),
        "max_retries": str(MAX_RETRIES),
        "retry_timeout": _duration(RETRY_TIMEOUT_S),
        "backoff_config.init_backoff": _duration(BACKOFF_INIT_S),
        "backoff_config.max_backoff": _duration(BACKOFF_MAX_S),
        "backoff_config.base": str(BACKOFF_BASE),
    }


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"  # humantime, as object_store parses it


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
        self.options = {**delta_storage_options(store), **delta_client_options()}

    def open(self) -> DeltaTable | None:
        """The table at its latest version, or None if it does not exist yet."""
        return _reading(self._open)

    def _open(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self.options)
        except TableNotFoundError:
            return None

    def exists(self) -> bool:
        return _reading(lambda: DeltaTable.is_deltatable(self.uri, storage_options=self.options))

    def version(self) -> int:
        """The latest version, -1 if the table does not exist."""
        table = self.open()
        return -1 if table is None else table.version()

    def append(self, data: pa.Table) -> int:
        """Append `data` (of `schema`) in exactly one commit; returns that commit's version.

        A write that fails in transit (after object_store's own retries) may still have committed:
        before writing again, the log after the version first read is searched for this append's
        id, so a lost answer never gives a second copy of the rows (nor a lost commit).
        """
        self._check_writable()
        append_id = uuid.uuid4().hex
        start: int | None = None
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                if start is not None:
                    landed = self._find_commit(append_id, after=start)
                    if landed is not None:
                        return landed
                table = self._open() or self._create()
                start = table.version() if start is None else start
                # "merge": a table created before a nullable column was added to `schema` gains it.
                write_deltalake(table, data, mode="append", schema_mode="merge", commit_properties=_retrying(append_id))
                return table.version()
            except (OSError, CommitFailedError):
                if attempt == COMMIT_ATTEMPTS:
                    raise
                _pause(attempt)
        raise AssertionError("unreachable")

    def _find_commit(self, append_id: str, *, after: int) -> int | None:
        """The version of the commit carrying `append_id` newer than version `after`, if any."""
        table = self._open()
        if table is None or table.version() <= after:
            return None
        for info in table.history(limit=table.version() - after):
            if info.get(APPEND_ID_KEY) == append_id:
                return int(info["version"])
        return None

    def read_arrow(self, *, filters: Filters | None = None, columns: list[str] | None = None) -> pa.Table:
        """Rows matching DNF `filters` (files pruned by partition values and statistics)."""

        def read() -> pa.Table:
            table = self._open()
            if table is None:
                empty = self.schema.empty_table()
                return empty.select(columns) if columns is not None else empty
            dataset = table.to_pyarrow_dataset(file_pruning_predicate=filters or None)
            return dataset.to_table(columns=columns, filter=filters_to_expression(filters) if filters else None)

        return _reading(read)

    def history(self) -> list[dict[str, Any]]:
        """Commit infos, newest first ([] if the table does not exist)."""

        def read() -> list[dict[str, Any]]:
            table = self._open()
            return [] if table is None else table.history()

        return _reading(read)

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
        except (DeltaError, OSError):  # lost the race, or the answer was lost: is it there?
            table = self._open()
            if table is None:
                raise
            return table

    def _check_writable(self) -> None:
        """deltalake writes around ObjectStore, so its write scope is enforced here."""
        scope = self.store.writable_prefixes
        if scope is not None and not f"{self.prefix}/".startswith(scope):
            raise WriteOutsideScopeError(f"{self.uri} is outside the writable prefixes {scope}")


def _reading(read: Callable[[], T]) -> T:
    """`read()`, tried again whole when it fails in transit (reads are idempotent)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return read()
        except OSError:
            if attempt == READ_ATTEMPTS:
                raise
            _pause(attempt)
    raise AssertionError("unreachable")


def _pause(attempt: int) -> None:
    time.sleep(_AGAIN_BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))


def _retrying(append_id: str | None = None) -> CommitProperties:
    metadata = {APPEND_ID_KEY: append_id} if append_id else None
    return CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES, custom_metadata=metadata)
