"""`styleops stylize`, `upscale`, `manifest` and `audit`: the catalog runs and their record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from flows.cli.common import (
    BLEND_METHODS,
    METHODS_HELP,
    app,
    console,
    fail,
    given_options,
    run,
    runtime,
    summary_table,
    with_method_options,
)
from runs import methods
from runs.context import PER_STYLE
from runs.spec import RunSpec


def _refuse_options_that_do_not_apply(ctx: typer.Context, method: methods.Method) -> None:
    """One line for a method option given on the command line that `method` would ignore."""
    given = given_options(ctx)
    for option in (o for o in methods.knobs() if o in given and o not in method.hashed):
        takers = [m.cli_name for m in methods.knob_takers(option)]
        raise fail(f"--{option} does not apply to --method {method.cli_name}; it is for --method {' or '.join(takers)}")
    if "model" in given and method.default_model is None:
        takers = [m.cli_name for m in methods.all_methods() if m.default_model is not None]
        raise fail(
            f"--model does not apply to --method {method.cli_name} (its style names the model); "
            f"it is for --method {' or '.join(takers)}"
        )


def _check_stylize(spec: RunSpec) -> None:
    """What the stylize flow checks first, before a flow run exists: the settings, the catalog,
    the style (or blend) and version, and the upscaler."""
    from runs.methods.base import resolve_checked
    from runs.methods.upscale import upscaler_ref
    from runs.plan import check_catalog

    spec.check()
    check_catalog(spec.catalog)
    resolve_checked(methods.get(spec.method), spec.style, spec.version, spec.model, spec.metrics)
    if spec.params.upscale is not None:
        upscaler_ref(spec.params.upscale)


# ---- stylize -------------------------------------------------------------------------------
@app.command()
@with_method_options
def stylize(
    ctx: typer.Context,
    knobs: dict[str, Any],
    catalog: str = typer.Option(..., help="Catalog set name (catalog/<set>/)."),
    style: str | None = typer.Option(
        None,
        help=(
            "Style: the per-style model's name, a style of the multi-style model, "
            "or an artwork/<style>/ folder (magenta, swap, adain, gatys); upscale: the super-resolution model."
        ),
    ),
    method: str = typer.Option(PER_STYLE, help=METHODS_HELP),
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
    max_side: int = typer.Option(1024, help="Longer side of outputs, pixels (inputs are never upscaled)."),
    format: str = typer.Option("jpeg", help="jpeg | png | webp"),
    quality: int = typer.Option(90, help="JPEG/WebP quality 1-95."),
    shard_size: int = typer.Option(64),
    batch_size: int | None = typer.Option(
        None, help="Images per device batch (default: 8 on CUDA, 1 on CPU, where batching is slower)"
    ),
    metrics: bool = typer.Option(True, help="Measure content/style loss per image."),
    metrics_sample: float = typer.Option(
        1.0,
        help=(
            "With --metrics: the share of images measured, above 0 and at most 1. A fixed subset, picked by a hash of "
            "each image's key, so the same images are measured every run; the others' losses are empty. "
            "Measuring costs about 0.17 s per image on a 2-core CPU, as much as the stylization."
        ),
    ),
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
        raise fail(f"give --style, or --blend with --method {BLEND_METHODS}")
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
        upscale=upscale,
        **knobs,
        shard_size=shard_size,
        batch_size=batch_size,
        metrics=metrics,
        metrics_sample=metrics_sample,
        retry_failed=retry_failed,
        repair=repair,
        dask_address=dask_address,
        dask_workers=dask_workers,
    )
    s = run(stylize_catalog, preflight=lambda: _check_stylize(spec), spec=spec)
    console.print(summary_table(f"stylized {s['catalog']} with {s['style']} {s['model_version']}", s))
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

    def check() -> None:
        if model and scale is not None:
            check_scale(model, version, scale)

    s = run(stylize_catalog, preflight=check, spec=spec)
    console.print(summary_table(f"upscaled {s['catalog']} with {s['style']} {s['model_version']}", s))
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
    with runtime():
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

    r = run(
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
        summary_table(
            "audit", {**r["counts"], "critical": r["critical"], "warnings": r["warnings"], "report": r["report"]}
        )
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
