"""The `styleops` command as a user meets it: help everywhere, clear errors, real work end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect import get_client
from typer.testing import CliRunner

from flows.cli import app
from runs import context
from styleops.io.images import decode_image
from tests.integration.test_gate_sensor import ops_env  # noqa: F401 - fixture

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


def stored(env) -> list[tuple[str, str]]:  # noqa: ANN001 - a PipelineEnv
    """Every (key, etag) of the test's bucket: what a refused command must leave as it was."""
    return sorted((i.key, i.etag) for i in env.store.list(""))


def flow_run_ids() -> set[str]:
    """The flow runs on the session's Prefect API."""
    with get_client(sync_client=True) as client:
        return {str(r.id) for r in client.read_flow_runs()}


def one_error_line(output: str) -> str:
    """The output's only line, which must be 'error: ...' (no traceback, no other line)."""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


STYLIZE_ERRORS = {
    "unknown-style": (
        ["--style", "nosuch"],
        "error: no per-style model for style 'nosuch'; styles: monet (`styleops train-style`; "
        "--method magenta paints any artwork/nosuch/ without training)",
    ),
    "unknown-catalog": (
        ["--style", "monet", "--catalog", "dmeo"],
        "error: no catalog 'dmeo': nothing under s3://{bucket}/catalog/dmeo/; catalogs: demo "
        "(`styleops upload <folder> catalog/<name>/`)",
    ),
    "unknown-version": (
        ["--style", "monet", "--version", "v0009"],
        "error: no version v0009 of per-style/monet; it has v0001",
    ),
    "bad-version": (["--style", "monet", "--version", "1"], "error: version must look like v0001, got '1'"),
    "alpha-for-per-style": (
        ["--style", "monet", "--alpha", "0.5"],
        "error: --alpha does not apply to --method per-style; it is for --method adain or magenta",
    ),
    "iterations-for-adain": (
        ["--style", "monet", "--method", "adain", "--iterations", "10"],
        "error: --iterations does not apply to --method adain; it is for --method gatys",
    ),
    "model-for-per-style": (
        ["--style", "monet", "--model", "collection"],
        "error: --model does not apply to --method per-style (its style names the model); "
        "it is for --method multi or swap or adain",
    ),
}


@pytest.mark.parametrize(("args", "line"), STYLIZE_ERRORS.values(), ids=STYLIZE_ERRORS.keys())
def test_stylize_errors_are_one_line_with_the_remedy_and_nothing_is_written_or_run(
    ops_env,  # noqa: ANN001 - the examples, per-style/monet v0001 in production
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    line: str,
) -> None:
    """Checked before a flow run exists: no Failed run left on the server, no object written."""
    from flows import cli

    monkeypatch.setattr(cli.console, "width", 80)  # a narrow terminal: the line is still one line
    before, runs = stored(ops_env), flow_run_ids()
    result = runner.invoke(app, ["stylize", "--catalog", "demo", *args])
    assert result.exit_code == 1
    assert one_error_line(result.output) == line.format(bucket=ops_env.bucket)
    assert stored(ops_env) == before and flow_run_ids() == runs


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


TRIGGER_ERRORS = {
    "no-flow-part": (
        ["nightly-demo"],
        "error: a deployment is named '<flow>/<deployment>', got 'nightly-demo'; deployments: ",
    ),
    "unknown-deployment": (["no-such/deployment"], "error: no deployment 'no-such/deployment' on http://"),
    "bad-date": (
        ["nightly-catalog/nightly-demo", "--date", "2026-13-45"],
        "error: --date must be a date as YYYY-MM-DD, got '2026-13-45'",
    ),
}


@pytest.mark.parametrize(("args", "start"), TRIGGER_ERRORS.values(), ids=TRIGGER_ERRORS.keys())
def test_trigger_errors_are_one_line_and_schedule_nothing(
    monkeypatch: pytest.MonkeyPatch, args: list[str], start: str
) -> None:
    from flows import cli

    monkeypatch.setattr(cli.console, "width", 80)
    runs = flow_run_ids()
    result = runner.invoke(app, ["trigger", *args])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith(start)
    assert flow_run_ids() == runs


