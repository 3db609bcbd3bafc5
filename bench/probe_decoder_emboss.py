"""Issue 30, step 0: where does the decoders' emboss come from? Short, equal decoder probes.

    nice -n 19 .venv/bin/python bench/probe_decoder_emboss.py train --probe b_current --steps 300
    nice -n 19 .venv/bin/python bench/probe_decoder_emboss.py eval   # table + contact sheet

Every probe trains a `VGGDecoder("relu3_1")` (the swap inverse network's shape; AdaIN at relu3_1
uses the same decoder) from the same seed, on the same batches, through the library's training
loop (`styleops.training.engine._Fit`: seeded batches, warm-up, atomic resumable checkpoints, NaN
rollback). Only the loss differs. Schedule per step (reconstruction only, no swap steps, so every
step has a source image x and every loss below applies): even steps decode H = phi(photo crop),
odd steps H = phi(artwork crop), as `train_inverse`'s kinds 0 and 1. The loss of output y = f(H):

    sum_l  feature_weight * w_l * |phi_l(y) - phi_l(x)|^2      (HED-VGG16 trunk, or another net)
  + pixel_weight * |y - x|^2  +  tv_weight * TV(y)

phi_l(x) at the decoder's layer is H itself, so probe b is `train_inverse`'s loss on its kinds 0/1.
Probes (PROBES below): a pixel only; b the current recipe (INVERSE_LOSS: relu3_1, pixel 5e3,
tv 10); c1 shallow HED layers relu1_2 + relu2_2 instead of relu3_1 (each layer weighted so that
its term, relative to the photos' feature energy at that layer, matches what relu3_1 gets in b);
c2 the current layer with the feature weight 100x lower; d a randomly initialised VGG16 trunk's
relu3_1 (no other pretrained network is available offline; Magenta's style predictor is the
independent evaluation network and is never trained against).

Training photos: every image of --content except the Kodak ones (kodak24_*), which are held out.
Evaluation (`eval`): 4 held-out Kodak photos resized to 256 px on the longer side (cropped to a
multiple of 4); each probe decodes the photo's own relu3_1 features (AdaIN at alpha 0 / unswapped):
PSNR (RGB, output clamped), PSNR after a Gaussian blur (sigma 3 px) of both (low frequencies:
flat regions and colour), the Laplacian ratio mean|lap Y(y)| / mean|lap Y(x)| on luminance
(1 = the photo's fine detail; > 1 ridges, halos and ringing added; < 1 blur), the Laplacian
ratio inside flat regions of the photo only (pixels whose photo gradient is in the lowest
half: texture or ridges invented where the photo has none), and the correlation of gradient
magnitudes. Medians over the photos. A contact sheet: one row per photo (photo, then each
probe's reconstruction), then one row per photo of AdaIN at relu3_1 with one artwork (alpha 1,
no palette) through each probe's decoder.
Checkpoints: <workdir>/<probe>/checkpoint.pt (resume by rerunning `train` with more --steps),
and <workdir>/<probe>/decoder.safetensors (the weights, for `eval` and for a warm start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from styleops.inference.arbitrary import AdaINStylizer
from styleops.io.contact_sheet import contact_sheet
from styleops.io.images import encode_image, read_image, resize_max_side, to_float, to_uint8
from styleops.io.serialize import from_safetensors
from styleops.io.weights import load_vgg_state_dict
from styleops.losses.perceptual import LossTerms, LossWeights, content_loss, measure_calibration, total_variation
from styleops.models.decoder import VGGDecoder
from styleops.models.vgg import VGGEncoder, build_vgg_features
from styleops.training.decoders import INVERSE_LOSS, _artwork_batch
from styleops.training.engine import ContentCrops, TrainConfig, _Fit, image_paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import printing_progress  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAYER = "relu3_1"  # the decoder's layer (the swap inverse network's; AdaIN at relu3_1 too)
HELD_OUT = ("kodim01", "kodim07", "kodim13", "kodim19")


@dataclass(frozen=True)
class Probe:
    what: str
    layers: dict[str, float]  # feature-loss layers -> weight (before energy matching, see `match`)
    feature_weight: float
    pixel_weight: float
    tv_weight: float
    net: str = "hed"  # hed | random: the loss network
    # hed | random: the network whose relu3_1 the decoder inverts (random: a randomly initialised
    # VGG16 trunk, its conv3_1 scaled so relu3_1 has the HED trunk's energy on photos). A control:
    # the pipeline's swap and AdaIN encode with the HED trunk.
    source: str = "hed"
    match: bool = False  # weight each layer by E(relu3_1) / E(layer) (the photos' feature energy)


PROBES = {
    "a_pixel": Probe("pixel MSE only", {}, 0.0, INVERSE_LOSS.pixel_weight, 0.0),
    "b_current": Probe(
        "current: relu3_1 + pixel 5e3 + tv 10",
        dict(INVERSE_LOSS.content_layers),
        INVERSE_LOSS.content_weight,
        INVERSE_LOSS.pixel_weight,
        INVERSE_LOSS.tv_weight,
    ),
    "c1_shallow": Probe(
        "relu1_2 + relu2_2 (energy-matched) + pixel 5e3 + tv 10",
        {"relu1_2": 0.5, "relu2_2": 0.5},
        1.0,
        INVERSE_LOSS.pixel_weight,
        INVERSE_LOSS.tv_weight,
        match=True,
    ),
    "c2_low": Probe(
        "relu3_1 x0.01 + pixel 5e3 + tv 10", {LAYER: 1.0}, 0.01, INVERSE_LOSS.pixel_weight, INVERSE_LOSS.tv_weight
    ),
    "d_random": Probe(
        "random-init VGG16 relu3_1 (energy-matched) + pixel 5e3 + tv 10",
        {LAYER: 1.0},
        1.0,
        INVERSE_LOSS.pixel_weight,
        INVERSE_LOSS.tv_weight,
        net="random",
        match=True,
    ),
    "e_pixel_randenc": Probe(
        "pixel MSE only, decoding a random-init VGG16's relu3_1 (control)",
        {},
        0.0,
        INVERSE_LOSS.pixel_weight,
        0.0,
        source="random",
    ),
}
RANDOM_SEED = 1234


def default_data() -> Path:
    for p in (REPO.parent / "shared" / "data" / "train", Path("/work/shared/data/train")):
        if (p / "content").is_dir():
            return p
    raise SystemExit("no shared data/train folder found; pass --data")


def training_photos(content: Path) -> list[Path]:
    return [p for p in image_paths(content) if not p.name.startswith("kodak")]


def held_out_photos(content: Path, size: int) -> list[tuple[str, Tensor]]:
    out = []
    for name in HELD_OUT:
        (path,) = [p for p in image_paths(content) if name in p.name]
        x = resize_max_side(to_float(read_image(path).pixels), size)
        h, w = x.shape[-2:]
        out.append((name, x[:, : h - h % 4, : w - w % 4].contiguous()))
    return out


def hed_encoder(weights: str | None, layers: list[str]) -> VGGEncoder:
    return VGGEncoder(load_vgg_state_dict(weights), layers)


def random_encoder(layers: list[str], seed: int = RANDOM_SEED, scale: float = 1.0) -> VGGEncoder:
    """A randomly initialised VGG16 trunk (PyTorch's default init); `scale` multiplies conv3_1's
    weight and bias, so relu3_1 (and nothing shallower) is scaled by it."""
    torch.manual_seed(seed)
    state = build_vgg_features("vgg16").state_dict()
    state["10.weight"], state["10.bias"] = state["10.weight"] * scale, state["10.bias"] * scale
    return VGGEncoder(state, layers)


def source_encoder(kind: str, hed: VGGEncoder, photos: Path, art: Path) -> VGGEncoder:
    """The encoder whose relu3_1 the decoder inverts: the HED trunk, or the random control scaled
    to the HED trunk's relu3_1 energy on 16 seeded photo crops."""
    if kind == "hed":
        return hed
    rand = random_encoder([LAYER])
    w = layer_weights(Probe("", {LAYER: 1.0}, 1.0, 0.0, 0.0, match=True), rand, hed, photos, art)[LAYER]
    return random_encoder([LAYER], scale=w**0.5)


def layer_weights(probe: Probe, loss_net: VGGEncoder, hed: VGGEncoder, photos: Path, art: Path) -> dict[str, float]:
    """The absolute per-layer feature weights: as given, or energy-matched (`match`): layer l gets
    w_l * E_hed(relu3_1) / E_net(l), E = the mean squared activation of 16 seeded photo crops."""
    if not probe.match or not probe.layers:
        return dict(probe.layers)
    crops = ContentCrops(photos, 128, 7919)
    x = torch.stack([crops[(0, s)] for s in range(16)])
    a = ContentCrops(art, 128, 7919)[(0, 0)][None]
    ref = measure_calibration(hed, LossWeights(content_layers={LAYER: 1.0}, style_layers={}), x, a).content_energy
    mine = measure_calibration(loss_net, LossWeights(content_layers=probe.layers, style_layers={}), x, a).content_energy
    return {n: w * ref[LAYER] / mine[n] for n, w in probe.layers.items()}


def probe_loss(weights: dict[str, float], feature: float, tv: float, pixel: float) -> LossWeights:
    """The probes' loss weights: content layer -> weight `weights` (empty: relu3_1 at 0) times
    `feature`, no style, `tv` and `pixel` (MSE)."""
    return LossWeights(
        content_layers=weights or {LAYER: 0.0},
        style_layers={},
        content_weight=feature,
        style_weight=0.0,
        tv_weight=tv,
        pixel_weight=pixel,
    )


def probe_terms(
    w: LossWeights,
    y: Tensor,
    x: Tensor,
    fx: dict[str, Tensor],
    fy: dict[str, Tensor] | None,
    weights: dict[str, float],
) -> LossTerms:
    """The probes' loss of decoded `y` against `x` (both [N, 3, H, W] in [0, 1]): content over
    `weights`' layers (features `fy` of y against `fx` of x; fy None: no content term), pixel MSE
    and TV, each times `w`'s weight; the style term is zero."""
    zero = y.new_zeros((), dtype=torch.float32)
    c = zero
    if fy is not None:
        c = w.content_weight * sum((lw * content_loss(fy[n], fx[n]) for n, lw in weights.items()), zero)
    if w.pixel_weight:
        c = c + w.pixel_weight * F.mse_loss(y.float(), x.float())
    tv = w.tv_weight * total_variation(y.float()) if w.tv_weight else zero
    return LossTerms(c + tv, c, zero, tv)


def probe_config(args: argparse.Namespace, loss: LossWeights) -> TrainConfig:
    """The probes' shared schedule around `loss` (the decoder is not a TransformerNet)."""
    return TrainConfig(
        loss=loss,
        lr=args.lr,
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.size,
        warmup_steps=args.warmup,
        output="direct",
        palette=False,
        seed=args.seed,
        checkpoint_every=50,
        log_every=10,
        workers=0,
    )


def fit_probe(
    args: argparse.Namespace,
    config: TrainConfig,
    model: nn.Module,
    forward: Callable[[int, Tensor], LossTerms],
    photos: list[Path],
    workdir: Path,
    metadata: dict[str, str],
    info: dict[str, Any],
) -> None:
    """Train (resuming from `workdir`), save the weights with `metadata`, and add this session to
    `workdir/probe.json` with `info`."""
    started = time.perf_counter()

    progress = printing_progress(
        50,
        lambda log: (
            f"{args.probe} step {log.step}/{log.steps} loss {log.total:.1f} (content+pixel {log.content:.1f},"
            f" tv {log.tv:.2f}) {time.perf_counter() - started:.0f} s"
        ),
    )
    result = _Fit(config, None, "cpu").run(model, list(model.parameters()), forward, photos, workdir, progress, None)
    save_file(result.state_dict, str(workdir / "decoder.safetensors"), metadata=metadata)
    info_path = workdir / "probe.json"
    record = json.loads(info_path.read_text()) if info_path.is_file() else {"sessions": []}
    record.update(
        info, config=config.to_dict(), steps=result.steps, threads=torch.get_num_threads(), train_photos=len(photos)
    )
    record["sessions"].append({"from": result.resumed_from, "to": result.steps, "seconds": round(result.seconds, 1)})
    record["seconds"] = round(sum(x["seconds"] for x in record["sessions"]), 1)
    record["last_losses"] = result.history[-5:]
    info_path.write_text(json.dumps(record, indent=1))
    print(f"{workdir.name}: {result.steps} steps, {result.seconds:.0f} s this session -> {workdir}", flush=True)


def train(args: argparse.Namespace) -> None:
    probe = PROBES[args.probe]
    data = Path(args.data) if args.data else default_data()
    photos, art = training_photos(data / "content"), data / "style"
    layers = sorted(set(probe.layers) | {LAYER}, key=lambda n: int(n[4]) * 10 + int(n[6]))
    hed = hed_encoder(args.weights, layers if probe.net == "hed" else [LAYER])
    loss_net = hed if probe.net == "hed" else random_encoder(list(probe.layers))
    weights = layer_weights(probe, loss_net, hed, photos, art)
    src = source_encoder(probe.source, hed, photos, art)
    config = probe_config(args, probe_loss(weights, probe.feature_weight, probe.tv_weight, probe.pixel_weight))
    workdir = Path(args.workdir) / (args.name or args.probe)
    torch.manual_seed(config.seed)
    model = VGGDecoder(LAYER, "vgg16")
    styles = ContentCrops(art, config.image_size, config.seed + 1)  # as train_inverse's artwork crops
    w = config.loss
    use_features = bool(probe.feature_weight and weights and any(weights.values()))

    def forward(step: int, batch: Tensor) -> LossTerms:
        with torch.no_grad():
            x = batch if step % 2 == 0 else _artwork_batch(styles, step, batch.shape[0])
            fx = hed(x)
            h = fx[LAYER] if probe.source == "hed" else src(x)[LAYER]
            if use_features and probe.net != "hed":
                fx = loss_net(x)
        y = model(h)
        return probe_terms(w, y, x, fx, loss_net(y) if use_features else None, weights)

    info = {
        "probe": args.probe,
        "source": probe.source,
        "what": probe.what
        + ("" if (args.lr, args.size) == (1e-3, 128) else f" (lr {args.lr:g}, {args.size} px)")
        + (f" (seed {args.seed})" if args.seed else ""),
        "layer_weights": weights,
    }
    fit_probe(args, config, model, forward, photos, workdir, {"layer": LAYER, "arch": "vgg16"}, info)


def luminance(x: Tensor) -> Tensor:
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None, None]


