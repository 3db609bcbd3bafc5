"""The `styleops` command, one module per command group: `admin` (store, weights, models, upload),
`train` and `translate` (training), `stylize` (catalog runs and their record) and `operations`
(nightly runs, the sensor, the gate, serving, the demo). `common` holds what they share. A command
parses its options, calls one function of runs/, tasks/ or flows/, and prints."""

import importlib

from flows.cli.common import (
    PREFECT_DEFAULTS,
    QuietServerNote,
    WithoutTraceback,
    app,
    console,
    terminal_without_tracebacks,
)

GROUPS = ("admin", "train", "translate", "stylize", "operations")  # their commands, in `styleops --help`'s order
for _group in GROUPS:
    importlib.import_module(f"{__name__}.{_group}")

__all__ = ["PREFECT_DEFAULTS", "QuietServerNote", "WithoutTraceback", "app", "console", "terminal_without_tracebacks"]
