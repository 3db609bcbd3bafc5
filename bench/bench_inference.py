"""Inference throughput: the engine (size buckets, batches, channels_last, inference mode,
autocast on GPU) vs a plain one-image-at-a-time loop with the same network, same images, same run.

    .venv/bin/python bench/bench_inference.py --size 512 --images 16 [--channels 32] [--device cuda]

Prints a markdown row per variant; paste them into docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from styleops.device import resolve_device
from styleops.inference.engine import InferenceEngine, stylize_one_at_a_time
from styleops.io.images import read_image, resize_max_side, to_float, to_uint8
from styleops.models.transformer import TransformerNet

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "catalog"


def load_images(size: int, n: int) -> list[torch.Tensor]:
    """n real photos, each resized so its longer side is `size` (mixed aspect ratios kept)."""
    photos = [to_float(read_image(p).pixels) for p in sorted(EXAMPLES.glob("*.jpg"))]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        scale = size / max(img.shape[-2:])
        img = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="bilinear", antialias=scale < 1)[0]
        out.append(to_uint8(resize_max_side(img, size)))
    return out


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the engine's (8 on CUDA, 1 on CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    net = TransformerNet(args.channels)
    images = load_images(args.size, args.images)
    engine = InferenceEngine(net, device=device, batch_size=args.batch_size)
    t_engine = timed(lambda: engine.stylize(images), args.repeats)
    t_plain = timed(lambda: stylize_one_at_a_time(net, images, device), args.repeats)
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} "
        f"threads={torch.get_num_threads()} device={device} "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else ''} torch {torch.__version__}"
    )
    print("| variant | size | channels | images | seconds | images/s |\n|---|---|---|---|---|---|")
    for name, t in (
        (f"engine (batch {engine.batch_size}, channels_last {engine.memory_format == torch.channels_last})", t_engine),
        ("one at a time", t_plain),
    ):
        print(f"| {name} | {args.size} | {args.channels} | {args.images} | {t:.2f} | {args.images / t:.2f} |")


if __name__ == "__main__":
    main()
