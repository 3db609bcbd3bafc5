"""Training engine for feed-forward style networks (Johnson et al. 2016).

Seeded and reproducible: the model is initialised from `seed`, and the batch of step `s` is a pure
function of (seed, s), so a run resumed from a checkpoint produces exactly the weights of an
uninterrupted one. Checkpoints (model, optimizer, history) are written atomically every
`checkpoint_every` steps; a non-finite loss, or a non-finite gradient, rolls back to the last
checkpoint with the learning rate halved (at most `max_rollbacks` times). Finiteness is recorded on
the device every step (no host sync) and read where the loop syncs anyway: at every logged step and
before every checkpoint is written, so a NaN never reaches a checkpoint, and the rollback, the
replayed steps and the final weights are those of a check after every step. Every rollback is logged (WARNING on
`styleops.training.engine`) and recorded in `TrainResult.rollback_log` and the checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from styleops.device import autocast, autocast_dtype, resolve_device
from styleops.errors import ImageError, InvalidInputError, StyleOpsError
from styleops.io.images import IMAGE_SUFFIXES, read_image, resize_max_side, to_float
from styleops.losses.perceptual import LossTerms, LossWeights, PerceptualLoss, calibrate, measure_calibration
from styleops.models.magenta import MagentaStyleNet, MagentaTransformer, StylePredictor, style_vector
from styleops.models.multistyle import MultiStyleTransformerNet
from styleops.models.palette import Palette, palette_of
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder

CHECKPOINT_FILE = "checkpoint.pt"
CALIBRATION_PHOTOS = 16  # content crops a calibrated loss is measured on (a fixed, seeded sample)
# The memory format of the style nets (TransformerNet, its multi-style form) in training, whatever
# `channels_last` says: their reflection pads and instance norms copied channels_last tensors back
# to NCHW every layer (a tenth of a step on the CPU). The loss network still gets channels_last
# inputs. 1.23x the steps/s at 256 px on the CPU (docs/benchmarks.md).
STYLE_NET_FORMAT = torch.contiguous_format

_log = logging.getLogger(__name__)


class TrainingDivergedError(StyleOpsError):
    """The loss stayed non-finite after every allowed rollback."""


INITS = ("scratch", "magenta")
FINETUNES = ("none", "vector", "all")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run of the shared training loop (recorded in the model card): the
    per-style and multi-style nets (Johnson's, or Magenta's pretrained start: `init`, `finetune`),
    and, as their `train` part, the decoders (styleops.training.decoders), super-resolution
    (SRConfig) and the translation families (Pix2PixConfig, CycleGANConfig, MIXGANConfig). The
    TransformerNet fields (channels, n_residual, output, palette) apply to the per-/multi-style nets
    only."""

    steps: int = 2000
    batch_size: int = 4
    image_size: int = 256  # content crops, pixels (square)
    style_size: int = 512  # artwork resized so its longer side is this many pixels
    lr: float = 1e-3
    # Linear learning-rate warm-up over the first steps: Adam's first updates are ~lr per weight
    # whatever the gradient's size, and at full lr they threw the net far from its start (loss x10
    # within 10 steps, docs/quality.md).
    warmup_steps: int = 100
    # Linear learning-rate decay to zero over the last `decay_steps` steps (the translation
    # families' schedule: constant, then linear to zero; 0 = none).
    decay_steps: int = 0
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Pix2Pix and CycleGAN: (0.5, 0.999)
    # Multi-style and add-style: learning-rate multiplier on the per-style scale/shift. x10 brought a
    # 2-style net within 6-9% of dedicated models at equal steps per style (x1: 1.8-3.9x; docs/benchmarks.md).
    style_lr_scale: float = 10.0
    channels: int = 32
    n_residual: int = 5
    # TransformerNet output parameterization and palette start (styleops.models.transformer): the net
    # starts at the photo recoloured to the artwork's palette and learns the brushwork (docs/quality.md).
    output: str = "logit_residual"
    palette: bool = True
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 (see styleops.device.autocast_dtype)
    channels_last: bool = True
    max_rollbacks: int = 3
    # DataLoader worker processes decoding content images; -1 = auto: on CUDA one per core up to 8
    # (keeping one core for the loop), with pinned memory and prefetch; on the CPU none (the decode
    # would take cores from the step).
    workers: int = -1
    # The start: "scratch" (Johnson's TransformerNet, above) or "magenta" (Magenta's pretrained
    # transformer with each artwork's predicted style vector: `MagentaStyleNet`, see
    # `train_magenta`), which then fine-tunes `finetune`: "none" (the prediction as it is),
    # "vector" (the style vectors only) or "all" (every weight), with a pull of `anchor_weight`
    # (pixel MSE) towards the pretrained network's own output for the photo.
    init: str = "scratch"
    finetune: str = "vector"
    anchor_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "image_size", "style_size", "channels", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.workers < -1:
            raise InvalidInputError(f"TrainConfig.workers must be >= -1 (auto), got {self.workers}")
        if self.palette and self.output == "direct":
            raise InvalidInputError("the direct output has no palette start: use palette=False (--no-palette)")
        if self.init not in INITS or self.finetune not in FINETUNES or self.anchor_weight < 0:
            raise InvalidInputError(
                f"TrainConfig: init must be one of {INITS}, finetune one of {FINETUNES}, anchor_weight >= 0; "
                f"got {self.init!r}, {self.finetune!r}, {self.anchor_weight}"
            )
        if not 0 <= self.decay_steps <= self.steps:
            raise InvalidInputError(f"TrainConfig.decay_steps must be in [0, steps], got {self.decay_steps}")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))  # JSON gives a list

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (lists, not tuples): equal to what a card's JSON gives back. The pretrained
        start's fields appear only with it, so configs (and run keys) from scratch are as before."""
        d = {**asdict(self), "loss": self.loss.to_dict(), "adam_betas": list(self.adam_betas)}
        if self.init == "scratch":
            for name in ("init", "finetune", "anchor_weight"):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = dict(d)
        d.setdefault("output", "direct")  # recorded before the output parameterization existed
        d.setdefault("warmup_steps", 0)  # likewise, before warm-up existed
        d.setdefault("palette", False)  # and before the palette start
        if isinstance(d.get("loss"), Mapping):
            d["loss"] = LossWeights(**d["loss"])
        return cls(**d)

    def resumable_from(self, other: TrainConfig) -> bool:
        """A checkpoint made under `other` can continue under self (only `steps` and logging may differ)."""
        keep = {"steps": 1, "decay_steps": 0, "checkpoint_every": 1, "log_every": 1, "workers": 0}
        return replace(self, **keep).to_dict() == replace(other, **keep).to_dict()


