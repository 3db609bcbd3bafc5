"""Training under faults: NaN mid-training (in the loss and in the gradients) and kill -9.

- The engine (`styleops.training.engine`): a NaN loss at step k rolls back to the last checkpoint, halves the
  learning rate, logs it and records it, and the run finishes with finite weights; a NaN *gradient*
  under a finite loss (it used to be stepped into the weights and saved in the next checkpoint, so
  every rollback restored NaN weights until the run died as "diverged") is caught the same way.
- The task (`tasks.training.train_per_style_task`, on the real embedded store): the rollback reaches
  the model card and the run log; a training process killed with SIGKILL after a checkpoint resumes
  from it when the task is rerun and registers weights bit-identical to an uninterrupted run's (the
  batch of step s is a pure function of (seed, s)). Bit-identical weights now also mean a
  bit-identical file: safetensors wrote its header metadata in a random order (found here: the
  same weights registered with two different sha256s in about half the runs).

Small on purpose: 64 px crops, 8 channels, two VGG layers, 8 steps, one torch thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from infra.settings import get_settings
from runs import context
from styleops.io.images import read_image, to_float
from styleops.io.weights import load_encoder
from styleops.models.vgg import VGGEncoder
from styleops.training.engine import CHECKPOINT_FILE, TrainConfig, TrainingDivergedError, train_style
from tasks.training import train_per_style_task
from tests.conftest import one_torch_thread
from tests.flows.conftest import CATALOG_PREFIX, EXAMPLES, PipelineEnv, pipeline_env, vgg_weights_file  # noqa: F401
from tests.training_configs import SHALLOW_STYLE, small_train

REPO = Path(__file__).resolve().parents[2]
CFG = small_train(seed=7, loss=SHALLOW_STYLE)  # rollback halving seen in the lr alone
STYLE, ARTWORK = "kandinsky", "artwork/kandinsky/kandinsky.jpg"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Bit-exact comparisons across processes need the same reductions: one intra-op thread everywhere."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def encoder(vgg_weights_file: Path) -> VGGEncoder:
    return load_encoder(vgg_weights_file, list(SHALLOW_STYLE.layers))


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three catalog photos shrunk to 96 px (decoding full-size photos would dominate the steps)."""
    out = tmp_path_factory.mktemp("small-photos")
    paths = []
    for src in sorted((EXAMPLES / "catalog").glob("*.jpg"))[:3]:
        with Image.open(src) as image:
            image.convert("RGB").resize((96, 64)).save(out / src.name, quality=95)
        paths.append(out / src.name)
    return paths


@pytest.fixture(scope="module")
def artwork() -> torch.Tensor:
    return to_float(read_image(EXAMPLES / "artwork" / "kandinsky" / "kandinsky.jpg").pixels)


class _NaNGradient(torch.autograd.Function):
    """Identity forward (the loss stays finite), NaN backward: every parameter's gradient is NaN."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


def _once_at(
    step: int, poison: Callable[[torch.Tensor], torch.Tensor], seen: list[int]
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A loss hook recording every step it is called at, poisoning the loss the first time at `step`."""

    def hook(s: int, loss: torch.Tensor) -> torch.Tensor:
        seen.append(s)
        return poison(loss) if s == step and seen.count(step) == 1 else loss

    return hook


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


# ---- 1. the engine -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cause", "poison", "at", "restored"),
    [
        ("loss", lambda loss: loss * float("nan"), 5, 4),  # NaN loss at step 5: back to the checkpoint at 4
        ("gradient", _NaNGradient.apply, 3, 2),  # finite loss, NaN gradients at step 3: back to 2
    ],
    ids=["nan-loss", "nan-gradient"],
)
def test_nan_mid_training_rolls_back_to_the_last_checkpoint_and_finishes(
    cause: str,
    poison: Callable[[torch.Tensor], torch.Tensor],
    at: int,
    restored: int,
    tmp_path: Path,
    encoder: VGGEncoder,
    small_photos: list[Path],
    artwork: torch.Tensor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="styleops.training.engine"):
        result = train_style(
            CFG, small_photos, artwork, encoder, workdir=tmp_path, device="cpu", loss_hook=_once_at(at, poison, seen)
        )

    # Steps restored..at are done twice: once before the NaN, once after the rollback.
    assert seen == [*range(at + 1), *range(restored, CFG.steps)]
    assert (result.steps, result.rollbacks, result.resumed_from) == (CFG.steps, 1, 0)
    assert _finite(result.state_dict)
    assert result.rollback_log == [{"step": at, "restored_step": restored, "lr_scale": 0.5, "cause": cause}]
    # One history entry per step (the lost ones were dropped with the rollback), the rest at half the rate.
    assert [h["step"] for h in result.history] == list(range(1, CFG.steps + 1))
    assert [h["lr"] for h in result.history] == [CFG.lr] * restored + [CFG.lr / 2] * (CFG.steps - restored)
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in result.history)
    # Logged once, saying what happened; and the final checkpoint records it too.
    messages = [r.getMessage() for r in caplog.records if r.name == "styleops.training.engine"]
    assert messages == [
        f"{cause} not finite at step {at}: rolled back to the checkpoint at step {restored}, "
        "learning rate x0.5 (rollback 1 of at most 3)"
    ]
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert (saved["step"], saved["rollbacks"], saved["lr_scale"]) == (CFG.steps, 1, 0.5)
    assert saved["rollback_log"] == result.rollback_log
    assert _finite(saved["model"])


