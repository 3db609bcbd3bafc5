"""Does `torch.set_flush_denormal(True)` speed up CPU inference, and does it change any output byte?

    .venv/bin/python bench/bench_denormal.py [--photos ../shared/data/train/content] [--n 100]
        [--size 512] [--threads 2] [--models examples/models/monet.safetensors,examples/models/hoitsu.safetensors]

For each model and each of the first --n photos (sorted names, shrunk to --size px): the model's
output with flush-to-zero of subnormal floats off and on, in alternating order (so drift and
warm-up hit both), one image at a time as the CPU pipeline runs them. Reports the seconds per
image of each, the speed-up, how many outputs differ as uint8 pixels and as the pipeline's JPEG
(quality 90) bytes, and the largest float difference. Markdown to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "train" / "content")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--models",
        default=",".join(str(ROOT / "examples" / "models" / f"{m}.safetensors") for m in ("monet", "hoitsu")),
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    photos = [resize_max_side(to_float(read_image(p).pixels), args.size) for p in paths]
    print(f"Machine: {platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads), torch {torch.__version__}; ")
    print(f"{len(photos)} photos of {args.photos.name}/ at {args.size} px, batch 1\n")
    print(
        "| model | s/image, flush off | s/image, flush on | speed-up | outputs with a different pixel | "
        "different JPEG bytes | largest float difference |"
    )
    print("|---|---|---|---|---|---|---|")
    for model_path in args.models.split(","):
        net = from_safetensors(Path(model_path).read_bytes(), source=model_path).eval()
        times: dict[bool, list[float]] = {False: [], True: []}
        pixels_differ = jpeg_differ = 0
        worst = 0.0
        with torch.inference_mode():
            net(photos[0][None])  # warm-up
            for i, x in enumerate(photos):
                out: dict[bool, torch.Tensor] = {}
                for flush in (i % 2 == 0, i % 2 != 0):
                    torch.set_flush_denormal(flush)
                    t = time.perf_counter()
                    out[flush] = net(x[None])[0].clamp(0, 1)
                    times[flush].append(time.perf_counter() - t)
                torch.set_flush_denormal(False)
                worst = max(worst, float((out[True] - out[False]).abs().max()))
                a, b = to_uint8(out[False]), to_uint8(out[True])
                pixels_differ += int(not torch.equal(a, b))
                jpeg_differ += int(encode_image(a, "jpeg", quality=90) != encode_image(b, "jpeg", quality=90))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"| {Path(model_path).stem} | {off:.3f} | {on:.3f} | {off / on:.2f}x | {pixels_differ} of {len(photos)} | "
            f"{jpeg_differ} of {len(photos)} | {worst:.2e} |"
        )


if __name__ == "__main__":
    main()
