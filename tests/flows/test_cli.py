"""The `styleops` command as a user meets it: help everywhere, clear errors, real work end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from runs import context
from styleops.io.images import decode_image

runner = CliRunner()
COMMANDS = [
    [],
    ["store"],
    ["weights"],
    ["models"],
    ["upload"],
    ["train-style"],
    ["train-multistyle"],
    ["add-style"],
    ["train-adain"],
    ["train-inverse"],
    ["train-sr"],
    ["build-banks"],
    ["stylize"],
    ["upscale"],
    ["manifest"],
    ["audit"],
    ["demo"],
    ["store", "start"],
    ["models", "export"],
    ["models", "import"],
]


_PREFECT_SETTINGS = """
import flows.cli, json
from prefect.settings import get_current_settings
s = get_current_settings()
print(json.dumps([s.server.analytics_enabled, s.server.ephemeral.startup_timeout_seconds]))
"""


@pytest.mark.parametrize(
    ("user_env", "expected"),
    [
        ({}, [False, 180]),
        (
            {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45"},
            [True, 45],
        ),
    ],
    ids=["defaults", "user-opted-in"],
)
def test_cli_turns_prefect_analytics_off_unless_the_user_opts_in(user_env: dict[str, str], expected: list) -> None:
    """The telemetry insert of the ephemeral server printed a sqlite 'database is locked' traceback
    in front of successful commands: the CLI sets analytics off (and a startup timeout a busy
    machine meets) before Prefect is imported, and a user's own values win."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    }
    out = subprocess.run(
        [sys.executable, "-c", _PREFECT_SETTINGS],
        env={**env, **user_env},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "styleops")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], prog_name="styleops")
    assert result.exit_code == 0, result.output
    assert "Usage: styleops" in result.output


def test_unknown_style_is_one_clear_line_and_exit_1(pipeline_env) -> None:  # noqa: ANN001 - fixture from conftest
    result = runner.invoke(app, ["stylize", "--catalog", "demo", "--style", "nosuch"])
    assert result.exit_code == 1
    assert "error:" in result.output and "per-style/nosuch has no production version" in result.output
    assert "Traceback" not in result.output


def test_bad_quality_fails_before_any_work(pipeline_env) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["stylize", "--catalog", "demo", "--style", "monet", "--quality", "300"])
    assert result.exit_code == 1 and "quality must be an int in 1..95" in result.output
    assert list(pipeline_env.store.list("stylized/")) == []


def test_blend_needs_the_multi_method_and_negative_weights_fail_early(pipeline_env) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["stylize", "--catalog", "demo", "--blend", "monet=1"])
    assert result.exit_code == 1 and "--blend with --method multi or adain" in result.output
    result = runner.invoke(app, ["stylize", "--catalog", "demo", "--method", "multi", "--blend", "monet=-1,hoitsu=2"])
    assert result.exit_code == 1 and "error:" in result.output
    assert list(pipeline_env.store.list("stylized/")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "swap", "--style", "monet"], "no patch bank for style 'monet'"),
        (["--method", "gatys", "--style", "ghost"], "no artwork for style 'ghost'"),
        (["--method", "adain", "--style", "monet", "--alpha", "1.5"], "alpha must be in [0, 1]"),
        (
            ["--method", "adain", "--style", "monet", "--color", "sepia"],
            "colour preservation must be one of none, luminance, histogram",
        ),
        (
            ["--method", "cartoon", "--style", "monet"],
            "method must be one of per-style, multi-style, swap, adain, gatys, upscale",
        ),
        (
            ["--method", "gatys", "--style", "monet", "--upscale", "8"],
            "no super-resolution model 'x8' for --upscale 8; registered: none yet: `styleops train-sr`",
        ),
    ],
)
def test_arbitrary_style_input_errors_are_one_line_before_any_work(pipeline_env, args: list[str], message: str) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["stylize", "--catalog", "demo", *args])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert list(pipeline_env.store.list("stylized/")) == []


