"""Adversarial objectives for the translation families (junyanz/pytorch-CycleGAN-and-pix2pix):
the GAN loss on PatchGAN logits, and CycleGAN's history pool of generated images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError

GAN_MODES = ("vanilla", "lsgan")


def gan_loss(logits: Tensor, real: bool, mode: str) -> Tensor:
    """Mean loss of discriminator `logits` (any shape) against the label real (1) or fake (0).

    vanilla: binary cross-entropy on the logits (Pix2Pix); lsgan: squared error of the raw
    outputs to the label (Mao et al. 2017; CycleGAN). fp32 scalar."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise InvalidInputError(f"GAN mode must be one of {GAN_MODES}, got {mode!r}")


class ImagePool(nn.Module):
    """Shrivastava et al.'s history of generated images (CycleGAN: 50): the discriminator sees
    half old fakes, half new ones, which damps oscillation.

    The history is a buffer, so it is saved and restored with the checkpoint (a resumed run
    sees the same history), and the coin flips of step s come from a generator seeded with
    (seed, step): the pool is a pure function of what it was fed. images: [N, C, H, W] of the
    fixed crop shape `shape` = (C, H, W)."""

    def __init__(self, size: int, shape: tuple[int, int, int], seed: int = 0) -> None:
        super().__init__()
        if size < 0:
            raise InvalidInputError(f"pool size must be >= 0, got {size}")
        self.size, self.seed = size, seed
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, fakes: Tensor, step: int) -> Tensor:
        """The batch the discriminator sees for `fakes` [N, C, H, W] (detached): while the pool fills,
        the fakes themselves (and they are stored); then, per image, with probability 1/2 an old
        image (replaced by the new one), else the new one."""
        if self.size == 0:
            return fakes.detach()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        out = []
        for fake in fakes.detach():
            n = int(self.count)
            if n < self.size:
                self.images[n].copy_(fake)
                self.count += 1
                out.append(fake)
            elif float(torch.rand((), generator=g)) > 0.5:
                i = int(torch.randint(self.size, (), generator=g))
                out.append(self.images[i].clone())
                self.images[i].copy_(fake)
            else:
                out.append(fake)
        return torch.stack(out).to(fakes.dtype)
