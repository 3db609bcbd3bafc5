"""Translation families on held-out photos: Pix2Pix (edges -> photo) against its two baselines,
CycleGAN (photo <-> Monet-painted photo) by the issue's four targets, and MIXGAN (content of the
photo, style of the Monet-painted domain).

    .venv/bin/python bench/bench_translation.py --pix2pix examples/models/edges.safetensors \
        --l1-only /tmp/edges-l1.safetensors --cyclegan examples/models/monet-cyclegan.safetensors \
        --mixgan examples/models/monet-mixgan.safetensors --painter examples/models/monet.safetensors \
        [--side 192] [--sheet docs/img/translation.jpg]

Held-out photos: the 24 Kodak photos of ../shared/data/train/content (no example model saw them),
shrunk to --side px. Their pairs are made here by the project's own makers, as `styleops
make-pairs` made the training pairs: HED line drawings (edges -> photo) and the per-style model
--painter's rendering (the CycleGAN domain B's ground truth). Scores:
- Pix2Pix: L1 to the photo in the reference's [-1, 1] units, for the model, the L1-only U-Net of
  the same size (`train-pix2pix --gan-weight 0`) and the mean-colour image (every pixel the mean
  RGB of the training photos, --train-photos); plus the structure score (gradient correlation
  with the photo, styleops.evaluation.appearance) as a check that outputs keep the drawing.
- CycleGAN: cycle L1 |F(G(x)) - x|; change |G(x) - x|; the colour and texture distances of G(x) to
  domain B (the painted photos, all pooled) as a fraction of the input's; L1 to the painted ground
  truth against the input's.
- MIXGAN: the structure score of its output against the photo (target >= 0.6), and the colour and
  texture distances to domain B as fractions of the photo's (below 1: towards the style).
Markdown to stdout, a contact sheet to --sheet.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from styleops.data.makers import edge_drawing, painted
from styleops.evaluation.appearance import colour_ratio, structure, texture_ratio
from styleops.evaluation.translation import l1
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors
from styleops.io.weights import install_hed_side_weights, load_vgg_state_dict
from styleops.models.hed import HEDEdges
from styleops.models.translation import OneDirection

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT.parent / "shared" / "data" / "train" / "content"


def _load(path: str) -> torch.nn.Module:
    return from_safetensors(Path(path).read_bytes(), source=path).eval()


def _photos(side: int) -> list[torch.Tensor]:
    paths = sorted(CONTENT.glob("kodak24_*"))
    if not paths:
        raise SystemExit(f"no Kodak24 photos in {CONTENT}")
    return [resize_max_side(to_float(read_image(p).pixels), side) for p in paths]


def _mean_colour(folder: Path, limit: int, side: int) -> torch.Tensor:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:limit]
    means = [resize_max_side(to_float(read_image(p).pixels), side).mean((1, 2)) for p in paths]
    return torch.stack(means).mean(0)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pix2pix", required=True)
    ap.add_argument("--l1-only", required=True)
    ap.add_argument("--cyclegan", required=True)
    ap.add_argument("--mixgan", required=True)
    ap.add_argument("--painter", required=True, help="the per-style model that painted domain B")
    ap.add_argument("--train-photos", default="/tmp/trainset", help="for the mean-colour baseline")
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(Path.home() / ".styleops" / "cache"))
    ap.add_argument("--sheet", default=str(ROOT / "docs" / "img" / "translation.jpg"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    cache = Path(args.cache)
    hed = HEDEdges(load_vgg_state_dict("hed", cache_dir=cache), load_file(install_hed_side_weights(cache)))
    pix2pix, l1_only = _load(args.pix2pix), _load(args.l1_only)
    cycle = _load(args.cyclegan)
    g, f = OneDirection(cycle, "AtoB"), OneDirection(cycle, "BtoA")
    mixgan = _load(args.mixgan)
    painter = _load(args.painter)
    photos = _photos(args.side)
    mean = _mean_colour(Path(args.train_photos), 200, args.side)

    p2p: dict[str, list[float]] = {k: [] for k in ("model", "l1_only", "mean", "structure", "structure_l1")}
    cyc: dict[str, list[float]] = {k: [] for k in ("cycle", "change", "colour", "texture", "gt", "gt_input")}
    mix: dict[str, list[float]] = {k: [] for k in ("structure", "colour", "texture")}
    rows, painted_all, outs, mixed = [], [], [], []
    for photo in photos:
        x = photo[None]
        drawing = edge_drawing(hed, photo)
        y, y1 = pix2pix(drawing[None])[0], l1_only(drawing[None])[0]
        p2p["model"].append(l1(y, photo))
        p2p["l1_only"].append(l1(y1, photo))
        p2p["mean"].append(l1(mean.view(3, 1, 1).expand_as(photo), photo))
        p2p["structure"].append(structure(y, photo))
        p2p["structure_l1"].append(structure(y1, photo))
        truth = painted(painter, photo)
        gx = g(x)[0].clamp(0, 1)
        cyc["cycle"].append(l1(f(gx[None])[0], photo))
        cyc["change"].append(float((gx - photo).abs().mean()))
        cyc["gt"].append(l1(gx, truth))
        cyc["gt_input"].append(l1(photo, truth))
        painted_all.append(truth)
        outs.append(gx)
        mx = mixgan(x)[0].clamp(0, 1)
        mixed.append(mx)
        mix["structure"].append(structure(mx, photo))
        if len(rows) < 6:
            rows.append([to_uint8(t) for t in (drawing, y, y1, photo, gx, truth, f(gx[None])[0], mx)])
    domain_b = torch.cat([resize_max_side(t, args.side)[:, :128, :128] for t in painted_all], -1)
    for photo, gx, mx in zip(photos, outs, mixed, strict=True):
        cyc["colour"].append(colour_ratio(gx, photo, domain_b))
        cyc["texture"].append(texture_ratio(gx, photo, domain_b))
        mix["colour"].append(colour_ratio(mx, photo, domain_b))
        mix["texture"].append(texture_ratio(mx, photo, domain_b))

    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    Path(args.sheet).write_bytes(encode_image(contact_sheet(rows, cell=160), "jpeg", quality=88))
    host = f"{platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads), torch {torch.__version__}"
    print(f"# Translation families on Kodak24 ({len(photos)} held-out photos, {args.side} px)\n\nMachine: {host}\n")
    print("## Pix2Pix, edges -> photo (L1 in [-1, 1] units, lower is better)\n")
    print("| | model (GAN + 100 L1) | L1-only U-Net, same size | mean-colour image |\n|---|---|---|---|")
    print(f"| L1 | {_mean(p2p['model']):.4f} | {_mean(p2p['l1_only']):.4f} | {_mean(p2p['mean']):.4f} |")
    print(f"| structure (gradient corr.) | {_mean(p2p['structure']):.3f} | {_mean(p2p['structure_l1']):.3f} | - |")
    print("\n## CycleGAN, photo <-> Monet-painted photo\n")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| cycle L1, F(G(x)) vs x ([-1, 1] units) | {_mean(cyc['cycle']):.4f} | < 0.1 |")
    print(f"| change, mean abs G(x) - x ([0, 1]) | {_mean(cyc['change']):.4f} | clearly > 0 |")
    print(f"| colour distance to domain B, fraction of the input's | {_mean(cyc['colour']):.3f} | < 1 |")
    print(f"| texture distance to domain B, fraction of the input's | {_mean(cyc['texture']):.3f} | < 1 |")
    print(
        f"| L1 to the painted ground truth: G(x) / input | {_mean(cyc['gt']):.4f} / {_mean(cyc['gt_input']):.4f}"
        " | below |"
    )
    print("\n## MIXGAN, content of the photo, style of the Monet-painted domain\n")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| structure (gradient correlation with the photo) | {_mean(mix['structure']):.3f} | >= 0.6 |")
    print(f"| colour distance to domain B, fraction of the photo's | {_mean(mix['colour']):.3f} | < 1 |")
    print(f"| texture distance to domain B, fraction of the photo's | {_mean(mix['texture']):.3f} | < 1 |")
    print(f"\n{time.perf_counter() - started:.0f} s. Sheet: {args.sheet} (columns: drawing, Pix2Pix, L1-only, photo,")
    print("CycleGAN G(photo), painted ground truth, F(G(photo)), MIXGAN)")


if __name__ == "__main__":
    main()