@pytest.mark.parametrize(
    ("cause", "poison"),
    [("loss", lambda loss: loss * float("nan")), ("gradient", _NaNGradient.apply)],
    ids=["loss", "gradient"],
)
def test_a_nan_read_at_the_next_log_step_rolls_back_like_a_check_after_every_step(
    cause: str,
    poison: Callable[[torch.Tensor], torch.Tensor],
    tmp_path: Path,
    encoder: VGGEncoder,
    small_photos: list[Path],
    artwork: torch.Tensor,
) -> None:
    """Finiteness is noted on the device and read at log and checkpoint steps only (no host sync per
    step on a GPU). A NaN at step 5, read at step 8, still rolls back to the checkpoint at 4 and names
    step 5; the steps in between are wasted, and the end is bit-identical to a check after every step."""
    every = TrainConfig.from_dict({**CFG.to_dict(), "steps": 12, "checkpoint_every": 4})
    sparse = TrainConfig.from_dict({**every.to_dict(), "log_every": 4})
    seen_every: list[int] = []
    seen_sparse: list[int] = []
    checked = train_style(
        every, small_photos, artwork, encoder, workdir=tmp_path / "a", device="cpu",
        loss_hook=_once_at(5, poison, seen_every),
    )  # fmt: skip
    deferred = train_style(
        sparse, small_photos, artwork, encoder, workdir=tmp_path / "b", device="cpu",
        loss_hook=_once_at(5, poison, seen_sparse),
    )  # fmt: skip
    assert seen_every == [*range(6), *range(4, 12)]
    assert seen_sparse == [*range(8), *range(4, 12)]  # steps 6 and 7 ran on poisoned weights, then were undone
    expected_log = [{"step": 5, "restored_step": 4, "lr_scale": 0.5, "cause": cause}]
    assert checked.rollback_log == deferred.rollback_log == expected_log
    assert [h["step"] for h in deferred.history] == [4, 8, 12]
    assert [h["total"] for h in deferred.history] == [h["total"] for h in checked.history if h["step"] % 4 == 0]
    for name, value in checked.state_dict.items():
        assert torch.equal(value, deferred.state_dict[name]), name


def test_nan_gradients_every_step_end_as_diverged_not_as_nan_weights(
    tmp_path: Path, encoder: VGGEncoder, small_photos: list[Path], artwork: torch.Tensor
) -> None:
    cfg = TrainConfig.from_dict({**CFG.to_dict(), "max_rollbacks": 2})
    seen: list[int] = []

    def always(step: int, loss: torch.Tensor) -> torch.Tensor:
        seen.append(step)
        return _NaNGradient.apply(loss)

    with pytest.raises(TrainingDivergedError, match=r"^gradient is not finite at step 0 after 2 rollbacks$"):
        train_style(cfg, small_photos, artwork, encoder, workdir=tmp_path, device="cpu", loss_hook=always)
    assert seen == [0, 0, 0]
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["step"] == 0 and _finite(saved["model"])  # the checkpoint never took the NaN


# ---- 2. the task: the rollback in the card and the log -------------------------------------------
def _train_task(config: dict[str, Any] = CFG.to_dict()) -> dict[str, Any]:
    return train_per_style_task.fn(STYLE, ARTWORK, CATALOG_PREFIX, config)