def test_serve_list_prints_the_names_trigger_takes_uncut_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import cli

    monkeypatch.setattr(cli.console, "width", 80)
    result = runner.invoke(app, ["serve", "--list"])
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    for name in ("nightly-catalog/nightly-demo", "artwork-sensor/artwork-sensor", "audit-manifests/weekly-audit"):
        assert name in result.output
    assert "…" not in result.output
    unknown = runner.invoke(app, ["serve", "--list", "--only", "nightly"])
    assert unknown.exit_code == 1
    assert one_error_line(unknown.output).startswith("error: no deployment named nightly in ")


def test_prefects_temporary_server_note_is_dropped_and_nothing_else() -> None:
    """Every command started without a server printed Prefect's 'Starting temporary server on ...
    See https://docs.prefect.io/v3/concepts/server#how-to-guides ...' note."""
    import logging

    prefect_logger = logging.getLogger("prefect")

    def record(msg: str) -> logging.LogRecord:
        return prefect_logger.makeRecord("prefect", logging.INFO, __file__, 1, msg, (), None)

    note = "Starting temporary server on http://127.0.0.1:8787\nSee https://docs.prefect.io/v3/concepts/server#how-to-guides"
    assert prefect_logger.filter(record(note)) is False
    assert prefect_logger.filter(record("Finished in state Completed()")) is True


def test_a_flows_traceback_stays_off_the_terminal_and_in_the_record() -> None:
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.cli import WithoutTraceback, terminal_without_tracebacks

    assert terminal_without_tracebacks() >= 1
    console_handler = next(h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler))
    assert isinstance(console_handler.formatter, WithoutTraceback)
    try:
        raise ValueError("no per-style model for style 'nosuch'")
    except ValueError:
        record = logging.getLogger("prefect.styleops-test").makeRecord(
            "prefect.styleops-test",
            logging.ERROR,
            __file__,
            1,
            "Encountered exception during execution",
            (),
            sys.exc_info(),
        )
    shown = console_handler.format(record)
    assert "Encountered exception during execution" in shown and "Traceback" not in shown
    assert "Traceback" in logging.Formatter().format(record)  # other handlers (the API log) still get it


def test_nightly_refuses_an_unknown_style_or_date_before_a_flow_run(ops_env) -> None:  # noqa: ANN001
    before, runs = stored(ops_env), flow_run_ids()
    result = runner.invoke(app, ["nightly", "--catalog", "demo", "--style", "monet", "--style", "nosuch"])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: no per-style model for style 'nosuch'; styles: monet")
    result = runner.invoke(app, ["nightly", "--catalog", "demo", "--style", "monet", "--date", "2026-02-30"])
    assert result.exit_code == 1
    assert one_error_line(result.output) == "error: --date must be a date as YYYY-MM-DD, got '2026-02-30'"
    assert stored(ops_env) == before and flow_run_ids() == runs


def test_a_model_whose_artwork_is_not_in_the_store_is_refused_before_any_work(ops_env) -> None:  # noqa: ANN001
    """An imported model (the shipped Monet) whose artwork was never uploaded: the per-image metrics
    cannot be measured. Before: three shard attempts 5 s apart, then 'error: artwork/monet/monet.jpg'."""
    ops_env.store.delete("artwork/monet/monet.jpg")
    before, runs = stored(ops_env), flow_run_ids()
    result = runner.invoke(app, ["stylize", "--catalog", "demo", "--style", "monet"])
    assert result.exit_code == 1
    assert one_error_line(result.output) == (
        "error: the per-image metrics compare each output with the model's artwork artwork/monet/monet.jpg, "
        f"which is not in s3://{ops_env.bucket}/: upload it (`styleops upload <folder> artwork/monet/`) "
        "or add --no-metrics"
    )
    assert stored(ops_env) == before and flow_run_ids() == runs
    done = runner.invoke(app, ["stylize", "--catalog", "demo", "--style", "monet", "--max-side", "32", "--no-metrics"])
    assert done.exit_code == 0, done.output
    assert len(list(ops_env.store.list("stylized/demo/monet/v0001/"))) == len(ops_env.catalog_keys)


@pytest.mark.parametrize(("user", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")], ids=["default", "user"])
def test_the_cli_makes_openmp_threads_sleep_when_they_wait_unless_the_user_says(
    user: str | None, expected: str
) -> None:
    """Set before torch loads its OpenMP runtime (docs/benchmarks.md: spinning threads on a busy machine)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": user} if user else {})
    code = (  # print the setting at the moment torch is first imported
        "import os, sys\n"
        "class Spy:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch': print('torch', os.environ.get('OMP_WAIT_POLICY'))\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import flows.cli\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.split()[:2] == ["torch", expected]
