"""ObjectStore against the embedded SeaweedFS over HTTP (no stubs)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from infra.settings import Settings
from infra.store import (
    InvalidKeyError,
    ObjectNotFoundError,
    ObjectStore,
    PreconditionFailedError,
    StoreError,
    WriteOutsideScopeError,
    make_s3_client,
    validate_key,
)

pytestmark = pytest.mark.integration


def test_put_get_round_trip(store: ObjectStore) -> None:
    data = b"\x00\x01 pixels \xff" * 1000
    put = store.put("catalog/set1/img.png", data, content_type="image/png", metadata={"origin": "test"})
    got = store.get("catalog/set1/img.png")
    head = store.head("catalog/set1/img.png")

    assert got.data == data
    assert put.sha256 == got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.metadata == {"origin": "test", "sha256": put.sha256}
    assert head is not None
    assert put.etag == got.etag == head.etag == hashlib.md5(data).hexdigest()  # single-part: etag is the MD5
    assert (put.size, got.size, head.size) == (len(data),) * 3
    assert head.last_modified.utcoffset() is not None and head.last_modified.utcoffset().total_seconds() == 0
    assert store.exists("catalog/set1/img.png") and not store.exists("catalog/set1/other.png")


def test_json_round_trip_is_deterministic(store: ObjectStore) -> None:
    first = store.put_json("models/a/card.json", {"b": 1, "a": ["é", 2.5]})
    second = store.put_json("models/a/card2.json", {"a": ["é", 2.5], "b": 1})

    assert store.get_json("models/a/card.json") == {"a": ["é", 2.5], "b": 1}
    assert first.sha256 == second.sha256
    assert store.get_bytes("models/a/card.json") == '{"a": ["é", 2.5], "b": 1}'.encode()


def test_list_paginates_in_order_with_prefix(store: ObjectStore) -> None:
    keys = [f"catalog/set1/img-{i:03d}.jpg" for i in range(23)]
    for key in reversed(keys):
        store.put(key, key.encode())
    store.put("catalog/set10/x.jpg", b"x")
    store.put("catalog/set2/y.jpg", b"y")

    listed = list(store.list("catalog/set1/", page_size=5))

    assert [o.key for o in listed] == keys
    assert [o.size for o in listed] == [len(k) for k in keys]
    assert listed[0].etag == store.head(keys[0]).etag  # type: ignore[union-attr]
    assert [o.key for o in store.list("catalog/set1", page_size=5)] == keys + ["catalog/set10/x.jpg"]
    assert [o.key for o in store.list("catalog/set1/img-02", page_size=2)] == keys[20:]
    assert list(store.list("nothing/")) == []
    assert len(list(store.list(page_size=7))) == 25


def test_list_order_is_segment_wise_on_seaweedfs(store: ObjectStore) -> None:
    """Documents a SeaweedFS difference: AWS S3 would list 'a b', 'a-b', 'a/b' (byte order)."""
    for key in ("a-b", "a/b", "a b"):
        store.put(key, b".")

    assert [o.key for o in store.list(page_size=1)] == ["a/b", "a b", "a-b"]


def test_if_none_match_creates_once(store: ObjectStore) -> None:
    store.put("manifest/_delta_log/00000.json", b"first", if_none_match=True)

    with pytest.raises(PreconditionFailedError):
        store.put("manifest/_delta_log/00000.json", b"second", if_none_match=True)

    assert store.get_bytes("manifest/_delta_log/00000.json") == b"first"


def test_if_match_needs_the_current_etag(store: ObjectStore) -> None:
    first = store.put("models/m/PRODUCTION", b"v1")
    second = store.put("models/m/PRODUCTION", b"v2", if_match=first.etag)

    with pytest.raises(PreconditionFailedError):
        store.put("models/m/PRODUCTION", b"v3", if_match=first.etag)
    with pytest.raises(PreconditionFailedError):
        store.put("models/m/missing", b"v1", if_match=first.etag)

    assert store.get("models/m/PRODUCTION").etag == second.etag
    assert store.get_bytes("models/m/PRODUCTION") == b"v2"


class _LostResponseClient:
    """A real client whose puts land but whose first response is lost, so botocore's retry sees 412."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def put_object(self, **kwargs: object) -> object:
        try:
            self._real.put_object(**kwargs)  # type: ignore[attr-defined]  # lands; response lost
            return self._real.put_object(**kwargs)  # type: ignore[attr-defined]  # the retry
        except ClientError as exc:
            exc.response["ResponseMetadata"]["RetryAttempts"] = 1
            raise


def test_retried_conditional_put_recognises_its_own_write(store: ObjectStore) -> None:
    flaky = ObjectStore(store.bucket, _LostResponseClient(store.client))

    put = flaky.put("manifest/_delta_log/00001.json", b"ours", if_none_match=True)
    store.put("manifest/_delta_log/00002.json", b"theirs")
    with pytest.raises(PreconditionFailedError):
        flaky.put("manifest/_delta_log/00002.json", b"ours", if_none_match=True)

    assert put.etag == store.head("manifest/_delta_log/00001.json").etag  # type: ignore[union-attr]
    assert store.get_bytes("manifest/_delta_log/00002.json") == b"theirs"


def test_multipart_upload_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "weights.safetensors"
    data = os.urandom(11 * 2**20 + 123)
    source.write_bytes(data)

    put = store.upload_file(
        "models/per-style/x/1/weights.safetensors", source, multipart_threshold=5 * 2**20, part_size=5 * 2**20
    )
    target = tmp_path / "out" / "weights.safetensors"
    info = store.download_file("models/per-style/x/1/weights.safetensors", target)

    assert target.read_bytes() == data
    assert put.sha256 == hashlib.sha256(data).hexdigest()
    assert put.etag.endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert info.etag == put.etag and info.size == put.size == len(data)
    assert store.get("models/per-style/x/1/weights.safetensors").metadata["sha256"] == put.sha256
    assert list(target.parent.iterdir()) == [target]  # no partial file left behind


