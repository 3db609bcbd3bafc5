"""Training speed: optimizer steps per second of the per-style engine, side by side with the peer loop.

    .venv/bin/python bench/bench_training.py --size 256 --batch-size 4 --steps 10 [--channels 32] [--device cuda]

Three loops run alternately in one process (best of `--rounds`), at equal batch and crop size:
- **peer**: a re-implementation of pytorch/examples' `fast_neural_style` `train` (fp32, its
  32-64-128 TransformerNet with affine instance norm and nearest-upsample convolutions, VGG16 sliced
  at relu1_2 / 2_2 / 3_3 / 4_3, MSE content and Gram losses, Adam, `.item()` on both losses every
  step), on one batch already on the device (how the issue's peer figure was taken; no data loading);
- **styleops**: `train_style` as users run it, decoding and cropping real photos every step;
- **styleops, cached data**: the same, on photos pre-shrunk to the crop size (decoding nearly free),
  which isolates the loop from the JPEG decoder.

Uses the repo's example photos and artwork; VGG weights from the cache (`styleops weights install`),
the same trunk for both.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torch import Tensor, nn

from styleops.device import resolve_device
from styleops.io.images import read_image
from styleops.io.weights import load_encoder, load_vgg_state_dict
from styleops.losses.perceptual import LossWeights
from styleops.training.engine import TrainConfig, train_style

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---- the peer: pytorch/examples fast_neural_style, rewritten here (same layers, same work per step) ----
class _Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: bool = False) -> None:
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        super().__init__(*layers, nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _Conv(c, c, 3),
            nn.InstanceNorm2d(c, affine=True),
            nn.ReLU(),
            _Conv(c, c, 3),
            nn.InstanceNorm2d(c, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def peer_transformer() -> nn.Module:
    """Johnson's network as pytorch/examples builds it (32-64-128 channels, 5 residual blocks)."""

    def block(conv: nn.Module, c: int) -> list[nn.Module]:
        return [conv, nn.InstanceNorm2d(c, affine=True), nn.ReLU()]

    return nn.Sequential(
        *block(_Conv(3, 32, 9), 32),
        *block(_Conv(32, 64, 3, 2), 64),
        *block(_Conv(64, 128, 3, 2), 128),
        *[_Residual(128) for _ in range(5)],
        *block(_Conv(128, 64, 3, upsample=True), 64),
        *block(_Conv(64, 32, 3, upsample=True), 32),
        _Conv(32, 3, 9),
    )


class PeerVgg16(nn.Module):
    """torchvision's VGG16 `features[:23]`, returning relu1_2, relu2_2, relu3_3 and relu4_3."""

    CUTS = (4, 9, 16, 23)

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        features = torchvision.models.vgg16(weights=None).features
        features.load_state_dict(state)
        bounds = (0, *self.CUTS)
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


def _gram(f: Tensor) -> Tensor:
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


def _normalize(batch_255: Tensor) -> Tensor:
    mean = batch_255.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = batch_255.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch_255 / 255.0 - mean) / std


def peer_loop(
    state: dict[str, Tensor], batch: Tensor, art: Tensor, device: torch.device
) -> Callable[[int], list[float]]:
    """Returns run(steps) -> per-step wall times, for the peer's training step on one fixed batch
    ([B, 3, H, W] in [0, 255], already on `device`); content weight 1e5, style weight 1e10, lr 1e-3."""
    torch.manual_seed(42)
    net, vgg = peer_transformer().to(device), PeerVgg16(state).to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    grams = [_gram(f) for f in vgg(_normalize(art.repeat(len(batch), 1, 1, 1)))]

    def run(steps: int) -> list[float]:
        times, agg_content, agg_style = [], 0.0, 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            y = net(batch)
            fy, fx = vgg(_normalize(y)), vgg(_normalize(batch))
            content = 1e5 * nn.functional.mse_loss(fy[1], fx[1])
            style = 1e10 * sum(nn.functional.mse_loss(_gram(f), g) for f, g in zip(fy, grams, strict=True))
            (content + style).backward()
            opt.step()
            agg_content += content.item()  # the peer's per-step host syncs
            agg_style += style.item()
            times.append(time.perf_counter() - t0)
        return times

    return run


# ---- styleops -------------------------------------------------------------------------------------
def styleops_loop(
    cfg: TrainConfig, photos: list[Path], art: Tensor, device: torch.device, weights: LossWeights
) -> Callable[[int], list[float]]:
    encoder = load_encoder(None, weights.layers)

    def run(steps: int) -> list[float]:
        stamps: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            train_style(
                TrainConfig.from_dict({**cfg.to_dict(), "steps": steps + 1}),
                photos,
                art,
                encoder,
                workdir=Path(tmp),
                device=device,
                progress=lambda s: stamps.append(time.perf_counter()),
            )
        return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]  # the first step is warm-up

    return run


def _shrunk(photos: list[Path], size: int, out: Path) -> list[Path]:
    paths = []
    for src in photos:
        with Image.open(src) as im:
            im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(out / src.name, quality=95)
        paths.append(out / src.name)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    weights = LossWeights()
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.size,
        channels=args.channels,
        precision=args.precision,
        log_every=1,
        checkpoint_every=10_000,
    )
    photos = sorted((EXAMPLES / "catalog").glob("*.jpg"))
    art = read_image(EXAMPLES / "artwork" / "monet" / "monet.jpg").pixels
    art_255 = torch.nn.functional.interpolate(art[None].float(), size=(args.size, args.size), mode="area").to(device)
    batch = torch.stack(
        [torch.nn.functional.interpolate(read_image(p).pixels[None].float(), size=(args.size,) * 2, mode="area")[0]
         for p in (photos * args.batch_size)[: args.batch_size]]
    ).to(device)  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        small = _shrunk(photos, args.size, Path(cache))
        loops = {
            "peer (pytorch/examples, fp32, one batch on the device)": peer_loop(
                load_vgg_state_dict(None), batch, art_255, device
            ),
            f"styleops train_style ({args.precision}, real photos)": styleops_loop(cfg, photos, art, device, weights),
            f"styleops train_style ({args.precision}, photos at crop size)": styleops_loop(
                cfg, small, art, device, weights
            ),
        }
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, run in loops.items():
                times = run(args.steps)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                per_step = sorted(times)[len(times) // 2]  # median step
                best[name] = min(best.get(name, float("inf")), per_step)
    peer = next(iter(best.values()))
    print(
        f"# {platform.node()} threads={torch.get_num_threads()} device={device} "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else ''} torch {torch.__version__}; "
        f"{args.size} px, batch {args.batch_size}, {args.channels} ch, median step, best of {args.rounds}"
    )
    print("| loop | s/step | steps/s | images/s | vs peer |\n|---|---|---|---|---|")
    for name, per_step in best.items():
        print(
            f"| {name} | {per_step:.3f} | {1 / per_step:.2f} | {args.batch_size / per_step:.1f} "
            f"| {peer / per_step:.2f}x |"
        )


if __name__ == "__main__":
    main()