def laplacian(y: Tensor) -> Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)[0, 0]


def grad_mag(y: Tensor) -> Tensor:
    gx = y[..., :, 1:] - y[..., :, :-1]
    gy = y[..., 1:, :] - y[..., :-1, :]
    return (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()[0, 0]


def blur(x: Tensor, sigma: float = 3.0) -> Tensor:
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = F.pad(x[None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)[0]


def psnr(a: Tensor, b: Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a, b)))


def overshoot(ly: Tensor, lx: Tensor, window: int = 9) -> float:
    """Halo measure: mean distance (x100, luminance units) by which the output leaves the photo's
    local luminance range (min..max over a window x window neighbourhood), after the output's
    luminance is given the photo's by a least-squares gain and offset (so a cast or a contrast
    change does not count). Bright or dark bands along edges (halos, ridges) leave the range;
    blur and flat smearing mostly stay inside it."""
    a = torch.stack([ly.flatten(), torch.ones_like(ly.flatten())], 1)
    coef = torch.linalg.lstsq(a, lx.flatten()[:, None]).solution
    fit = (a @ coef).view_as(ly)
    pad = window // 2
    hi = F.max_pool2d(F.pad(lx, (pad,) * 4, mode="replicate"), window, stride=1)
    lo = -F.max_pool2d(F.pad(-lx, (pad,) * 4, mode="replicate"), window, stride=1)
    return float(100 * (F.relu(fit - hi) + F.relu(lo - fit)).mean())


