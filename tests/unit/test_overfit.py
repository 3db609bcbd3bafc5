"""Johnson's criterion in miniature: a per-style net with the default recipe (logit-residual output
from the palette start), trained on one small photo, must reach a stated fraction of Gatys@100's
value of the same objective on that photo, measured on its delivered output (what `stylize`
writes), and keep the photo's structure. Johnson's direct output stalled at 6.6x on the same kind
of run (docs/quality.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from styleops.evaluation.appearance import structure
from styleops.inference.gatys import GatysConfig, gatys
from styleops.io.images import read_image, resize_max_side, to_float
from styleops.losses.perceptual import PerceptualLoss
from styleops.models.transformer import TransformerNet
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import TrainConfig, train_style

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIDE = 48


def test_overfit_one_photo(tmp_path: Path, encoder: VGGEncoder) -> None:
    photo_path = tmp_path / "photo.png"
    photo = resize_max_side(to_float(read_image(EXAMPLES / "catalog" / "kodim23.jpg").pixels), SIDE)
    from styleops.io.images import encode_image

    photo_path.write_bytes(encode_image(photo, "png"))
    photo = to_float(read_image(photo_path).pixels)  # exactly what the crops see
    art = to_float(read_image(EXAMPLES / "artwork" / "monet" / "monet.jpg").pixels)
    cfg = TrainConfig(
        steps=STEPS,
        batch_size=1,
        image_size=min(photo.shape[-2:]),
        style_size=128,
        channels=16,
        seed=0,
        checkpoint_every=10_000,
        log_every=50,
    )
    result = train_style(cfg, [photo_path], art, encoder, workdir=tmp_path / "w", device="cpu")
    net = TransformerNet(**result.model_config)
    net.load_state_dict(result.state_dict)
    loss = PerceptualLoss(encoder, result.loss_weights[0])
    grams = loss.style_targets(resize_max_side(art, cfg.style_size)[None])
    crop = photo[:, : cfg.image_size, : cfg.image_size]
    with torch.no_grad():
        delivered = net.eval()(crop[None]).clamp(0, 1)
        net_objective = float(loss(delivered, crop[None], grams).total)
    reference, _ = gatys(
        crop, art, encoder, GatysConfig(iterations=100, style_size=cfg.style_size, loss=result.loss_weights[0])
    )
    with torch.no_grad():
        gatys_objective = float(loss(reference[None], crop[None], grams).total)
        photo_objective = float(loss(crop[None], crop[None], grams).total)
    assert net_objective < RATIO * gatys_objective, (net_objective, gatys_objective, photo_objective)
    assert net_objective < 0.5 * photo_objective
    assert structure(delivered[0], crop) > 0.6


STEPS, RATIO = 200, 2.0  # set on the photo start (1.58x Gatys@100, structure 0.84); the palette start passes them too