@dataclass(frozen=True)
class StepLog:
    """Losses at one logged step (weighted terms, as minimized)."""

    step: int
    steps: int
    total: float
    content: float
    style: float
    tv: float
    lr: float
    images_per_s: float
    critic: float = 0.0  # the discriminator's loss (adversarial families; 0 otherwise)


@dataclass
class TrainResult:
    state_dict: dict[str, Tensor]  # fp32, CPU
    history: list[dict[str, float]]
    steps: int
    resumed_from: int  # 0 when trained from scratch
    rollbacks: int
    seconds: float
    model_config: dict[str, int]
    # One entry per rollback: {"step": the step whose loss or gradient was not finite,
    # "restored_step": the checkpoint's step it went back to, "lr_scale": the scale from then on, "cause"}.
    rollback_log: list[dict[str, Any]] = field(default_factory=list)
    # The absolute loss weights trained with, one per style (calibrated where config.loss asked).
    loss_weights: list[LossWeights] = field(default_factory=list)

    def final_losses(self, last: int = 5) -> dict[str, float]:
        """Mean of the last `last` logged entries (smoother than the very last step)."""
        tail = self.history[-last:]
        keys = ("total", "content", "style", "tv")
        return {k: sum(h[k] for h in tail) / len(tail) for k in keys} if tail else {}


@dataclass(frozen=True)
class StyleTarget:
    """One artwork's Gram targets and the absolute loss weights to train towards it with."""

    grams: dict[str, Tensor]
    weights: LossWeights
    palette: Palette  # the artwork's RGB statistics at the size its Gram matrices were taken


class ContentCrops(Dataset):
    """Square random crops of content photos; item (step, slot) is deterministic given the seed.

    Images are resized so the shorter side equals `size`, then cropped and maybe flipped.
    Undecodable images are skipped deterministically (the next image is used).
    """

    def __init__(self, paths: Sequence[str | Path] | str | Path, size: int, seed: int) -> None:
        self.paths, self.size, self.seed = image_paths(paths), size, seed
        if not self.paths:
            raise InvalidInputError(f"no content images to train on in {paths!r}")

    def __len__(self) -> int:  # the sampler decides what is drawn
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        step, slot = key
        g = crop_generator(self.seed, step, slot)
        img = draw_decodable(lambda i: to_float(read_image(self.paths[i]).pixels), len(self.paths), g, "content")
        return random_crop(img, self.size, g)