def signed_grad_corr(ly: Tensor, lx: Tensor, sigma: float = 1.5) -> float:
    """Polarity measure: Pearson correlation of the signed luminance gradients (d/dx and d/dy
    together) of output and photo, both blurred by sigma px. A step edge decoded as a step keeps
    its sign; decoded as a ridge or groove (emboss) it gets gradients of both signs on its two
    sides, which do not correlate with the step's. Blur lowers it little at this scale."""
    by, bx = blur(ly[0].expand(3, -1, -1), sigma)[:1], blur(lx[0].expand(3, -1, -1), sigma)[:1]

    def grads(t: Tensor) -> Tensor:
        return torch.cat([(t[..., :, 1:] - t[..., :, :-1]).flatten(), (t[..., 1:, :] - t[..., :-1, :]).flatten()])

    return float(torch.corrcoef(torch.stack([grads(by), grads(bx)]))[0, 1])


def detail_decomposition(ly: Tensor, lx: Tensor) -> dict[str, float]:
    """Emboss measure. The output's luminance detail t = Y - blur_4(Y) is fitted by least squares
    as a * (the photo's detail) + b * (a ridge map: the photo's gradient magnitude, its own local
    mean removed) + c * d/dx + d * d/dy (a relief: the photo's signed gradients, what an emboss
    filter draws), photo maps at 1.5 px blur. Returned: the energy of each fitted part over the
    energy of t ("faithful", "ridge", "relief"; the rest is unexplained: blur, noise, texture)."""

    def band(t: Tensor) -> Tensor:
        return t - blur(t[0].expand(3, -1, -1), 4.0)[:1][None]

    t = band(ly)[0, 0]
    sx = blur(lx[0].expand(3, -1, -1), 1.5)[:1][None]
    gx = F.pad(sx[..., :, 2:] - sx[..., :, :-2], (1, 1, 0, 0), mode="replicate") / 2
    gy = F.pad(sx[..., 2:, :] - sx[..., :-2, :], (0, 0, 1, 1), mode="replicate") / 2
    ridge = band((gx**2 + gy**2).sqrt())
    parts = [band(lx)[0, 0], ridge[0, 0], gx[0, 0], gy[0, 0]]
    a = torch.stack([p.flatten() for p in parts], 1)
    coef = torch.linalg.lstsq(a, t.flatten()[:, None]).solution[:, 0]
    energy = float(t.pow(2).sum())
    faithful, rid = coef[0] * parts[0], coef[1] * parts[1]
    relief = coef[2] * parts[2] + coef[3] * parts[3]
    return {
        "faithful": float(faithful.pow(2).sum()) / energy,
        "ridge": float(rid.pow(2).sum()) / energy,
        "relief": float(relief.pow(2).sum()) / energy,
    }


