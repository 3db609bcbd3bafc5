"""Training speed: optimizer steps per second of the per-style engine with the VGG16 loss network.

    .venv/bin/python bench/bench_training.py --size 256 --batch-size 4 --steps 10 [--channels 32] [--device cuda]

Uses the repo's example photos and artwork; VGG weights from the cache (`styleops weights install`).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from styleops.device import resolve_device
from styleops.io.images import read_image
from styleops.io.weights import load_encoder
from styleops.losses.perceptual import LossWeights
from styleops.training.engine import TrainConfig, train_style

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    weights = LossWeights()
    encoder = load_encoder(None, weights.layers)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.size,
        channels=args.channels,
        precision=args.precision,
        log_every=1,
        checkpoint_every=10_000,
    )
    photos = sorted((EXAMPLES / "catalog").glob("*.jpg"))
    art = read_image(EXAMPLES / "artwork" / "monet" / "monet.jpg").pixels
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        train_style(
            cfg,
            photos,
            art,
            encoder,
            workdir=Path(tmp),
            device=device,
            progress=lambda s: stamps.append(time.perf_counter()),
        )
    per_step = (stamps[-1] - stamps[1]) / (len(stamps) - 2)  # skip the first (warm-up) step
    print(
        f"# {platform.node()} threads={torch.get_num_threads()} device={device} "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else ''} torch {torch.__version__}"
    )
    print("| size | batch | channels | precision | s/step | steps/s | images/s |\n|---|---|---|---|---|---|---|")
    print(
        f"| {args.size} | {args.batch_size} | {args.channels} | {args.precision} "
        f"| {per_step:.3f} | {1 / per_step:.2f} | {args.batch_size / per_step:.1f} |"
    )


if __name__ == "__main__":
    main()
