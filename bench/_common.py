"""Helpers shared by the bench scripts (imported with bench/ on sys.path, as the scripts import each other)."""

from __future__ import annotations

from collections.abc import Callable

from styleops.training.engine import StepLog


def printing_progress(every: int, line: Callable[[StepLog], str]) -> Callable[[StepLog], None]:
    """A training loop's `progress` callback that prints `line(log)` (flushed) every `every` steps
    and at the last step."""

    def progress(log: StepLog) -> None:
        if log.step % every == 0 or log.step == log.steps:
            print(line(log), flush=True)

    return progress