def crop_generator(seed: int, step: int, slot: int) -> torch.Generator:
    """The generator of item (step, slot) of a crops dataset seeded with `seed`: what it draws is a
    pure function of the three."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + slot)


def draw_decodable(load: Callable[[int], Tensor], n: int, g: torch.Generator, what: str) -> Tensor:
    """One of `n` images drawn with `g`: `load(index)`, or, where that image cannot be decoded,
    the next index whose image can (deterministically)."""
    index = int(torch.randint(n, (1,), generator=g))
    for attempt in range(n):
        try:
            return load((index + attempt) % n)
        except ImageError:
            continue
    raise InvalidInputError(f"none of the {what} images could be decoded")


def image_paths(source: Sequence[str | Path] | str | Path) -> list[Path]:
    """A folder (searched recursively for images, sorted) or an explicit list of files."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        return (
            sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else [folder]
        )
    return [Path(p) for p in source]


def random_crop(img: Tensor, size: int, g: torch.Generator) -> Tensor:
    """[3, H, W] -> [3, size, size]: shorter side resized to `size`, random crop, random h-flip."""
    h, w = img.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", antialias=scale < 1, align_corners=False)[0]
    top = int(torch.randint(nh - size + 1, (1,), generator=g))
    left = int(torch.randint(nw - size + 1, (1,), generator=g))
    crop = img[:, top : top + size, left : left + size]
    return crop.flip(-1) if bool(torch.rand((), generator=g) < 0.5) else crop


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """DataLoader workers for `config.workers` on `device` (-1: auto, see TrainConfig)."""
    if config.workers >= 0:
        return config.workers
    return min(8, max(1, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def _batches(data: Dataset, config: TrainConfig, start: int, device: torch.device) -> Iterator[Tensor]:
    sampler = [[(step, slot) for slot in range(config.batch_size)] for step in range(start, config.steps)]
    workers = loader_workers(config, device)
    return iter(
        DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )
    )


def check_workdir(workdir: Path, settings: Mapping[str, Any], filename: str, what: str) -> None:
    """Record a family's own settings (JSON-able) next to the checkpoint in `workdir`; refuse
    (InvalidInputError) to resume a checkpoint made under other ones. The loop's own settings
    (`TrainConfig`) are checked by the checkpoint itself."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / filename
    mine = json.loads(json.dumps(settings, sort_keys=True))
    if (workdir / CHECKPOINT_FILE).is_file():
        saved = json.loads(path.read_text()) if path.is_file() else None
        if saved != mine:
            raise InvalidInputError(
                f"checkpoint in {workdir} was made with different {what} settings"
                f" ({saved} vs {mine}); use a fresh workdir"
            )
        return
    path.write_text(json.dumps(mine, sort_keys=True, indent=1))


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train_style(
    config: TrainConfig,
    content: Sequence[str | Path] | str | Path,
    artwork: Tensor,
    encoder: VGGEncoder,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    init_state: Mapping[str, Tensor] | None = None,
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train a `TransformerNet` to paint `content` photos (a folder or a list of files) like `artwork`.

    artwork: [3, H, W] float in [0, 1] (or uint8). workdir: checkpoints live here; an existing
    compatible checkpoint is resumed. init_state: warm-start weights (fine-tuning).
    loss_hook: for fault-injection tests only, maps (step, loss) -> loss before backward.
    """
    torch.manual_seed(config.seed)
    model = TransformerNet(config.channels, config.n_residual, output=config.output, palette=config.palette)
    if init_state is not None:
        model.load_state_dict(init_state)
    fit = _Fit(config, encoder, device)
    target = fit.style_target(artwork, content)
    if config.palette:  # the artwork's, also when fine-tuning a model made for another one
        model.set_palette(target.palette)
    return fit.run(
        model,
        list(model.parameters()),
        lambda step, batch: fit.objective(model(batch), batch, target),
        content,
        workdir,
        progress,
        loss_hook,
        [target],
        net_format=STYLE_NET_FORMAT,
    )


# The pretrained start's fine-tuning loss: the project's default. On Monet a vector fine-tune with it
# beat the prediction on every measure; style at relu2_2..relu4_3 with content at relu3_3 (the halo
# hypothesis: relu1_2 of the HED trunk, an edge detector), with or without a pull towards the
# prediction's output, did worse. Over four artworks it is closer in colour, further in style
# (docs/quality.md), so the recipe's default is no fine-tune.
MAGENTA_LOSS = LossWeights()


def magenta_recipe(**overrides: Any) -> TrainConfig:
    """The default recipe from the pretrained start (docs/quality.md): the artwork's predicted
    vector as it is (`finetune="none"`: it measured best beside the peer). With `finetune="vector"`:
    100 steps of 4 crops of 256 px at lr 1e-2 (a few minutes on a CPU), closer to the artwork's
    colours, further from its style by the independent embedding. `overrides` are TrainConfig
    fields (`loss` may be a mapping of LossWeights fields to change)."""
    loss = overrides.pop("loss", {})
    if isinstance(loss, Mapping):
        loss = replace(MAGENTA_LOSS, **loss)
    base: dict[str, Any] = {
        "init": "magenta",
        "finetune": "none",
        "steps": 100,
        "batch_size": 4,
        "image_size": 256,
        "style_size": 256,
        "lr": 1e-2,
        "warmup_steps": 0,
        "anchor_weight": 0.0,
        "checkpoint_every": 25,
    }
    return TrainConfig(**{**base, **overrides, "loss": loss})


def config_from(overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from partial `overrides` (a flow's or deployment's parameters): on the
    pretrained recipe's values when they ask for {"init": "magenta"}, else on TrainConfig's."""
    overrides = dict(overrides or {})
    base = magenta_recipe() if overrides.get("init") == "magenta" else TrainConfig()
    return TrainConfig.from_dict({**base.to_dict(), **overrides})


def train_magenta(
    config: TrainConfig,
    content: Sequence[str | Path] | str | Path,
    artworks: Sequence[Tensor],
    encoder: VGGEncoder,
    pretrained: MagentaTransformer,
    predictor: StylePredictor,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """A `MagentaStyleNet` for one artwork (per-style) or several (multi-style) from the pretrained
    start: `pretrained` with each artwork's vector from `predictor`, then `config.finetune` ("none":
    returned as it is, no step run; "vector": the style vectors only; "all": every weight) with the
    perceptual loss plus `config.anchor_weight` x the pixel MSE to the pretrained start's output.
    The batch of step s trains style s mod N, as `train_multistyle` does; resume is exact.
    artworks: [3, H, W] float in [0, 1] (or uint8)."""
    if not artworks:
        raise InvalidInputError("no artworks to train on")
    torch.manual_seed(config.seed)
    arts = [to_float(a) if a.dtype == torch.uint8 else a for a in artworks]
    with torch.no_grad():
        vectors = torch.cat([style_vector(predictor, a) for a in arts])
    model = MagentaStyleNet.from_pretrained(pretrained, vectors)
    fit = _Fit(config, encoder, device)
    targets = [fit.style_target(art, content) for art in arts]
    if config.finetune == "none":
        return TrainResult(
            state_dict={k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
            history=[],
            steps=0,
            resumed_from=0,
            rollbacks=0,
            seconds=0.0,
            model_config=model.config(),
            loss_weights=[t.weights for t in targets],
        )
    start = MagentaStyleNet.from_pretrained(pretrained, vectors).to(fit.dev).requires_grad_(False)
    if config.finetune == "vector":
        model.transformer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]

    def forward(step: int, batch: Tensor) -> LossTerms:
        style = step % len(targets)
        output = model(batch, style)
        terms = fit.objective(output, batch, targets[style])
        if not config.anchor_weight:
            return terms
        with torch.no_grad():
            reference = start(batch, style)
        anchor = config.anchor_weight * F.mse_loss(output.float(), reference.float())
        return LossTerms(terms.total + anchor, terms.content + anchor, terms.style, terms.tv)  # reported as content

    return fit.run(model, params, forward, content, workdir, progress, loss_hook, targets, net_format=STYLE_NET_FORMAT)


def train_multistyle(
    config: TrainConfig,
    content: Sequence[str | Path] | str | Path,
    artworks: Sequence[Tensor],
    encoder: VGGEncoder,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train one `MultiStyleTransformerNet` for all `artworks` (Dumoulin et al. 2017).

    The batch of step s trains style s mod N (deterministic, so resume stays exact); style
    targets are computed once per style.
    """
    if not artworks:
        raise InvalidInputError("no artworks to train on")
    torch.manual_seed(config.seed)
    model = MultiStyleTransformerNet(
        len(artworks), config.channels, config.n_residual, output=config.output, palette=config.palette
    )
    fit = _Fit(config, encoder, device)
    targets = [fit.style_target(art, content) for art in artworks]
    if config.palette:
        for index, target in enumerate(targets):
            model.set_palette(target.palette, index)

    def forward(step: int, batch: Tensor) -> LossTerms:
        style = step % len(targets)
        return fit.objective(model(batch, style), batch, targets[style])

    style_params = {id(p) for norm in model.norms() for p in (*norm.gammas, *norm.betas)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in style_params], "lr_mult": 1.0},
        {"params": [p for p in model.parameters() if id(p) in style_params], "lr_mult": config.style_lr_scale},
    ]
    return fit.run(model, groups, forward, content, workdir, progress, loss_hook, targets, net_format=STYLE_NET_FORMAT)