@pytest.mark.integration
def test_task_records_the_rollback_in_the_card_and_the_log(
    pipeline_env: PipelineEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tasks.training as training

    seen: list[int] = []

    def with_nan(*args: Any, **kw: Any) -> Any:
        return train_style(*args, **kw, loss_hook=_once_at(5, lambda loss: loss * float("nan"), seen))

    monkeypatch.setattr(training, "train_style", with_nan)
    with caplog.at_level(logging.WARNING):
        trained = _train_task()
    assert trained["version"] == "v0001"
    card = context.registry().card("per-style", STYLE, "v0001")
    assert (card["metrics"]["steps"], card["metrics"]["rollbacks"], card["metrics"]["resumed_from"]) == (8, 1, 0)
    assert card["rollback_log"] == [{"step": 5, "restored_step": 4, "lr_scale": 0.5, "cause": "loss"}]
    assert [h["step"] for h in card["loss_curve"]] == list(range(1, 9))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "training rolled back: loss not finite at step 5, resumed from the checkpoint at step 4 with learning rate x0.5"
        in warnings
    )
    weights = context.registry().weights_bytes("per-style", STYLE, "v0001")
    from styleops.io.safetensors_file import load_state_dict

    assert _finite(load_state_dict(weights))


# ---- 3. kill -9 after a checkpoint, then rerun --------------------------------------------------
CHILD = """
import json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import tasks.training as training
from styleops.training.engine import train_style

pause_at, marker = int(os.environ.get("PAUSE_AT", "-1")), Path(os.environ.get("MARKER", "/nonexistent"))

def paused(*args, progress=None, **kw):
    def on_step(log):
        progress(log)
        if log.step == pause_at:  # the checkpoint of the step before is on disk; this step's is not
            marker.write_text(str(log.step))
            time.sleep(600)  # killed here
    return train_style(*args, progress=on_step, **kw)

training.train_style = paused
result = training.train_per_style_task.fn(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
print("RESULT " + json.dumps(result))
"""


@pytest.mark.integration
def test_training_killed_after_a_checkpoint_resumes_and_matches_an_uninterrupted_run(
    pipeline_env: PipelineEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, marker = tmp_path / "child.py", tmp_path / "paused-at"
    script.write_text(CHILD)
    env = {**os.environ, "PAUSE_AT": "5", "MARKER": str(marker), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(script), STYLE, ARTWORK, CATALOG_PREFIX, json.dumps(CFG.to_dict())],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[0].decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the child never reached step 5"
            time.sleep(0.05)
        (checkpoint,) = (pipeline_env.home / "work" / "train" / STYLE).glob(f"*/{CHECKPOINT_FILE}")
        assert torch.load(checkpoint, weights_only=True)["step"] == 4
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert context.registry().versions("per-style", STYLE) == []  # the killed run registered nothing

    # Rerun here (same task, same arguments: same work dir), then an uninterrupted run in a fresh home.
    # Equal weights must mean equal files: safetensors used to write its header metadata in a
    # random order, so about half of all saves of the same weights had another sha256.
    resumed = _train_task()
    assert resumed["version"] == "v0001"
    assert (resumed["metrics"]["resumed_from"], resumed["metrics"]["steps"], resumed["metrics"]["rollbacks"]) == (
        4,
        8,
        0,
    )
    monkeypatch.setenv("STYLEOPS_HOME", str(tmp_path / "fresh-home"))  # no checkpoint: from scratch
    get_settings.cache_clear()
    straight = _train_task()
    assert straight["version"] == "v0002" and straight["metrics"]["resumed_from"] == 0

    reg = context.registry()
    one, two = reg.weights_bytes("per-style", STYLE, "v0001"), reg.weights_bytes("per-style", STYLE, "v0002")
    assert hashlib.sha256(one).hexdigest() == resumed["sha256"]
    assert resumed["sha256"] == straight["sha256"]  # bit-identical weights
    curves = [
        [(h["step"], h["total"], h["content"], h["style"]) for h in reg.card("per-style", STYLE, v)["loss_curve"]]
        for v in ("v0001", "v0002")
    ]
    assert curves[0] == curves[1] and [c[0] for c in curves[0]] == list(range(1, 9))
    assert one == two


def test_equal_weights_serialize_to_equal_bytes() -> None:
    """The registry's weights_sha256 identifies weights only if saving is deterministic: the header
    (tensor entries and __metadata__) is written with sorted keys, not in a Rust HashMap's order."""
    from styleops.io.safetensors_file import load_state_dict
    from styleops.io.serialize import to_safetensors
    from styleops.models.transformer import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(channels=4, n_residual=1)
    blob = to_safetensors(net.state_dict(), "TransformerNet", net.config())
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    assert blob[8 : 8 + n] == canonical + b" " * (-len(canonical) % 8) and n % 8 == 0
    assert list(header["__metadata__"]) == ["architecture", "config"]
    again = load_state_dict(blob)
    assert all(torch.equal(again[k], v) for k, v in net.state_dict().items())
    assert to_safetensors(again, "TransformerNet", net.config()) == blob
