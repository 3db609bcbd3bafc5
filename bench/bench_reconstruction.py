"""Reconstruction of a decoder: the photo's own features decoded (AdaIN at alpha 0; swap's inverse
network on unswapped features), PSNR against the photo, on held-out photos (issue 30's target:
a median of at least 20 dB).

    .venv/bin/python bench/bench_reconstruction.py                      # AdaIN's pretrained VGG19 decoder
    .venv/bin/python bench/bench_reconstruction.py --decoder inv.safetensors --sizes 256

Photos: the 24 Kodak photos of ../shared/data/train/content (kodak24_kodim*.png), which neither
AdaIN's decoder (trained by its authors on MS-COCO) nor the project's decoders (trained on the
rest of content/) saw. Each photo is resized to --sizes px on its longer side, cropped to a
multiple of 8, encoded at the decoder's layer and decoded at each --scales (`painted_at`: the
photo upsampled that many times, decoded, shrunk back; 1.5 is the pretrained decoder's paint
scale), clamped to [0, 1]. Prints the median and the spread per size and scale, the machine named.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch

from runs.context import encoder_for
from styleops.inference.arbitrary import painted_at
from styleops.io.adain_weights import DECODER_FILE
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.serialize import from_safetensors

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "train" / "content"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", type=Path, default=Path.home() / ".styleops" / "cache" / DECODER_FILE)
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--sizes", default="256,384", help="comma list of longer sides, px")
    ap.add_argument("--scales", default="1,1.5", help="comma list of paint scales")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decoder = from_safetensors(args.decoder.read_bytes()).eval()
    encoder = encoder_for(decoder.arch, (decoder.from_layer,), torch.device("cpu")).eval()
    photos = sorted(args.photos.glob("kodak24_kodim*.png"))
    if not photos:
        raise SystemExit(f"no kodak24_kodim*.png under {args.photos}")

    def decode(x: torch.Tensor) -> torch.Tensor:
        return decoder(encoder(x)[decoder.from_layer])

    print(f"# {args.decoder.name} ({decoder.arch} {decoder.from_layer}), {len(photos)} Kodak photos")
    print(f"# machine: {platform.node()}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| size (px) | scale | median PSNR (dB) | min | max |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        for scale in (float(s) for s in args.scales.split(",")):
            values = []
            for path in photos:
                x = resize_max_side(to_float(read_image(path).pixels), size)[None]
                x = x[..., : x.shape[-2] // 8 * 8, : x.shape[-1] // 8 * 8]
                with torch.no_grad():
                    values.append(psnr(painted_at(decode, x, scale).clamp(0, 1), x))
            print(f"| {size} | {scale:g} | {statistics.median(values):.2f} | {min(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