def measures(y: Tensor, x: Tensor) -> dict[str, float]:
    y = y.clamp(0, 1)
    ly, lx = luminance(y), luminance(x)
    lap_y, lap_x = laplacian(ly).abs(), laplacian(lx).abs()
    gy, gx = grad_mag(ly), grad_mag(lx)
    flat = gx <= gx.median()
    corr = torch.corrcoef(torch.stack([gy.flatten(), gx.flatten()]))[0, 1]
    return {
        "psnr": psnr(y, x),
        "psnr_low": psnr(blur(y), blur(x)),
        "lap_ratio": float(lap_y.mean() / lap_x.mean()),
        "flat_lap_ratio": float(lap_y[:-1, :-1][flat].mean() / lap_x[:-1, :-1][flat].mean()),
        "grad_corr": float(corr),
        "overshoot": overshoot(ly, lx),
        "sign_corr": signed_grad_corr(ly, lx),
        **detail_decomposition(ly, lx),
    }


def evaluate(args: argparse.Namespace) -> None:
    data = Path(args.data) if args.data else default_data()
    photos = held_out_photos(data / "content", args.eval_size)
    hed = hed_encoder(args.weights, [LAYER])
    names = (
        args.probes.split(",")
        if args.probes
        else sorted(p.name for p in Path(args.workdir).iterdir() if (p / "decoder.safetensors").is_file())
    )
    art_path = Path(args.artwork) if args.artwork else REPO / "examples" / "artwork" / "monet" / "monet.jpg"
    if art_path.is_dir():
        art_path = image_paths(art_path)[0]
    artwork = resize_max_side(to_float(read_image(art_path).pixels), 512)
    rows_rec: list[list[Tensor]] = [[to_uint8(x)] for _, x in photos]
    rows_ada: list[list[Tensor]] = [[to_uint8(artwork)] for _ in photos]
    table = []
    if args.reference:
        names.append("shipped")
    for name in names:
        if name == "shipped":  # the shipped inverse network: trained on every shared photo, Kodak included
            decoder = from_safetensors(Path(args.reference).read_bytes())
            info = {
                "what": "shipped inverse network (train_inverse, 800 steps; Kodak seen in training)",
                "steps": 800,
                "seconds": float("nan"),
            }
        else:
            d = Path(args.workdir) / name
            decoder = VGGDecoder(LAYER, "vgg16")
            decoder.load_state_dict(load_file(str(d / "decoder.safetensors")))
            info = json.loads((d / "probe.json").read_text())
            seed = info.get("config", {}).get("seed", 0)
            if seed and "seed" not in info["what"]:
                info["what"] += f" (seed {seed})"
        decoder.eval()
        enc = hed
        if info.get("source", "hed") != "hed":
            enc = source_encoder(info["source"], hed, training_photos(data / "content"), data / "style")
        stylizer = AdaINStylizer(enc, decoder, [artwork], alpha=1.0, palette=False)
        per = []
        with torch.no_grad():
            for i, (_, x) in enumerate(photos):
                y = decoder(enc(x[None])[LAYER])[0]
                per.append(measures(y, x))
                rows_rec[i].append(to_uint8(y.clamp(0, 1)))
                rows_ada[i].append(to_uint8(stylizer(x[None])[0].clamp(0, 1)))
        med = {k: statistics.median(m[k] for m in per) for k in per[0]}
        table.append((name, info, med, per))
    photo_ref = [measures(x, x) for _, x in photos]  # sanity: ratios 1, corr 1
    assert all(abs(m["lap_ratio"] - 1) < 1e-6 for m in photo_ref)
    print(f"held-out: {', '.join(n for n, _ in photos)} at {args.eval_size} px (medians)")
    print(
        "| probe | loss | steps | seconds | PSNR dB | low-pass PSNR dB | Laplacian ratio"
        " | flat-region Laplacian ratio | grad-magnitude corr | overshoot (halo) | signed-gradient corr"
        " | detail: faithful / ridge / relief |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, info, med, _ in table:
        print(
            f"| {name} | {info['what']} | {info['steps']} | {info['seconds']:.0f} | {med['psnr']:.2f} |"
            f" {med['psnr_low']:.2f} | {med['lap_ratio']:.2f} | {med['flat_lap_ratio']:.2f} | {med['grad_corr']:.3f} |"
            f" {med['overshoot']:.2f} | {med['sign_corr']:.3f} |"
            f" {med['faithful']:.2f} / {med['ridge']:.2f} / {med['relief']:.2f} |"
        )
    print("\nper photo (PSNR / Laplacian ratio / flat ratio / overshoot):")
    for name, _, _, per in table:
        cells = ", ".join(
            f"{n} {m['psnr']:.1f}/{m['lap_ratio']:.2f}/{m['flat_lap_ratio']:.2f}/{m['overshoot']:.2f}"
            for (n, _), m in zip(photos, per)
        )
        print(f"  {name}: {cells}")
    if args.sheet:
        sheet = contact_sheet(rows_rec + rows_ada, cell=args.cell)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        Path(args.sheet).write_bytes(encode_image(sheet, "jpeg", quality=85))
        print(
            f"\nsheet: {args.sheet} ({Path(args.sheet).stat().st_size // 1024} KiB); rows 1-{len(photos)}: photo |"
            f" {' | '.join(names)} (reconstruction); rows {len(photos) + 1}-{2 * len(photos)}: artwork"
            f" ({art_path.name}) | AdaIN relu3_1 alpha 1 through each decoder"
        )


def probe_parser(doc: str | None, probes: Iterable[str]) -> argparse.ArgumentParser:
    """The decoder probes' command line, first options: mode (train | eval), --probe (one of
    `probes`) and --name."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("train", "eval"))
    ap.add_argument("--probe", choices=sorted(probes))
    ap.add_argument("--name", help="train: the probe's folder under --workdir (default: the probe's name)")
    return ap


def add_data_args(ap: argparse.ArgumentParser, workdir: str) -> None:
    """The decoder probes' --data, --weights and --workdir (default `workdir`)."""
    ap.add_argument("--data", help="folder with content/ and style/ (default: ../shared/data/train)")
    ap.add_argument("--weights", help="HED-VGG16 weights (default: the settings' cache)")
    ap.add_argument("--workdir", default=workdir)


def add_schedule_args(ap: argparse.ArgumentParser, steps: int) -> None:
    """The decoder probes' schedule (--steps default `steps`; --size and --eval-size in px) and
    --threads."""
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-size", type=int, default=256)


def main() -> None:
    ap = probe_parser(__doc__, PROBES)
    ap.add_argument("--probes", help="eval: comma-separated probe names (default: every trained one)")
    add_data_args(ap, "/work/probes30")
    add_schedule_args(ap, 300)
    ap.add_argument("--artwork", help="eval: artwork for the AdaIN rows (default examples/artwork/monet)")
    ap.add_argument("--sheet", default=str(REPO / "docs" / "img" / "probe_decoder_emboss.jpg"))
    ap.add_argument(
        "--reference",
        default=str(REPO / "examples" / "models" / "inverse.safetensors"),
        help="eval: also the shipped inverse network, as the last column ('' = no)",
    )
    ap.add_argument("--cell", type=int, default=256)
    run_mode(ap.parse_args(), train, evaluate)


def run_mode(
    args: argparse.Namespace,
    train: Callable[[argparse.Namespace], None],
    evaluate: Callable[[argparse.Namespace], None],
) -> None:
    """On --threads torch threads: `train(args)` for --mode train (which needs --probe), else `evaluate(args)`."""
    torch.set_num_threads(args.threads)
    if args.mode == "train":
        if not args.probe:
            sys.exit("train needs --probe")
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
