"""A Prefect API for long-running use (`styleops serve`): the configured one, else a local server.

Prefect's ephemeral API lives only as long as one command; schedules need a server that keeps
running. When no PREFECT_API_URL is configured, `prefect server start` runs as a child process on
127.0.0.1 and a free port, with its SQLite database under `<home>/prefect/` (so deployments, runs
and history survive restarts), and is stopped when the block exits. Its UI is told where its own
API is (`PREFECT_UI_API_URL`): otherwise the UI asks 127.0.0.1:4200, Prefect's default port, and
shows nothing, or worse, another server's runs.
"""

from __future__ import annotations

import os
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
def prefect_api(home: Path) -> Iterator[tuple[str, bool]]:
    """Yield (api_url, started_here) with Prefect's settings pointing at it for the block: the
    configured API, else a local server (`local_server`)."""
    url = configured_api_url()
    if url:
        yield url, False
        return
    with local_server(home) as url:
        yield url, True


@contextmanager
def local_server(home: Path) -> Iterator[str]:
    """Start `prefect server start` on 127.0.0.1 and a free port, state under <home>/prefect/,
    UI included; yield its API URL with Prefect's settings pointing at it; stop it at the end."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state = Path(home).expanduser() / "prefect"
    state.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = state / "server.log"
    env = server_env(state, "127.0.0.1", port)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_healthy(url, process, log=log)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
