"""Training `SuperResolutionNet` (Johnson et al. 2016, section 4.2) through the shared loop `_Fit.run`.

Pairs are made on the fly: a native-resolution HR crop (`HRCrops`: no resizing, random position,
one of the 8 flips/rotations), Gaussian blur of `blur_sigma` HR px (Johnson: 1.0), then the PIL
bicubic downscale by 1/scale (`styleops.evaluation.super_resolution.resize_bicubic_pil`, the very
function the evaluation degrades with; the LR is on the uint8 grid, as a stored LR image is).
The blur default is Johnson's; the literature's benchmark LR (and `evaluate_sr`'s default) has
none, and on it a model trained with blur 1.0 gained half what one trained without did
(docs/super_resolution.md): train with `blur_sigma=0.0` to be scored by that protocol.

Losses (`SRConfig.loss`):
- "pixel": mean squared error to the HR crop (RGB in [0, 1]); the SRResNet-style baseline.
- "perceptual": Johnson's feature reconstruction loss, mean over C*H*W of the squared relu2_2
  difference to the HR crop (HED/VGG16 feature units) x `feature_weight`, plus `pixel_weight` x MSE.

Everything else is `_Fit.run`'s: seeded (the batch of step s is a function of (seed, s), so a
resumed run gives the uninterrupted run's weights), checkpoints in `workdir`, NaN rollback, warm-up,
progress. Progress/history columns: `content` is the weighted feature term, `tv` the weighted
pixel term (`HISTORY_KEYS`), `style` is 0. The SR settings are also written to `workdir` and a
checkpoint is only resumed under the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from styleops import families
from styleops.errors import InvalidInputError
from styleops.evaluation.super_resolution import as_float, gaussian_blur, resize_bicubic_pil
from styleops.io.images import read_image
from styleops.losses.perceptual import LossTerms, LossWeights
from styleops.models.super_resolution import SCALES, SuperResolutionNet
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import (
    StepLog,
    TrainConfig,
    TrainResult,
    _Fit,
    check_workdir,
    crop_generator,
    draw_decodable,
    image_paths,
)

LOSSES = ("pixel", "perceptual")
SR_CONFIG_FILE = "sr_config.json"
HISTORY_KEYS = {"feature": "content", "pixel": "tv"}  # SR loss term -> its column in StepLog / TrainResult.history


def _default_train() -> TrainConfig:
    return TrainConfig(steps=2000, batch_size=16, image_size=96, lr=1e-3, warmup_steps=50, checkpoint_every=100)


@dataclass(frozen=True)
class SRConfig:
    """One super-resolution training run. `train` holds the loop's settings (steps, batch_size,
    lr, warmup_steps, seed, checkpoints, precision); its `image_size` is the HR crop side in px
    (a multiple of `scale`; LR crops are image_size / scale). Its style-network fields are unused."""

    scale: int = 4
    channels: int = 64
    blocks: int = 4
    residual: bool = True  # output = bicubic(LR) + f(LR) (styleops.models.super_resolution)
    loss: str = "pixel"  # "pixel" | "perceptual"
    feature_layer: str = "relu2_2"
    feature_weight: float = 1.0  # perceptual only
    pixel_weight: float = 0.0  # perceptual only: weight of an extra pixel MSE term (pixel loss: always 1)
    blur_sigma: float = 1.0  # Gaussian blur (HR px) before the bicubic downscale (Johnson et al.: 1.0)
    train: TrainConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise InvalidInputError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.train.image_size % self.scale or self.train.image_size // self.scale < 5:
            raise InvalidInputError(
                "train.image_size (the HR crop) must be a multiple of the scale with LR crops >= 5 px,"
                f" got {self.train.image_size} for x{self.scale}"
            )
        if min(self.feature_weight, self.pixel_weight, self.blur_sigma) < 0:
            raise InvalidInputError("feature_weight, pixel_weight and blur_sigma must be >= 0")

    def model_config(self) -> dict[str, int | bool]:
        """`SuperResolutionNet` constructor arguments."""
        return {"scale": self.scale, "channels": self.channels, "blocks": self.blocks, "residual": self.residual}

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "train"}, "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SRConfig:
        d = dict(d)
        if isinstance(d.get("train"), Mapping):
            d["train"] = TrainConfig.from_dict(d["train"])
        return cls(**d)


class HRCrops(Dataset):
    """Native-resolution square HR crops: item (step, slot) -> float [3, size, size] in [0, 1].

    Deterministic given the seed: the image, the position and one of the 8 flips/rotations come
    from a generator seeded with (seed, step, slot). No resizing, except that an image with a side
    shorter than `size` is first enlarged (bicubic) to that side. Undecodable images are skipped
    deterministically (the next one is used). Decoded images are kept in memory (uint8).
    """

    def __init__(self, paths: Sequence[str | Path] | str | Path, size: int, seed: int) -> None:
        self.paths, self.size, self.seed = image_paths(paths), size, seed
        if not self.paths:
            raise InvalidInputError(f"no HR images to train on in {paths!r}")
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, index: int) -> Tensor:
        if index not in self._cache:
            self._cache[index] = read_image(self.paths[index]).pixels
        return self._cache[index]

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        step, slot = key
        g = crop_generator(self.seed, step, slot)
        img = draw_decodable(self._image, len(self.paths), g, "HR")
        h, w = img.shape[-2:]
        if min(h, w) < self.size:
            k = self.size / min(h, w)
            img = resize_bicubic_pil(img, (max(self.size, round(h * k)), max(self.size, round(w * k))))
            h, w = img.shape[-2:]
        top = int(torch.randint(h - self.size + 1, (1,), generator=g))
        left = int(torch.randint(w - self.size + 1, (1,), generator=g))
        crop = as_float(img[:, top : top + self.size, left : left + self.size])
        turns, flip = int(torch.randint(4, (1,), generator=g)), bool(torch.randint(2, (1,), generator=g))
        crop = torch.rot90(crop, turns, dims=(-2, -1))
        return (crop.flip(-1) if flip else crop).contiguous()


def make_lr(hr: Tensor, scale: int, blur_sigma: float) -> Tensor:
    """HR batch [N, 3, H, W] in [0, 1] (H, W multiples of `scale`) -> LR [N, 3, H/scale, W/scale]
    on the uint8 grid: Gaussian blur of `blur_sigma` HR px, then the PIL bicubic downscale."""
    h, w = hr.shape[-2:]
    return resize_bicubic_pil(gaussian_blur(hr, blur_sigma), (h // scale, w // scale))


def train_super_resolution(
    config: SRConfig,
    content: Sequence[str | Path] | str | Path,
    encoder: VGGEncoder,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    init_state: Mapping[str, Tensor] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train a `SuperResolutionNet` on HR photos `content` (a folder or a list of files).

    encoder: the VGG loss network (must expose `config.feature_layer`; not run for the pixel
    loss; it runs up to its deepest layer, so build it with only that layer:
    `load_encoder(weights, ["relu2_2"])`). workdir: checkpoints (and the SR settings) live here;
    a compatible checkpoint is resumed (it wins over `init_state`). init_state: warm-start weights
    (e.g. a pixel-loss model to fine-tune with the perceptual loss, as SRGAN starts from SRResNet).
    loss_hook: fault injection for tests, (step, loss) -> loss before backward.
    Returns `TrainResult` (fp32 CPU state dict; `model_config` rebuilds the net; save it with
    `styleops.io.serialize.to_safetensors(result.state_dict, "SuperResolutionNet", result.model_config)`).
    """
    _check_workdir(config, Path(workdir))
    perceptual = config.loss == "perceptual"
    layer = config.feature_layer
    weights = LossWeights(
        content_layers={layer: 1.0},
        style_layers={},
        content_weight=config.feature_weight if perceptual else 0.0,
        style_weight=0.0,
        tv_weight=0.0,
    )
    fit_config = replace(config.train, loss=weights)
    torch.manual_seed(config.train.seed)
    model = SuperResolutionNet(**config.model_config())
    if init_state is not None:
        model.load_state_dict(init_state)
    fit = _Fit(fit_config, encoder, device)
    data = HRCrops(content, config.train.image_size, config.train.seed)
    pixel_weight = config.pixel_weight if perceptual else 1.0

    def forward(step: int, hr: Tensor) -> LossTerms:
        with torch.no_grad():
            lr = make_lr(hr.float(), config.scale, config.blur_sigma)
        sr = model(lr)
        zero = sr.new_zeros((), dtype=torch.float32)
        pixel = pixel_weight * F.mse_loss(sr.float(), hr.float()) if pixel_weight else zero
        feature = fit.loss(sr, hr, {}).content if perceptual else zero
        return LossTerms(feature + pixel, feature, zero, pixel)

    return fit.run(model, list(model.parameters()), forward, content, Path(workdir), progress, loss_hook, (), data)


def _check_workdir(config: SRConfig, workdir: Path) -> None:
    """Record the SR settings next to the checkpoint; refuse to resume a checkpoint made under others."""
    mine = {k: v for k, v in config.to_dict().items() if k != "train"}
    check_workdir(workdir, mine, SR_CONFIG_FILE, families.SUPER_RESOLUTION.name)