def add_style(
    config: TrainConfig,
    content: Sequence[str | Path] | str | Path,
    artwork: Tensor,
    encoder: VGGEncoder,
    base_state: Mapping[str, Tensor],
    n_styles: int,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    replace: int | None = None,
) -> TrainResult:
    """Append `artwork` as style `n_styles` of a trained multi-style network, training only the new
    style's scale and shift (every shared weight and the old styles' parameters stay bit-identical).
    `replace=i`: retrain style i's scale and shift for a changed artwork instead (starting from its
    current values); the other styles stay bit-identical."""
    model = MultiStyleTransformerNet(
        n_styles, config.channels, config.n_residual, output=config.output, palette=config.palette
    )
    model.load_state_dict(base_state)
    if replace is not None and not 0 <= replace < n_styles:
        raise InvalidInputError(f"replace must be a style index in [0, {n_styles}), got {replace}")
    new = model.add_style() if replace is None else replace
    params = model.freeze_all_but_style(new)
    fit = _Fit(config, encoder, device)
    target = fit.style_target(artwork, content)
    if config.palette:
        model.set_palette(target.palette, new)
    groups = [{"params": params, "lr_mult": config.style_lr_scale}]
    return fit.run(
        model,
        groups,
        lambda step, batch: fit.objective(model(batch, new), batch, target),
        content,
        workdir,
        progress,
        None,
        [target],
        net_format=STYLE_NET_FORMAT,
    )


