"""What every `styleops` command shares: Prefect's defaults for a command-line tool, the app and
its sub-apps, the console, option types, the runtime (store, progress bars) and one-line errors."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Prefect defaults for a command-line tool, set before Prefect is imported; a user's own values win.
# Analytics is opt-in (PREFECT_SERVER_ANALYTICS_ENABLED=true): the ephemeral server's telemetry
# insert races the command's own writes to its SQLite file and printed a "database is locked"
# traceback in front of successful commands. A busy 2-core machine needs over Prefect's default
# 20 s to start the ephemeral server.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
for _name, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

from runs import methods  # noqa: E402 - the stylize methods (runs/methods/), for --method's help and checks
from runs.methods.base import knobs_of  # noqa: E402


class QuietServerNote(logging.Filter):
    """Drops the note Prefect prints whenever a command starts its ephemeral API ("Starting
    temporary server on ... See https://docs.prefect.io/v3/concepts/server#how-to-guides ..."): a
    command-line tool's user did not ask for a server; `styleops serve` is the long-running one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Starting temporary server on")


logging.getLogger("prefect").addFilter(QuietServerNote())


class WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` does, but without its traceback: a flow that fails on bad input
    prints Prefect's one-line "Finished in state Failed(...)" and the command's red line, not 80
    lines of stack. The flow run's log on the Prefect API keeps the traceback (its own handler)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def terminal_without_tracebacks() -> int:
    """Give Prefect's console handlers (set up now if not yet) the `WithoutTraceback` formatter,
    unless STYLEOPS_TRACEBACKS=1; returns how many were changed."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    if os.environ.get("STYLEOPS_TRACEBACKS") == "1":
        return 0
    ensure_logging_setup()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    for handler in handlers:
        if not isinstance(handler.formatter, WithoutTraceback):
            handler.setFormatter(WithoutTraceback(handler.formatter))
    return len(handlers)


# ---- options shared by the training commands (one definition, one help text) ---------------
ContentPhotos = Annotated[str, typer.Option("--content", help="Prefix of the content photos, e.g. catalog/train/.")]
Steps = Annotated[int, typer.Option(help="Optimizer steps.")]
ImageSize = Annotated[int, typer.Option(help="Training crop side, pixels.")]
StyleSize = Annotated[int, typer.Option(help="Artwork resized to this longer side, pixels (smaller: bigger strokes).")]
BatchSize = Annotated[int, typer.Option(help="Images per optimizer step.")]
LearningRate = Annotated[float, typer.Option("--lr", help="Adam's learning rate.")]
Seed = Annotated[int, typer.Option(help="Seeds weights, crops and their order: the same seed trains the same model.")]
InitFrom = Annotated[
    str | None, typer.Option(help="Warm start: a .safetensors file or <family>/<name>/<version> of the registry.")
]
Decay = Annotated[float, typer.Option(help="Fraction of the steps over which the learning rate decays to 0.")]
Init = Annotated[
    str,
    typer.Option(
        help="magenta (default): Magenta's pretrained network with the artwork's predicted style vector "
        "(seconds), fine-tuned if --finetune says so; options left at their defaults take the pretrained "
        "recipe's (styleops.training.engine.magenta_recipe). scratch: Johnson's net from scratch with the "
        "palette start (hours on a CPU; a GPU recipe)."
    ),
]
Finetune = Annotated[
    str,
    typer.Option(
        help="--init magenta: none (the prediction, seconds; measured best) | vector (100 steps tuning the style "
        "vector: closer colours, further style; docs/quality.md) | all."
    ),
]
DecoderEncoder = Annotated[
    str,
    typer.Option(
        "--encoder",
        help="The network it inverts (and its loss network): vgg16 (the VGG16 loss network) | "
        "vgg19 (AdaIN's normalised VGG19, `styleops weights install`; its features paint, docs/quality.md).",
    ),
]
MaxImages = Annotated[int, typer.Option(help="Use at most this many training images.")]


def with_method_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with one option per knob of the registered methods (`runs.methods.knobs()`: type,
    default and help from the method's `Options`, e.g. --alpha, --palette/--no-palette), placed
    before its `max_side` option. The command receives them together as `knobs` (a dict)."""
    signature = inspect.signature(command, eval_str=True)
    knobs = methods.knobs()
    options = [
        inspect.Parameter(
            k.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(k.default, help=_knob_help(k.name)),
            annotation=k.type,
        )
        for k in knobs.values()
    ]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "knobs"]
    at = next((i for i, p in enumerate(own) if p.name == "max_side"), len(own))

    @functools.wraps(command)
    def with_knobs(**given: Any) -> Any:
        return command(**{k: v for k, v in given.items() if k not in knobs}, knobs={k: given[k] for k in knobs})

    with_knobs.__signature__ = signature.replace(parameters=[*own[:at], *options, *own[at:]])  # type: ignore[attr-defined]
    return with_knobs


def _knob_help(name: str) -> str:
    """'adain, magenta: <help>' (one help when the methods say the same, else each its own)."""
    helps: dict[str, list[str]] = {}
    for method in methods.knob_takers(name):
        for k in knobs_of(method.options):
            if k.name == name:
                helps.setdefault(k.help, []).append(method.cli_name)
    return "; ".join(f"{', '.join(takers)}: {text}" for text, takers in helps.items())


METHODS_HELP = " | ".join(m.cli_name for m in methods.all_methods())
BLEND_METHODS = " or ".join(m.cli_name for m in methods.all_methods() if m.takes_blend)

app = typer.Typer(
    help="StyleOps: neural style transfer as a batch pipeline (Prefect + S3 + Delta).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
store_app = typer.Typer(
    help="The embedded SeaweedFS object store (used when no AWS_ENDPOINT_URL/credentials are set).",
    no_args_is_help=True,
)
weights_app = typer.Typer(
    help="Pretrained weights: the VGG loss network and Magenta's stylization networks.", no_args_is_help=True
)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
server_app = typer.Typer(
    help="The local Prefect server the CLI keeps running when no PREFECT_API_URL is set.", no_args_is_help=True
)
app.add_typer(store_app, name="store")
app.add_typer(server_app, name="server")
app.add_typer(weights_app, name="weights")
app.add_typer(models_app, name="models")
console = Console()


class RateColumn(ProgressColumn):
    """Items per second of a bar since it started (images/s for the stylize bars)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("")
        return Text(f"{task.completed / elapsed:,.1f}/s", style="progress.data.speed")


class RichReporter:
    """infra.progress reporter drawing one rich bar per key."""

    def __init__(self, bars: Progress) -> None:
        self.bars, self.ids = bars, {}

    def start(self, key: str, description: str, total: int | None) -> None:
        self.ids[key] = self.bars.add_task(description, total=total)

    def advance(self, key: str, n: int = 1, *, description: str | None = None) -> None:
        if key in self.ids:
            self.bars.update(self.ids[key], advance=n, **({"description": description} if description else {}))

    def finish(self, key: str) -> None:
        task_id: TaskID | None = self.ids.pop(key, None)
        if task_id is not None:
            self.bars.update(task_id, completed=self.bars.tasks[task_id].total or 0)


@contextmanager
def runtime(preflight: Callable[[], Any] | None = None, prefect: bool = False) -> Iterator[None]:
    """Embedded store if nothing else is configured, bucket ready, `preflight` checks passed, the
    Prefect API if the block runs a flow (`prefect`: `prefect_runtime`), progress bars on."""
    from infra.local_store import ensure_embedded_store
    from infra.progress import set_reporter
    from infra.settings import get_settings
    from runs.context import store

    terminal_without_tracebacks()
    get_settings.cache_clear()
    info = ensure_embedded_store(get_settings())
    if info is not None:
        console.print(f"[dim]embedded object store at {info.endpoint_url} (data in {info.data_dir})[/dim]")
    get_settings.cache_clear()
    store().ensure_bucket()
    if preflight is not None:
        preflight()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with prefect_runtime() if prefect else nullcontext(), Progress(*columns, console=console, transient=False) as bars:
        previous = set_reporter(RichReporter(bars))
        try:
            yield
        finally:
            set_reporter(previous)


@contextmanager
def prefect_runtime() -> Iterator[None]:
    """The Prefect API of a command: the configured one (PREFECT_API_URL), else the local server
    kept across commands (`infra.prefect_server.prefect_api`), else, with
    STYLEOPS_PREFECT_SERVER=ephemeral, Prefect's temporary server for this command alone."""
    from infra.prefect_server import prefect_api
    from infra.settings import get_settings

    settings = get_settings()
    if settings.prefect_server == "ephemeral":
        yield
        return
    with prefect_api(settings.home) as (url, started):
        if started:
            console.print(f"[dim]Prefect server at {url.removesuffix('/api')} (kept; `styleops server stop`)[/dim]")
        yield


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: <message>` as one red line, never wrapped by the console (it copy-pastes
    whole), and return the Exit to raise."""
    console.print(Text.assemble(("error:", "red"), " ", " ".join(str(message).split())), soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Expected errors (bad input, unknown names, the store) become one red line and exit 1."""
    from infra.registry import RegistryError
    from infra.store import StoreError
    from styleops.errors import StyleOpsError

    try:
        yield
    except (StyleOpsError, RegistryError, StoreError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


def run(fn: Callable[..., Any], preflight: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
    """Run a flow or task function with the runtime up; expected errors become one red line, exit 1.
    `preflight`: checks run first, with the store up: a refused request creates no flow run."""
    from prefect import Flow

    started = time.perf_counter()
    with one_line_errors(), runtime(preflight, prefect=isinstance(fn, Flow)):
        result = fn(**kwargs)
    console.print(f"[dim]done in {time.perf_counter() - started:,.1f} s[/dim]")
    return result


def given_options(ctx: typer.Context) -> set[str]:
    """The names of the options given on the command line (not left at their defaults)."""
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


def summary_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    return table
