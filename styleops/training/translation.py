"""Training the translation families through the shared loop `_Fit.run` with a `Critic`:
Pix2Pix (paired, Isola et al. 2017) and CycleGAN (unpaired, Zhu et al. 2017), following
junyanz/pytorch-CycleGAN-and-pix2pix's defaults, and MIXGAN (Hao et al. 2018; `train_mixgan`,
built from the paper: styleops.models.mixgan).

- Pix2Pix: U-Net generator, conditional 70x70 PatchGAN (it sees input and output), vanilla GAN
  loss + 100 x L1; Adam 2e-4, betas (0.5, 0.999); the learning rate is constant, then decays
  linearly to zero over the last half of the steps (`TrainConfig.decay_steps`).
- CycleGAN: generators G: A->B and F: B->A, PatchGANs D_B and D_A, least-squares GAN loss,
  cycle consistency 10 x L1 per direction, identity 0.5 x 10 x L1, a 50-image history pool
  per discriminator; the same optimizer and schedule.

L1 terms are measured in the reference's [-1, 1] units (twice the L1 of [0, 1] images), so its
weights keep their meaning. Progress/history columns (`HISTORY_KEYS`): `content` is the weighted
L1 (Pix2Pix), cycle term (CycleGAN) or reconstruction (MIXGAN), `style` the generator's GAN term
(MIXGAN: the mixture's), `tv` the identity term (CycleGAN) or the latent GAN term plus the
mixture's pull to the reconstruction (MIXGAN), `critic` the discriminators' loss.

Crops (the reference's `resize_and_crop` with its 286/256 load size, aspect kept): the shorter
side is resized to image_size x `load_scale`, then a random square crop and a random
horizontal flip; a pair gets the same crop and flip. Item (step, slot) is a pure function of
the seed, and so are the U-Net's dropout masks (the global generator is seeded with (seed, step)
before each forward), so resume is exact (the pools are checkpointed with the discriminators).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from styleops import families
from styleops.errors import ImageError, InvalidInputError
from styleops.io.images import read_image
from styleops.losses.gan import GAN_MODES, ImagePool, gan_loss
from styleops.losses.perceptual import LossTerms
from styleops.models.mixgan import LatentDiscriminator, MixGenerator
from styleops.models.translation import CycleGenerators, PatchDiscriminator, UNetGenerator
from styleops.training.engine import Critic, StepLog, TrainConfig, TrainResult, _Fit, check_workdir, crop_generator

HISTORY_KEYS = {"l1 / cycle": "content", "gan": "style", "identity": "tv", "critic": "critic"}
LOAD_SCALE = 286 / 256  # the reference's load size over its crop size
SETTINGS_FILE = "translation_config.json"
MIN_DOMAIN_IMAGES = 8
PRIORS = ("gaussian", "uniform")  # an unpaired domain (or a paired set) needs at least this many images


def _default_train() -> TrainConfig:
    # The reference: batch 1, Adam 2e-4 (0.5, 0.999), constant then linear decay (100 + 100 epochs).
    return TrainConfig(
        steps=2000,
        batch_size=1,
        image_size=256,
        lr=2e-4,
        warmup_steps=0,
        decay_steps=1000,
        adam_betas=(0.5, 0.999),
        output="direct",
        palette=False,
        channels_last=False,
    )


def _train_from(d: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if isinstance(d.get("train"), Mapping):
        d["train"] = TrainConfig.from_dict(d["train"])
    return d


class _FamilyConfig:
    """What the three configs share: JSON round trip and the settings a checkpoint is bound to.
    Subclasses are frozen dataclasses with a `train: TrainConfig` field."""

    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "train"}, "train": self.train.to_dict()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:  # noqa: ANN401 - the subclass
        return cls(**_train_from(d))

    def bind(self, workdir: Path, family: str) -> None:
        """Record this config's own settings next to the checkpoint in `workdir` (refusing a
        checkpoint made under others) and seed the global generator (the networks' init)."""
        settings = {k: v for k, v in self.to_dict().items() if k != "train"}
        check_workdir(Path(workdir), settings, SETTINGS_FILE, family)
        torch.manual_seed(self.train.seed)


@dataclass(frozen=True)
class Pix2PixConfig(_FamilyConfig):
    """One Pix2Pix run. `train` holds the loop's settings (its `image_size` is the crop side, px).
    depth 0: log2(image_size), the reference's unet_256 / unet_128."""

    channels: int = 64  # generator's first layer (reference ngf)
    depth: int = 0
    dropout: float = 0.5
    d_channels: int = 64  # discriminator's first layer (reference ndf)
    d_layers: int = 3  # 70x70 PatchGAN
    l1_weight: float = 100.0
    gan_weight: float = 1.0  # 0: the L1-only U-Net baseline (no discriminator step matters)
    gan_mode: str = "vanilla"
    load_scale: float = LOAD_SCALE
    train: TrainConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        if self.depth == 0:
            object.__setattr__(self, "depth", max(5, int(math.log2(self.train.image_size))))
        if self.train.image_size < 2**self.depth // 2:
            raise InvalidInputError(
                f"crops of {self.train.image_size} px are too small for a U-Net of depth {self.depth}"
            )
        _check_common(self.gan_mode, self.load_scale, min(self.l1_weight, self.gan_weight))

    def model_config(self) -> dict[str, Any]:
        return {"channels": self.channels, "depth": self.depth, "dropout": self.dropout}


@dataclass(frozen=True)
class CycleGANConfig(_FamilyConfig):
    """One CycleGAN run (reference defaults except the generator's width and depth, which are
    `resnet_6blocks`-sized for CPU budgets; the reference's 256 px model is channels=64, n_residual=9)."""

    channels: int = 32
    n_residual: int = 6
    d_channels: int = 64
    d_layers: int = 3
    cycle_weight: float = 10.0  # lambda_A = lambda_B
    identity_weight: float = 0.5  # x cycle_weight
    gan_mode: str = "lsgan"
    pool_size: int = 50
    load_scale: float = LOAD_SCALE
    train: TrainConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        _check_common(self.gan_mode, self.load_scale, self.cycle_weight)
        if self.identity_weight < 0 or self.pool_size < 0:
            raise InvalidInputError("identity_weight and pool_size must be >= 0")

    def model_config(self) -> dict[str, Any]:
        return {"channels": self.channels, "n_residual": self.n_residual}


@dataclass(frozen=True)
class MIXGANConfig(_FamilyConfig):
    """One MIXGAN run (styleops.models.mixgan): the adversarial autoencoder (reconstruction L1 +
    latent GAN towards `prior`), the mixture's PatchGAN against the style domain, and a small L1
    pull of the mixture towards the reconstruction (the content it must keep)."""

    channels: int = 32
    code: int = 8
    blocks: int = 2
    prior: str = "gaussian"  # gaussian | uniform (in [-1, 1])
    d_channels: int = 64
    d_layers: int = 3
    recon_weight: float = 10.0
    latent_weight: float = 1.0
    mixture_weight: float = 1.0  # the mixture's GAN term
    content_weight: float = 4.0  # L1 of the mixture to the reconstruction (1 blurred edges: docs/translation.md)
    gan_mode: str = "lsgan"
    load_scale: float = LOAD_SCALE
    train: TrainConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        _check_common(
            self.gan_mode,
            self.load_scale,
            min(self.recon_weight, self.latent_weight, self.mixture_weight, self.content_weight),
        )
        if self.prior not in PRIORS:
            raise InvalidInputError(f"prior must be one of {PRIORS}, got {self.prior!r}")

    def model_config(self) -> dict[str, Any]:
        return {"channels": self.channels, "code": self.code, "blocks": self.blocks}


def _check_common(gan_mode: str, load_scale: float, weight: float) -> None:
    if gan_mode not in GAN_MODES:
        raise InvalidInputError(f"gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")
    if load_scale < 1:
        raise InvalidInputError(f"load_scale must be >= 1, got {load_scale}")
    if weight < 0:
        raise InvalidInputError(f"loss weights must be >= 0, got {weight}")


# ---- data ----------------------------------------------------------------------------------------
class _Images:
    """Decoded images, kept in memory (uint8) at the load size: shorter side = `load` px."""

    def __init__(self, paths: Sequence[Path], load: int) -> None:
        self.paths, self.load = list(paths), load
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        if index not in self._cache:
            img = read_image(self.paths[index]).pixels
            h, w = img.shape[-2:]
            k = self.load / min(h, w)
            size = (max(self.load, round(h * k)), max(self.load, round(w * k)))
            resized = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=k < 1, align_corners=False)
            self._cache[index] = resized[0].round().clamp(0, 255).to(torch.uint8)
        return self._cache[index]


