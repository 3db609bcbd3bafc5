"""Operations: `nightly`, `sensor`, `gate`, `serve`, `trigger` and the `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from flows.cli.common import METHODS_HELP, app, console, fail, run, summary_table
from infra.registry import BANK
from runs import methods
from runs.context import MULTI_STYLE, PER_STYLE


# ---- operations: nightly runs, the artwork sensor, the quality gate, serving ----------------
@app.command()
def nightly(
    catalog: str = typer.Option(..., help="Catalog set name (catalog/<set>/)."),
    style: list[str] = typer.Option(..., help="Scheduled styles (repeatable); each runs with its production version."),
    date: str | None = typer.Option(None, help="Run date YYYY-MM-DD (default: today in --timezone). Once per date."),
    timezone: str = typer.Option("UTC", help="IANA timezone of the date."),
    method: str = typer.Option(PER_STYLE, help=METHODS_HELP + f" (the audit checks coverage for {PER_STYLE})"),
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

    r = run(
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
        summary_table(
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
            summary_table(
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
        [PER_STYLE, MULTI_STYLE, BANK], help="What to (re)build for new or changed artwork (repeatable)."
    ),
    multi_model: str = typer.Option("collection", help="The multi-style model new styles are added to."),
    steps: int | None = typer.Option(None, help="Training steps (default: TrainConfig's)."),
    image_size: int | None = typer.Option(None, help="Training crop size, pixels."),
    margin: float | None = typer.Option(None, help="Quality gate margin (default: settings gate_margin, 0.05)."),
) -> None:
    """Train, gate and promote for every new or changed artwork (what the scheduled sensor does)."""
    from flows.artwork_sensor import artwork_sensor

    config = {k: v for k, v in {"steps": steps, "image_size": image_size}.items() if v is not None}
    r = run(
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
    console.print(summary_table("artwork sensor", rows or {"artworks": "nothing new or changed"}))


@app.command()
def gate(
    name: str = typer.Argument(..., help="Model name (per-style: the style)."),
    version: str = typer.Argument(..., help="Candidate version, e.g. v0002."),
    family: str = typer.Option(PER_STYLE, help=f"{PER_STYLE} | {MULTI_STYLE}"),
    style: str | None = typer.Option(None, help="multi-style: the style to score."),
    promote: bool = typer.Option(False, help="Promote the candidate when it passes."),
    margin: float | None = typer.Option(None, help="Default: settings gate_margin (0.05)."),
) -> None:
    """Score a candidate against production on the held-out photos; exit 3 when it is refused."""
    from tasks.gate import promote_if_passed_task, quality_gate_task

    g = run(quality_gate_task.fn, family=family, name=name, version=version, style=style, margin=margin)
    promoted = promote and run(promote_if_passed_task.fn, family=family, name=name, version=version, gate=g)
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
    console.print(summary_table(f"quality gate {family}/{name} {version}", rows))
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
    PREFECT_API_URL it uses the local Prefect server the CLI keeps, starting it if needed (state in
    <home>/prefect/, UI on its URL; `styleops server stop`)."""
    from prefect import serve as prefect_serve

    from flows.deployments import PREFECT_YAML, runner_deployments
    from infra.local_store import ensure_embedded_store
    from infra.prefect_server import prefect_api
    from infra.settings import get_settings

    try:
        deployments = runner_deployments(file or PREFECT_YAML, list(only) or None)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    console.print(deployments_table(deployments, f"deployments in {file or PREFECT_YAML}"))
    if list_only:
        return
    get_settings.cache_clear()
    info = ensure_embedded_store(get_settings())
    if info is not None:
        console.print(f"[dim]embedded object store at {info.endpoint_url}[/dim]")
    settings = get_settings()
    with prefect_api(settings.home, keep=settings.prefect_server == "kept") as (url, started):
        console.print(f"Prefect API {url}" + (" (started here)" if started else ""), soft_wrap=True)
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
        raise fail("no PREFECT_API_URL: start `styleops serve` (or a Prefect server) and point PREFECT_API_URL at it")
    try:
        run, after = trigger_night(deployment, date or datetime.now(UTC).date().isoformat(), rerun=rerun)
    except TriggerRefused as exc:
        raise fail(str(exc)) from None
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

    result = run(demo_flow, out_dir=str(out), steps=steps, max_side=max_side)
    rows = {f"{s} {r['model_version']}": f"{r['ok']} ok, {r['failed']} failed" for s, r in result["runs"].items()}
    console.print(summary_table("demo", {**rows, "report": result["report"]}))
    from infra.prefect_server import kept_server_url
    from infra.settings import get_settings

    kept = kept_server_url(get_settings().home) is not None
    console.print(
        "Open the report in a browser. The embedded store keeps running for the other commands; "
        "`styleops store stop` stops it."
        + (
            " So does the local Prefect server (its UI shows the demo's runs: `styleops server status`); "
            "`styleops server stop` stops it."
            if kept
            else ""
        )
    )
