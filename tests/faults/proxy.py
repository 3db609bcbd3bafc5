"""A fault-injecting TCP proxy for the S3 API (tests only; stdlib only).

It sits between our clients (boto3 in infra/store.py, object_store inside deltalake) and the real
embedded SeaweedFS, reads each HTTP request, and either forwards it or injects the fault of the
first matching `Rule`:

    internal_error   500 InternalError          (S3 XML error body)
    slow_down        503 SlowDown               (S3's throttling answer)
    unavailable      503 ServiceUnavailable
    reset            the connection is reset (RST) mid-request (after the head and half the
                     body), or with after=True mid-response (half the answer relayed)
    timeout          the connection is held open, unanswered, for `hold_s`, then closed
    restart          the SeaweedFS process is really stopped and started again on the same data
                     dir (infra.local_store.EmbeddedStore at `store_dir`; without one, nothing is
                     restarted, the proxy only refuses connections for `hold_s`). Meanwhile the
                     proxy stops listening: clients get "connection refused", as from a dead
                     store. Once its volumes are registered again, for `warmup_s` every request
                     gets 500 InternalError (counted as `warming_up`), as SeaweedFS answers before
                     they are (0-5 s measured): deterministic, where the real window is not

`after=True` forwards the request first: the store did the work and the client never hears of it
(the ambiguous case of a write). Rules match a method, a regex searched in the request target (path
and query as sent) and one in the User-Agent (`agent="object_store"`: deltalake, `"Boto3"`:
boto3); `skip` lets that many matching requests through first, `times` is how many to hit (None:
every one). `counts()` says what was injected, by kind.

The proxy runs in a child process (`python -m tests.faults.proxy`, driven by JSON lines on its
stdin): a call into deltalake may hold the GIL while it waits for the store (`DeltaTable.history`
does), which would starve proxy threads in the test process. Every request goes upstream on a
fresh connection with `Connection: close` (not a signed header) and the answer is relayed as
received: one request per client connection, no keep-alive. FAULT_PROXY_LOG=<file> traces them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("internal_error", "slow_down", "unavailable", "reset", "timeout", "restart")
_ERRORS = {  # kind -> (status line, S3 error code, message)
    "internal_error": (
        "500 Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    "slow_down": ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
    "unavailable": ("503 Service Unavailable", "ServiceUnavailable", "The service is unavailable. Please retry."),
}


@dataclass
class Rule:
    kind: str
    method: str | None = None  # GET, PUT, HEAD, ... (None: any)
    path: str = ""  # regex searched in the request target, e.g. r"/_delta_log/\d+\.json$"
    agent: str = ""  # regex searched in the User-Agent
    after: bool = False  # forward first, then fault instead of relaying the answer
    skip: int = 0
    times: int | None = 1
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")

    def take(self, method: str, target: str, agent: str) -> bool:
        """Whether this request gets the fault (counted here); called under the server's lock."""
        if (
            (self.method and method != self.method)
            or not re.search(self.path, target)
            or not re.search(self.agent, agent)
        ):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


class FaultProxy:
    """`with FaultProxy(store.endpoint_url, store_dir=...) as proxy:` serves on `proxy.url`.

    store_dir: the EmbeddedStore state dir, needed by `restart` rules.
    """

    def __init__(
        self, upstream_url: str, *, hold_s: float = 3.0, store_dir: Path | None = None, warmup_s: float = 0.0
    ) -> None:
        self._argv = [upstream_url, str(hold_s), "" if store_dir is None else str(store_dir), str(warmup_s)]
        self.url = ""

    def __enter__(self) -> FaultProxy:
        root = Path(__file__).resolve().parents[2]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.proxy", *self._argv],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.url = self._call("url")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call("close")
        finally:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def add(self, *rules: Rule) -> FaultProxy:
        self._call("add", [{k: v for k, v in asdict(r).items() if k not in ("seen", "fired")} for r in rules])
        return self

    def clear(self) -> None:
        """Drop the rules and zero the counts (between scenarios)."""
        self._call("clear")

    def counts(self) -> Counter[str]:
        """Faults injected so far, by kind (`refused`: requests cut because the store was down)."""
        return Counter(self._call("counts"))

    def requests(self) -> Counter[str]:
        """Requests seen so far, by method."""
        return Counter(self._call("requests"))

    def errors(self) -> list[str]:
        """Why restarts failed (the exceptions' reprs), oldest first."""
        return list(self._call("errors"))

    def wait_up(self, timeout: float = 60) -> None:
        """Wait for a restart in progress to finish."""
        self._call("wait_up", timeout)

    def _call(self, command: str, arg: Any = None) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps([command, arg]) + "\n")
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fault proxy exited with {self._process.wait()}")
        ok, value = json.loads(line)
        if not ok:
            raise RuntimeError(f"fault proxy: {value}")
        return value


