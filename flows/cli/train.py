"""The training commands: per-style, multi-style, add-style, the decoders, super-resolution and
the patch banks."""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.common import (
    BatchSize,
    ContentPhotos,
    DecoderEncoder,
    Finetune,
    ImageSize,
    Init,
    InitFrom,
    LearningRate,
    Seed,
    Steps,
    StyleSize,
    app,
    console,
    given_options,
    one_line_errors,
    run,
    runtime,
    summary_table,
)
from runs.context import ADAIN, INVERSE
from styleops.losses.perceptual import LossWeights
from styleops.training.engine import TrainConfig


def with_init(ctx: typer.Context, init: str, finetune: str, cfg: Any) -> Any:
    """`cfg` for --init scratch; for --init magenta the pretrained recipe
    (`styleops.training.engine.magenta_recipe`) with the options the user gave on the command line."""
    from styleops.training.engine import FINETUNES, magenta_recipe

    given = given_options(ctx)
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

    with one_line_errors(), runtime():
        reg = context.registry()
        card = reg.card(context.MULTI_STYLE, name, reg.resolve(context.MULTI_STYLE, name, version))
    return card["architecture"] == "MagentaStyleNet"


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
    cfg = with_init(ctx, init, finetune, cfg)
    if init_from and cfg.init == "magenta":
        raise typer.BadParameter("warm-starts a from-scratch net: give --init scratch too", param_hint="--init-from")
    result = run(
        train_style, artwork_key=artwork, content_prefix=content, style=style, config=cfg.to_dict(), init_from=init_from
    )
    console.print(
        summary_table(
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
    cfg = with_init(ctx, init, finetune, cfg)
    r = run(train_multistyle, artwork_prefix=artworks, content_prefix=content, name=name, config=cfg.to_dict())
    console.print(
        summary_table(
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
        cfg = with_init(ctx, "magenta", finetune, cfg)
    else:
        with_init(ctx, "scratch", finetune, cfg)  # refuses --finetune for a from-scratch model
    r = run(
        add_style,
        artwork_key=artwork,
        content_prefix=content,
        name=name,
        style=style,
        base_version=base_version,
        config=cfg.to_dict(),
    )
    console.print(
        summary_table(
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
    encoder: DecoderEncoder = "vgg16",
) -> None:
    """Train the AdaIN decoder (Huang & Belongie 2017): one network for any artwork."""
    from styleops.training.decoders import adain_config

    cfg = adain_config(encoder, steps=steps, image_size=image_size, batch_size=batch_size, lr=lr, seed=seed)
    _train_decoder(ADAIN, cfg, {"style_weight": style_weight}, artworks, content, name, init_from, encoder)


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
    encoder: DecoderEncoder = "vgg16",
) -> None:
    """Train the style-swap inverse network (Chen & Schmidt 2016): relu3_1 features -> pixels."""
    from styleops.training.decoders import inverse_config

    cfg = inverse_config(steps=steps, image_size=image_size, batch_size=batch_size, lr=lr, seed=seed)
    _train_decoder(INVERSE, cfg, {"tv_weight": tv_weight}, artworks, content, name, init_from, encoder)


def _train_decoder(
    family: str,
    cfg: Any,
    loss: dict[str, float],
    artworks: str,
    content: str,
    name: str,
    init_from: str | None,
    encoder: str,
) -> None:
    """Run the train-<family> flow with `cfg` (its loss weights updated by `loss`) and print its summary."""
    from dataclasses import replace

    from flows import train_decoders

    flow = {ADAIN: train_decoders.train_adain, INVERSE: train_decoders.train_inverse}[family]
    cfg = replace(cfg, loss=replace(cfg.loss, **loss))
    r = run(
        flow,
        artwork_prefix=artworks,
        content_prefix=content,
        name=name,
        config=cfg.to_dict(),
        init_from=init_from,
        encoder=encoder,
    )
    console.print(summary_table(f"{family}/{r['name']} {r['version']}", {**r["metrics"], "promoted": r["promoted"]}))


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
    r = run(
        train_super_resolution,
        content_prefix=content,
        name=name,
        config=cfg.to_dict(),
        init_from=init_from,
    )
    m = r["metrics"]  # the feature term is logged as `content`, the pixel term as `tv`
    rows = {"feature loss": f"{m['content']:.5g}", "pixel MSE": f"{m['tv']:.5g}", "steps": m["steps"]}
    rows.update(seconds=m["seconds"], sha256=r["sha256"][:16], promoted=r["promoted"])
    console.print(summary_table(f"super-resolution/{r['name']} {r['version']}", rows))


@app.command("build-banks")
def build_banks_cmd(
    artworks: str = typer.Option("artwork/", help="Prefix of artwork/<style>/<file>: one bank per style."),
    force: bool = typer.Option(False, help="Rebuild even when the artworks and settings are unchanged."),
    encoder: str | None = typer.Option(
        None,
        help="vgg19 (AdaIN's VGG19, whose pretrained decoder swap uses) | vgg16 (the shipped VGG16 inverse "
        "network's); default: STYLEOPS_BANK_ENCODER, vgg19.",
    ),
    layer: str | None = typer.Option(
        None, help="The layer: relu4_1 for the VGG19 decoder, relu3_1 for the VGG16 one (default: STYLEOPS_BANK_LAYER)."
    ),
) -> None:
    """Build style-swap patch banks (banks/<style>/<version>/) for new or changed artworks, with the
    encoder and layer of the inverse network that will decode them."""
    from flows.build_patch_banks import build_patch_banks

    r = run(build_patch_banks, artworks=artworks, force=force, encoder=encoder, layer=layer)
    console.print(
        summary_table(
            "patch banks",
            {
                "built": ", ".join(r["built"]) or "-",
                "unchanged": ", ".join(r["unchanged"]) or "-",
                **{f"banks/{k}": v for k, v in r["banks"].items()},
            },
        )
    )
