"""A Prefect API for the CLI and for long-running use (`styleops serve`): the configured one, else
a local server.

Prefect's ephemeral API lives only as long as one command, and starting it is most of a short
command's fixed cost (docs/benchmarks.md: a no-op `styleops stylize` took 12.4 s with it, 6.4 s
against a running server; 11.8 and 6.2 s in bench/bench_command_cost.py). So, when no
PREFECT_API_URL is configured, the CLI keeps one local server running across commands, as it
keeps the embedded store (`kept_server`; settings `prefect_server = "kept"`, the default;
"ephemeral" gives the old per-command server). Its state (`<home>/prefect/kept.json`: url, pid;
`lock` serialises commands starting it at once) says where it is; `styleops server stop` stops
it. `styleops serve` uses it too (one server per SQLite file), or with "ephemeral" starts its own
for its lifetime (`local_server`). Either is `prefect server start` on 127.0.0.1 and a free port,
with its SQLite database under `<home>/prefect/` (deployments, runs and history survive restarts).
Its UI is told where its own API is (`PREFECT_UI_API_URL`): otherwise the UI asks 127.0.0.1:4200,
Prefect's default port, and shows nothing, or worse, another server's runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 180.0


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, None if unset."""
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(
    url: str, process: subprocess.Popen | None = None, timeout: float = STARTUP_TIMEOUT_S, log: Path | None = None
) -> None:
    """Poll `<url>/health` until it answers 200; RuntimeError (with the log's tail) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log and log.is_file() else ""
    raise RuntimeError(f"the Prefect server at {url} did not become healthy in {timeout:.0f} s\n{tail}")


def server_env(state: Path, host: str, port: int) -> dict[str, str]:
    """The environment of a local server on host:port with its state in `state`: the UI's API URL
    (what the UI's /ui-settings answers) and the server's own host and port both point at it."""
    url = f"http://{host}:{port}/api"
    return {
        **os.environ,
        "PREFECT_HOME": str(state),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": url,
        "PREFECT_UI_API_URL": url,
        "PREFECT_UI_URL": url.removesuffix("/api"),
    }


@contextmanager
def prefect_api(home: Path, keep: bool = True) -> Iterator[tuple[str, bool]]:
    """Yield (api_url, started_here) with Prefect pointing at it for the block (`pointed_at`): the
    configured API, else the kept server (`kept_server`: the running one or a new one, left
    running: one server, one SQLite file per home), else (`keep` False) a local server for the
    block (`local_server`)."""
    url, started = configured_api_url(), False
    if not url and keep:
        url, started = kept_server(home)
    if url:
        with pointed_at(url):
            yield url, started
        return
    with local_server(home) as url:
        yield url, True


@contextmanager
def pointed_at(url: str) -> Iterator[None]:
    """Prefect's settings and PREFECT_API_URL (for worker processes: Dask shards, runners) set to
    `url` for the block, restored after."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


def _spawn(state: Path, port: int) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port in its own session, its output appended to
    <state>/server.log."""
    with open(state / "server.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(state, "127.0.0.1", port),
            start_new_session=True,
        )


KEPT_STATE = "kept.json"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _read_kept(state: Path) -> dict[str, object] | None:
    try:
        info = json.loads((state / KEPT_STATE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("url"), str) else None


@contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def kept_server_url(home: Path) -> str | None:
    """The API URL of the kept server under <home>/prefect/ if it answers, else None."""
    info = _read_kept(Path(home).expanduser() / "prefect")
    return str(info["url"]) if info is not None and _healthy(str(info["url"])) else None


def kept_server(home: Path, timeout: float = STARTUP_TIMEOUT_S) -> tuple[str, bool]:
    """(API URL, started now) of the local server kept running across commands, state under
    <home>/prefect/: the running one if it answers, else a new one, started detached (it outlives
    the command, like the embedded store) and recorded in kept.json once healthy."""
    state = Path(home).expanduser() / "prefect"
    with _locked(state):
        url = kept_server_url(home)
        if url is not None:
            return url, False
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        process = _spawn(state, port)
        try:
            wait_healthy(url, process, timeout, log=state / "server.log")
        except BaseException:
            _terminate(process.pid)
            raise
        (state / KEPT_STATE).write_text(json.dumps({"url": url, "pid": process.pid}))
        return url, True


def stop_kept_server(home: Path, timeout: float = 20.0) -> bool:
    """Stop the kept server under <home>/prefect/ (its database stays); False if none was recorded
    running."""
    state = Path(home).expanduser() / "prefect"
    with _locked(state):
        info = _read_kept(state)
        (state / KEPT_STATE).unlink(missing_ok=True)
        pid = info.get("pid") if info is not None else None
        if not isinstance(pid, int) or not _is_server(pid):
            return False
        return _terminate(pid, timeout)


def _is_server(pid: int) -> bool:
    """Whether `pid` runs `prefect server start` (not a process that took a dead server's pid)."""
    try:
        return b"prefect\x00server\x00start" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _terminate(pid: int, timeout: float = 20.0) -> bool:
    """SIGTERM the process group `pid` leads (the server and its workers), SIGKILL after `timeout`;
    False if it was already gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        _reap(pid)
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _reap(pid: int) -> None:
    """Collect `pid` if it is this process's exited child (else it stays a zombie in the group)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextmanager
def local_server(home: Path) -> Iterator[str]:
    """Start `prefect server start` on 127.0.0.1 and a free port, state under <home>/prefect/,
    UI included; yield its API URL with Prefect pointing at it (`pointed_at`); stop it at the end."""
    state = Path(home).expanduser() / "prefect"
    state.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = state / "server.log"
    process = _spawn(state, port)
    try:
        wait_healthy(url, process, log=log)
        with pointed_at(url):
            yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