def test_train_sr_then_upscale_a_catalog(pipeline_env) -> None:  # noqa: ANN001
    """The super-resolution commands end to end: a tiny x2 network trained and promoted, then the
    catalog upscaled with it (2x the inputs' size), a rerun that finds everything done, and
    `--model x2 --scale 4` refused before any work."""
    tiny = ["--steps", "2", "--image-size", "32", "--batch-size", "1", "--channels", "8", "--blocks", "1"]
    result = runner.invoke(app, ["train-sr", "--content", "catalog/demo/", "--scale", "2", *tiny])
    assert result.exit_code == 0, result.output
    assert context.registry().production(context.SUPER_RESOLUTION, "x2") == "v0001"
    args = ["upscale", "--catalog", "demo", "--scale", "2", "--max-side", "32", "--format", "png"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    outputs = [i.key for i in pipeline_env.store.list("stylized/demo/x2/v0001/")]
    assert len(outputs) == len(pipeline_env.catalog_keys) and all(k.endswith(".png") for k in outputs)
    assert max(decode_image(pipeline_env.store.get_bytes(outputs[0])).pixels.shape[-2:]) == 64
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert [i.key for i in pipeline_env.store.list("stylized/demo/x2/v0001/")] == outputs
    rows = context.manifest().read(filters=[("style", "=", "x2")])
    assert len(rows) == len(outputs) and set(rows["method"]) == {"upscale"}  # the rerun redid nothing
    wrong = runner.invoke(app, ["upscale", "--catalog", "demo", "--model", "x2", "--scale", "4", "--max-side", "16"])
    assert wrong.exit_code == 1 and "super-resolution/x2 v0001 upscales x2, not x4" in " ".join(wrong.output.split())
    assert len(context.manifest().read(filters=[("style", "=", "x2")])) == len(outputs)  # refused before any work
    assert [i.key for i in pipeline_env.store.list("stylized/demo/x2/")] == outputs


def test_models_list_names_each_familys_losses_and_refuses_an_unknown_family(
    pipeline_env,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CycleGAN's card holds cycle, GAN, identity and discriminator losses in the engine's generic
    slots: `models list` shows them under those names, with the card's values, not as content/style.
    An unknown family or model is one red line, no traceback."""
    from flows import cli

    monkeypatch.setattr(cli.console, "width", 200)  # one line per row, whatever the terminal
    models = Path(__file__).parents[2] / "examples" / "models"
    weights = models / "monet-cyclegan.safetensors"
    imported = runner.invoke(app, ["models", "import", str(weights), "--family", "cyclegan", "--name", "monet"])
    assert imported.exit_code == 0, imported.output
    metrics = json.loads((models / "monet-cyclegan.card.json").read_text())["metrics"]

    listed = runner.invoke(app, ["models", "list", "--family", "cyclegan"])
    assert listed.exit_code == 0, listed.output

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split("[│┃]", line)[1:-1]]

    header = next(line for line in listed.output.splitlines() if "version" in line)
    assert cells(header) == [
        "name", "version", "production", "steps", "cycle", "GAN", "identity", "D", "sha256", "created",
    ]  # fmt: skip
    row = next(line for line in listed.output.splitlines() if "v0001" in line)
    expected = [format(metrics[k], ",.4g") for k in ("content", "style", "tv", "critic")]
    assert cells(row)[:8] == ["monet", "v0001", "*", str(metrics["steps"]), *expected]

    unknown = runner.invoke(app, ["models", "list", "--family", "cycle-gan"])
    said = " ".join(unknown.output.split())
    assert unknown.exit_code == 1 and "got 'cycle-gan'" in said and "'cyclegan'" in said, unknown.output
    assert "Traceback" not in unknown.output
    missing = runner.invoke(app, ["models", "export", "nosuch", "--family", "cyclegan", "--out", "/nonexistent"])
    assert missing.exit_code == 1 and "nosuch" in missing.output and "Traceback" not in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--init", "bogus"], "must be scratch or magenta"),
        (["--init", "magenta", "--finetune", "half"], "must be one of none, vector, all"),
        (["--init", "scratch", "--finetune", "none"], "applies to models from the pretrained start"),
        (["--init-from", "per-style/monet/v0001"], "warm-starts a from-scratch net"),
    ],
    ids=["init", "finetune", "finetune-from-scratch", "warm-start-pretrained"],
)
def test_train_style_refuses_a_bad_start_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["train-style", "--content", "catalog/x/", "--artwork", "artwork/a/a.jpg", *args],
        env={"STYLEOPS_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "store").exists()  # refused before the embedded store was started
