"""Super-resolution x4 (Johnson et al. 2016): train a pixel-loss and a perceptual-loss model on CPU,
then score them against bicubic on BSD100, Set5 and Set14 by the literature's protocol.

    .venv/bin/python bench/bench_super_resolution.py [--pixel-steps N] [--perceptual-steps N]
        [--threads 2] [--models /tmp/sr-models] [--sheet docs/img/sr_sheet.jpg] [--reuse]
        [--scale 4] [--models-to-score pixel,perceptual]

--reuse scores the weights already in --models and trains only the missing ones.

Training photos: ../shared/data/train/content minus BSD100 (BSDS500 val), Set5, Set14 and Kodak24,
as listed in ../shared/data/PROVENANCE.csv (BSDS500 train + test and SUN-Hays80: 480 photos).
Both models are trained through `styleops.training.super_resolution.train_super_resolution` (the
shared loop: seeded, checkpointed in --workdir: an interrupted run resumes exactly) with the
recipe in `RECIPE` (docs/super_resolution.md: its measured cost on a 2-core CPU VM).
Weights are written as safetensors to --models (not the repo). Scores (styleops.evaluation):
Y-PSNR and Y-SSIM, uint8 images, `scale` px borders cropped, PIL-bicubic LR without blur, and the
relu2_2 feature distance to the ground truth (HED VGG16 trunk units, whole image). Writes a
markdown table to stdout and a contact sheet (rows: test crops; columns: bicubic, pixel,
perceptual, ground truth) to --sheet.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from styleops.evaluation.super_resolution import bicubic_upscale, degrade, evaluate_methods, quantize
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, to_uint8
from styleops.io.serialize import from_safetensors, to_safetensors
from styleops.io.weights import load_encoder
from styleops.models.super_resolution import SuperResolutionNet, upscale
from styleops.training.engine import TrainConfig
from styleops.training.super_resolution import SRConfig, train_super_resolution

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import printing_progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCALE = 4
TEST_SETS = {  # name -> how PROVENANCE.csv names its files
    "BSD100": lambda r: r["source_repo"] == "BIDS/BSDS500" and "/images/val/" in r["source_path"],
    "Set5": lambda r: "/CSet5/" in "/" + r["source_path"],
    "Set14": lambda r: "/CSet14/" in "/" + r["source_path"],
    "Kodak24": lambda r: "Kodak24/" in r["source_path"],
}
EVALUATED = ("BSD100", "Set5", "Set14")
_LOOP = TrainConfig(
    steps=1, batch_size=16, image_size=96, lr=1e-3, warmup_steps=50, checkpoint_every=100, log_every=25, seed=0
)


def recipe(scale: int) -> dict[str, SRConfig]:
    """The CPU recipe of both models at `scale` (the 96 px HR crop is a multiple of 2, 4 and 8)."""
    # Johnson's layout at half width with 8 residual blocks (cheap: they run at LR resolution),
    # residual over bicubic; 24 px LR crops (96 px HR), batch 16, Adam 1e-3 after a 50-step warm-up.
    # No blur: the benchmark's LR has none (blur 1.0, Johnson's, cost half the gain: docs/super_resolution.md).
    pixel = SRConfig(
        scale=scale, channels=32, blocks=8, residual=True, loss="pixel", blur_sigma=0.0, train=replace(_LOOP, steps=800)
    )
    # The perceptual model is the pixel model fine-tuned with the relu2_2 feature loss at half the lr
    # (`WARM_START`; from scratch, 300 steps fell short of the pixel model's feature distance on Set5).
    perceptual = replace(
        pixel, loss="perceptual", feature_weight=1.0, pixel_weight=0.0, train=replace(_LOOP, steps=300, lr=5e-4)
    )
    return {"pixel": pixel, "perceptual": perceptual}


RECIPE = recipe(SCALE)
WARM_START = {"perceptual": "pixel"}  # model -> the model whose weights it starts from
SHEET_CROPS = (
    ("Set14", "set14_baboon", 200, 120),
    ("BSD100", "bsds500_val_119082", 40, 180),
    ("Set5", "set5_butterfly", 48, 48),
    ("Set14", "set14_zebra", 180, 120),
)
CROP = 160  # HR px


def split() -> tuple[list[Path], dict[str, list[Path]]]:
    """(training photos, {test set: files}) from PROVENANCE.csv."""
    rows = [r for r in csv.DictReader((DATA / "PROVENANCE.csv").open()) if r["file"].startswith("train/content/")]
    tests = {name: [DATA / r["file"] for r in rows if keep(r)] for name, keep in TEST_SETS.items()}
    held_out = {p for files in tests.values() for p in files}
    return [DATA / r["file"] for r in rows if DATA / r["file"] not in held_out], tests


def train(
    name: str,
    config: SRConfig,
    photos: list[Path],
    encoder: torch.nn.Module,
    workdir: Path,
    init: SuperResolutionNet | None = None,
) -> tuple[SuperResolutionNet, dict]:
    """Train (or resume) `config` in `workdir`; the model in eval mode and what to record about the run."""

    progress = printing_progress(
        100,
        lambda entry: (
            f"  [{name}] step {entry.step}/{entry.steps} total {entry.total:.5g} feature {entry.content:.4g}"
            f" pixel {entry.tv:.4g} {entry.images_per_s:.1f} img/s"
        ),
    )
    cpu = time.process_time()
    init_state = init.state_dict() if init is not None else None
    result = train_super_resolution(
        config, photos, encoder, workdir=workdir, device="cpu", progress=progress, init_state=init_state
    )
    cpu = time.process_time() - cpu
    model = SuperResolutionNet(**result.model_config)
    model.load_state_dict(result.state_dict)
    info = {
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        # wall time of all the steps, over every session that trained them (from the logged speeds)
        "train_seconds": round(_logged_seconds(result.history, config.train.batch_size), 1),
        "this_session_seconds": round(result.seconds, 1),
        "this_session_cpu_seconds": round(cpu, 1),
        "config": config.to_dict(),
        "warm_start": WARM_START.get(name),
        "final_losses": result.final_losses(),
    }
    return model.eval(), info


def _logged_seconds(history: list[dict[str, float]], batch_size: int) -> float:
    seconds, previous = 0.0, 0
    for entry in history:
        seconds += (entry["step"] - previous) * batch_size / max(entry["images_per_s"], 1e-9)
        previous = int(entry["step"])
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixel-steps", type=int, default=RECIPE["pixel"].train.steps)
    ap.add_argument("--perceptual-steps", type=int, default=RECIPE["perceptual"].train.steps)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=int, default=SCALE, choices=(2, 4, 8))
    ap.add_argument(
        "--models-to-score", default="pixel,perceptual", help="which of the two (pixel, perceptual) to train/score"
    )
    ap.add_argument(
        "--weights",
        default=str(ROOT.parent / "shared" / "weights" / "vgg16-hed-features.safetensors"),
        help="VGG16 trunk (safetensors)",
    )
    ap.add_argument("--models", type=Path, default=Path("/tmp/sr-models"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sr-bench-work"))
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "img" / "sr_sheet.jpg")
    ap.add_argument(
        "--reuse", action="store_true", help="score the weights already in --models (train only the missing ones)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    encoder = load_encoder(args.weights, ["relu2_2"])
    photos, tests = split()
    print(
        f"# {len(photos)} training photos; test sets: " + ", ".join(f"{k} {len(v)}" for k, v in tests.items()),
        flush=True,
    )
    args.models.mkdir(parents=True, exist_ok=True)

    models: dict[str, SuperResolutionNet] = {}
    infos: dict[str, dict] = {}
    scale, wanted = args.scale, args.models_to_score.split(",")
    steps_of = {"pixel": args.pixel_steps, "perceptual": args.perceptual_steps}
    for name, steps in ((n, steps_of[n]) for n in ("pixel", "perceptual") if n in wanted):
        path = args.models / f"sr_x{scale}_{name}.safetensors"
        if args.reuse and path.is_file():
            models[name] = from_safetensors(path.read_bytes(), source=str(path))  # type: ignore[assignment]
            card = path.with_suffix(".json")
            infos[name] = json.loads(card.read_text()) if card.is_file() else {}
            continue
        config = replace(recipe(scale)[name], train=replace(RECIPE[name].train, steps=steps))
        init = models[WARM_START[name]] if name in WARM_START else None
        models[name], infos[name] = train(name, config, photos, encoder, args.workdir / name, init)
        path.write_bytes(to_safetensors(models[name].state_dict(), "SuperResolutionNet", models[name].config()))
        path.with_suffix(".json").write_text(json.dumps(infos[name], indent=1))
        print(f"  wrote {path}", flush=True)

    methods = {
        "bicubic": lambda lr: bicubic_upscale(lr, scale),
        **{n: (lambda lr, m=m: upscale(m, lr)) for n, m in models.items()},
    }
    scores = {
        set_name: evaluate_methods(methods, (read_image(p).pixels for p in tests[set_name]), scale, encoder=encoder)
        for set_name in EVALUATED
    }

    print(
        f"\nx{scale}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__},"
        f" {args.threads} threads, load average now {os.getloadavg()[0]:.1f}\n"
    )
    print("| test set (images) | method | Y-PSNR dB | Y-SSIM | relu2_2 feature distance |")
    print("|---|---|---:|---:|---:|")
    for set_name in EVALUATED:
        for method, s in scores[set_name].items():
            print(f"| {set_name} ({len(tests[set_name])}) | {method} | {s.psnr:.2f} | {s.ssim:.4f} | {s.feature:.1f} |")
    for name, info in infos.items():
        print(f"\n{name}: {json.dumps({k: v for k, v in info.items() if k != 'config'})}")

    rows = []
    for set_name, stem, top, left in SHEET_CROPS:
        path = next(p for p in tests[set_name] if p.stem == stem)
        hr, lr = degrade(read_image(path).pixels, scale)
        outs = [quantize(fn(lr[None]))[0] for fn in methods.values()]
        rows.append([to_uint8(o[:, top : top + CROP, left : left + CROP]) for o in (*outs, hr)])
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    args.sheet.write_bytes(encode_image(contact_sheet(rows, cell=CROP), "jpeg", quality=92))
    print(f"\ncontact sheet ({' | '.join([*methods, 'ground truth'])}): {args.sheet}")


if __name__ == "__main__":
    main()
