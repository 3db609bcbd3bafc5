"""The demo: sample artworks and catalog -> Magenta's pretrained arbitrary network (any artwork,
nothing trained), per-style models, style swap and AdaIN with AdaIN's pretrained VGG19 decoder ->
stylized catalog -> HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.build_patch_banks import build_patch_banks
from flows.multistyle import train_multistyle
from flows.stylize_catalog import stylize_catalog
from flows.train_style import train_style
from infra.settings import get_settings
from runs.context import ADAIN, CYCLEGAN, INVERSE, MIXGAN, PIX2PIX, SUPER_RESOLUTION
from runs.reports.catalog import write_report
from runs.reports.super_resolution import comparison, make_low_resolution
from runs.reports.translation import learned_look
from runs.spec import RunSpec
from styleops.io.adain_weights import DECODER_FILE as ADAIN_DECODER
from styleops.training.engine import magenta_recipe
from tasks.storage import upload_directory_task
from tasks.training import import_model_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_STYLES = ("monet", "hoitsu")
# AdaIN's pretrained VGG19 decoder (`styleops weights install` converts it into the weights cache) is
# registered as adain/default and as inverse/default: it decodes relu4_1, where the default banks are
# cut (docs/quality.md: the HED trunk's features decode to emboss, VGG19's paint). The shipped VGG16
# inverse network (examples/models/inverse.*) is not shown.
# The multi-style model the demo registers from the pretrained start over every example artwork; it
# shows the demo styles' even blend (each style alone is the magenta column).
# examples/models/collection.safetensors, trained from scratch, can be imported by hand:
# `styleops models import ... --family multi-style`.
MULTI_MODEL = "pretrained"
SR_MODELS = ("x4-pixel", "x4")  # examples/models/<name>.safetensors, registered as super-resolution/<name>
SR_SCALE = 4
CELL = 224  # contact-sheet cell, pixels: the input and four columns fit a 1400 px window
# examples/models/<file>.safetensors -> (family, name): photo -> Monet-painted photo, learned from
# pairs (Pix2Pix; the look of LEARNED_LOOK) and from unpaired domains (CycleGAN, MIXGAN). The
# edges -> photo Pix2Pix example (edges.safetensors) is not shown: docs/translation.md.
TRANSLATION_MODELS = {
    "monet-pix2pix": (PIX2PIX, "monet"),
    "monet-cyclegan": (CYCLEGAN, "monet"),
    "monet-mixgan": (MIXGAN, "monet"),
}
# The look monet-pix2pix learned: Magenta's network with Monet's predicted vector (the per-style
# default), which painted the B side of its training pairs (examples/models/README.md).
LEARNED_LOOK = "magenta:monet"


@flow(name="demo")
def demo(
    out_dir: str = "demo-output", steps: int = 40, styles: list[str] | None = None, max_side: int = 384
) -> dict[str, Any]:
    """Upload the examples; stylize the catalog with Magenta's pretrained network and each artwork
    (what a per-style model from the pretrained start gives by default); from that start, fine-tune
    the style vector of a per-style model of each style for `steps` (at least 1) steps on the sample
    photos through the train-style flow and stylize with it; register one multi-style model of
    every artwork (their predicted vectors) through the train-multistyle flow and stylize with the
    styles' even blend; register AdaIN's pretrained VGG19 decoder for swap and AdaIN and build the
    patch banks, stylize with style swap and AdaIN (both ending at the artwork's
    palette), upscale two shrunk photos with the shipped x4 super-resolution models, paint the
    catalog with the shipped Pix2Pix model (a look learned from before/after pairs) and the
    shipped CycleGAN and MIXGAN models, and write the report."""
    log = get_run_logger()
    styles = list(styles or DEMO_STYLES)
    upload_directory_task(str(EXAMPLES / "catalog"), "catalog/demo/")
    upload_directory_task(str(EXAMPLES / "artwork"), "artwork/")
    runs: dict[str, Any] = {
        f"magenta:{style}": stylize_catalog(
            RunSpec.create(catalog="demo", style=style, method="magenta", max_side=max_side)
        )
        for style in styles
    }
    trained = {}
    for style in styles:
        trained[style] = train_style(
            artwork_key=f"artwork/{style}/{style}.jpg",
            content_prefix="catalog/demo/",
            style=style,
            config=_pretrained_config(max(steps, 1)),
        )
    for style in styles:
        runs[style] = stylize_catalog(
            RunSpec.create(catalog="demo", style=style, version=trained[style]["version"], max_side=max_side)
        )
    multi = _multi_style(runs, styles, max_side)
    for family in (INVERSE, ADAIN):
        import_model_task(family, "default", str(get_settings().cache_dir / ADAIN_DECODER))
    build_patch_banks(artworks="artwork/")
    for method in ("swap", "adain"):
        for style in styles:
            runs[f"{method}:{style}"] = stylize_catalog(
                RunSpec.create(catalog="demo", style=style, method=method, max_side=max_side)
            )
    sr = _super_resolution(Path(out_dir), runs)
    learned = _translation(Path(out_dir), runs, max_side)
    groups = {  # one table each, at most four columns beside the input: the page fits a 1400 px window
        "Magenta's pretrained network with each artwork (nothing trained), and the multi-style blend": [
            *(f"magenta:{s}" for s in styles),
            *multi,
        ],
        "Per-style: the style vector fine-tuned from the pretrained start": list(styles),
        "Style swap and AdaIN (AdaIN's pretrained VGG19 decoder), at the artwork's palette": [
            f"{m}:{s}" for m in ("swap", "adain") for s in styles
        ],
        "Translation: the shipped CycleGAN and MIXGAN models (photo -> Monet-painted photo)": [
            "cyclegan:monet",
            "mixgan:monet",
        ],
    }
    report = write_report(
        Path(out_dir),
        "demo",
        groups,
        cell=CELL,
        title="StyleOps demo: sample catalog x example styles "
        "(Magenta pretrained, per-style, multi-style, style swap, AdaIN, CycleGAN, MIXGAN)",
        sections={
            f"Super-resolution x{SR_SCALE}: bicubic, pixel and perceptual models": sr,
            "Pix2Pix: photo -> painted look learned from pairs": learned,
        },
    )
    log.info("report written to %s", report.resolve())
    return {"report": str(report.resolve()), "trained": trained, "runs": runs}


def _multi_style(runs: dict[str, Any], styles: list[str], max_side: int) -> list[str]:
    """One multi-style model of every artwork from the pretrained start (the predicted vectors, the
    default recipe: each style alone is exactly the --method magenta column), and the catalog
    stylized with the demo styles' even blend of vectors; returns the contact sheet's columns."""
    trained = train_multistyle("artwork/", "catalog/demo/", name=MULTI_MODEL, config=_pretrained_config(1, "none"))
    held = [s for s in styles if s in trained["styles"]]
    if len(held) < 2:
        return []
    blend = ",".join(f"{s}={1 / len(held):.3f}" for s in held)
    spec = RunSpec.create(catalog="demo", style=blend, method="multi-style", model=MULTI_MODEL, max_side=max_side)
    runs[f"multi-style:{blend}"] = summary = stylize_catalog(spec)
    return [f"multi-style:{summary['style']}"]


def _super_resolution(out_dir: Path, runs: dict[str, Any]) -> str:
    """Register the shipped x4 models (pixel loss, perceptual loss), shrink two sample photos x4,
    upscale them with each through the pipeline, and compare crops with bicubic and the original."""
    for name in SR_MODELS:
        import_model_task(
            SUPER_RESOLUTION,
            name,
            str(EXAMPLES / "models" / f"{name}.safetensors"),
            str(EXAMPLES / "models" / f"{name}.card.json"),
        )
    make_low_resolution("demo", "demo-small", SR_SCALE, limit=2)
    for name in SR_MODELS:
        runs[f"upscale:{name}"] = stylize_catalog(
            RunSpec.create(catalog="demo-small", style=name, method="upscale", format="png", metrics=False)
        )
    return comparison(out_dir, "demo", "demo-small", list(SR_MODELS), SR_SCALE)


def _translation(out_dir: Path, runs: dict[str, Any], max_side: int) -> str:
    """Register the shipped translation models; paint the catalog with Pix2Pix (the Monet look it
    learned from pairs), CycleGAN's photo -> Monet generator and MIXGAN (photo content,
    Monet-painted style); returns the section of photo | the learned look | Pix2Pix."""
    for file, (family, name) in TRANSLATION_MODELS.items():
        import_model_task(
            family,
            name,
            str(EXAMPLES / "models" / f"{file}.safetensors"),
            str(EXAMPLES / "models" / f"{file}.card.json"),
        )
    for method in ("pix2pix", "cyclegan", "mixgan"):
        runs[f"{method}:monet"] = stylize_catalog(
            RunSpec.create(catalog="demo", style="monet", method=method, max_side=max_side)
        )
    if LEARNED_LOOK not in runs:  # the demo's styles left Monet out
        method, style = LEARNED_LOOK.split(":")
        runs[LEARNED_LOOK] = stylize_catalog(
            RunSpec.create(catalog="demo", style=style, method=method, max_side=max_side)
        )
    return learned_look(out_dir, "demo", LEARNED_LOOK, ["monet"])


def _pretrained_config(steps: int, finetune: str = "vector") -> dict[str, Any]:
    """The pretrained start's recipe with `finetune`; a style-vector fine-tune runs `steps` steps on
    128 px crops (the demo's six photos are small, and a step costs a quarter of a 256 px one)."""
    return magenta_recipe(steps=steps, image_size=128, checkpoint_every=max(steps, 1), finetune=finetune).to_dict()
