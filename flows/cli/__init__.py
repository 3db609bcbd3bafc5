"""The `styleops` command, one module per command group: `admin` (store, weights, models, upload),
`train` and `translate` (training), `stylize` (catalog runs and their record) and `operations`
(nightly runs, the sensor, the gate, serving, the demo). `common` holds what they share. A command
parses its options, calls one function of runs/, tasks/ or flows/, and prints."""

import importlib
import os

# Before torch (and its OpenMP runtime) is loaded: OpenMP threads that wait by sleeping, not
# spinning. Beside other torch work spinning threads fight it for the cores: Magenta's transformer
# at 1024 px on 2 threads took 1.86 s beside training probes, 0.70 s with PASSIVE. Idle, PASSIVE
# costs 7-17% (docs/benchmarks.md): a dedicated worker may set OMP_WAIT_POLICY=ACTIVE (it wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from flows.cli.common import (  # noqa: E402 - after the OpenMP setting
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
