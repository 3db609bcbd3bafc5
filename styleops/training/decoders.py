"""Training the decoders of the arbitrary-style methods (no model per style).

- `train_adain`: the AdaIN decoder (Huang & Belongie 2017). Per step, a batch of content crops and
  one of artwork crops; t = AdaIN(phi(c), phi(s)) at the decoder's layer (relu4_1); minimize
  content_weight * |phi(g(t)) - t|^2 + style_weight * sum_l w_l (|mu(phi_l(g(t))) - mu(phi_l(s))|^2
  + |sigma(phi_l(g(t))) - sigma(phi_l(s))|^2) + tv_weight * TV(g(t)).
- `train_inverse`: the style-swap inverse network (Chen & Schmidt 2016). H is drawn in turn from
  content features, artwork features and style-swapped features at the decoder's layer (relu3_1);
  minimize content_weight * |phi(f(H)) - H|^2 + tv_weight * TV(f(H)), plus, on the steps where H
  comes from a real image x, pixel_weight * |f(H) - x|^2: the HED-tuned VGG16 trunk keeps little
  colour at relu3_1, and the feature loss alone decoded dark, colourless edge maps (measured:
  docs/architecture.md).

Both reuse the feed-forward engine (`styleops.training.engine`): seeded and exactly resumable (the artwork
crops of step s are a pure function of (seed, s) too), autocast, atomic checkpoints, NaN rollback.
`config.loss.content_layers` names the decoder's layer (exactly one); `style_layers` the AdaIN
mean/std loss layers. Defaults: `adain_config()` and `inverse_config()`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from styleops.errors import InvalidInputError
from styleops.losses.perceptual import LossTerms, LossWeights, content_loss, total_variation
from styleops.models.decoder import VGGDecoder
from styleops.models.vgg import VGGEncoder
from styleops.ops import adain, build_patch_bank, mean_std, style_swap
from styleops.training.engine import ContentCrops, StepLog, TrainConfig, TrainResult, _Fit

Paths = Sequence[str | Path] | str | Path

# Caffe-scale HED trunk: between photo and artwork crops the mean/std distances measured 1107,
# 1872, 395 and 56 at relu1_1 ... relu4_1; these weights bring the four layers to the same order
# (docs/architecture.md).
ADAIN_LOSS = LossWeights(
    content_layers={"relu4_1": 1.0},
    style_layers={"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 3.0, "relu4_1": 20.0},
    content_weight=1.0,
    style_weight=1.0,
    tv_weight=0.0,
    pixel_weight=5e3,
)
# The paper's loss on AdaIN's normalised VGG19 (features of order 1): content at relu4_1, the four
# style layers alike, style weight 10; no identity steps.
ADAIN_LOSS_VGG19 = replace(
    ADAIN_LOSS,
    style_layers=dict.fromkeys(("relu1_1", "relu2_1", "relu3_1", "relu4_1"), 1.0),
    style_weight=10.0,
    pixel_weight=0.0,
)
IDENTITY_EVERY = 4  # AdaIN decoder: every 4th step reconstructs the photo (see train_adain)
INVERSE_LOSS = LossWeights(
    content_layers={"relu3_1": 1.0},
    style_layers={},
    content_weight=1.0,
    style_weight=0.0,
    tv_weight=10.0,
    pixel_weight=5e3,
)


# TrainConfig's TransformerNet fields do not apply to a decoder; recorded as the plain values.
_NOT_A_TRANSFORMER = {"output": "direct", "palette": False}


def adain_config(encoder: str = "vgg16", **overrides: Any) -> TrainConfig:
    """TrainConfig for the AdaIN decoder: Huang & Belongie's Adam lr 1e-4, batch 8, 256 px crops;
    the loss weights of `encoder` (vgg16: the HED trunk's scale; vgg19: the paper's)."""
    return TrainConfig(
        **{
            "loss": ADAIN_LOSS_VGG19 if encoder == "vgg19" else ADAIN_LOSS,
            "lr": 1e-4,
            "steps": 20_000,
            "batch_size": 8,
            "image_size": 256,
            **_NOT_A_TRANSFORMER,
            **overrides,
        }
    )


def inverse_config(**overrides: Any) -> TrainConfig:
    """TrainConfig for the style-swap inverse network (Chen & Schmidt: Adam, lr 1e-3, TV term)."""
    return TrainConfig(
        **{
            "loss": INVERSE_LOSS,
            "lr": 1e-3,
            "steps": 5_000,
            "batch_size": 4,
            "image_size": 256,
            **_NOT_A_TRANSFORMER,
            **overrides,
        }
    )


def decoder_layer(config: TrainConfig) -> str:
    """The one layer a decoder inverts: `config.loss.content_layers`' only key."""
    layers = list(config.loss.content_layers)
    if len(layers) != 1:
        raise InvalidInputError(f"a decoder inverts exactly one layer; config.loss.content_layers has {layers}")
    return layers[0]


