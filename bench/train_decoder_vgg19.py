"""Issue 30, the long runs: decoders of AdaIN's normalised VGG19 trained on the CPU in the
background, resumable across sessions.

    nice -n 19 .venv/bin/python bench/train_decoder_vgg19.py inverse train --steps 20000   # resumes
    .venv/bin/python bench/train_decoder_vgg19.py inverse eval                    # PSNR of the latest weights
    .venv/bin/python bench/train_decoder_vgg19.py inverse export OUT.safetensors  # a registry model file

- `inverse`: style swap's inverse network at relu3_1 (Chen & Schmidt's layer), from scratch:
  `styleops.training.decoders.train_inverse` (content, artwork and style-swapped features in turn;
  INVERSE_LOSS: relu3_1 feature loss, pixel 5e3 on the steps with a source image, TV 10), Adam 1e-3.
- `adain`: the pretrained AdaIN decoder (relu4_1) fine-tuned so that AdaIN at alpha 0 gives the
  photo back (18.0 dB at the start): `train_adain` with the paper's loss (ADAIN_LOSS_VGG19) plus,
  every 4th step, the photo as its own style with a pixel term (weight 500: about the style
  step's loss), Adam 5e-5.

Both: the encoder `NormalisedVGG19` (`styleops weights install`), 128 px crops (the networks are
fully convolutional), batch 4. Photos: ../shared/data/train/content
without the 24 Kodak photos (held out); artworks: ../shared/data/train/style. The engine's
checkpoint (<workdir>/checkpoint.pt, every 100 steps, atomic) resumes bit-exactly; the committed
copy lives in training/<kind>-vgg19/ (copy it back to the workdir to continue). Every
--eval-every steps the held-out reconstruction PSNR (the photo's own features decoded, 4 Kodak
photos at 256 px, median) is appended to <workdir>/curve.csv: the curve is on record.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from styleops.io.adain_weights import DECODER_FILE, load_adain_encoder
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.serialize import to_safetensors
from styleops.models.decoder import VGGDecoder
from styleops.training.decoders import inverse_config
from styleops.training.engine import StepLog, image_paths

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "train"
LONGRUN = Path("/work/longrun")
HELD_OUT = ("kodim01", "kodim07", "kodim13", "kodim19")
LAYERS = {"inverse": "relu3_1", "adain": "relu4_1"}


def photos() -> list[Path]:
    return [p for p in image_paths(DATA / "content") if not p.name.startswith("kodak24_")]


def held_out(size: int = 256) -> list[torch.Tensor]:
    found = [p for p in image_paths(DATA / "content") if any(h in p.name for h in HELD_OUT)]
    return [resize_max_side(to_float(read_image(p).pixels), size)[None] for p in sorted(found)]


def psnr_of(decoder: VGGDecoder, encoder: torch.nn.Module, images: list[torch.Tensor]) -> float:
    values = []
    with torch.no_grad():
        for x in images:
            h, w = (s // 8 * 8 for s in x.shape[-2:])
            x = x[..., :h, :w]
            y = decoder(encoder(x)[decoder.from_layer]).clamp(0, 1)
            values.append(float(10 * torch.log10(1 / ((y - x) ** 2).mean())))
    return statistics.median(values)


def latest_decoder(workdir: Path, layer: str) -> VGGDecoder:
    state = torch.load(workdir / "checkpoint.pt", map_location="cpu", weights_only=False)
    decoder = VGGDecoder(layer, "vgg19")
    decoder.load_state_dict(state["model"])
    return decoder.eval()


def train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from styleops.io.serialize import from_safetensors
    from styleops.training.decoders import ADAIN_LOSS_VGG19, adain_config, train_adain, train_inverse

    torch.set_num_threads(args.threads)
    layer = LAYERS[args.kind]
    common = {"steps": args.steps, "image_size": 128, "batch_size": 4, "checkpoint_every": 100, "log_every": 25}
    if args.kind == "adain":
        encoder = load_adain_encoder(tuple(ADAIN_LOSS_VGG19.layers))
        config = adain_config("vgg19", lr=5e-5, loss=replace(ADAIN_LOSS_VGG19, pixel_weight=500.0), **common)
        extra = {"init_state": from_safetensors((args.cache / DECODER_FILE).read_bytes()).state_dict()}
        trainer = train_adain
    else:
        encoder, config, extra, trainer = load_adain_encoder((layer,)), inverse_config(**common), {}, train_inverse
    args.workdir.mkdir(parents=True, exist_ok=True)
    eval_images, curve = held_out(), args.workdir / "curve.csv"
    started = time.time()

    def progress(log: StepLog) -> None:
        if log.step % args.eval_every:
            return
        have = (args.workdir / "checkpoint.pt").exists()
        db = psnr_of(latest_decoder(args.workdir, layer), encoder, eval_images) if have else float("nan")
        new = not curve.exists()
        with curve.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "psnr_db_checkpoint", "wall_s", "date"])
            w.writerow(
                [log.step, f"{log.total:.4f}", f"{db:.2f}", f"{time.time() - started:.0f}", time.strftime("%F %H:%M")]
            )
        print(f"step {log.step} loss {log.total:.4f} held-out PSNR {db:.2f} dB (last checkpoint)", flush=True)

    photos_, styles = photos(), image_paths(DATA / "style")
    trainer(config, photos_, styles, encoder, workdir=args.workdir, device="cpu", progress=progress, **extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=tuple(LAYERS))
    ap.add_argument("command", choices=("train", "eval", "export"))
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=None, help="default /work/longrun/<kind>-vgg19")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".styleops" / "cache", help="the weights cache")
    args = ap.parse_args()
    args.workdir = args.workdir or LONGRUN / f"{args.kind}-vgg19"
    layer = LAYERS[args.kind]
    if args.command == "train":
        train(args)
    elif args.command == "eval":
        print(f"{psnr_of(latest_decoder(args.workdir, layer), load_adain_encoder((layer,)), held_out()):.2f} dB")
    else:
        if args.out is None:
            sys.exit("export needs OUT.safetensors")
        decoder = latest_decoder(args.workdir, layer)
        args.out.write_bytes(to_safetensors(decoder.state_dict(), "VGGDecoder", decoder.config()))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