class _OneVector(nn.Module):
    """A frozen transformer conditioned on one trainable style vector (add-style's fine-tune)."""

    def __init__(self, transformer: MagentaTransformer, vector: Tensor) -> None:
        super().__init__()
        self.transformer = transformer.requires_grad_(False)
        self.vector = nn.Parameter(vector.detach().clone().reshape(1, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.transformer(x, self.vector)

    def config(self) -> dict[str, int]:
        return {}


def add_magenta_style(
    config: TrainConfig,
    content: Sequence[str | Path] | str | Path,
    artwork: Tensor,
    encoder: VGGEncoder,
    base_state: Mapping[str, Tensor],
    n_styles: int,
    *,
    predictor: StylePredictor,
    workdir: Path,
    device: str | torch.device = "auto",
    progress: Callable[[StepLog], None] | None = None,
    replace: int | None = None,
) -> TrainResult:
    """Append `artwork` as style `n_styles` of a `MagentaStyleNet` (or `replace=i`: redo style i):
    its predicted vector, fine-tuned alone when `config.finetune` is not "none" (the transformer
    and every other style vector stay bit-identical; "all" is refused: it would change them)."""
    if config.finetune == "all":
        raise InvalidInputError("adding a style fine-tunes its vector only (finetune 'vector' or 'none'), not 'all'")
    if replace is not None and not 0 <= replace < n_styles:
        raise InvalidInputError(f"replace must be a style index in [0, {n_styles}), got {replace}")
    model = MagentaStyleNet(n_styles)
    model.load_state_dict(base_state)
    art = to_float(artwork) if artwork.dtype == torch.uint8 else artwork
    with torch.no_grad():
        vector = style_vector(predictor, art)[0]
    fit = _Fit(config, encoder, device)
    target = fit.style_target(art, content)
    result = None
    if config.finetune == "vector":
        torch.manual_seed(config.seed)
        one = _OneVector(copy.deepcopy(model.transformer), vector)
        result = fit.run(
            one,
            [one.vector],
            lambda step, batch: fit.objective(one(batch), batch, target),
            content,
            workdir,
            progress,
            None,
            [target],
            net_format=STYLE_NET_FORMAT,
        )
        vector = result.state_dict["vector"][0]
    index = model.add_style(vector) if replace is None else replace
    with torch.no_grad():
        model.styles[index] = vector
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if result is None:
        return TrainResult(state, [], 0, 0, 0, 0.0, model.config(), loss_weights=[target.weights])
    return TrainResult(
        state,
        result.history,
        result.steps,
        result.resumed_from,
        result.rollbacks,
        result.seconds,
        model.config(),
        result.rollback_log,
        result.loss_weights,
    )


@dataclass
class Critic:
    """The second player of an adversarial training (the discriminators), updated by `_Fit.run`
    right after the generator's step of each batch, with its own Adam (same learning rate,
    schedule and betas). `module` holds every discriminator and anything else that must be
    checkpointed with them (an `ImagePool`); `loss(step, batch)` is the step's discriminator loss,
    usually on the generated images the generator's `forward` kept (detached)."""

    module: nn.Module
    loss: Callable[[int, Tensor], Tensor]


class _Fit:
    """The loop shared by every feed-forward training: data, autocast, checkpoints, NaN rollback."""

    def __init__(self, config: TrainConfig, encoder: VGGEncoder | None, device: str | torch.device) -> None:
        """encoder: the perceptual loss's network; None for trainings that use no perceptual loss."""
        self.config, self.dev = config, resolve_device(device)
        self.amp = autocast_dtype(self.dev, config.precision)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self._loss = PerceptualLoss(encoder.to(self.dev), config.loss) if encoder is not None else None

    @property
    def loss(self) -> PerceptualLoss:
        if self._loss is None:
            raise InvalidInputError("this training has no loss network")
        return self._loss

    def style_target(self, artwork: Tensor, content: Sequence[str | Path] | str | Path) -> StyleTarget:
        """artwork [3, H, W] (uint8 or float in [0, 1]) -> Gram targets and absolute loss weights,
        computed once; a calibrated recipe (`config.loss.calibrate`) is measured on
        CALIBRATION_PHOTOS seeded crops of `content`."""
        art = resize_max_side(to_float(artwork) if artwork.dtype == torch.uint8 else artwork, self.config.style_size)[
            None
        ].to(self.dev)
        grams = self.loss.style_targets(art)
        palette = palette_of(art[0].float().cpu())
        if not self.config.loss.calibrate:
            return StyleTarget(grams, self.config.loss, palette)
        crops = ContentCrops(content, self.config.image_size, self.config.seed + 7919)
        photos = torch.stack([crops[(0, slot)] for slot in range(CALIBRATION_PHOTOS)]).to(self.dev)
        weights = calibrate(self.config.loss, measure_calibration(self.loss.encoder, self.config.loss, photos, art))
        return StyleTarget(grams, weights, palette)

    def objective(self, output: Tensor, content: Tensor, target: StyleTarget) -> LossTerms:
        """The training objective of `output` for photos `content` towards `target`."""
        fmt = self.memory_format  # the loss network's
        return self.loss(
            output.contiguous(memory_format=fmt),
            content.contiguous(memory_format=fmt),
            target.grams,
            weights=target.weights,
        )

    def run(
        self,
        model: nn.Module,
        params: list[nn.Parameter] | list[dict[str, Any]],
        forward: Callable[[int, Tensor], LossTerms],
        content: Sequence[str | Path] | str | Path,
        workdir: Path,
        progress: Callable[[StepLog], None] | None,
        loss_hook: Callable[[int, Tensor], Tensor] | None,
        targets: Sequence[StyleTarget] = (),
        data: Dataset | None = None,
        critic: Critic | None = None,
        net_format: torch.memory_format | None = None,
    ) -> TrainResult:
        """Train `model` on batches of `data` (default: `ContentCrops` of `content`), whose item
        (step, slot) must be a pure function of the seed, step and slot (so resume stays exact);
        `forward(step, batch)` gives the step's loss terms. With a `critic`, each step then updates
        it on `critic.loss(step, batch)` (its parameters take no gradient from the generator's loss);
        it is checkpointed, rolled back and resumed with the model. `net_format`: the memory format of
        `model` and its batches (default: channels_last where the config asks for it)."""
        config, dev = self.config, self.dev
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt_path = workdir / CHECKPOINT_FILE
        net_format = net_format or self.memory_format
        model.to(dev, memory_format=net_format)
        opt = torch.optim.Adam(params, lr=config.lr, betas=config.adam_betas)
        set_lr(opt, config, 1.0)
        players = _Players(model, opt)
        if critic is not None:
            critic.module.to(dev, memory_format=self.memory_format)
            players.critic = critic.module
            players.critic_opt = torch.optim.Adam(critic.module.parameters(), lr=config.lr, betas=config.adam_betas)
            set_lr(players.critic_opt, config, 1.0)
        scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)

        state = {"step": 0, "lr_scale": 1.0, "rollbacks": 0, "history": [], "rollback_log": []}
        if ckpt_path.is_file():
            state = _load_checkpoint(ckpt_path, config, players)
        else:
            _save_checkpoint(ckpt_path, _checkpoint(config, players, state))
        resumed_from = state["step"]

        data = ContentCrops(content, config.image_size, config.seed) if data is None else data
        started, step = time.perf_counter(), state["step"]
        tick, tick_step = started, step
        batches = _batches(data, config, step, dev)
        watch = FiniteWatch(dev, step)
        model.train()
        if critic is not None:
            critic.module.train()
        while step < config.steps:
            batch = next(batches).to(dev, non_blocking=True).contiguous(memory_format=net_format)
            if critic is not None:
                critic.module.requires_grad_(False)
            with autocast(dev, self.amp):
                terms = forward(step, batch)
            loss = loss_hook(step, terms.total) if loss_hook else terms.total
            watch.note("loss", torch.isfinite(loss.detach()))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            # fp16: the GradScaler skips steps with inf/NaN gradients itself (and lowers its scale).
            if not scaler.is_enabled():
                watch.note("gradient", grads_finite(model))
            critic_loss = None
            if critic is not None:
                set_lr(opt, config, state["lr_scale"], step)
                scaler.step(opt)
                critic.module.requires_grad_(True)
                with autocast(dev, self.amp):
                    critic_loss = critic.loss(step, batch)
                watch.note("critic loss", torch.isfinite(critic_loss.detach()))
                players.critic_opt.zero_grad(set_to_none=True)
                scaler.scale(critic_loss).backward()
                if not scaler.is_enabled():
                    watch.note("critic gradient", grads_finite(critic.module))
                set_lr(players.critic_opt, config, state["lr_scale"], step)
                scaler.step(players.critic_opt)
            else:
                set_lr(opt, config, state["lr_scale"], step)
                scaler.step(opt)
            scaler.update()
            step += 1
            watch.advance()
            logged = step % config.log_every == 0 or step == config.steps
            saved = step % config.checkpoint_every == 0 or step == config.steps
            if not (logged or saved):
                continue
            bad = watch.first_bad()  # the one host sync, where the log or checkpoint syncs anyway
            if bad is not None:
                state = _rollback(ckpt_path, config, players, state, *bad)
                step = state["step"]
                batches = _batches(data, config, step, dev)
                watch = FiniteWatch(dev, step)
                continue
            if logged:
                now = time.perf_counter()
                log = StepLog(
                    step,
                    config.steps,
                    **terms.as_floats(),
                    lr=opt.param_groups[0]["lr"],
                    images_per_s=(step - tick_step) * config.batch_size / max(now - tick, 1e-9),
                    critic=float(critic_loss.detach()) if critic_loss is not None else 0.0,
                )
                state["history"].append({k: v for k, v in asdict(log).items() if k not in ("steps",)})
                tick, tick_step = now, step
                if progress:
                    progress(log)
            if saved:
                state["step"] = step
                _save_checkpoint(ckpt_path, _checkpoint(config, players, state))

        model.eval()
        return TrainResult(
            state_dict={k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
            history=state["history"],
            steps=step,
            resumed_from=resumed_from,
            rollbacks=state["rollbacks"],
            seconds=time.perf_counter() - started,
            model_config=model.config(),
            rollback_log=list(state["rollback_log"]),
            loss_weights=[t.weights for t in targets],
        )


@dataclass
class _Players:
    """What a checkpoint holds besides the loop state: the model and its optimizer, and the
    critic and its optimizer where the training is adversarial."""

    model: nn.Module
    opt: torch.optim.Optimizer
    critic: nn.Module | None = None
    critic_opt: torch.optim.Optimizer | None = None

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt, self.critic_opt) if o is not None]


