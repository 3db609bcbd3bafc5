"""What tasks share that is Prefect's: the run logger. Everything else (store, registry and
manifest handles, the encoder and model caches, keys) is in runs/ (runs.context, runs.keys)."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from runs import context


def logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, else the ring's `styleops` logger (plain calls, tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return context.log