def _setup(
    config: TrainConfig,
    encoder: VGGEncoder,
    device: str | torch.device,
    artworks: Paths,
    init_state: Mapping[str, Tensor] | None,
) -> tuple[str, VGGDecoder, _Fit, ContentCrops]:
    """(decoder layer, seeded decoder (maybe warm-started), the engine's loop, artwork crops)."""
    layer = decoder_layer(config)
    torch.manual_seed(config.seed)
    model = VGGDecoder(layer, encoder.arch)
    if init_state is not None:
        model.load_state_dict(init_state)
    return layer, model, _Fit(config, encoder, device), ContentCrops(artworks, config.image_size, config.seed + 1)


def _artwork_batch(crops: ContentCrops, step: int, n: int) -> Tensor:
    """The artwork crops of step `step`: [n, 3, size, size], a pure function of (seed, step)."""
    return torch.stack([crops[(step, slot)] for slot in range(n)])


def train_adain(
    config: TrainConfig,
    content: Paths,
    artworks: Paths,
    encoder: VGGEncoder,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    init_state: Mapping[str, Tensor] | None = None,
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train a `VGGDecoder` from the decoder layer (default relu4_1) for AdaIN on any artwork.

    content, artworks: folders or lists of image files. The encoder must expose the decoder
    layer and every style layer. init_state: warm-start weights. With `loss.pixel_weight`, every
    IDENTITY_EVERY-th step uses the photo as its own style (AdaIN is then the identity) and adds
    pixel_weight * |g(phi(c)) - c|^2: it teaches the decoder to invert relu4_1, colours included.
    """
    layer, model, fit, styles = _setup(config, encoder, device, artworks, init_state)
    enc, w = fit.loss.encoder, config.loss

    def forward(step: int, batch: Tensor) -> LossTerms:
        identity = (
            bool(w.pixel_weight) and step % IDENTITY_EVERY == 0
        )  # style = the photo itself: AdaIN is the identity
        art = (
            batch
            if identity
            else _artwork_batch(styles, step, batch.shape[0]).to(fit.dev).contiguous(memory_format=fit.memory_format)
        )
        with torch.no_grad():
            fc, fs = enc(batch)[layer], enc(art)
            target = adain(fc, fs[layer])
        out = model(target)
        fo = enc(out)
        c = content_loss(fo[layer], target)
        if identity:
            c = c + w.pixel_weight / w.content_weight * F.mse_loss(out.float(), batch.float())
        s = out.new_zeros((), dtype=torch.float32)
        for name, lw in w.style_layers.items():
            (mo, so), (ms, ss) = mean_std(fo[name]), mean_std(fs[name])
            s = s + lw * (F.mse_loss(mo, ms) + F.mse_loss(so, ss))
        tv = total_variation(out.float())
        terms = (w.content_weight * c, w.style_weight * s, w.tv_weight * tv)
        return LossTerms(sum(terms), *terms)  # type: ignore[arg-type]

    return fit.run(model, list(model.parameters()), forward, content, workdir, progress, loss_hook)


def train_inverse(
    config: TrainConfig,
    content: Paths,
    artworks: Paths,
    encoder: VGGEncoder,
    *,
    workdir: Path,
    device: str | torch.device = "auto",
    patch_size: int = 3,
    init_state: Mapping[str, Tensor] | None = None,
    progress: Callable[[StepLog], None] | None = None,
    loss_hook: Callable[[int, Tensor], Tensor] | None = None,
) -> TrainResult:
    """Train the style-swap inverse network: a `VGGDecoder` from the decoder layer (default relu3_1).

    Step s decodes content features (s % 3 == 0), artwork features (1) or content features
    style-swapped with a bank of that step's artwork crops (2), as in Chen & Schmidt 2016.
    """
    layer, model, fit, styles = _setup(config, encoder, device, artworks, init_state)
    enc, w = fit.loss.encoder, config.loss

    def forward(step: int, batch: Tensor) -> LossTerms:
        with torch.no_grad():
            kind, source = step % 3, None
            if kind == 0:
                h, source = enc(batch)[layer], batch
            else:
                art = (
                    _artwork_batch(styles, step, batch.shape[0]).to(fit.dev).contiguous(memory_format=fit.memory_format)
                )
                fs = enc(art)[layer]
                h, source = (
                    (fs, art)
                    if kind == 1
                    else (style_swap(enc(batch)[layer], build_patch_bank(list(fs.float().split(1)), patch_size)), None)
                )
        out = model(h)
        c = w.content_weight * content_loss(enc(out)[layer], h)
        if source is not None and w.pixel_weight:
            c = c + w.pixel_weight * F.mse_loss(out.float(), source.float())  # reported with the content term
        tv = w.tv_weight * total_variation(out.float())
        return LossTerms(c + tv, c, out.new_zeros((), dtype=torch.float32), tv)

    return fit.run(model, list(model.parameters()), forward, content, workdir, progress, loss_hook)