def test_small_upload_file_is_single_part(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "card.json"
    source.write_bytes(b'{"a": 1}')

    put = store.upload_file("models/x/card.json", source, content_type="application/json")

    assert put.etag == hashlib.md5(b'{"a": 1}').hexdigest()
    assert store.get("models/x/card.json").sha256 == put.sha256


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs/key",
        "a//b",
        "a/../b",
        "..",
        "./a",
        "a/./b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "dir/",
        "\ud800",
        "x" * 256,
        "é" * 128,
        "/".join(["y" * 200] * 5) + "/" + "z" * 20,
    ],
)
def test_invalid_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)
    with pytest.raises(InvalidKeyError):
        store.put(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.get(key)


@pytest.mark.parametrize(
    "key",
    [
        "artwork/Starry Night/vue d'ensemble.jpg",
        "catalog/日本/画像 1.png",
        "a..b/.c/d.",
        "x" * 255,
        "é" * 127,
        "/".join(["y" * 200] * 5) + "/" + "z" * 19,
    ],
)
def test_valid_keys_round_trip(store: ObjectStore, key: str) -> None:
    assert validate_key(key) == key

    store.put(key, key.encode())

    assert store.get_bytes(key) == key.encode()
    assert [o.key for o in store.list()] == [key]


class _NoRequestClient:
    """A client that fails the test if any request is made."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"unexpected S3 call: {name}")


def test_scope_refuses_outside_writes_before_any_request() -> None:
    scoped = ObjectStore("bucket", _NoRequestClient(), writable_prefixes=("stylized/set1/",))

    for write in (
        lambda: scoped.put("catalog/set1/a.jpg", b"x"),
        lambda: scoped.put("stylized/set10/a.jpg", b"x"),
        lambda: scoped.put_json("stylized/set1", {}),
        lambda: scoped.delete("models/x/PRODUCTION"),
        lambda: scoped.upload_file("manifest/x.parquet", Path("/nonexistent")),
    ):
        with pytest.raises(WriteOutsideScopeError):
            write()
    with pytest.raises(InvalidKeyError):
        scoped.put("stylized/set1/../../models/x", b"x")


def test_scoped_store_writes_inside(store: ObjectStore) -> None:
    scoped = store.scoped("stylized/set1/", "banks/")

    scoped.put("stylized/set1/starry/1/a.jpg", b"a")
    scoped.delete("stylized/set1/starry/1/a.jpg")
    with pytest.raises(WriteOutsideScopeError):
        scoped.put("stylized/set2/a.jpg", b"x")
    with pytest.raises(WriteOutsideScopeError):
        scoped.scoped("models/")

    assert scoped.scoped("banks/starry/").writable_prefixes == ("banks/starry/",)
    assert not store.exists("stylized/set1/starry/1/a.jpg")
    assert scoped.bucket == store.bucket and scoped.client is store.client


def test_missing_key(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.get("catalog/nope.jpg")
    with pytest.raises(KeyError):
        store.get_bytes("catalog/nope.jpg")
    with pytest.raises(ObjectNotFoundError):
        store.download_file("catalog/nope.jpg", tmp_path / "nope.jpg")

    assert store.head("catalog/nope.jpg") is None
    assert not (tmp_path / "nope.jpg").exists()
    store.delete("catalog/nope.jpg")  # deleting a missing key is not an error


def test_other_errors_are_store_errors(s3_settings: Settings) -> None:
    missing_bucket = ObjectStore.from_settings(s3_settings)  # bucket never created

    with pytest.raises(StoreError):
        missing_bucket.get("a")
    with pytest.raises(StoreError):
        list(missing_bucket.list())


def test_client_configuration(s3_settings: Settings) -> None:
    client = make_s3_client(s3_settings, max_attempts=5)
    config = client.meta.config

    # botocore reads retries["max_attempts"] as retries after the first try.
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert make_s3_client(s3_settings).meta.config.retries == {"mode": "standard", "total_max_attempts": 13}
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.s3["addressing_style"] == "path"
    assert config.request_checksum_calculation == "when_required"
    assert client.meta.endpoint_url == s3_settings.endpoint_url


def test_store_carries_connection_without_leaking_it(s3_settings: Settings) -> None:
    store = ObjectStore.from_settings(s3_settings)
    secret = s3_settings.aws_secret_access_key.get_secret_value()  # type: ignore[union-attr]

    assert store.connection["secret_key"] == secret
    assert store.connection["endpoint_url"] == s3_settings.endpoint_url
    assert secret not in repr(store)
    assert store.uri("a/b.jpg") == f"s3://{s3_settings.bucket}/a/b.jpg"


def test_a_process_makes_one_client_per_connection_and_it_works_from_threads(s3_settings: Settings) -> None:
    """Every store of a command shares the client (a new one parsed botocore's S3 model again);
    another endpoint, credentials or retry budget gets its own."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = ObjectStore.from_settings(s3_settings), ObjectStore.from_settings(s3_settings)
    assert first.client is second.client is make_s3_client(s3_settings)
    assert make_s3_client(s3_settings, max_attempts=5) is not first.client
    other = s3_settings.model_copy(update={"aws_secret_access_key": SecretStr("another-secret")})
    assert make_s3_client(other) is not first.client
    first.put("threads/probe", b"x")
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: second.get("threads/probe").data, range(8))) == [b"x"] * 8
