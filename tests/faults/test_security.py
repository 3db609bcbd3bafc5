"""Security properties, on the real embedded SeaweedFS over HTTP (never a stub of boto3).

1. Weights load only from safetensors: pickles (raw, or torch.save zips; named .pt/.pth/.ckpt or
   .safetensors) in the registry, the store or on disk are refused with a clear error, and the
   code a pickle carries never runs; a safetensors header cannot make us allocate (its config is
   checked against the tensor shapes on the meta device first).
2. Object keys from a listing cannot make a write land outside the run's output prefix.
3. Credentials (the store's generated, distinctive access key id and secret) never appear in logs,
   manifest rows, objects or their metadata, reports, or error messages; not on weed's command line.
4. The embedded store listens on 127.0.0.1 only, keeps its generated credentials in 0600 files, and
   refuses requests with a wrong secret, an unknown key, or no credentials.
5. Images are capped in pixels and bytes before decoding.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import secrets
import socket
import stat
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import psutil
import pytest
import torch
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image
from safetensors.numpy import save as save_numpy

from infra.local_store import EmbeddedStore, StoreInfo
from infra.manifest import ManifestTable
from infra.registry import ModelRegistry, UnsafeWeightsError
from infra.settings import Settings, get_settings
from infra.store import InvalidKeyError, ObjectStore, StoreError, WriteOutsideScopeError, validate_key
from runs import context
from styleops.errors import ImageTooLargeError, InvalidInputError, WeightsNotFoundError
from styleops.io.images import decode_image, read_image
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.io.weights import load_weights_file
from styleops.models.transformer import TransformerNet
from styleops.training.engine import TrainConfig
from tests.conftest import set_env, store_env
from tests.flows.conftest import EXAMPLES, vgg_weights_file  # noqa: F401

pytestmark = pytest.mark.integration

PHOTOS = sorted((EXAMPLES / "catalog").glob("*.jpg"))


# ---- 1. weights: safetensors only ---------------------------------------------------------------
class _Payload:
    """Unpickling this runs code: it writes a marker file (what an attacker's pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _evil_blobs(marker: Path, tmp_path: Path) -> dict[str, bytes]:
    """The same code-running payload as a raw pickle and as a torch.save checkpoint (zip)."""
    zipped = tmp_path / "evil-zip.pt"
    torch.save({"state_dict": _Payload(marker)}, zipped)
    return {"pickle": pickle.dumps({"weight": _Payload(marker)}, protocol=4), "torch-zip": zipped.read_bytes()}


def _written_as_weights(blob: bytes, stem: Path) -> Iterator[Path]:
    """`blob` written as <stem>.safetensors, .pt, .pth and .ckpt in turn (each file as it is written)."""
    for suffix in (".safetensors", ".pt", ".pth", ".ckpt"):
        path = stem.with_name(stem.name + suffix)
        path.write_bytes(blob)
        yield path


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a pickle's code ran"


@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_pickled_weights_are_refused_everywhere_without_running_code(
    kind: str, marker: Path, tmp_path: Path, fault_store: ObjectStore, fault_settings: Settings
) -> None:
    blob = _evil_blobs(marker, tmp_path)[kind]
    said = "a Python pickle" if kind == "pickle" else "a zip archive"

    # the registry will not register it, and refuses it where an attacker put it under a valid card
    registry = ModelRegistry(fault_store, table_prefix=f"registry-{kind}")
    name = f"evil-{kind}"
    with pytest.raises(UnsafeWeightsError, match=f"^not a safetensors file: it is {said}"):
        registry.register("per-style", name, blob, {})
    assert list(fault_store.list(f"models/per-style/{name}/")) == []
    good = registry.register("per-style", name, save_numpy({"w": np.zeros(2, np.float32)}), {})
    fault_store.put(good.weights_key, blob)  # swapped in behind the registry's back
    with pytest.raises(UnsafeWeightsError, match=f"it is {said}.*; pickles can run code when loaded and are refused"):
        registry.weights_bytes("per-style", name, good.version)
    with pytest.raises(UnsafeWeightsError):
        context.load_model(registry, "per-style", name, good.version)

    # the serializer, whatever the file is called
    with pytest.raises(
        InvalidInputError,
        match=f"^weights: not a safetensors file: it is {said}.*; pickles can run code when loaded and are never read",
    ):
        from_safetensors(blob)

    # local files: a .safetensors name does not make pickle bytes loadable; .pt/.pth/.ckpt
    # (VGG weights from STYLEOPS_VGG_WEIGHTS) go through torch's weights-only unpickler, which refuses code
    for path in _written_as_weights(blob, tmp_path / "model"):
        with pytest.raises(
            WeightsNotFoundError,
            match="not a safetensors file" if path.suffix == ".safetensors" else "refused: not a plain state dict",
        ):
            load_weights_file(path)

    # tasks: warm starts and imports
    from tasks.training import import_model_task, warm_start_state

    for path in _written_as_weights(blob, tmp_path / "init"):
        with pytest.raises(
            InvalidInputError,
            match="not a safetensors file" if path.suffix == ".safetensors" else "only .safetensors weights are loaded",
        ):
            warm_start_state(str(path))
        with pytest.raises(InvalidInputError, match="not a safetensors file"):
            import_model_task.fn("per-style", name, str(path), promote=False)
    assert [v.version for v in registry.versions("per-style", name)] == [good.version]


def test_a_safetensors_header_cannot_make_us_allocate() -> None:
    """The architecture config is read from the file: a tiny file claiming 200000 channels used to
    build a ~10 TB network before comparing shapes. Now it is refused from the shapes alone."""
    net = TransformerNet(channels=4, n_residual=1)
    honest = to_safetensors(net.state_dict(), "TransformerNet", net.config())
    n = int.from_bytes(honest[:8], "little")
    header = json.loads(honest[8 : 8 + n])
    header["__metadata__"]["config"] = json.dumps({"channels": 200_000, "n_residual": 50})
    crafted_header = json.dumps(header).encode()
    crafted = len(crafted_header).to_bytes(8, "little") + crafted_header + honest[8 + n :]
    with pytest.raises(
        InvalidInputError,
        match=(
            r"^weights: weights do not fit TransformerNet"
            r"\(\{'channels': 200000, 'n_residual': 50, 'output': 'direct'\}\): missing \["
        ),
    ):
        from_safetensors(crafted)
    header["__metadata__"]["config"] = json.dumps({"channels": 4, "n_residual": 1, "evil": True})
    bad_kwargs = json.dumps(header).encode()
    with pytest.raises(InvalidInputError, match="invalid TransformerNet config in the weights header"):
        from_safetensors(len(bad_kwargs).to_bytes(8, "little") + bad_kwargs + honest[8 + n :])
    assert from_safetensors(honest).config() == net.config()  # the honest file still loads


# ---- 2 and 3. a real stylize run: keys stay in scope, secrets stay out ------------------------
def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (a few dozen bytes: a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


HOSTILE_KEYS = [
    "catalog/sec/../../models/per-style/sec/v0001/weights.safetensors",
    "catalog/sec/../sec2/x.jpg",
    "catalog/sec/./x.jpg",
    "catalog/sec//x.jpg",
    "/catalog/sec/x.jpg",
    "catalog/sec/a\\..\\..\\x.jpg",
    "catalog/sec/x\x00.jpg",
    "catalog/sec/x\n.jpg",
]
STYLE, RUN_ID = "sec", "run-sec"


@dataclass
class StylizeRun:
    store: ObjectStore
    info: StoreInfo
    output_prefix: str
    counts: dict[str, int]
    records: list[logging.LogRecord]
    rows: list[dict[str, Any]]
    before: dict[str, str]  # key -> etag of every object in the bucket just before the run
    written: dict[str, bytes]  # every object in the bucket after the run, report and audit
    metadata: dict[str, dict[str, str]]
    files: dict[str, bytes]  # report and audit files
    markdown: str


@pytest.fixture(scope="module")
def stylize_run(
    fault_store: ObjectStore,
    embedded_store: StoreInfo,
    vgg_weights_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StylizeRun]:
    """Two catalog photos, a decompression bomb, two images whose outputs would share a key, and
    hostile listing keys, stylized by the real shard task (max_side 64, metrics on) with every
    log record captured at DEBUG; then the HTML report and the audit report are written."""
    from runs.keys import output_key
    from runs.outputs import count_findings
    from runs.reports.audit import summary_markdown, write_audit_report
    from runs.reports.catalog import write_report
    from runs.shard import ShardJob
    from runs.spec import StylizeParams
    from tasks.audit import audit_rows_task, orphans_task, sample_sheet_task
    from tasks.stylize import stylize_shard_task

    home = tmp_path_factory.mktemp("sec-home")
    mp = pytest.MonkeyPatch()
    set_env(
        mp,
        {
            **store_env(embedded_store, fault_store.bucket, home),
            "STYLEOPS_VGG_WEIGHTS": str(vgg_weights_file),
            "STYLEOPS_DEVICE": "cpu",
        },
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.getMessage()  # format now (args may change)
            records.append(record)

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        st = fault_store
        st.put("artwork/sec/art.jpg", (EXAMPLES / "artwork" / "kandinsky" / "kandinsky.jpg").read_bytes())
        keys = ["catalog/sec/a.jpg", "catalog/sec/b é.jpg"]
        for key, photo in zip(keys, PHOTOS, strict=False):
            st.put(key, photo.read_bytes())
        st.put("catalog/sec/bomb.png", _png_declaring(100_000, 100_000))
        # "c.png" gets "c.png.jpg"; so does the image named "c.png.jpg": one output key for two images
        st.put("catalog/sec/c.png", _png_bytes(PHOTOS[2], (40, 30)))
        st.put("catalog/sec/c.png.jpg", PHOTOS[3].read_bytes())
        cfg = TrainConfig(steps=1, image_size=32, style_size=64, channels=4, n_residual=1)
        net = TransformerNet(4, 1)
        context.registry().register(
            "per-style",
            STYLE,
            to_safetensors(net.state_dict(), "TransformerNet", net.config()),
            {
                "architecture": "TransformerNet",
                "artwork_key": "artwork/sec/art.jpg",
                "train_config": cfg.to_dict(),
                "model_config": net.config(),
                "metrics": {},
                "loss_curve": [],
            },
        )
        listed = [(i.key, i.etag, i.size) for i in st.list("catalog/sec/")]
        items = listed + [(k, "etag", 1234) for k in HOSTILE_KEYS]
        params = StylizeParams(max_side=64)
        before = {i.key: i.etag for i in st.list("")}
        counts = stylize_shard_task.fn(
            ShardJob("s0000", items, RUN_ID, "sec", STYLE, "v0001", params, batch_size=2, metrics=True)
        )

        out_dir = tmp_path_factory.mktemp("sec-reports")
        write_report(out_dir / "report", "sec", [STYLE])
        rows = audit_rows_task.fn(run_id=RUN_ID)
        orphans = orphans_task.fn("stylized/sec/")
        sheet = sample_sheet_task.fn(rows["samples"])
        scope = {"run_id": RUN_ID, "since": None, "until": None, "catalog": None, "styles": None}
        write_audit_report(out_dir / "audit", scope, rows, None, rows["findings"], sheet)
        markdown = summary_markdown(scope, count_findings(rows["findings"]), rows)
        written, metadata = {}, {}
        for info in st.list(""):
            got = st.get(info.key)
            written[info.key] = got.data
            metadata[info.key] = got.metadata
        files = {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*")) if p.is_file()}
        table_rows = ManifestTable(st).read_arrow(filters=[("run_id", "=", RUN_ID)]).to_pylist()
        prefix = output_key("catalog/sec/x.jpg", "sec", STYLE, "v0001", params).rsplit("/", 1)[0] + "/"
        assert orphans == []
        yield StylizeRun(
            st, embedded_store, prefix, counts, records, table_rows, before, written, metadata, files, markdown
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        torch.set_num_threads(threads)
        mp.undo()
        get_settings.cache_clear()


def _png_bytes(photo: Path, size: tuple[int, int]) -> bytes:
    import io

    with Image.open(photo) as image:
        out = io.BytesIO()
        image.convert("RGB").resize(size).save(out, "PNG")
    return out.getvalue()


def test_hostile_listing_keys_are_failed_rows_and_every_write_stays_in_scope(stylize_run: StylizeRun) -> None:
    run = stylize_run
    by_key = {r["image_key"]: r for r in run.rows}
    assert sorted(by_key) == sorted(
        [
            "catalog/sec/a.jpg",
            "catalog/sec/b é.jpg",
            "catalog/sec/bomb.png",
            "catalog/sec/c.png",
            "catalog/sec/c.png.jpg",
            *HOSTILE_KEYS,
        ]
    )
    assert len(run.rows) == len(by_key)  # one row per item
    for key in HOSTILE_KEYS:
        row = by_key[key]
        assert (row["status"], row["error_class"], row["output_key"]) == ("failed", "store_error", None), key
        with pytest.raises(InvalidKeyError):
            validate_key(key)
    for key in ("catalog/sec/a.jpg", "catalog/sec/b é.jpg"):
        assert by_key[key]["status"] == "ok" and by_key[key]["output_key"].startswith(run.output_prefix)
    bomb = by_key["catalog/sec/bomb.png"]
    assert (bomb["status"], bomb["error_class"]) == ("failed", "too_large")
    assert bomb["error"].startswith("PNG image is over the limit of 50000000 pixels")
    # Two images, one output key: the first writer's output stays, the other is a failed row (never an overwrite).
    pair = sorted(
        (by_key[k]["status"], by_key[k]["error_class"]) for k in ("catalog/sec/c.png", "catalog/sec/c.png.jpg")
    )
    assert pair == [("failed", "output_conflict"), ("ok", None)]
    winner = next(by_key[k] for k in ("catalog/sec/c.png", "catalog/sec/c.png.jpg") if by_key[k]["status"] == "ok")
    assert run.metadata[winner["output_key"]]["source-key"] == winner["image_key"]
    assert (run.counts["ok"], run.counts["failed"]) == (3, len(HOSTILE_KEYS) + 2)

    # Every object the run (and the report and audit after it) wrote is an output under the run's
    # prefix or part of the manifest table; nothing that was there before changed.
    new = set(run.written) - set(run.before)
    stylized = {k for k in new if k.startswith("stylized/")}
    assert stylized == {r["output_key"] for r in run.rows if r["status"] == "ok"}
    assert all(k.startswith(run.output_prefix) for k in stylized)
    assert (new - stylized) and all(k.startswith("manifest/") for k in new - stylized), sorted(new - stylized)[:5]
    assert {k: i.etag for k in run.before for i in [run.store.head(k)]} == run.before


def test_the_shard_store_refuses_writes_outside_its_scope_before_any_request(fault_store: ObjectStore) -> None:
    scoped, tag = fault_store.scoped("stylized/"), uuid.uuid4().hex[:8]
    for key in [
        f"models/per-style/s{tag}/v0001/weights.safetensors",
        f"manifest-{tag}/_delta_log/00000000000000000099.json",
        f"stylizedX/{tag}.jpg",
        f"catalog/{tag}/a.jpg",
    ]:
        with pytest.raises(WriteOutsideScopeError):
            scoped.put(key, b"x")
        with pytest.raises(WriteOutsideScopeError):
            scoped.delete(key)
        assert not fault_store.exists(key)
    for key in ["stylized/../models/x", "stylized/./x", "stylized//x", "/stylized/x"]:
        with pytest.raises(InvalidKeyError):
            scoped.put(key, b"x")
    with pytest.raises(WriteOutsideScopeError):
        scoped.scoped("models/")  # a scope never widens


def _needles(info: StoreInfo) -> dict[str, str]:
    return {"access key id": info.access_key, "secret": info.secret_key}


def _leaks(blob: bytes | str, needles: dict[str, str]) -> list[str]:
    text = blob if isinstance(blob, str) else blob.decode("latin-1")
    encodings = {name: [v, base64.b64encode(v.encode()).decode(), v.encode().hex()] for name, v in needles.items()}
    return [name for name, forms in encodings.items() if any(form in text for form in forms)]


def test_credentials_never_appear_in_logs_rows_objects_or_reports(stylize_run: StylizeRun) -> None:
    run, needles = stylize_run, _needles(stylize_run.info)
    assert len(run.info.secret_key) >= 32 and len(run.info.access_key) >= 16  # distinctive, generated
    assert run.records, "no log record was captured"
    ours = [r for r in run.records if not r.name.startswith(("botocore", "boto3", "urllib3", "s3transfer"))]
    assert any(r.name.startswith(("styleops", "prefect", "tasks")) for r in ours)
    leaked = {(r.name, r.levelname): _leaks(r.getMessage(), needles) for r in ours}
    assert {k: v for k, v in leaked.items() if v} == {}
    # botocore's own DEBUG lines (opt-in) carry the key id in the Authorization header, never the secret
    assert not any("secret" in _leaks(r.getMessage(), needles) for r in run.records)
    assert not any("secret" in _leaks(str(r.args), needles) for r in run.records)
    rows_text = json.dumps(run.rows, default=str)
    assert _leaks(rows_text, needles) == []
    assert {k: _leaks(v, needles) for k, v in run.written.items() if _leaks(v, needles)} == {}
    assert {k: _leaks(json.dumps(m), needles) for k, m in run.metadata.items() if _leaks(json.dumps(m), needles)} == {}
    assert sorted(run.files) == [
        "audit/contact_sheet.png",
        "audit/findings.json",
        "audit/index.html",
        "report/contact_sheet.png",
        "report/index.html",
        "report/manifest.csv",
    ]
    assert {k: _leaks(v, needles) for k, v in run.files.items() if _leaks(v, needles)} == {}
    assert _leaks(run.markdown, needles) == []
    # the objects' representations
    assert _leaks(repr(run.store) + repr(run.info) + str(run.info), needles) == []


def test_credentials_never_appear_in_errors_from_refused_requests(
    fault_store: ObjectStore, embedded_store: StoreInfo, tmp_path: Path
) -> None:
    wrong_secret = "WRONG-" + secrets.token_urlsafe(24)
    bad = Settings(
        home=tmp_path,
        bucket=fault_store.bucket,
        endpoint_url=embedded_store.endpoint_url,
        aws_access_key_id=embedded_store.access_key,
        aws_secret_access_key=wrong_secret,
    )
    needles = {**_needles(embedded_store), "wrong secret": wrong_secret}
    st = ObjectStore.from_settings(bad)
    messages = []
    for attempt in (
        lambda: st.put("stylized/x.jpg", b"x"),
        lambda: st.get("catalog/sec/a.jpg"),
        lambda: list(st.list("catalog/")),
    ):
        with pytest.raises(StoreError) as raised:
            attempt()
        messages.append(str(raised.value) + repr(raised.value) + str(raised.value.__cause__))
    with pytest.raises(Exception) as raised:
        ManifestTable(st, prefix="manifest-denied").append([{"run_id": "r", "image_key": "k", "status": "ok"}])
    messages.append(str(raised.value) + repr(raised.value))
    assert all("SignatureDoesNotMatch" in m or "AccessDenied" in m or "403" in m for m in messages[:3]), messages
    assert [m for m in messages if _leaks(m, {k: v for k, v in needles.items() if k != "access key id"})] == []
    assert [m for m in messages if _leaks(m, needles)] == [], "the access key id appears in an error message"


# ---- 4. the embedded store ------------------------------------------------------------------------
def _client(info: StoreInfo, access_key: str | None, secret_key: str | None) -> Any:
    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 1},
        **({"signature_version": UNSIGNED} if access_key is None else {}),
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )


def test_embedded_store_listens_on_loopback_only(embedded_store: StoreInfo) -> None:
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(embedded_store.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert {port for _, port in listening} <= set(embedded_store.ports.values())
    assert embedded_store.ports["s3"] in {port for _, port in listening}
    # and from this machine's other addresses, nothing answers on the S3 port
    others = {
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    }
    for address in others:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((address, embedded_store.ports["s3"])) != 0, address


def test_embedded_store_credentials_are_generated_and_private(embedded_store: StoreInfo, tmp_path: Path) -> None:
    state_dir = embedded_store.data_dir.parent
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert (mode(state_dir), mode(state_dir / "s3.json"), mode(state_dir / "state.json")) == (0o700, 0o600, 0o600)
    creds = json.loads((state_dir / "s3.json").read_text())["identities"][0]["credentials"][0]
    assert (creds["accessKey"], creds["secretKey"]) == (embedded_store.access_key, embedded_store.secret_key)
    cmdline = "\0".join(psutil.Process(embedded_store.pid).cmdline())
    environ = "\0".join(f"{k}={v}" for k, v in psutil.Process(embedded_store.pid).environ().items())
    assert _leaks(cmdline + environ, _needles(embedded_store)) == []
    assert _leaks((state_dir / "weed.log").read_bytes(), _needles(embedded_store)) == []
    # another store generates other credentials, 0600 whatever the umask
    other = EmbeddedStore(tmp_path / "other")
    other.state_dir.mkdir(parents=True)
    old = os.umask(0)
    try:
        access, secret = other.credentials()
    finally:
        os.umask(old)
    assert mode(other.creds_file) == 0o600
    assert access != embedded_store.access_key and secret != embedded_store.secret_key and len(secret) >= 32
    assert other.credentials() == (access, secret)  # kept, not regenerated
    other.creds_file.chmod(0o644)  # e.g. restored from a backup: tightened again when read
    assert other.credentials() == (access, secret) and mode(other.creds_file) == 0o600


def wrong_first_character(secret: str) -> str:
    """`secret` with its first character replaced by another one."""
    return ("y" if secret[0] == "x" else "x") + secret[1:]


def test_requests_with_wrong_or_no_credentials_are_refused(embedded_store: StoreInfo, fault_store: ObjectStore) -> None:
    fault_store.put("secret/object.txt", b"private bytes")
    cases = {
        # one character changed (a secret that starts with "x" was left as it was: a flaky pass of the store)
        "wrong secret": (embedded_store.access_key, wrong_first_character(embedded_store.secret_key)),
        "unknown key": ("SO" + secrets.token_hex(9).upper(), embedded_store.secret_key),
        "no credentials": (None, None),
    }
    codes = {}
    for case, (access, secret) in cases.items():
        client = _client(embedded_store, access, secret)
        for op, call in {
            "list": lambda: client.list_buckets(),
            "get": lambda: client.get_object(Bucket=fault_store.bucket, Key="secret/object.txt"),
            "put": lambda: client.put_object(Bucket=fault_store.bucket, Key=f"intruder/{uuid.uuid4().hex}", Body=b"x"),
        }.items():
            with pytest.raises(ClientError) as raised:
                call()
            codes[(case, op)] = (
                raised.value.response["ResponseMetadata"]["HTTPStatusCode"],
                raised.value.response["Error"]["Code"],
            )
    assert {k: v[0] for k, v in codes.items()} == {k: 403 for k in codes}
    assert {v[1] for k, v in codes.items() if k[0] == "wrong secret"} == {"SignatureDoesNotMatch"}
    assert {v[1] for k, v in codes.items() if k[0] == "unknown key"} <= {"InvalidAccessKeyId", "AccessDenied"}
    assert {v[1] for k, v in codes.items() if k[0] == "no credentials"} == {"AccessDenied"}
    assert list(fault_store.list("intruder/")) == []
    assert fault_store.get_bytes("secret/object.txt") == b"private bytes"


def test_the_filer_and_volume_ports_refuse_requests_without_a_token(
    embedded_store: StoreInfo, fault_store: ObjectStore
) -> None:
    """weed's filer HTTP port would serve and accept any object of any bucket without credentials
    (found by this suite); the store now starts with JWT keys (security.toml, 0600) that only weed has."""
    import urllib.error
    import urllib.request

    fault_store.put("secret/filer.txt", b"private bytes")
    filer = f"http://127.0.0.1:{embedded_store.ports['filer']}/buckets/{fault_store.bucket}"
    for request in (
        urllib.request.Request(f"{filer}/secret/filer.txt"),
        urllib.request.Request(f"{filer}/"),
        urllib.request.Request(f"{filer}/intruder.txt", data=b"x", method="PUT"),
    ):
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=5).read()
        assert raised.value.code == 401, request.full_url
    assert not fault_store.exists("intruder.txt") and fault_store.get_bytes("secret/filer.txt") == b"private bytes"
    # the volume server: a file id from the (open) master is no use without the token
    assigned = json.loads(
        urllib.request.urlopen(f"http://127.0.0.1:{embedded_store.ports['master']}/dir/assign", timeout=5).read()
    )
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nintruder\r\n--b--\r\n'
    for request in (
        urllib.request.Request(
            f"http://{assigned['url']}/{assigned['fid']}",
            data=body,
            method="POST",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ),
        urllib.request.Request(f"http://{assigned['url']}/{assigned['fid']}"),
    ):
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=5).read()
        assert raised.value.code == 401, request.method
    security = embedded_store.data_dir.parent / "security.toml"
    assert stat.S_IMODE(security.stat().st_mode) == 0o600
    assert security.read_text().count("key = ") == 4


# ---- 5. images: capped before decoding -----------------------------------------------------------------
def test_declared_huge_png_is_refused_before_any_pixel_is_allocated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from PIL import ImageFile

    allocated: list[tuple[str, Any]] = []
    real_new = Image.core.new

    def spy_new(mode: str, size: Any, *args: Any) -> Any:
        allocated.append((mode, size))
        return real_new(mode, size, *args)

    monkeypatch.setattr(Image.core, "new", spy_new)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: allocated.append(("load", self.size)))
    for width, height, limit in ((100_000, 100_000, 50_000_000), (8_000, 8_000, 50_000_000), (300, 300, 10_000)):
        data = _png_declaring(width, height)
        assert len(data) < 200
        with pytest.raises(ImageTooLargeError, match=r"^PNG image is"):
            decode_image(data, max_pixels=limit)
    assert allocated == []
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is left on

    big = tmp_path / "big.png"
    with big.open("wb") as f:  # a sparse file one byte over the cap: refused from its size, never read
        f.truncate(64 * 2**20 + 1)
    with pytest.raises(ImageTooLargeError, match=r"^file is 67108865 bytes, over the limit of 67108864 bytes$"):
        read_image(big)
    with pytest.raises(ImageTooLargeError, match=r"^file is 1001 bytes, over the limit of 1000 bytes$"):
        decode_image(b"\0" * 1001, max_bytes=1000)