def _crop(img: Tensor, size: int, g: torch.Generator) -> Tensor:
    """[C, H, W] uint8 -> [C, size, size] float in [0, 1]: random crop, random horizontal flip."""
    h, w = img.shape[-2:]
    top = int(torch.randint(h - size + 1, (1,), generator=g))
    left = int(torch.randint(w - size + 1, (1,), generator=g))
    crop = img[:, top : top + size, left : left + size].float() / 255
    return crop.flip(-1) if bool(torch.rand((), generator=g) < 0.5) else crop


class PairedCrops(Dataset):
    """Aligned pairs: item (step, slot) -> [6, size, size] float in [0, 1] (A then B), one crop
    and flip for both. `a` and `b` list the two sides in the same order, same size per pair."""

    def __init__(self, a: Sequence[Path], b: Sequence[Path], size: int, seed: int, load_scale: float = LOAD_SCALE):
        if len(a) != len(b) or not a:
            raise InvalidInputError(f"paired data needs as many A as B images (and some): {len(a)} vs {len(b)}")
        load = round(size * load_scale)
        self.a, self.b, self.size, self.seed = _Images(a, load), _Images(b, load), size, seed

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        step, slot = key
        g = crop_generator(self.seed, step, slot)
        index = int(torch.randint(len(self.a), (1,), generator=g))
        a, b = self.a[index], self.b[index]
        if a.shape != b.shape:
            raise InvalidInputError(f"pair {self.a.paths[index].name}: A and B differ in size")
        return _crop(torch.cat([a, b]), self.size, g)


