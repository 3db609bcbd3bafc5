"""Issue 30, step 1: do shallow HED features, given to the decoder as skips, remove the emboss?

    nice -n 19 .venv/bin/python bench/probe_decoder_skips.py train --probe s1 --steps 400
    nice -n 19 .venv/bin/python bench/probe_decoder_skips.py eval    # table + contact sheet

The previous probe (bench/probe_decoder_emboss.py, /work/probes30/eval_table.txt) found that a
decoder given only HED relu3_1 (edge-dominated features) cannot recover flat areas and colour:
grey flats, relief and halos (14.6 dB held-out), while the same decoder inverting a random-init
VGG16's relu3_1 reaches 20.0 dB. Here `SkipDecoder` mirrors `VGGDecoder("relu3_1")` (same convs,
same nearest x2 upsampling, reflection padding, no normalization) but also receives HED relu2_1
(128 ch, 1/2 res) and/or relu1_1 (64 ch, full res), concatenated with the decoder's activation at
the matching resolution before the mirrored conv2_2 / conv1_2 (whose input channels double).

Probes (PROBES): s1 skips relu1_1 + relu2_1, pixel MSE only; s2 skip relu2_1 only, pixel MSE
only; s3 s1's architecture with the previous c1_shallow loss (relu1_2 + relu2_2 energy-matched
+ pixel 5e3 + tv 10). Training as the previous probe: the library's resumable loop
(`styleops.training.engine._Fit`), even steps decode a photo crop, odd steps an artwork crop
(train_inverse's kinds 0/1), 128 px crops, batch 4, lr 1e-3, warm-up 50, seed 0, 1 thread; the
previous probe's data split (Kodak held out) and loss weights (INVERSE_LOSS.pixel_weight 5e3).

Evaluation (`eval`): the previous probe's measures on the same 4 held-out Kodak photos at 256 px
(reconstruction from the photo's own features), for a_pixel and b_current (recomputed from their
checkpoints) and each skip probe. Stylization: multi-level AdaIN (every level the decoder gets,
relu1_1 / relu2_1 / relu3_1, normalized to the artwork's per-channel mean/std at that layer and
blended with the photo's by alpha) through each skip decoder at alpha 1 and 0.6; single-level
relu3_1 AdaIN through b_current for comparison; plus, as a diagnostic, s1 with AdaIN at relu3_1
only (skips left as the photo's). Structure (styleops.evaluation.appearance.structure: the
correlation of half-resolution luminance gradient magnitudes of output and photo; project band
0.40-0.80, above 0.80 a recoloured photo) over 4 photos x 2 artworks, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe_decoder_emboss as emb  # noqa: E402  (data split, measures, helpers of the previous probe)

from styleops.evaluation.appearance import structure  # noqa: E402
from styleops.io.contact_sheet import contact_sheet  # noqa: E402
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8  # noqa: E402
from styleops.losses.perceptual import LossTerms  # noqa: E402
from styleops.models.decoder import VGGDecoder  # noqa: E402
from styleops.ops import mean_std  # noqa: E402
from styleops.training.decoders import INVERSE_LOSS, _artwork_batch  # noqa: E402
from styleops.training.engine import ContentCrops  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAYER = "relu3_1"
SKIP_CH = {"relu1_1": 64, "relu2_1": 128}


class SkipDecoder(nn.Module):
    """`VGGDecoder("relu3_1", "vgg16")` with skip inputs: relu2_1 is concatenated before the mirrored
    conv2_2 (128 -> 256 input channels), relu1_1 before the mirrored conv1_2 (64 -> 128).
    forward({relu3_1, and the skips}) -> [N, 3, H, W] unclamped RGB in [0, 1] units."""

    def __init__(self, skips: tuple[str, ...] = ("relu1_1", "relu2_1"), fuse: str = "cat") -> None:
        super().__init__()
        self.skips, self.fuse = tuple(skips), fuse
        cat = fuse == "cat"
        c2 = 128 + (128 if "relu2_1" in skips and cat else 0)
        c1 = 64 + (64 if "relu1_1" in skips and cat else 0)
        if not cat:  # "add": each skip through a 1x1 conv, added to the decoder's activation
            self.proj = nn.ModuleDict({n: nn.Conv2d(SKIP_CH[n], SKIP_CH[n], 1) for n in self.skips})
        pad = nn.ReflectionPad2d
        self.block3 = nn.Sequential(pad(1), nn.Conv2d(256, 128, 3), nn.ReLU(inplace=True))  # conv3_1
        self.block2 = nn.Sequential(  # conv2_2, conv2_1
            pad(1), nn.Conv2d(c2, 128, 3), nn.ReLU(inplace=True), pad(1), nn.Conv2d(128, 64, 3), nn.ReLU(inplace=True)
        )
        self.block1 = nn.Sequential(pad(1), nn.Conv2d(c1, 64, 3), nn.ReLU(inplace=True), pad(1), nn.Conv2d(64, 3, 3))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, f: dict[str, Tensor]) -> Tensor:
        h = self.up(self.block3(f[LAYER]))
        h = self.up(self.block2(self._fuse(h, f, "relu2_1")))
        return self.block1(self._fuse(h, f, "relu1_1"))

    def _fuse(self, h: Tensor, f: dict[str, Tensor], name: str) -> Tensor:
        if name not in self.skips:
            return h
        return torch.cat([h, f[name]], 1) if self.fuse == "cat" else h + self.proj[name](f[name])

    def levels(self) -> list[str]:
        return [LAYER, *self.skips]

    def config(self) -> dict[str, str]:  # recorded in the training loop's checkpoints
        return {"from_layer": LAYER, "arch": "vgg16", "skips": ",".join(self.skips), "fuse": self.fuse}


@dataclass(frozen=True)
class Probe:
    what: str
    skips: tuple[str, ...]
    shallow_loss: bool  # False: pixel MSE only; True: c1_shallow's relu1_2 + relu2_2 + pixel + tv
    fuse: str = "cat"  # cat: concatenated; add: added after a 1x1 conv


PROBES = {
    "s1": Probe("skips relu1_1 + relu2_1, pixel MSE only", ("relu1_1", "relu2_1"), False),
    "s2": Probe("skip relu2_1 only, pixel MSE only", ("relu2_1",), False),
    "s3": Probe(
        "skips relu1_1 + relu2_1, relu1_2 + relu2_2 (energy-matched) + pixel 5e3 + tv 10", ("relu1_1", "relu2_1"), True
    ),
    "s1a": Probe(
        "skips relu1_1 + relu2_1 added after a 1x1 conv, pixel MSE only", ("relu1_1", "relu2_1"), False, "add"
    ),
}
SHALLOW = emb.PROBES["c1_shallow"]


def train(args: argparse.Namespace) -> None:
    probe = PROBES[args.probe]
    data = Path(args.data) if args.data else emb.default_data()
    photos, art = emb.training_photos(data / "content"), data / "style"
    enc_layers = ["relu1_1", "relu2_1", LAYER] + (list(SHALLOW.layers) if probe.shallow_loss else [])
    hed = emb.hed_encoder(args.weights, sorted(set(enc_layers), key=lambda n: int(n[4]) * 10 + int(n[6])))
    weights = emb.layer_weights(SHALLOW, hed, hed, photos, art) if probe.shallow_loss else {}
    feature_weight = SHALLOW.feature_weight if probe.shallow_loss else 0.0
    tv_weight = SHALLOW.tv_weight if probe.shallow_loss else 0.0
    config = emb.probe_config(args, emb.probe_loss(weights, feature_weight, tv_weight, INVERSE_LOSS.pixel_weight))
    workdir = Path(args.workdir) / (args.name or args.probe)
    torch.manual_seed(config.seed)
    model = SkipDecoder(probe.skips, probe.fuse)
    styles = ContentCrops(art, config.image_size, config.seed + 1)
    w = config.loss

    def forward(step: int, batch: Tensor) -> LossTerms:
        with torch.no_grad():
            x = batch if step % 2 == 0 else _artwork_batch(styles, step, batch.shape[0])
            fx = hed(x)
        y = model(fx)
        return emb.probe_terms(w, y, x, fx, hed(y) if weights else None, weights)  # pixel_weight 5e3: always on

    info = {
        "probe": args.probe,
        "what": probe.what + ("" if args.lr == 1e-3 else f" (lr {args.lr:g})"),
        "fuse": probe.fuse,
        "skips": list(probe.skips),
        "layer_weights": weights,
        "params": sum(p.numel() for p in model.parameters()),
    }
    emb.fit_probe(args, config, model, forward, photos, workdir, {"skips": ",".join(probe.skips)}, info)


def multi_adain(
    f: dict[str, Tensor], style: dict[str, tuple[Tensor, Tensor]], levels: list[str], alpha: float
) -> dict[str, Tensor]:
    """Each level in `levels`: per-channel normalized, given the artwork's mean/std, blended with the
    photo's features by alpha; other levels pass through."""
    out = dict(f)
    for n in levels:
        m, s = mean_std(f[n])
        t = (f[n] - m) / s * style[n][1] + style[n][0]
        out[n] = alpha * t + (1 - alpha) * f[n]
    return out


