"""Multi-style (conditional instance norm) vs dedicated per-style models, add-style cost, blends.

    .venv/bin/python bench/bench_multistyle.py --content ../shared/data/train/content --steps 300

Trains one per-style model per example artwork for --steps steps, one multi-style model in which
every style gets the same number of steps (N x steps in all: step s trains style s mod N), then
adds one more style to the multi-style model training only its scale/shift. Evaluates content
and style losses (the training objective's weighted terms) on held-out photos: the repo's
examples/catalog, excluded from training. Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.weights import load_encoder
from styleops.losses.perceptual import LossWeights, PerceptualLoss
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.transformer import TransformerNet
from styleops.training.engine import TrainConfig, add_style, image_paths, train_multistyle, train_style

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def evaluate(forward, photos: list[torch.Tensor], loss: PerceptualLoss, grams: dict) -> tuple[float, float]:
    """Mean (content, style) loss of forward(photo) over the held-out photos."""
    c = s = 0.0
    with torch.no_grad():
        for x in photos:
            terms = loss(forward(x).clamp(0, 1), x, grams)
            c, s = c + float(terms.content), s + float(terms.style)
    return c / len(photos), s / len(photos)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--content", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--styles", nargs="+", default=["monet", "hoitsu"])
    ap.add_argument("--added", default="kandinsky")
    ap.add_argument("--add-steps", type=int, default=None, help="default: steps / 4")
    ap.add_argument(
        "--style-lr-scale",
        type=float,
        default=TrainConfig.style_lr_scale,
        help="lr multiplier on scale/shift (multi-style and add-style; default 10)",
    )
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep checkpoints here: a rerun reuses finished per-style runs"
    )
    args = ap.parse_args()
    held_out = {
        p.stem for p in (EXAMPLES / "catalog").glob("*.jpg")
    }  # kodim03, ... (kodak24_kodim03.png in the shared set)
    content = [p for p in image_paths(args.content) if not any(h in p.stem for h in held_out)]
    photos = [
        resize_max_side(to_float(read_image(p).pixels), 256)[None] for p in sorted((EXAMPLES / "catalog").glob("*.jpg"))
    ]
    arts = {s: read_image(EXAMPLES / "artwork" / s / f"{s}.jpg").pixels for s in [*args.styles, args.added]}
    weights = LossWeights()
    encoder = load_encoder(None, weights.layers)
    cfg = TrainConfig(
        steps=args.steps,
        image_size=128,
        style_size=256,
        channels=16,
        batch_size=4,
        log_every=50,
        checkpoint_every=10_000,
    )
    loss = PerceptualLoss(encoder, weights)
    grams = {s: loss.style_targets(resize_max_side(to_float(a), cfg.style_size)[None]) for s, a in arts.items()}
    n = len(args.styles)
    rows, times = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        per_style = {}
        for s in args.styles:
            t = time.perf_counter()
            r = train_style(cfg, content, arts[s], encoder, workdir=Path(tmp) / s, device="cpu")
            times[f"per-style {s}"] = (time.perf_counter() - t, cfg.steps)
            net = TransformerNet(**r.model_config).eval()
            net.load_state_dict(r.state_dict)
            per_style[s] = net
        multi_cfg = TrainConfig.from_dict(
            {**cfg.to_dict(), "steps": cfg.steps * n, "style_lr_scale": args.style_lr_scale}
        )
        t = time.perf_counter()
        m = train_multistyle(
            multi_cfg,
            content,
            [arts[s] for s in args.styles],
            encoder,
            workdir=Path(tmp) / f"multi-x{args.style_lr_scale:g}",
            device="cpu",
        )
        times[f"multi-style ({n} styles)"] = (time.perf_counter() - t, multi_cfg.steps)
        multi = MultiStyleTransformerNet(**m.model_config).eval()
        multi.load_state_dict(m.state_dict)
        for i, s in enumerate(args.styles):
            pc, ps = evaluate(per_style[s], photos, loss, grams[s])
            mc, ms = evaluate(lambda x, i=i: multi(x, i), photos, loss, grams[s])
            rows.append((s, pc, ps, mc, ms))
        add_cfg = TrainConfig.from_dict(
            {**cfg.to_dict(), "steps": args.add_steps or max(1, cfg.steps // 4), "style_lr_scale": args.style_lr_scale}
        )
        t = time.perf_counter()
        a = add_style(
            add_cfg,
            content,
            arts[args.added],
            encoder,
            m.state_dict,
            n,
            workdir=Path(tmp) / f"add-x{args.style_lr_scale:g}-{args.steps}",
            device="cpu",
        )
        times[f"add-style {args.added} (scale/shift only)"] = (time.perf_counter() - t, add_cfg.steps)
        grown = MultiStyleTransformerNet(**a.model_config).eval()
        grown.load_state_dict(a.state_dict)
        added_losses = evaluate(lambda x: grown(x, n), photos, loss, grams[args.added])
        blend = []
        for w in (0.0, 0.25, 0.5, 0.75, 1.0):
            f = lambda x, w=w: multi(x, [1 - w, w] + [0.0] * (n - 2))  # noqa: E731
            blend.append(
                (
                    w,
                    evaluate(f, photos, loss, grams[args.styles[0]])[1],
                    evaluate(f, photos, loss, grams[args.styles[1]])[1],
                )
            )

    print(
        f"# {platform.node()} threads={torch.get_num_threads()} torch {torch.__version__}; "
        f"{len(content)} training photos, {len(photos)} held-out, {args.steps} steps per style, 128 px, 16 ch, "
        f"style lr x{args.style_lr_scale:g}"
    )
    print(
        "| style | per-style content | per-style style | multi content | multi style | content ratio | style ratio |\n"
        "|---|---|---|---|---|---|---|"
    )
    for s, pc, ps, mc, ms in rows:
        print(f"| {s} | {pc:,.0f} | {ps:,.0f} | {mc:,.0f} | {ms:,.0f} | {mc / pc:.2f} | {ms / ps:.2f} |")
    print("\n| training | steps | seconds |\n|---|---|---|")
    for k, (sec, steps) in times.items():
        print(f"| {k} | {steps} | {sec:,.0f} |")
    print(f"\nadded style {args.added}: content {added_losses[0]:,.0f}, style {added_losses[1]:,.0f} (held-out)")
    print(
        f"\n| weight on {args.styles[1]} | style loss vs {args.styles[0]} | style loss vs {args.styles[1]} |\n"
        "|---|---|---|"
    )
    for w, s0, s1 in blend:
        print(f"| {w:.2f} | {s0:,.0f} | {s1:,.0f} |")


if __name__ == "__main__":
    main()
