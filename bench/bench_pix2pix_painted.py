"""Pix2Pix that learned a look from before/after pairs, on held-out pairs: the 24 Kodak photos of
../shared/data/train/content (never in its training pairs), each painted by the same per-style
model that painted the training pairs' B side, the way `styleops make-pairs --kind painted` paints
them (shrunk to --side px, `styleops.data.makers.painted`, rounded to 8 bits as its PNGs are).

    .venv/bin/python bench/bench_pix2pix_painted.py --pix2pix examples/models/monet-pix2pix.safetensors \
        --painter /tmp/exp/monet.safetensors [--side 216] [--sheet docs/img/pix2pix_painted.jpg]

--painter: the per-style model of the pairs (`styleops models export monet --out /tmp/exp`).
Scores, medians over the photos:
- L1 to the target (the painted photo), mean absolute difference in [0, 1] units (half of the
  reference's [-1, 1] units that docs/translation.md uses), for the Pix2Pix output and, as the
  baseline, for the photo itself (a model that changes nothing);
- structure of the Pix2Pix output, and of the target, against the photo
  (`styleops.evaluation.appearance.structure`: correlation of luminance gradient magnitudes at
  half resolution).
Markdown to stdout; a contact sheet (photo | target | Pix2Pix) of the first --rows photos to --sheet.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from styleops.data.makers import painted
from styleops.evaluation.appearance import structure
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT.parent / "shared" / "data" / "train" / "content"


def _load(path: str) -> torch.nn.Module:
    return from_safetensors(Path(path).read_bytes(), source=path).eval()


def _l1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean absolute difference of two images in [0, 1], in [0, 1] units."""
    return float((x.float() - y.float()).abs().mean())


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pix2pix", required=True, help="the Pix2Pix generator (.safetensors)")
    ap.add_argument("--painter", required=True, help="the per-style model that painted the training pairs")
    ap.add_argument("--side", type=int, default=216, help="held-out pairs' longer side, px")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=6, help="photos on the contact sheet")
    ap.add_argument("--sheet", default=str(ROOT / "docs" / "img" / "pix2pix_painted.jpg"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    pix2pix, painter = _load(args.pix2pix), _load(args.painter)
    paths = sorted(CONTENT.glob("kodak24_*"))
    if not paths:
        raise SystemExit(f"no Kodak24 photos in {CONTENT}")
    scores: dict[str, list[float]] = {k: [] for k in ("l1", "l1_photo", "structure", "structure_target")}
    rows = []
    for path in paths:
        shrunk = resize_max_side(to_float(read_image(path).pixels), args.side)
        # as make-pairs does: painted from the shrunk photo, both stored as 8-bit PNGs
        photo, target = (to_float(to_uint8(x)) for x in (shrunk, painted(painter, shrunk)))
        out = pix2pix(photo[None])[0].clamp(0, 1)
        scores["l1"].append(_l1(out, target))
        scores["l1_photo"].append(_l1(photo, target))
        scores["structure"].append(structure(out, photo))
        scores["structure_target"].append(structure(target, photo))
        if len(rows) < args.rows:
            rows.append([to_uint8(t) for t in (photo, target, out)])

    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    Path(args.sheet).write_bytes(encode_image(contact_sheet(rows, cell=args.side), "jpeg", quality=88))
    med = {k: statistics.median(v) for k, v in scores.items()}
    closer = sum(a < b for a, b in zip(scores["l1"], scores["l1_photo"], strict=True))
    host = f"{platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads), torch {torch.__version__}"
    print(f"# Pix2Pix, photo -> painted look, on {len(paths)} held-out pairs ({args.side} px)\n")
    print(f"Machine: {host}; {time.perf_counter() - started:.0f} s\n")
    print("| medians | Pix2Pix output | the photo unchanged (baseline) | the target (painted) |\n|---|---|---|---|")
    print(f"| L1 to the target, [0, 1] units | {med['l1']:.4f} | {med['l1_photo']:.4f} | 0 |")
    print(f"| structure (gradient corr. with the photo) | {med['structure']:.3f} | 1 | {med['structure_target']:.3f} |")
    print(f"\nPix2Pix is closer to the target than the photo is on {closer} of {len(paths)} photos.")


if __name__ == "__main__":
    main()