def _child_main(upstream_url: str, hold_s: str, store_dir: str, warmup_s: str) -> None:
    """The proxy process: serves, and answers one JSON line on stdout per command line on stdin."""
    replies, sys.stdout = sys.stdout, sys.stderr  # nothing else may write to the reply channel
    server = _Server(upstream_url, float(hold_s), store_dir or None, float(warmup_s))
    server.start()
    commands: dict[str, Callable[[Any], Any]] = {
        "url": lambda _: server.url,
        "add": lambda rules: server.add([Rule(**r) for r in rules]),
        "clear": lambda _: server.clear(),
        "counts": lambda _: dict(server.counts),
        "requests": lambda _: dict(server.requests),
        "errors": lambda _: list(server.errors),
        "wait_up": lambda timeout: server.wait_up(timeout),
        "close": lambda _: server.close(),
    }
    for line in sys.stdin:
        command, arg = json.loads(line)
        try:
            reply = [True, commands[command](arg)]
        except Exception as exc:  # reported to the test process
            reply = [False, repr(exc)]
        print(json.dumps(reply), file=replies, flush=True)
        if command == "close":
            break


class _Server:
    """The proxy itself: one thread per client connection."""

    def __init__(self, upstream_url: str, hold_s: float, store_dir: str | None, warmup_s: float) -> None:
        host, port = upstream_url.removeprefix("http://").rstrip("/").split(":")
        self.upstream = (host, int(port))
        self.hold_s = hold_s
        self.store_dir = store_dir
        self.warmup_s = warmup_s
        self._warm_at = 0.0  # monotonic time until which requests get 500 (after a restart)
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.errors: list[str] = []  # why restarts failed
        self._lock = threading.Lock()
        self._down = threading.Event()  # set while the store restarts
        self._closing = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        log = os.environ.get("FAULT_PROXY_LOG")
        self.log = open(log, "a") if log else None  # noqa: SIM115 (open for the process's life)

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()

    def add(self, rules: list[Rule]) -> None:
        with self._lock:
            self.rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.counts.clear()
            self.requests.clear()

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._down.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("the store did not come back")
            time.sleep(0.05)

    def close(self) -> None:
        self.wait_up(120)
        self._closing = True
        _stop_listening(self._listener)

    def _trace(self, line: str) -> None:
        if self.log is not None:
            print(f"{time.monotonic():.3f} {line}", file=self.log, flush=True)

    # ---- serving -------------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closing:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: shutting down, or the store is restarting
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_one(conn)
        except OSError:
            pass  # the client went away
        finally:
            _close(conn)

    def _serve_one(self, conn: socket.socket) -> None:
        reader = _Reader(conn)
        head = reader.head()
        if head is None:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        with self._lock:
            self.requests[method] += 1
            warming_up = time.monotonic() < self._warm_at
            rule = (
                None
                if warming_up
                else next((r for r in self.rules if r.take(method, target, headers.get("user-agent", ""))), None)
            )
            if warming_up:
                self.counts["warming_up"] += 1
            elif rule is not None:
                self.counts[rule.kind] += 1
        if warming_up:
            reader.body(headers)
            conn.sendall(_error_response("internal_error", method, target))
            return
        agent = "delta" if "object_store" in headers.get("user-agent", "") else "boto3"
        self._trace(
            f"{agent} {method} {target}" + ("" if rule is None else f" <- {rule.kind}{' after' if rule.after else ''}")
        )
        if rule is not None and rule.kind == "restart":
            self._down.set()
            threading.Thread(target=self._restart, daemon=True).start()
            _reset(conn)  # the store died under this request
            return
        if rule is not None and rule.kind == "reset" and not rule.after:
            reader.body(headers, fraction=0.5)  # the head and half the body arrived; then RST
            _reset(conn)
            return
        body = reader.body(headers)
        if rule is None or rule.after:
            response = self._forward(lines, body)
            if response is None:  # the store is down (restarting): cut, as a dying server would
                with self._lock:
                    self.counts["refused"] += 1
                _reset(conn)
                return
            self._trace(f"  -> {response[9:12].decode('latin-1')} {target}")
        if rule is None:
            conn.sendall(response)
        elif rule.kind == "reset":  # after: half of the answer, then RST
            conn.sendall(response[: len(response) // 2])
            _reset(conn)
        elif rule.kind == "timeout":
            _hold(conn, self.hold_s)
        else:
            conn.sendall(_error_response(rule.kind, method, target))

    def _forward(self, lines: list[str], body: bytes) -> bytes | None:
        """The request sent to the store on a new connection; its whole answer (None: refused or cut)."""
        kept = [
            ln for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() not in ("connection", "expect", "keep-alive")
        ]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        try:
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(request)
                chunks = []
                while chunk := up.recv(65536):
                    chunks.append(chunk)
        except OSError:
            return None
        return b"".join(chunks) or None

    def _restart(self) -> None:
        """Stop listening, restart SeaweedFS (same data dir and ports), listen again on our port."""
        self._trace("restart: stopped listening")
        try:
            _stop_listening(self._listener)
            if self.store_dir is None:
                time.sleep(self.hold_s)  # no store to restart: only refuse connections for a while
            else:
                from infra.local_store import EmbeddedStore

                service = EmbeddedStore(Path(self.store_dir))
                # SIGTERM; SIGKILL after 5 s (weed's volume server sometimes hangs in shutdown: 20 s)
                service.stop(timeout=5)
                info = service.start()
                _wait_volumes(info.ports["master"], service.data_dir)  # warmup_s models the wait instead
                host, port = info.endpoint_url.removeprefix("http://").split(":")
                if (host, int(port)) != self.upstream:  # its ports were taken: follow it
                    self._trace(f"restart: the store moved to {info.endpoint_url}")
                    self.upstream = (host, int(port))
        except Exception as exc:  # the test sees it in counts()
            self._trace(f"restart: failed: {exc!r}")
            with self._lock:
                self.counts["restart_failed"] += 1
                self.errors.append(repr(exc))
        finally:
            self._warm_at = time.monotonic() + self.warmup_s
            self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: TIME_WAIT is no obstacle
            threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
            self._down.clear()
            self._trace("restart: listening again")


def _wait_volumes(master_port: int, data_dir: Path, timeout: float = 60) -> None:
    """Until the master knows every volume on disk: SeaweedFS answers S3 before its volume server
    has registered them, and reads of stored objects fail with 500 until then (for 0-5 s, or
    longer after a SIGKILL), which would make a test's duration and outcome a matter of luck."""
    on_disk = {int(p.stem.rsplit("_", 1)[-1]) for p in data_dir.rglob("*.dat")}
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{master_port}/dir/status", timeout=2) as answer:
                topology = json.load(answer)["Topology"]
            registered: set[int] = set()
            # a master that has just started answers null for the lists it has no entries in yet
            racks = (rack for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or [])
            for node in (n for rack in racks for n in rack.get("DataNodes") or []):
                for token in (node.get("VolumeIds") or "").split():  # "1 3-5"
                    first, _, last = token.partition("-")
                    registered.update(range(int(first), int(last or first) + 1))
            if on_disk <= registered:
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"volumes {sorted(on_disk)} not all registered after {timeout} s")
        time.sleep(0.1)


# ---- HTTP/1.1 framing (just enough for S3 requests) ---------------------------------------------
class _Reader:
    """Reads one request from a client socket: the head, then (part of) the body."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buf = conn, b""

    def _more(self) -> None:
        chunk = self.conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed mid-request")
        self.buf += chunk

    def head(self) -> bytes | None:
        try:
            while b"\r\n\r\n" not in self.buf:
                self._more()
        except ConnectionError:
            return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def body(self, headers: dict[str, str], *, fraction: float = 1.0) -> bytes:
        """The body as sent (a chunked one in its chunked framing); `fraction` of a sized one."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while not ((self.buf.startswith(b"0\r\n") or b"\r\n0\r\n" in self.buf) and self.buf.endswith(b"\r\n\r\n")):
                self._more()
            return self.buf
        n = int(int(headers.get("content-length", "0")) * fraction)
        while len(self.buf) < n:
            self._more()
        return self.buf[:n]


def _error_response(kind: str, method: str, target: str) -> bytes:
    status, code, message = _ERRORS[kind]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{target.split('?', 1)[0]}</Resource>"
        "<RequestId>FAULTPROXY</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
        "x-amz-request-id: FAULTPROXY\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


def _hold(conn: socket.socket, seconds: float) -> None:
    """Keep the connection open, answering nothing, for `seconds` (or until the client gives up)."""
    deadline = time.monotonic() + seconds
    conn.settimeout(seconds)
    try:
        while time.monotonic() < deadline and conn.recv(65536):
            pass
    except OSError:
        pass


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(conn)


def _stop_listening(listener: socket.socket) -> None:
    """Refuse new connections now (shutdown also wakes the thread blocked in accept)."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass


if __name__ == "__main__":
    _child_main(*sys.argv[1:5])
