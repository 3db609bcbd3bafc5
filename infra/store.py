"""Object store client on boto3: validated keys, write scopes, sha256 on every object.

Works with any S3 API (AWS S3, MinIO, Ceph, R2); tested against the embedded SeaweedFS store.
Every object written here carries the sha256 of its bytes in the user metadata key `sha256`;
reads check it when present.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

from infra.settings import Settings, get_settings

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255  # SeaweedFS (like most file systems) refuses longer path segments
SHA256_META = "sha256"
_CHUNK = 2**20
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_CODES = {"412", "PreconditionFailed", "ConditionalRequestConflict"}

# How every client rides out a flaky or restarting store (tests/faults/test_store_faults.py).
# botocore reads `max_attempts` as retries after the first try; standard mode waits
# rand(0, 1) x 50 ms x 2^i before retry i (20 s cap) after a 5xx or connection error (from 1 s
# for throttling, 503 SlowDown). 8 retries wait 6.4 s in all on average and are all spent
# within 5 s 29% of the time: less than a SeaweedFS restart (~2 s down, then up to ~4.5 s of
# 500s). 12 retries wait ~43 s on average (86 s at most), under 6 s once in 200,000.
# (Standard mode also has a per-client retry quota: ~35 retries without a success in between.)
MAX_ATTEMPTS = 12
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # the longest wait for the next bytes of an answer, not for the whole request
# botocore retries a request until its answer's headers arrive; a body cut or stalled after that
# (ResponseStreamingError, ReadTimeoutError, IncompleteReadError) is ours to retry: the GET again.
BODY_ATTEMPTS = 4
_CUT_BODY = (HTTPClientError, IncompleteReadError)


class StoreError(Exception):
    """Base class of every object store error."""


class InvalidKeyError(StoreError, ValueError):
    """The key (or prefix) is not acceptable."""


class WriteOutsideScopeError(StoreError, PermissionError):
    """A write or delete outside the store's writable prefixes."""


class PreconditionFailedError(StoreError):
    """A conditional put lost: the object exists (If-None-Match) or changed (If-Match)."""


class ObjectNotFoundError(StoreError, KeyError):
    """No object under that key (args[0]: the key)."""

    def __str__(self) -> str:  # KeyError's str is the key's repr: say what is missing
        return f"no object {self.args[0]} in the store" if self.args else "no such object"


class IntegrityError(StoreError):
    """The bytes read do not match the sha256 recorded when they were written."""


