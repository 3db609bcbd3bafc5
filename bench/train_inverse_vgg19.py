"""Issue 30, the long run: style swap's inverse network for AdaIN's normalised VGG19 at relu3_1
(Chen & Schmidt's layer), trained on the CPU in the background, resumable across sessions.

    nice -n 19 .venv/bin/python bench/train_inverse_vgg19.py train --steps 20000   # resumes from the checkpoint
    .venv/bin/python bench/train_inverse_vgg19.py eval                             # PSNR of the latest weights
    .venv/bin/python bench/train_inverse_vgg19.py export OUT.safetensors           # a registry model file

`styleops.training.decoders.train_inverse` (Chen & Schmidt's schedule: content, artwork and
style-swapped features in turn; INVERSE_LOSS: relu3_1 feature loss, pixel 5e3 on the steps with a
source image, TV 10) with the encoder `NormalisedVGG19` (`styleops weights install`), 128 px
crops (the network is fully convolutional), batch 4, Adam 1e-3. Photos: ../shared/data/train/content
without the 24 Kodak photos (held out); artworks: ../shared/data/train/style. The engine's
checkpoint (<workdir>/checkpoint.pt, every 100 steps, atomic) resumes bit-exactly; the committed
copy lives in training/inverse-vgg19/ (copy it back to the workdir to continue). Every
--eval-every steps the held-out reconstruction PSNR (the photo's own relu3_1 decoded, 4 Kodak
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

from styleops.io.adain_weights import load_adain_encoder
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.io.serialize import to_safetensors
from styleops.models.decoder import VGGDecoder
from styleops.training.decoders import inverse_config
from styleops.training.engine import StepLog, image_paths

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "train"
WORKDIR = Path("/work/longrun/inverse-vgg19")
HELD_OUT = ("kodim01", "kodim07", "kodim13", "kodim19")
LAYER = "relu3_1"


def photos() -> list[Path]:
    return [p for p in image_paths(DATA / "content") if not p.name.startswith("kodak24_")]


def held_out(size: int = 256) -> list[torch.Tensor]:
    found = [p for p in image_paths(DATA / "content") if any(h in p.name for h in HELD_OUT)]
    return [resize_max_side(to_float(read_image(p).pixels), size)[None] for p in sorted(found)]


def psnr_of(decoder: VGGDecoder, encoder: torch.nn.Module, images: list[torch.Tensor]) -> float:
    values = []
    with torch.no_grad():
        for x in images:
            h, w = (s // 4 * 4 for s in x.shape[-2:])
            x = x[..., :h, :w]
            y = decoder(encoder(x)[LAYER]).clamp(0, 1)
            values.append(float(10 * torch.log10(1 / ((y - x) ** 2).mean())))
    return statistics.median(values)


def latest_decoder(workdir: Path) -> VGGDecoder:
    state = torch.load(workdir / "checkpoint.pt", map_location="cpu", weights_only=False)
    decoder = VGGDecoder(LAYER, "vgg19")
    decoder.load_state_dict(state["model"])
    return decoder.eval()


def train(args: argparse.Namespace) -> None:
    from styleops.training.decoders import train_inverse

    torch.set_num_threads(args.threads)
    encoder = load_adain_encoder((LAYER,))
    config = inverse_config(steps=args.steps, image_size=128, batch_size=4, checkpoint_every=100, log_every=25, seed=0)
    args.workdir.mkdir(parents=True, exist_ok=True)
    eval_images, curve = held_out(), args.workdir / "curve.csv"
    started = time.time()

    def progress(log: StepLog) -> None:
        if log.step % args.eval_every == 0:
            db = (
                psnr_of(latest_decoder(args.workdir), encoder, eval_images)
                if (args.workdir / "checkpoint.pt").exists()
                else float("nan")
            )
            new = not curve.exists()
            with curve.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "loss", "psnr_db_checkpoint", "wall_s", "date"])
                w.writerow(
                    [
                        log.step,
                        f"{log.total:.4f}",
                        f"{db:.2f}",
                        f"{time.time() - started:.0f}",
                        time.strftime("%Y-%m-%d %H:%M"),
                    ]
                )
            print(f"step {log.step} loss {log.total:.4f} held-out PSNR {db:.2f} dB (last checkpoint)", flush=True)

    train_inverse(
        config, photos(), image_paths(DATA / "style"), encoder, workdir=args.workdir, device="cpu", progress=progress
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("train", "eval", "export"))
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=WORKDIR)
    args = ap.parse_args()
    if args.command == "train":
        train(args)
    elif args.command == "eval":
        print(f"{psnr_of(latest_decoder(args.workdir), load_adain_encoder((LAYER,)), held_out()):.2f} dB")
    else:
        if args.out is None:
            sys.exit("export needs OUT.safetensors")
        decoder = latest_decoder(args.workdir)
        args.out.write_bytes(to_safetensors(decoder.state_dict(), "VGGDecoder", decoder.config()))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
