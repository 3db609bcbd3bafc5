"""Progress reporting from tasks to whoever is watching (the CLI's rich progress bars).

Tasks call `progress().start(...)` / `.advance(...)`; the CLI installs a reporter that draws bars.
The default reporter does nothing (Prefect's logs still say what happens). A process-wide object
rather than a context variable, because Prefect runs tasks in worker threads.
"""

from __future__ import annotations

import threading
from typing import Protocol


class ProgressReporter(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None: ...
    def advance(self, key: str, n: int = 1, *, description: str | None = None) -> None: ...
    def finish(self, key: str) -> None: ...


class NullReporter:
    """Reports nowhere."""

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, n: int = 1, *, description: str | None = None) -> None:
        pass

    def finish(self, key: str) -> None:
        pass


_lock = threading.Lock()
_reporter: ProgressReporter = NullReporter()


def progress() -> ProgressReporter:
    """The reporter installed for this process."""
    return _reporter


def set_reporter(reporter: ProgressReporter | None) -> ProgressReporter:
    """Install `reporter` (None: the null one); returns the previous one."""
    global _reporter
    with _lock:
        previous, _reporter = _reporter, reporter or NullReporter()
    return previous