class ObjectTooLargeError(StoreError):
    """`get(key, max_bytes=...)`: the object is bigger than the caller accepts (not read)."""

    def __init__(self, message: str, *, size: int, max_bytes: int) -> None:
        super().__init__(message)
        self.size, self.max_bytes = size, max_bytes


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class PutResult:
    key: str
    etag: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GetResult:
    key: str
    data: bytes
    etag: str
    size: int
    sha256: str
    metadata: dict[str, str]


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise InvalidKeyError.

    Rejected: empty, leading '/', empty segments ('//', trailing '/': SeaweedFS would store a
    directory and drop the bytes), '.' or '..' segments, backslashes, control characters,
    more than 1024 UTF-8 bytes, or a segment of more than 255 UTF-8 bytes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"object key must be a non-empty string, got {key!r}")
    if key.startswith("/"):
        raise InvalidKeyError(f"object key must not start with '/': {key!r}")
    if "\\" in key:
        raise InvalidKeyError(f"object key must not contain a backslash: {key!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise InvalidKeyError(f"object key must not contain control characters: {key!r}")
    segments = key.split("/")
    if "" in segments:
        raise InvalidKeyError(f"object key must not contain '//' or end with '/': {key!r}")
    if "." in segments or ".." in segments:
        raise InvalidKeyError(f"object key must not contain '.' or '..' segments: {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"object key is not valid Unicode: {key!r}") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"object key is {size} UTF-8 bytes, more than {MAX_KEY_BYTES}")
    if max(len(s.encode("utf-8")) for s in segments) > MAX_SEGMENT_BYTES:
        raise InvalidKeyError(f"object key has a segment longer than {MAX_SEGMENT_BYTES} UTF-8 bytes: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` unchanged if it is empty or a valid key, optionally ending with '/'."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def make_s3_client(settings: Settings | None = None, *, max_attempts: int | None = None) -> Any:
    """A boto3 S3 client for the configured store (or the embedded one)."""
    return _client_for((settings or get_settings()).s3_connection(), max_attempts=max_attempts)


_boto_lock = threading.Lock()
_boto_sessions: dict[int, boto3.session.Session] = {}
_clients: dict[tuple[Any, ...], Any] = {}
MAX_CACHED_CLIENTS = 16


def boto_client(service: str, config: Config, **kwargs: Any) -> Any:
    """A new boto3 client made from this process's one boto3 session, under a lock (sessions are
    not thread-safe; clients are). A session parses the service's JSON model once: a fresh session
    per client cost about 0.3 s of CPU each, several times per command."""
    with _boto_lock:
        session = _boto_sessions.get(os.getpid())  # not a parent's: a forked worker makes its own
        if session is None:
            session = _boto_sessions[os.getpid()] = boto3.session.Session()
        return session.client(service, config=config, **kwargs)


def _client_for(connection: dict[str, Any], *, max_attempts: int | None = None) -> Any:
    """The process's client for `connection` (made once; boto3's clients are thread-safe and pool
    their connections). Path-style addressing (SeaweedFS has no virtual hosts); checksums only where
    we send them."""
    attempts = max_attempts or MAX_ATTEMPTS
    key = (os.getpid(), attempts, *sorted((k, str(v)) for k, v in connection.items()))
    with _boto_lock:
        client = _clients.get(key)
    if client is None:
        client = _new_client(connection, attempts)
        with _boto_lock:
            if len(_clients) >= MAX_CACHED_CLIENTS:
                _clients.pop(next(iter(_clients)))
            client = _clients.setdefault(key, client)
    return client


def _new_client(connection: dict[str, Any], max_attempts: int) -> Any:
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        max_pool_connections=32,
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto_client(
        "s3",
        config,
        endpoint_url=connection.get("endpoint_url"),
        aws_access_key_id=connection.get("access_key"),
        aws_secret_access_key=connection.get("secret_key"),
        region_name=connection.get("region"),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_not_found(exc: ClientError) -> bool:
    return _code(exc) in _NOT_FOUND_CODES or (_status(exc) == 404 and _code(exc) != "NoSuchBucket")


def _is_precondition(exc: ClientError) -> bool:
    return _code(exc) in _PRECONDITION_CODES or _status(exc) == 412


def _info(key: str, size: int, etag: str, last_modified: datetime) -> ObjectInfo:
    return ObjectInfo(key, size, _strip_etag(etag), last_modified.astimezone(UTC))


def _strip_etag(etag: str) -> str:
    return etag.strip('"')


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


class ObjectStore:
    """One bucket of an S3 store; writes optionally restricted to key prefixes."""

    def __init__(
        self,
        bucket: str,
        client: Any,
        *,
        writable_prefixes: tuple[str, ...] | None = None,
        connection: dict[str, Any] | None = None,
    ) -> None:
        self.bucket = bucket
        self.client = client
        self.connection: dict[str, Any] = dict(connection or {})
        self.writable_prefixes = None if writable_prefixes is None else _check_prefixes(writable_prefixes)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, writable_prefixes: tuple[str, ...] | None = None
    ) -> ObjectStore:
        """The bucket named in the settings, on the configured (or embedded) store."""
        settings = settings or get_settings()
        connection = settings.s3_connection()
        return cls(settings.bucket, _client_for(connection), writable_prefixes=writable_prefixes, connection=connection)

    def __repr__(self) -> str:
        endpoint = self.connection.get("endpoint_url")
        return f"ObjectStore(bucket={self.bucket!r}, endpoint={endpoint!r}, writable={self.writable_prefixes!r})"

    def scoped(self, *prefixes: str) -> ObjectStore:
        """The same bucket and client with writes restricted to `prefixes` (never widened)."""
        prefixes = _check_prefixes(prefixes)
        outside = [p for p in prefixes if not self._in_scope(p)]
        if outside:
            raise WriteOutsideScopeError(f"{outside} not within {self.writable_prefixes}")
        return ObjectStore(self.bucket, self.client, writable_prefixes=prefixes, connection=self.connection)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    # ---- buckets and listing ---------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent, race-safe)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise StoreError(f"cannot access bucket {self.bucket!r}: {_code(exc)}") from exc
        region = self.connection.get("region")
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise StoreError(f"cannot create bucket {self.bucket!r}: {_code(exc)}") from exc

    def list(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Objects under `prefix`, streamed page by page in the store's listing order.

        AWS S3 lists in UTF-8 byte order; SeaweedFS compares path segment by segment, so
        `a/b` comes before `a b` and `a-b` there. Within one "directory" both agree.
        """
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
        with self._errors(prefix):
            for page in pages:
                for obj in page.get("Contents", []):
                    yield _info(obj["Key"], obj["Size"], obj["ETag"], obj["LastModified"])

    def folders(self, prefix: str = "") -> list[str]:
        """The names of the "folders" directly under `prefix` (S3 common prefixes with delimiter
        '/'), sorted: `folders("catalog/")` -> ['demo', 'shop']. Lists no object under them."""
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        found: set[str] = set()
        with self._errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                found.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(found)

    # ---- reads -----------------------------------------------------------------------------
    def head(self, key: str) -> ObjectInfo | None:
        """Size, etag and time of `key`, or None if it does not exist."""
        response = self._head(key)
        if response is None:
            return None
        return _info(key, response["ContentLength"], response["ETag"], response["LastModified"])

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get(self, key: str, *, max_bytes: int | None = None) -> GetResult:
        """The object's bytes, checked against its recorded sha256.

        max_bytes: raise ObjectTooLargeError for a bigger object, decided from the response's
        Content-Length before the body is read (and the connection closed unread), so an
        oversized object is never held in memory.
        """
        validate_key(key)
        response, data = self._get_with_body(key, max_bytes)
        if max_bytes is not None and len(data) > max_bytes:  # a response without a Content-Length
            raise ObjectTooLargeError(
                f"{self.uri(key)} is {len(data)} bytes, over the limit of {max_bytes} bytes",
                size=len(data),
                max_bytes=max_bytes,
            )
        metadata = dict(response.get("Metadata", {}))
        sha256 = hashlib.sha256(data).hexdigest()
        _check_sha256(key, metadata, sha256)
        return GetResult(key, data, _strip_etag(response["ETag"]), len(data), sha256, metadata)

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self.get(key, max_bytes=max_bytes).data

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def download_file(self, key: str, path: Path) -> ObjectInfo:
        """Stream `key` to `path` (atomically: a temporary file renamed when complete and checked)."""
        validate_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            for attempt in range(1, BODY_ATTEMPTS + 1):
                with self._errors(key):
                    response = self.client.get_object(Bucket=self.bucket, Key=key)
                    sha = hashlib.sha256()
                    try:
                        with partial.open("wb") as f:
                            for chunk in response["Body"].iter_chunks(_CHUNK):
                                sha.update(chunk)
                                f.write(chunk)
                        break
                    except _CUT_BODY:
                        if attempt == BODY_ATTEMPTS:
                            raise
            _check_sha256(key, response.get("Metadata", {}), sha.hexdigest())
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return _info(key, response["ContentLength"], response["ETag"], response["LastModified"])

    # ---- writes ----------------------------------------------------------------------------
    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        """Write `data`; the server verifies its SHA-256. Conditional on absence or on an etag."""
        self._check_write(key)
        digest = hashlib.sha256(data).digest()
        sha256 = digest.hex()
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ChecksumSHA256": base64.b64encode(digest).decode(),
            "Metadata": {**(metadata or {}), SHA256_META: sha256},
        }
        if content_type:
            kwargs["ContentType"] = content_type
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = _quote_etag(if_match)
        try:
            with self._errors(key):
                response = self.client.put_object(**kwargs)
        except PreconditionFailedError as exc:
            landed = self._landed_on_retry(exc, key, sha256)
            if landed is None:
                raise
            return PutResult(key, landed, sha256, len(data))
        return PutResult(key, _strip_etag(response["ETag"]), sha256, len(data))

    def put_json(self, key: str, obj: Any, **kw: Any) -> PutResult:
        """Write `obj` as UTF-8 JSON with sorted keys (same object, same bytes, same sha256)."""
        data = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return self.put(key, data, content_type="application/json", **kw)

    def upload_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        multipart_threshold: int = 64 * 2**20,
        part_size: int = 16 * 2**20,
    ) -> PutResult:
        """Upload a file (multipart above the threshold, a SHA-256 checksum per part)."""
        self._check_write(key)
        path = Path(path)
        with path.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        extra: dict[str, Any] = {"Metadata": {SHA256_META: sha256}, "ChecksumAlgorithm": "SHA256"}
        if content_type:
            extra["ContentType"] = content_type
        config = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=part_size)
        with self._errors(key):
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=config)
        info = self.head(key)
        if info is None:
            raise StoreError(f"{self.uri(key)} missing right after upload")
        return PutResult(key, info.etag, sha256, info.size)

    def delete(self, key: str) -> None:
        """Delete `key` (no error if it does not exist)."""
        self._check_write(key)
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    # ---- helpers ---------------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        validate_key(key)
        try:
            with self._errors(key):
                return self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFoundError:
            return None

    def _get_with_body(self, key: str, max_bytes: int | None) -> tuple[dict[str, Any], bytes]:
        """get_object and its whole body; the GET again when the body is cut or stalls mid-way."""
        for attempt in range(1, BODY_ATTEMPTS + 1):
            with self._errors(key):
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                body = response["Body"]
                size = response.get("ContentLength")
                if max_bytes is not None and size is not None and size > max_bytes:
                    body.close()
                    raise ObjectTooLargeError(
                        f"{self.uri(key)} is {size} bytes, over the limit of {max_bytes} bytes",
                        size=size,
                        max_bytes=max_bytes,
                    )
                try:
                    return response, body.read()
                except _CUT_BODY:
                    body.close()
                    if attempt == BODY_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    def _in_scope(self, key: str) -> bool:
        return self.writable_prefixes is None or key.startswith(self.writable_prefixes)

    def _check_write(self, key: str) -> None:
        validate_key(key)
        if not self._in_scope(key):
            raise WriteOutsideScopeError(f"{self.uri(key)} is outside the writable prefixes {self.writable_prefixes}")

    def _landed_on_retry(self, exc: PreconditionFailedError, key: str, sha256: str) -> str | None:
        """A condition lost on a retried request may be our own first attempt's doing.

        Returns the etag if the object now holds our bytes (by recorded sha256), else None.
        """
        cause = exc.__cause__
        if not isinstance(cause, ClientError) or not cause.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return None
        response = self._head(key)
        if response is None or response.get("Metadata", {}).get(SHA256_META) != sha256:
            return None
        return _strip_etag(response["ETag"])

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate botocore errors into StoreError subclasses."""
        try:
            yield
        except ClientError as exc:
            if _is_precondition(exc):
                raise PreconditionFailedError(f"{self.uri(key)}: {_code(exc)}") from exc
            if _is_not_found(exc):
                raise ObjectNotFoundError(key) from exc
            raise StoreError(f"{self.uri(key)}: {_code(exc)} {exc}") from exc
        except (S3UploadFailedError, BotoCoreError) as exc:
            raise StoreError(f"{self.uri(key)}: {exc}") from exc


def _check_prefixes(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    for prefix in prefixes:
        if not prefix.endswith("/"):
            raise InvalidKeyError(f"writable prefix must end with '/': {prefix!r}")
        validate_prefix(prefix)
    return tuple(prefixes)


def _check_sha256(key: str, metadata: dict[str, str], sha256: str) -> None:
    recorded = metadata.get(SHA256_META)
    if recorded and recorded != sha256:
        raise IntegrityError(f"{key}: sha256 {sha256} differs from the recorded {recorded}")