class UnpairedCrops(Dataset):
    """Two domains: item (step, slot) -> [6, size, size] float in [0, 1]: a crop of a random A
    image, then one of an independently drawn B image."""

    def __init__(self, a: Sequence[Path], b: Sequence[Path], size: int, seed: int, load_scale: float = LOAD_SCALE):
        if not a or not b:
            raise InvalidInputError("unpaired data needs images in both domains")
        load = round(size * load_scale)
        self.a, self.b, self.size, self.seed = _Images(a, load), _Images(b, load), size, seed

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        step, slot = key
        g = crop_generator(self.seed, step, slot)
        a = self.a[int(torch.randint(len(self.a), (1,), generator=g))]
        b = self.b[int(torch.randint(len(self.b), (1,), generator=g))]
        return torch.cat([_crop(a, self.size, g), _crop(b, self.size, g)])


def check_images(paths: Sequence[Path], what: str, minimum: int = MIN_DOMAIN_IMAGES) -> dict[str, tuple[int, ...]]:
    """InvalidInputError unless there are at least `minimum` images and every one decodes.
    Returns each file's decoded shape (C, H, W) by name (each image is decoded once)."""
    if len(paths) < minimum:
        raise InvalidInputError(f"{what} has {len(paths)} images; at least {minimum} are needed")
    shapes = {}
    for path in paths:
        try:
            shapes[path.name] = tuple(read_image(path).pixels.shape)
        except ImageError as exc:
            raise InvalidInputError(f"{what}: {path.name} does not decode ({exc})") from exc
    return shapes


