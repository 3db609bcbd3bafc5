"""Image-to-image translation: `make-pairs`, `train-pix2pix`, `train-cyclegan`, `train-mixgan`."""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.common import Decay, LearningRate, MaxImages, Seed, Steps, app, console, run, summary_table
from runs.context import CYCLEGAN, MIXGAN, PIX2PIX
from styleops.training.engine import TrainConfig
from styleops.training.translation import MIXGANConfig


def _gan_train(steps: int, image_size: int, lr: float, decay: float, seed: int) -> TrainConfig:
    """The translation families' loop settings (`styleops.training.translation`'s defaults: batch 1,
    Adam (0.5, 0.999)) with the schedule asked: constant, then linear decay to zero over the last
    `decay` fraction of the steps (the reference's)."""
    from dataclasses import replace

    from styleops.training.translation import Pix2PixConfig

    defaults = Pix2PixConfig().train
    return replace(defaults, steps=steps, image_size=image_size, lr=lr, decay_steps=round(steps * decay), seed=seed)


def _gan_summary(r: dict[str, Any], family: str) -> None:
    m, gate = r["metrics"], r["gate"]
    rows = {"G loss": f"{m['total']:.4g}", "D loss": f"{m['critic']:.4g}", "steps": m["steps"]}
    rows.update(seconds=m["seconds"], sha256=r["sha256"][:16])
    rows["collapse check"] = (
        f"{gate['reason']} (input dependence {gate['dependence']:.2f}, change {gate['change']:.3f})"
    )
    rows["promoted"] = r["promoted"]
    console.print(summary_table(f"{family}/{r['name']} {r['version']}", rows))


@app.command("make-pairs")
def make_pairs_cmd(
    kind: str = typer.Option(..., help="edges (HED line drawing -> photo) | gray (grayscale -> colour) | painted."),
    content: str = typer.Option(..., help="Prefix of the photos to make pairs from."),
    name: str = typer.Option(..., help="Writes pairs/<name>/A/ and B/ (and domains/<name>-A/, -B/ with --domains)."),
    style: str | None = typer.Option(None, help="painted: the per-style model that paints the B side."),
    limit: int = typer.Option(200, help="At most this many photos."),
    max_side: int = typer.Option(256, help="Photos are shrunk to this longer side first, px."),
    domains: bool = typer.Option(False, help="Also write a disjoint unpaired split for CycleGAN."),
) -> None:
    """Make Pix2Pix pairs (and CycleGAN domains) from photos, with no outside data."""
    from flows.train_translation import make_translation_data

    r = run(
        make_translation_data,
        kind=kind,
        content_prefix=content,
        name=name,
        style=style,
        limit=limit,
        max_side=max_side,
        domains=domains,
    )
    console.print(summary_table(f"{kind} pairs", r))


@app.command("train-pix2pix")
def train_pix2pix_cmd(
    pairs: str = typer.Option(..., help="pairs/<set>/ with A/ and B/ (same names) or side-by-side AB/."),
    name: str = typer.Option(..., help="Name in the registry (pix2pix/<name>)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (the U-Net has log2 of it levels; CPU: 128)."),
    channels: int = typer.Option(64, help="Generator's first-layer width (reference ngf 64; CPU: 32)."),
    d_channels: int = typer.Option(64, help="Discriminator's first-layer width (reference ndf 64)."),
    l1_weight: float = typer.Option(100.0, help="Weight of the L1 term (reference lambda 100)."),
    gan_weight: float = typer.Option(1.0, help="Weight of the GAN term; 0 trains the L1-only baseline."),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train Pix2Pix (U-Net + 70x70 PatchGAN, GAN + 100 L1), register it, promote it if it is the
    name's first and passes the collapse check."""
    from flows.train_translation import train_pix2pix
    from styleops.training.translation import Pix2PixConfig

    cfg = Pix2PixConfig(
        channels=channels,
        d_channels=d_channels,
        l1_weight=l1_weight,
        gan_weight=gan_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = run(train_pix2pix, pairs_prefix=pairs, name=name, config=cfg.to_dict(), max_images=max_images)
    _gan_summary(r, PIX2PIX)


@app.command("train-cyclegan")
def train_cyclegan_cmd(
    domain_a: str = typer.Option(..., help="Prefix of domain A's images (domains/<a>/)."),
    domain_b: str = typer.Option(..., help="Prefix of domain B's images."),
    name: str = typer.Option(..., help="Name in the registry (cyclegan/<name>; holds both directions)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (CPU: 128)."),
    channels: int = typer.Option(32, help="Generators' first-layer width (reference 64)."),
    blocks: int = typer.Option(6, help="Residual blocks per generator (reference: 9 at 256 px, 6 at 128)."),
    d_channels: int = typer.Option(64, help="Discriminators' first-layer width."),
    cycle_weight: float = typer.Option(10.0, help="Cycle-consistency weight (reference lambda 10)."),
    identity_weight: float = typer.Option(0.5, help="Identity weight, times the cycle weight."),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train CycleGAN (two generators, two PatchGANs, LSGAN, cycle and identity losses, 50-image
    pools), register both directions as one version."""
    from flows.train_translation import train_cyclegan
    from styleops.training.translation import CycleGANConfig

    cfg = CycleGANConfig(
        channels=channels,
        n_residual=blocks,
        d_channels=d_channels,
        cycle_weight=cycle_weight,
        identity_weight=identity_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = run(
        train_cyclegan, domain_a=domain_a, domain_b=domain_b, name=name, config=cfg.to_dict(), max_images=max_images
    )
    _gan_summary(r, CYCLEGAN)


@app.command("train-mixgan")
def train_mixgan_cmd(
    content_domain: str = typer.Option(..., help="Prefix of the content domain's photos (domains/<a>/)."),
    style_domain: str = typer.Option(..., help="Prefix of the style domain's images."),
    name: str = typer.Option(..., help="Name in the registry (mixgan/<name>)."),
    steps: Steps = 4000,
    image_size: int = typer.Option(256, help="Crop side, px (CPU: 128)."),
    channels: int = typer.Option(32, help="First-layer width of encoder and decoders."),
    code: int = typer.Option(8, help="Channels of the latent code map (one code vector per 4x4 px)."),
    prior: str = typer.Option("gaussian", help="The code's prior: gaussian | uniform."),
    d_channels: int = typer.Option(64, help="Style PatchGAN's first-layer width."),
    recon_weight: float = typer.Option(10.0, help="Weight of the autoencoder's reconstruction L1."),
    content_weight: float = typer.Option(
        MIXGANConfig.content_weight, help="Weight of the mixture's L1 to the reconstruction (keeps the edges)."
    ),
    lr: LearningRate = 2e-4,
    decay: Decay = 0.5,
    seed: Seed = 0,
    max_images: MaxImages = 5000,
) -> None:
    """Train MIXGAN (an adversarial autoencoder of the content domain, a mixture decoder judged by a
    PatchGAN against the style domain), register it, promote it if first and not collapsed."""
    from flows.train_translation import train_mixgan

    cfg = MIXGANConfig(
        channels=channels,
        code=code,
        prior=prior,
        d_channels=d_channels,
        recon_weight=recon_weight,
        content_weight=content_weight,
        train=_gan_train(steps, image_size, lr, decay, seed),
    )
    r = run(
        train_mixgan,
        content_domain=content_domain,
        style_domain=style_domain,
        name=name,
        config=cfg.to_dict(),
        max_images=max_images,
    )
    _gan_summary(r, MIXGAN)