def _checkpoint(config: TrainConfig, players: _Players, state: Mapping[str, Any]) -> dict[str, Any]:
    ckpt = {
        "config": config.to_dict(),
        "model": players.model.state_dict(),
        "optimizer": players.opt.state_dict(),
        **state,
    }
    if players.critic is not None and players.critic_opt is not None:
        ckpt["critic"], ckpt["critic_optimizer"] = players.critic.state_dict(), players.critic_opt.state_dict()
    return ckpt


def _load_checkpoint(path: Path, config: TrainConfig, players: _Players) -> dict[str, Any]:
    """Restore model and optimizer (and the critic's); returns the loop state (step, lr_scale,
    rollbacks, history)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = TrainConfig.from_dict(ckpt["config"])
    if not config.resumable_from(saved):
        raise InvalidInputError(f"checkpoint {path} was made with a different configuration; use a fresh workdir")
    if (players.critic is None) != ("critic" not in ckpt):
        raise InvalidInputError(f"checkpoint {path} was made for another kind of training; use a fresh workdir")
    players.model.load_state_dict(ckpt["model"])
    players.opt.load_state_dict(ckpt["optimizer"])
    if players.critic is not None and players.critic_opt is not None:
        players.critic.load_state_dict(ckpt["critic"])
        players.critic_opt.load_state_dict(ckpt["critic_optimizer"])
    for opt in players.optimizers():
        set_lr(opt, config, ckpt["lr_scale"])
    state = {k: ckpt[k] for k in ("step", "lr_scale", "rollbacks", "history")}
    state["rollback_log"] = list(ckpt.get("rollback_log", []))  # absent from checkpoints of older versions
    return state


def set_lr(opt: torch.optim.Optimizer, config: TrainConfig, scale: float, step: int | None = None) -> None:
    """Every group's lr = config.lr x its "lr_mult" (1 when absent) x the rollback scale x the
    warm-up factor of `step` (min(1, (step + 1) / warmup_steps)) x the decay factor of `step`
    (1 before the last `decay_steps` steps, then linearly towards 0); 1 when step is None."""
    warm = 1.0 if step is None or config.warmup_steps <= 0 else min(1.0, (step + 1) / config.warmup_steps)
    if step is not None and config.decay_steps:  # the reference's linear decay: 1 - k / (decay + 1)
        warm *= 1.0 - max(0, step + 1 - (config.steps - config.decay_steps)) / (config.decay_steps + 1)
    for group in opt.param_groups:
        group["lr"] = config.lr * group.get("lr_mult", 1.0) * scale * warm


def grads_finite(model: nn.Module) -> Tensor:
    """Whether every gradient of `model` is finite: a bool scalar on the gradients' device, from one
    fused norm per device (`torch._foreach_norm`), without a host sync."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.stack(torch._foreach_norm(grads, ord=float("inf")))).all()