def check_pairs(a: Sequence[Path], b: Sequence[Path], what: str) -> None:
    """InvalidInputError unless A and B hold the same names, each pair decodes and its two
    images have the same size, and there are at least MIN_DOMAIN_IMAGES pairs."""
    names_a, names_b = {p.name for p in a}, {p.name for p in b}
    if names_a != names_b:
        only_a, only_b = sorted(names_a - names_b)[:5], sorted(names_b - names_a)[:5]
        raise InvalidInputError(f"{what}: mismatched pairs: only in A {only_a}, only in B {only_b}")
    shapes_a, shapes_b = check_images(a, f"{what}/A"), check_images(b, f"{what}/B")
    for pa in a:
        sa, sb = shapes_a[pa.name], shapes_b[pa.name]
        if sa != sb:
            raise InvalidInputError(f"{what}: pair {pa.name} is {sa[2]}x{sa[1]} in A but {sb[2]}x{sb[1]} in B")


# ---- training ------------------------------------------------------------------------------------
def _l1(x: Tensor, y: Tensor) -> Tensor:
    """L1 in the reference's [-1, 1] units of [0, 1] images."""
    return 2 * F.l1_loss(x.float(), y.float())


def _fit(train: TrainConfig, device: str | torch.device) -> _Fit:
    return _Fit(train, None, device)  # no perceptual loss


