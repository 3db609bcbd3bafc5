"""Arbitrary-style methods vs Gatys vs the per-style model: speed and quality on the shared images.

    .venv/bin/python bench/bench_arbitrary.py --weights ../shared/weights/vgg16-hed-features.safetensors [--quick]

All on the CPU, for one artwork (default examples/artwork/monet/monet.jpg):
- per-style: the feed-forward TransformerNet trained for that artwork (--per-style);
- swap (Chen & Schmidt 2016): SwapStylizer with the inverse network (--inverse, relu3_1) and a
  patch bank built as the pipeline builds it (runs/banks.py): the artwork resized to 256 px on its
  longer side, its relu3_1 features, 3x3 patches, stride 1, at most 16384 patches;
- adain (Huang & Belongie 2017): AdaINStylizer with the AdaIN decoder (--adain, relu4_1), the
  artwork resized to 512 px on its longer side (runs/methods/base.py ARTWORK_SIZE), alpha 1;
- gatys-N: `styleops.inference.gatys.gatys` with GatysConfig(iterations=N, optimizer="lbfgs",
  style_size=512), default LossWeights, initialized from the content.

Quality table: the first --n-photos held-out photos (examples/catalog/*.jpg, sorted; not in any
training set) resized to --size px on the longer side; every method's output, clamped to [0, 1],
is scored by ONE PerceptualLoss (default LossWeights, the VGG16 loss encoder, style targets = the
Grams of the artwork resized to 512 px): the content and style terms, weighted as in training
(content_weight x sum over content layers, style_weight x sum over style layers), averaged over
the photos. "photo itself" (output = input: content loss 0) is the reference for the style term.
Note: the shipped per-style models were fine-tuned with content weight 8 (examples/models/README.md)
but are scored here with the default weights like everything else. Feed-forward methods run through
`InferenceEngine` (pads to multiples of 16, crops back), after one untimed warm-up call each;
"seconds per image" is the mean wall time of method(photo) over the photos.

Speed table: images/s at --speed-size px through InferenceEngine(model, device="cpu",
max_side=--speed-size) for swap, adain and per-style, on --speed-images images (the held-out photos
cycled, centre-cropped to 1:1, 4:3, 3:4, 3:2 in turn and scaled so the longer side is
--speed-size), after one warm-up image; best of --repeats. Gatys: seconds per iteration at
--speed-size (the first speed image) for L-BFGS and Adam, --gatys-time-iters iterations after a
1-iteration warm-up; L-BFGS's strong-Wolfe line search may evaluate the loss more than once per
iteration, so evaluations are reported too. Each Gatys call also computes the artwork's Grams once.

--quick: a smoke test (1 photo, Gatys 5 iterations, 3 timed Gatys iterations, 2 speed images at
256 px). A contact sheet (first row: the artwork; then one row per photo: photo | per-style | swap |
adain | gatys-...) is written to --sheet. Prints markdown tables for docs/benchmarks.md, headed with
the machine and the 1-minute load average (timings are only comparable on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from styleops.inference.arbitrary import AdaINStylizer, SwapStylizer
from styleops.inference.engine import InferenceEngine
from styleops.inference.gatys import GatysConfig, gatys
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors
from styleops.io.weights import load_vgg_state_dict
from styleops.losses.perceptual import LossWeights, PerceptualLoss
from styleops.models.decoder import VGGDecoder
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder
from styleops.ops import build_patch_bank

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BANK_STYLE_SIZE, BANK_MAX_PATCHES, PATCH, STRIDE = 256, 16384, 3, 1  # infra.settings bank_* defaults, runs/banks.py
ARTWORK_SIZE = 512  # runs/methods/base.py: AdaIN statistics, Gatys targets, metrics
CROPS = ((1, 1), (4, 3), (3, 4), (3, 2))  # width:height of the speed images, in turn


def load_model(path: Path, kind: type, what: str, hint: str):
    """from_safetensors(path) checked to be a `kind`; exit 2 with a clear message otherwise."""
    if not path.is_file():
        print(f"error: {what} file not found: {path}\n  {hint}", file=sys.stderr)
        raise SystemExit(2)
    model = from_safetensors(path.read_bytes())
    if not isinstance(model, kind):
        print(f"error: {path} holds a {type(model).__name__}, not the {kind.__name__} a {what} needs", file=sys.stderr)
        raise SystemExit(2)
    return model


def crop_aspect(img: torch.Tensor, aspect: tuple[int, int]) -> torch.Tensor:
    """Centre crop of float [3, H, W] to width:height = aspect."""
    h, w = img.shape[-2:]
    aw, ah = aspect
    if w * ah > h * aw:
        nw, nh = h * aw // ah, h
    else:
        nw, nh = w, w * ah // aw
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[:, top : top + nh, left : left + nw]


def speed_images(photos: list[torch.Tensor], size: int, n: int) -> list[torch.Tensor]:
    """n uint8 images, longer side exactly `size` (upscaled if need be), varied aspect ratios."""
    out = []
    for i in range(n):
        img = crop_aspect(photos[i % len(photos)], CROPS[i % len(CROPS)])
        scale = size / max(img.shape[-2:])
        hw = (max(1, round(img.shape[-2] * scale)), max(1, round(img.shape[-1] * scale)))
        out.append(
            to_uint8(F.interpolate(img[None], size=hw, mode="bilinear", align_corners=False, antialias=scale < 1)[0])
        )
    return out


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--weights", default=None, help="VGG weights file (default: styleops' cache, see styleops.io.weights)"
    )
    ap.add_argument(
        "--inverse",
        type=Path,
        default=EXAMPLES / "models" / "inverse.safetensors",
        help="style-swap inverse network (VGGDecoder from relu3_1)",
    )
    ap.add_argument(
        "--adain",
        type=Path,
        default=EXAMPLES / "models" / "adain.safetensors",
        help="AdaIN decoder (VGGDecoder from relu4_1)",
    )
    ap.add_argument(
        "--per-style",
        type=Path,
        default=EXAMPLES / "models" / "monet.safetensors",
        help="per-style TransformerNet for the same artwork",
    )
    ap.add_argument("--artwork", type=Path, default=EXAMPLES / "artwork" / "monet" / "monet.jpg")
    ap.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=None,
        help="default: the held-out examples/catalog/*.jpg (sorted), first --n-photos",
    )
    ap.add_argument("--n-photos", type=int, default=None, help="default 3 (--quick: 1)")
    ap.add_argument("--size", type=int, default=256, help="longer side (px) of the photos in the quality table")
    ap.add_argument(
        "--gatys-iters",
        default=None,
        help='comma-separated L-BFGS iteration counts for the quality table (default "100,500"; --quick: "5")',
    )
    ap.add_argument(
        "--speed-size", type=int, default=None, help="longer side (px) for the speed table (default 512; --quick: 256)"
    )
    ap.add_argument("--speed-images", type=int, default=None, help="images per speed run (default 4; --quick: 2)")
    ap.add_argument(
        "--gatys-time-iters",
        type=int,
        default=None,
        help="iterations timed per Gatys optimizer (default 10; --quick: 3)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="speed runs per feed-forward method (best is reported)")
    ap.add_argument(
        "--sheet", type=Path, default=Path("/tmp/arbitrary_sheet.png"), help="contact sheet PNG (photo x methods)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: 1 photo, Gatys 5 iterations, 2 speed images at 256 px"
    )
    args = ap.parse_args()
    q = args.quick
    n_photos = args.n_photos or (1 if q else 3)
    gatys_iters = [int(s) for s in (args.gatys_iters or ("5" if q else "100,500")).split(",") if s.strip()]
    speed_size = args.speed_size or (256 if q else 512)
    n_speed = args.speed_images or (2 if q else 4)
    time_iters = args.gatys_time_iters or (3 if q else 10)

    how = "styleops train-{0} ... then `styleops models export <name> --family {0} --out DIR`, or pass --{0} PATH"
    inverse = load_model(args.inverse, VGGDecoder, "style-swap inverse network (--inverse)", how.format("inverse"))
    adain_dec = load_model(args.adain, VGGDecoder, "AdaIN decoder (--adain)", how.format("adain"))
    per_style = load_model(
        args.per_style,
        TransformerNet,
        "per-style model (--per-style)",
        "export one with `styleops models export <style> --out DIR`, or pass --per-style PATH",
    )

    load = os.getloadavg()[0]
    t_start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(0)
    weights = LossWeights()
    state = load_vgg_state_dict(args.weights)
    loss_encoder = VGGEncoder(state, weights.layers)
    loss = PerceptualLoss(loss_encoder, weights)
    art = to_float(read_image(args.artwork).pixels)
    grams = loss.style_targets(resize_max_side(art, ARTWORK_SIZE)[None])

    # swap: the bank as runs/banks.py builds it
    swap_encoder = VGGEncoder(state, (inverse.from_layer,))
    with torch.no_grad():
        feats = swap_encoder(resize_max_side(art, BANK_STYLE_SIZE)[None])[inverse.from_layer]
    bank = build_patch_bank(feats, PATCH, STRIDE, max_patches=BANK_MAX_PATCHES)
    swap = SwapStylizer(swap_encoder, inverse, bank)
    adain = AdaINStylizer(
        VGGEncoder(state, (adain_dec.from_layer,)), adain_dec, [resize_max_side(art, ARTWORK_SIZE)[None]], alpha=1.0
    )
    feed_forward = {"per-style": per_style, "swap": swap, "adain": adain}

    paths = args.photos or sorted((EXAMPLES / "catalog").glob("*.jpg"))[:n_photos]
    originals = [to_float(read_image(p).pixels) for p in paths]
    photos = [resize_max_side(p, args.size) for p in originals]

    # ---- quality: every method through the same loss -------------------------------------------
    outputs: dict[str, list[torch.Tensor]] = {"photo itself": photos}
    seconds: dict[str, float] = {"photo itself": 0.0}
    evals: dict[str, float] = {}
    for name, model in feed_forward.items():
        engine = InferenceEngine(model, device="cpu")
        engine.stylize_prepared(photos[:1])  # warm-up
        outs, total = [], 0.0
        for x in photos:
            t = time.perf_counter()
            outs.append(engine.stylize_prepared([x])[0].clamp(0, 1))
            total += time.perf_counter() - t
        outputs[name], seconds[name] = outs, total / len(photos)
        print(f"  [quality] {name}: {seconds[name]:.2f} s/image", file=sys.stderr, flush=True)
    for n in gatys_iters:
        name, cfg = f"gatys-{n} (lbfgs)", GatysConfig(iterations=n, optimizer="lbfgs", style_size=ARTWORK_SIZE)
        outs, total, n_evals = [], 0.0, 0
        for x in photos:
            t = time.perf_counter()
            y, history = gatys(x, art, loss_encoder, cfg)
            total += time.perf_counter() - t
            outs.append(y.clamp(0, 1))
            n_evals += len(history)
        outputs[name], seconds[name], evals[name] = outs, total / len(photos), n_evals / len(photos)
        print(
            f"  [quality] {name}: {seconds[name]:.1f} s/image, {evals[name]:.0f} loss evaluations/image",
            file=sys.stderr,
            flush=True,
        )
    quality = {}
    with torch.no_grad():
        for name, outs in outputs.items():
            terms = [loss(y[None], x[None], grams) for y, x in zip(outs, photos, strict=True)]
            quality[name] = (
                sum(float(t.content) for t in terms) / len(terms),
                sum(float(t.style) for t in terms) / len(terms),
            )

    # ---- speed ---------------------------------------------------------------------------------
    images = speed_images(originals, speed_size, n_speed)
    speed, batch = {}, 1
    for name, model in feed_forward.items():
        engine = InferenceEngine(model, device="cpu", max_side=speed_size)
        batch = engine.batch_size
        engine.stylize(images[:1])  # warm-up
        speed[name] = best_time(lambda engine=engine: engine.stylize(images), args.repeats)
        print(f"  [speed] {name}: {n_speed / speed[name]:.2f} images/s", file=sys.stderr, flush=True)
    content = to_float(images[0])
    gatys(content, art, loss_encoder, GatysConfig(iterations=1, optimizer="adam", style_size=ARTWORK_SIZE))  # warm-up
    gatys_speed = {}
    for opt in ("lbfgs", "adam"):
        t = time.perf_counter()
        _, history = gatys(
            content, art, loss_encoder, GatysConfig(iterations=time_iters, optimizer=opt, style_size=ARTWORK_SIZE)
        )
        gatys_speed[opt] = (time.perf_counter() - t, len(history))
        print(f"  [speed] gatys {opt}: {gatys_speed[opt][0] / time_iters:.2f} s/iteration", file=sys.stderr, flush=True)

    # ---- contact sheet ---------------------------------------------------------------------------
    methods = [m for m in outputs if m != "photo itself"]
    rows = [[to_uint8(art)]] + [
        [to_uint8(x)] + [to_uint8(outputs[m][i]) for m in methods] for i, x in enumerate(photos)
    ]
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    args.sheet.write_bytes(encode_image(contact_sheet(rows), "png"))

    wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} threads={torch.get_num_threads()} "
        f"cpu_count={os.cpu_count()} "
        f"torch {torch.__version__}; load avg 1 min at start {load:.2f}; total {wall:.0f} s wall, {cpu:.0f} s CPU"
    )
    print(
        f"\nartwork {args.artwork.name}; photos {', '.join(p.name for p in paths)} at {args.size} px; "
        f"bank {len(bank)} patches ({inverse.from_layer}, artwork at {BANK_STYLE_SIZE} px); loss: default LossWeights, "
        f"style targets = artwork at {ARTWORK_SIZE} px\n"
    )
    print("| method | content loss | style loss | seconds per image |\n|---|---|---|---|")
    for name in ("photo itself", *methods):
        c, s = quality[name]
        extra = f" ({evals[name]:.0f} evals)" if name in evals else ""
        print(f"| {name} | {c:,.0f} | {s:,.0f} | {seconds[name]:.2f}{extra} |")
    print(
        f"\nspeed: {n_speed} images, longer side {speed_size} px "
        f"({', '.join(f'{a}:{b}' for a, b in CROPS[:n_speed])}), "
        f"InferenceEngine(device=cpu, batch {batch}), best of {args.repeats}\n"
    )
    print("| method | seconds | images/s |\n|---|---|---|")
    for name, t in speed.items():
        print(f"| {name} | {t:.2f} | {n_speed / t:.2f} |")
    h, w = images[0].shape[-2:]
    print(f"\nGatys at {h}x{w} px, {time_iters} iterations timed\n")
    print("| optimizer | seconds | loss evaluations | s / iteration | s / evaluation |\n|---|---|---|---|---|")
    for opt, (t, n_ev) in gatys_speed.items():
        print(f"| {opt} | {t:.1f} | {n_ev} | {t / time_iters:.2f} | {t / n_ev:.2f} |")
    print(f"\ncontact sheet: {args.sheet} (row 1: artwork; then per photo: photo | {' | '.join(methods)})")


if __name__ == "__main__":
    main()