def evaluate(args: argparse.Namespace) -> None:
    data = Path(args.data) if args.data else emb.default_data()
    photos = emb.held_out_photos(data / "content", args.eval_size)
    hed = emb.hed_encoder(args.weights, ["relu1_1", "relu2_1", LAYER])
    work = Path(args.workdir)
    prev = Path(args.previous)
    arts = []
    for a in args.artworks.split(","):
        p = Path(a) if Path(a).is_absolute() else REPO / a
        arts.append((p.stem, resize_max_side(to_float(read_image(p).pixels), 512)))
    decoders: dict[str, tuple[nn.Module, dict]] = {}
    for name in ("a_pixel", "b_current"):
        d = VGGDecoder(LAYER, "vgg16")
        d.load_state_dict(load_file(str(prev / name / "decoder.safetensors")))
        decoders[name] = (d.eval(), json.loads((prev / name / "probe.json").read_text()))
    skip_names = (
        args.probes.split(",") if args.probes else [n for n in PROBES if (work / n / "decoder.safetensors").is_file()]
    )
    for name in skip_names:
        info = json.loads((work / name / "probe.json").read_text())
        d = SkipDecoder(tuple(info["skips"]), info.get("fuse", "cat"))
        d.load_state_dict(load_file(str(work / name / "decoder.safetensors")))
        decoders[name] = (d.eval(), info)

    def decode(name: str, f: dict[str, Tensor]) -> Tensor:
        d = decoders[name][0]
        return (d(f) if isinstance(d, SkipDecoder) else d(f[LAYER]))[0]

    rows_rec: list[list[Tensor]] = [[to_uint8(x)] for _, x in photos]
    sheet_photos = args.sheet_photos.split(",") if args.sheet_photos else [n for n, _ in photos]
    per: dict[str, list[dict[str, float]]] = {n: [] for n in decoders}
    with torch.no_grad():
        feats = [hed(x[None]) for _, x in photos]
        for name in decoders:
            for i, (_, x) in enumerate(photos):
                y = decode(name, feats[i])
                per[name].append(emb.measures(y, x))
                rows_rec[i].append(to_uint8(y.clamp(0, 1)))
        # stylization: variants (label, decoder, levels, alpha)
        variants = [("b_current relu3_1 a1", "b_current", [LAYER], 1.0)]
        for name in skip_names:
            lv = decoders[name][0].levels()
            variants += [(f"{name} multi a1", name, lv, 1.0), (f"{name} multi a0.6", name, lv, 0.6)]
        if "s1" in skip_names and args.diag:
            variants.append(("s1 relu3_1-only a1 (diag)", "s1", [LAYER], 1.0))
        sheet_variants = [v for v in variants if "diag" not in v[0]]
        structs: dict[str, list[float]] = {v[0]: [] for v in variants}
        rows_sty: list[list[Tensor]] = []
        for aname, art in arts:
            fa = hed(art[None])
            style = {n: mean_std(v) for n, v in fa.items()}
            for i, (_, x) in enumerate(photos):
                row = [to_uint8(x), to_uint8(art)]
                for label, name, lv, alpha in variants:
                    y = decode(name, multi_adain(feats[i], style, lv, alpha)).clamp(0, 1)
                    structs[label].append(structure(y, x))
                    if (label, name, lv, alpha) in sheet_variants:
                        row.append(to_uint8(y))
                if photos[i][0] in sheet_photos:
                    rows_sty.append(row)
    print(f"held-out: {', '.join(n for n, _ in photos)} at {args.eval_size} px (medians)")
    print(
        "| probe | loss | steps | seconds | PSNR dB | low-pass PSNR dB | Laplacian ratio | flat-region Laplacian ratio"
        " | grad-magnitude corr | overshoot (halo) | signed-gradient corr |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (_, info) in decoders.items():
        med = {k: statistics.median(m[k] for m in per[name]) for k in per[name][0]}
        print(
            f"| {name} | {info['what']} | {info['steps']} | {info['seconds']:.0f} | {med['psnr']:.2f} |"
            f" {med['psnr_low']:.2f} | {med['lap_ratio']:.2f} | {med['flat_lap_ratio']:.2f} | {med['grad_corr']:.3f} |"
            f" {med['overshoot']:.2f} | {med['sign_corr']:.3f} |"
        )
    print("\nper photo (PSNR / Laplacian ratio / overshoot):")
    for name in decoders:
        cells = ", ".join(
            f"{n} {m['psnr']:.1f}/{m['lap_ratio']:.2f}/{m['overshoot']:.2f}" for (n, _), m in zip(photos, per[name])
        )
        print(f"  {name}: {cells}")
    print(
        f"\nstylization structure (median [min..max] over {len(photos)} photos x {len(arts)} artworks; band 0.40-0.80):"
    )
    for label, vals in structs.items():
        by_art = []
        for k, (aname, _) in enumerate(arts):
            by_art.append(f"{aname} {statistics.median(vals[k * len(photos) : (k + 1) * len(photos)]):.3f}")
        print(f"  {label}: {statistics.median(vals):.3f} [{min(vals):.3f}..{max(vals):.3f}]  ({', '.join(by_art)})")
    rows_rec = [r for (n, _), r in zip(photos, rows_rec) if n in sheet_photos]
    sheet = contact_sheet(rows_rec + rows_sty, cell=args.cell)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    Path(args.sheet).write_bytes(encode_image(sheet, "jpeg", quality=85))
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        Path(args.png).write_bytes(encode_image(sheet, "png"))
    print(
        f"\nsheet: {args.sheet} ({Path(args.sheet).stat().st_size // 1024} KiB); photos {', '.join(sheet_photos)};"
        f" rows 1-{len(rows_rec)}: photo |"
        f" {' | '.join(decoders)} (reconstruction); rows {len(rows_rec) + 1}-{len(rows_rec) + len(rows_sty)}: photo |"
        f" artwork ({', '.join(a for a, _ in arts)}, {len(rows_rec)} rows each) |"
        f" {' | '.join(v[0] for v in sheet_variants)}"
    )


def main() -> None:
    ap = emb.probe_parser(__doc__, PROBES)
    ap.add_argument(
        "--probes", help="eval: comma-separated folders under --workdir (default: s1, s2, s3, s1a if trained)"
    )
    ap.add_argument("--no-diag", dest="diag", action="store_false", help="eval: skip s1's relu3_1-only AdaIN row")
    emb.add_data_args(ap, "/work/probes30/skips")
    ap.add_argument(
        "--previous", default="/work/probes30", help="eval: the previous probe's workdir (a_pixel, b_current)"
    )
    emb.add_schedule_args(ap, 400)
    ap.add_argument(
        "--artworks",
        default="examples/artwork/monet/monet.jpg,examples/artwork/hoitsu/hoitsu.jpg",
        help="eval: comma-separated",
    )
    ap.add_argument("--sheet", default=str(REPO / "docs" / "img" / "probe_decoder_skips.jpg"))
    ap.add_argument("--png", default="/work/probes30/skips/sheet.png", help="eval: also a PNG copy ('' = none)")
    ap.add_argument("--cell", type=int, default=224)
    ap.add_argument(
        "--sheet-photos", default="kodim07,kodim19", help="eval: held-out photos shown on the sheet ('' = all)"
    )
    emb.run_mode(ap.parse_args(), train, evaluate)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