class FiniteWatch:
    """The first step at which something was not finite, kept on the device so that noting it costs
    no host sync; `first_bad()` reads it (one sync). Causes are the names given to `note`."""

    def __init__(self, device: torch.device, step: int) -> None:
        self._device, self._causes = device, list[str]()
        self._step = torch.full((), step, dtype=torch.int64, device=device)  # the step being run
        self._bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self._bad_cause = torch.full((), -1, dtype=torch.int64, device=device)

    def note(self, cause: str, finite: Tensor) -> None:
        """Record `cause` at the current step unless `finite` (a bool scalar) or a cause came earlier."""
        if cause not in self._causes:
            self._causes.append(cause)
        first = (self._bad_step < 0) & ~finite.to(self._device)
        self._bad_step = torch.where(first, self._step, self._bad_step)
        self._bad_cause = torch.where(first, self._causes.index(cause), self._bad_cause)

    def advance(self) -> None:
        """The next step begins."""
        self._step += 1

    def first_bad(self) -> tuple[int, str] | None:
        """(step, cause) of the first non-finite value noted, or None (reads the device: one sync)."""
        step, cause = torch.stack([self._bad_step, self._bad_cause]).tolist()
        return None if step < 0 else (step, self._causes[cause])


def _rollback(
    path: Path,
    config: TrainConfig,
    players: _Players,
    state: dict[str, Any],
    step: int,
    cause: str = "loss",
) -> dict[str, Any]:
    """Non-finite loss or gradient at `step`: restore the last checkpoint and halve the learning rate."""
    rollbacks = state["rollbacks"] + 1
    if rollbacks > config.max_rollbacks:
        raise TrainingDivergedError(f"{cause} is not finite at step {step} after {config.max_rollbacks} rollbacks")
    restored = _load_checkpoint(path, config, players)
    restored["rollbacks"], restored["lr_scale"] = rollbacks, restored["lr_scale"] * 0.5
    restored["rollback_log"] = [
        *state["rollback_log"],
        {"step": step, "restored_step": restored["step"], "lr_scale": restored["lr_scale"], "cause": cause},
    ]
    for opt in players.optimizers():
        set_lr(opt, config, restored["lr_scale"])
    _save_checkpoint(path, _checkpoint(config, players, restored))
    _log.warning(
        "%s not finite at step %d: rolled back to the checkpoint at step %d, "
        "learning rate x%g (rollback %d of at most %d)",
        cause,
        step,
        restored["step"],
        restored["lr_scale"],
        rollbacks,
        config.max_rollbacks,
    )
    return restored
