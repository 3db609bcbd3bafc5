"""Stylization quality on held-out photos and artworks, against Gatys@100: the numbers and the contact sheet.

    .venv/bin/python bench/bench_quality.py [--photos DIR] [--artworks DIR] [--size 384] [--n-photos 4]

Measures (styleops.evaluation.appearance, none of them through a VGG network, so no training loss games them),
medians over the held-out photos, per method and artwork:
- structure: correlation of half-resolution luminance gradient magnitudes, output vs photo;
- colour: sliced Wasserstein distance of RGB pixels to the artwork's, as a fraction of the photo's;
- texture: 1-D Wasserstein distance of log gradient magnitudes (two scales) to the artwork's,
  as a fraction of the photo's.
Secondary: per-layer Gram distance to the artwork as a fraction of the photo's (relu1_2 ...
relu4_3 of the loss network), and Johnson's criterion for feed-forward models trained on one
artwork: the value of the model's own training objective (its card's loss weights) on its
output, divided by Gatys@100's value of that objective on the same photo (and Gatys@50's).

Methods (each only where its model is given): per-style (--per-style STYLE=PATH, repeatable),
multi-style (--multi PATH with --multi-styles a,b,c naming its styles' artworks), swap
(--inverse PATH; banks built from the artwork as runs/banks.py does), AdaIN (--adain PATH),
Gatys@50 and @100 (L-BFGS from the photo, default loss). The held-out photos default to Kodak24
(excluded from the example models' training, examples/models/README.md); the artworks to six
public-domain works of different kinds in ../shared/data/train/style (brushwork, flat colour,
line, mosaic, dark, pale). Seconds per image are wall time on this machine, one image at a time.
Writes a markdown table to stdout and a contact sheet (rows: photo x artwork; columns: photo,
artwork, each method) to --sheet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from styleops.evaluation.appearance import appearance
from styleops.inference.arbitrary import AdaINStylizer, SwapStylizer
from styleops.inference.gatys import GatysConfig, gatys
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors
from styleops.io.weights import load_vgg_state_dict
from styleops.losses.perceptual import LossWeights, PerceptualLoss, gram_matrix, style_loss
from styleops.models.palette import palette_of
from styleops.models.vgg import VGGEncoder
from styleops.ops import build_patch_bank

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
ARTWORKS = {  # kind -> file in ../shared/data/train/style (all public domain)
    "brushwork": "water-lilies-1919-2.jpg",  # Monet
    "flat colour": "theo_van_doesburg_sq.jpg",  # van Doesburg
    "line": "small_worlds_one.jpg",  # Kandinsky, Small Worlds I
    "mosaic": "clouds-over-bor-1940_sq.jpg",  # Klee
    "dark": "compx_wk.jpg",  # Kandinsky, Composition X
    "pale": "japanese_flower_sakai_hoitsu.jpg",  # Sakai Hoitsu
}
GRAM_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
ARTWORK_SIZE = 512


def load_float(path: Path, size: int | None) -> torch.Tensor:
    return resize_max_side(to_float(read_image(path).pixels), size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="VGG weights file (default: styleops' cache)")
    ap.add_argument(
        "--photos", type=Path, default=SHARED / "content", help="folder of held-out photos (default: its kodim* files)"
    )
    ap.add_argument("--pattern", default="*kodim*", help="glob of held-out photos in --photos")
    ap.add_argument("--n-photos", type=int, default=4)
    ap.add_argument("--artworks", type=Path, default=SHARED / "style")
    ap.add_argument("--kinds", default=",".join(ARTWORKS), help="which of the six artwork kinds to run")
    ap.add_argument("--size", type=int, default=384, help="longer side of the photos, px")
    ap.add_argument(
        "--per-style",
        action="append",
        default=[],
        metavar="KIND[:LABEL]=PATH",
        help="a per-style model and the kind of artwork it was trained on",
    )
    ap.add_argument(
        "--multi", type=Path, default=None, help="a multi-style model; --multi-kinds names its styles in order"
    )
    ap.add_argument("--multi-kinds", default="")
    ap.add_argument("--inverse", type=Path, default=ROOT / "examples" / "models" / "inverse.safetensors")
    ap.add_argument(
        "--adain", type=Path, default=None, help="AdaIN decoder (default: the inverse network, as the demo ships it)"
    )
    ap.add_argument(
        "--palette",
        choices=("on", "off", "both"),
        default="both",
        help="swap and AdaIN with the final PaletteMatch (the pipeline's default), without, or both rows",
    )
    ap.add_argument("--gatys", default="50,100", help="L-BFGS iteration counts")
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "img" / "quality_sheet.jpg")
    ap.add_argument("--json", type=Path, default=None, help="also write every score here")
    args = ap.parse_args()

    torch.manual_seed(0)
    state = load_vgg_state_dict(args.weights)
    default = LossWeights()
    encoder = VGGEncoder(state, sorted(set(default.layers) | set(GRAM_LAYERS) | {"relu3_1", "relu4_1"}))
    gram_enc = VGGEncoder(state, GRAM_LAYERS)
    found = sorted(args.photos.glob(args.pattern))
    photos = found[:: max(1, len(found) // max(1, args.n_photos))][: args.n_photos]  # evenly spaced
    if not photos:
        sys.exit(f"no held-out photos matching {args.pattern} in {args.photos}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    per_style = dict(s.split("=", 1) for s in args.per_style)
    multi = from_safetensors(args.multi.read_bytes()) if args.multi else None
    multi_kinds = [k.strip() for k in args.multi_kinds.split(",") if k.strip()]
    inverse = from_safetensors(args.inverse.read_bytes()) if args.inverse.is_file() else None
    adain_path = args.adain or args.inverse
    adain_dec = from_safetensors(adain_path.read_bytes()) if adain_path.is_file() else None
    palettes = {"on": [True], "off": [False], "both": [False, True]}[args.palette]
    iters = [int(s) for s in args.gatys.split(",") if s.strip()]

    scores: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    rows: list[list[torch.Tensor | None]] = []
    started = time.perf_counter()
    for kind in kinds:
        art = load_float(args.artworks / ARTWORKS[kind], ARTWORK_SIZE)
        art_grams = {n: gram_matrix(f) for n, f in gram_enc(art[None]).items()}
        methods: dict[str, object] = {}
        for key, path in per_style.items():  # KIND or KIND:LABEL (several models of one artwork)
            if key.split(":")[0] == kind:
                label = "per-style" + (f":{key.split(':', 1)[1]}" if ":" in key else "")
                methods[label] = (from_safetensors(Path(path).read_bytes()), _card_loss(Path(path)))
        if multi is not None and kind in multi_kinds:
            methods["multi-style"] = (multi, multi_kinds.index(kind))
        if inverse is not None:
            enc = VGGEncoder(state, [inverse.from_layer])
            bank = build_patch_bank(
                [enc(resize_max_side(art, 256)[None])[inverse.from_layer]], 3, stride=1, max_patches=16384
            )
            for on in palettes:
                methods["swap" + " +palette" * on] = SwapStylizer(
                    enc, inverse, bank, palette=palette_of(art) if on else None
                )
        if adain_dec is not None:
            for on in palettes:
                methods["adain" + " +palette" * on] = AdaINStylizer(
                    VGGEncoder(state, [adain_dec.from_layer]), adain_dec, [art[None]], palette=on
                )
        for photo_path in photos:
            x = load_float(photo_path, args.size)
            row: list[torch.Tensor | None] = [to_uint8(x), to_uint8(art)]
            outputs: dict[str, torch.Tensor] = {}
            for name, m in methods.items():
                t = time.perf_counter()
                with torch.no_grad():
                    if name.startswith("per-style"):
                        y = m[0](x[None])[0]
                    elif name == "multi-style":
                        y = m[0](x[None], m[1])[0]
                    else:
                        y = m(x[None])[0]
                outputs[name] = (y.clamp(0, 1), time.perf_counter() - t)
            for n in iters:
                t = time.perf_counter()
                y, _ = gatys(x, art, encoder, GatysConfig(iterations=n, style_size=ARTWORK_SIZE))
                outputs[f"gatys@{n}"] = (y, time.perf_counter() - t)
            for name, (y, secs) in outputs.items():
                a = appearance(y, x, art)
                rec = {"structure": a.structure, "colour": a.colour, "texture": a.texture, "seconds": secs}
                with torch.no_grad():
                    fy, fx = gram_enc(y[None]), gram_enc(x[None])
                    for layer in GRAM_LAYERS:
                        base = float(style_loss(fx[layer], art_grams[layer]))
                        rec[f"gram_{layer}"] = (
                            float(style_loss(fy[layer], art_grams[layer])) / base if base > 0 else float("nan")
                        )
                if name.startswith("per-style") and iters:
                    loss = PerceptualLoss(encoder, methods[name][1])
                    grams = loss.style_targets(art[None])
                    with torch.no_grad():
                        own = float(loss(y[None], x[None], grams).total)
                        for n in iters:
                            g = outputs[f"gatys@{n}"][0]
                            rec[f"johnson_vs_gatys@{n}"] = own / float(loss(g[None], x[None], grams).total)
                scores[(kind, name)].append(rec)
                row.append(to_uint8(y))
            rows.append(row)
            print(
                f"# {kind} {photo_path.name}: "
                + ", ".join(f"{k} {v[0].shape[-1]}px" for k, v in list(outputs.items())[:1]),
                file=sys.stderr,
                flush=True,
            )

    print(
        f"Machine: {platform.node() or 'unknown'}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"{len(photos)} held-out photos at {args.size} px; total {time.perf_counter() - started:.0f} s\n"
    )
    cols = ["structure", "colour", "texture", "gram_relu1_2", "gram_relu2_2", "gram_relu3_3", "gram_relu4_3", "seconds"]
    extra = [f"johnson_vs_gatys@{n}" for n in iters]
    print("| artwork | method | " + " | ".join(cols + extra) + " |")
    print("|---|---|" + "---|" * (len(cols) + len(extra)))
    for (kind, name), recs in scores.items():
        cells = []
        for c in cols + extra:
            vals = [r[c] for r in recs if c in r]
            cells.append(f"{statistics.median(vals):.3g}" if vals else "")
        print(f"| {kind} | {name} | " + " | ".join(cells) + " |")
    print("\n| method | structure | colour | texture | (medians over all artworks and photos) |\n|---|---|---|---|---|")
    by_method: dict[str, list[dict[str, float]]] = defaultdict(list)
    for (kind, name), recs in scores.items():
        by_method[name] += recs
    for name, recs in by_method.items():
        print(
            f"| {name} | "
            + " | ".join(f"{statistics.median(r[c] for r in recs):.3f}" for c in ("structure", "colour", "texture"))
            + f" | n={len(recs)} |"
        )
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(rows, cell=160)
    args.sheet.write_bytes(
        encode_image(sheet, "jpeg" if args.sheet.suffix.lower() in (".jpg", ".jpeg") else "png", quality=85)
        if args.sheet.suffix.lower() in (".jpg", ".jpeg")
        else encode_image(sheet, "png")
    )
    if args.json:
        args.json.write_text(json.dumps({f"{k}|{n}": v for (k, n), v in scores.items()}, indent=1))


def _card_loss(path: Path) -> LossWeights:
    """The loss weights a model was trained with: its card beside it (<name>.card.json), else the defaults."""
    card = path.with_suffix("").with_suffix(".card.json") if path.suffix == ".safetensors" else None
    if card is not None and card.is_file():
        c = json.loads(card.read_text())
        loss = c.get("loss") or c["train_config"]["loss"]
        return LossWeights(**loss)
    return LossWeights()


if __name__ == "__main__":
    main()