def train_pix2pix(
    config: Pix2PixConfig,
    a: Sequence[Path],
    b: Sequence[Path],
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train a `UNetGenerator` mapping each A image to its B image (lists of files, same order).
    Returns `TrainResult` of the generator (the discriminator is only in the checkpoint)."""
    config.bind(Path(workdir), families.PIX2PIX.name)
    gen = UNetGenerator(**config.model_config())
    disc = PatchDiscriminator(6, config.d_channels, config.d_layers)
    fit = _fit(config.train, device)
    data = PairedCrops(a, b, config.train.image_size, config.train.seed, config.load_scale)
    kept: dict[str, Tensor] = {}

    def forward(step: int, batch: Tensor) -> LossTerms:
        src, real = batch[:, :3], batch[:, 3:]
        torch.manual_seed(config.train.seed * 1_000_003 + step)  # dropout masks: a function of (seed, step)
        fake = gen(src)
        kept["fake"] = fake.detach()
        adversarial = config.gan_weight * gan_loss(disc(torch.cat([src, fake], 1)), True, config.gan_mode)
        l1 = config.l1_weight * _l1(fake, real)
        return LossTerms(adversarial + l1, l1, adversarial, adversarial.new_zeros(()))

    def critic(step: int, batch: Tensor) -> Tensor:
        src, real = batch[:, :3], batch[:, 3:]
        fake = gan_loss(disc(torch.cat([src, kept["fake"]], 1)), False, config.gan_mode)
        return 0.5 * (fake + gan_loss(disc(torch.cat([src, real], 1)), True, config.gan_mode))

    return fit.run(
        gen, list(gen.parameters()), forward, a, Path(workdir), progress, loss_hook, (), data, Critic(disc, critic)
    )


class _CycleCritic(nn.Module):
    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__()
        shape = (3, config.train.image_size, config.train.image_size)
        self.d_a = PatchDiscriminator(3, config.d_channels, config.d_layers)  # real A vs F(B)
        self.d_b = PatchDiscriminator(3, config.d_channels, config.d_layers)  # real B vs G(A)
        self.pool_a = ImagePool(config.pool_size, shape, config.train.seed + 1)
        self.pool_b = ImagePool(config.pool_size, shape, config.train.seed + 2)


def train_cyclegan(
    config: CycleGANConfig,
    a: Sequence[Path],
    b: Sequence[Path],
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train `CycleGenerators` between domain A and domain B (unpaired lists of files).
    Returns `TrainResult` of both generators (the discriminators are only in the checkpoint)."""
    config.bind(Path(workdir), families.CYCLEGAN.name)
    gens = CycleGenerators(**config.model_config())
    critics = _CycleCritic(config)
    fit = _fit(config.train, device)
    data = UnpairedCrops(a, b, config.train.image_size, config.train.seed, config.load_scale)
    lam, idt, mode = config.cycle_weight, config.identity_weight * config.cycle_weight, config.gan_mode
    kept: dict[str, Tensor] = {}

    def forward(step: int, batch: Tensor) -> LossTerms:
        real_a, real_b = batch[:, :3], batch[:, 3:]
        fake_b, fake_a = gens.a_to_b(real_a), gens.b_to_a(real_b)
        kept["fake_a"], kept["fake_b"] = fake_a.detach(), fake_b.detach()
        adversarial = gan_loss(critics.d_b(fake_b), True, mode) + gan_loss(critics.d_a(fake_a), True, mode)
        cycle = lam * (_l1(gens.b_to_a(fake_b), real_a) + _l1(gens.a_to_b(fake_a), real_b))
        identity = adversarial.new_zeros(())
        if idt:
            identity = idt * (_l1(gens.a_to_b(real_b), real_b) + _l1(gens.b_to_a(real_a), real_a))
        return LossTerms(adversarial + cycle + identity, cycle, adversarial, identity)

    def critic(step: int, batch: Tensor) -> Tensor:
        real_a, real_b = batch[:, :3], batch[:, 3:]
        fake_b = critics.pool_b.query(kept["fake_b"], step)
        fake_a = critics.pool_a.query(kept["fake_a"], step)
        loss_b = 0.5 * (gan_loss(critics.d_b(real_b), True, mode) + gan_loss(critics.d_b(fake_b), False, mode))
        loss_a = 0.5 * (gan_loss(critics.d_a(real_a), True, mode) + gan_loss(critics.d_a(fake_a), False, mode))
        return loss_a + loss_b

    return fit.run(
        gens, list(gens.parameters()), forward, a, Path(workdir), progress, loss_hook, (), data, Critic(critics, critic)
    )


class _MixCritic(nn.Module):
    def __init__(self, config: MIXGANConfig) -> None:
        super().__init__()
        self.latent = LatentDiscriminator(config.code)
        self.style = PatchDiscriminator(3, config.d_channels, config.d_layers)


def train_mixgan(
    config: MIXGANConfig,
    content: Sequence[Path],
    style: Sequence[Path],
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train a `MixGenerator` on photos of the content domain and images of the style domain
    (unpaired). History columns: `content` the reconstruction L1, `style` the mixture's GAN term,
    `tv` the latent GAN term plus the mixture's L1 to the reconstruction, `critic` both critics.
    Returns `TrainResult` of the generator (the critics are only in the checkpoint)."""
    config.bind(Path(workdir), families.MIXGAN.name)
    gen = MixGenerator(**config.model_config())
    critics = _MixCritic(config)
    fit = _fit(config.train, device)
    data = UnpairedCrops(content, style, config.train.image_size, config.train.seed, config.load_scale)
    mode = config.gan_mode
    kept: dict[str, Tensor] = {}

    def prior(z: Tensor, step: int) -> Tensor:
        g = torch.Generator().manual_seed(config.train.seed * 1_000_003 + step)
        shape = tuple(z.shape)
        sample = (
            torch.randn(shape, generator=g) if config.prior == "gaussian" else torch.rand(shape, generator=g) * 2 - 1
        )
        return sample.to(z.device, z.dtype)

    def forward(step: int, batch: Tensor) -> LossTerms:
        x = batch[:, :3]
        z = gen.encode(x)
        mixture, recon = gen.mix(z)
        kept["z"], kept["mixture"] = z.detach(), mixture.detach()
        rec = config.recon_weight * _l1(recon, x)
        latent = config.latent_weight * gan_loss(critics.latent(z), True, mode)
        adversarial = config.mixture_weight * gan_loss(critics.style(mixture), True, mode)
        keep = config.content_weight * _l1(mixture, recon.detach())
        return LossTerms(rec + latent + adversarial + keep, rec, adversarial, latent + keep)

    def critic(step: int, batch: Tensor) -> Tensor:
        style_images = batch[:, 3:]
        z = kept["z"]
        latent = 0.5 * (gan_loss(critics.latent(prior(z, step)), True, mode) + gan_loss(critics.latent(z), False, mode))
        styled = 0.5 * (
            gan_loss(critics.style(style_images), True, mode) + gan_loss(critics.style(kept["mixture"]), False, mode)
        )
        return latent + styled

    return fit.run(
        gen,
        list(gen.parameters()),
        forward,
        content,
        Path(workdir),
        progress,
        loss_hook,
        (),
        data,
        Critic(critics, critic),
    )
