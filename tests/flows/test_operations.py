"""The operations flows under the session's Prefect server, against the real embedded SeaweedFS:
a served nightly deployment (cron + timezone from prefect.yaml) triggered by hand runs once per
date; a promotion makes the next night redo exactly the stale outputs; the artwork sensor trains,
gates and promotes (or refuses) new and changed artwork."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.logging import disable_run_logger
from prefect.runner import Runner

from flows.artwork_sensor import artwork_sensor
from flows.deployments import runner_deployments
from flows.nightly import nightly_catalog
from infra.registry import ModelRegistry
from infra.settings import get_settings
from runs import context
from styleops.io.images import decode_image, encode_image
from styleops.training.engine import magenta_recipe
from tasks.nightly import claim_key, trigger_once
from tests.flows.conftest import CATALOG, PipelineEnv, magenta_weights_file  # noqa: F401
from tests.integration.test_gate_sensor import MODELS, ops_env  # noqa: F401

DATE = "2026-11-21"
NIGHT = {"styles": ["monet"], "max_side": 64, "audit_dir": "unused"}


def ok_rows(version: str) -> list[str]:
    rows = context.manifest().read(
        filters=[("style", "=", "monet"), ("model_version", "=", version), ("status", "=", "ok")]
    )
    return sorted(rows["image_key"])


def test_served_nightly_deployment_triggered_by_hand_runs_once(ops_env: PipelineEnv, tmp_path) -> None:  # noqa: F811
    deployments = {d.name: d for d in runner_deployments(only=["nightly-demo", "artwork-sensor"])}
    nightly = deployments["nightly-demo"]
    nightly.parameters = {**nightly.parameters, **NIGHT, "audit_dir": str(tmp_path / "audit")}
    runner = Runner(name="styleops-test-serve")

    async def register() -> list[uuid.UUID]:
        return [await runner.add_deployment(d) for d in deployments.values()]

    ids = asyncio.run(register())
    with get_client(sync_client=True) as client:
        served = client.read_deployment(ids[0])
        automations = client.read_resource_related_automations(f"prefect.deployment.{ids[1]}")
    cron = served.schedules[0].schedule
    assert (served.name, cron.cron, cron.timezone) == ("nightly-demo", "0 2 * * *", "Europe/London")
    assert [sorted(a.trigger.expect) for a in automations] == [["artwork.uploaded"]]

    first = trigger_once("nightly-catalog/nightly-demo", DATE)
    again = trigger_once("nightly-catalog/nightly-demo", DATE)
    assert again.id == first.id  # the idempotency key: one flow run per date

    async def execute() -> None:
        async with runner:
            await runner.execute_flow_run(first.id)

    asyncio.run(execute())
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(first.id)
        runs = client.read_flow_runs()
    assert run.state.type == StateType.COMPLETED, run.state
    assert run.parameters["run_date"] == DATE
    assert sum(r.deployment_id == ids[0] and r.parameters.get("run_date") == DATE for r in runs) == 1
    assert ok_rows("v0001") == ops_env.catalog_keys
    claim = ops_env.store.get_json(
        claim_key(
            CATALOG,
            DATE,
            {
                "styles": ["monet"],
                "method": "per-style",
                "model": None,
                "max_side": 64,
                "format": "jpeg",
                "quality": 90,
            },
        )
    )
    assert (claim["status"], claim["flow_run_id"], claim["date"]) == ("completed", str(first.id), DATE)
    assert claim["summary"]["audit"]["critical"] == 0


def test_nightly_is_once_per_date_and_redoes_what_a_promotion_made_stale(ops_env: PipelineEnv, tmp_path) -> None:  # noqa: F811
    env, audit_dir = ops_env, str(tmp_path / "audit")
    first = nightly_catalog(CATALOG, ["monet"], run_date=DATE, max_side=64, audit_dir=audit_dir)
    assert first["status"] == "completed" and first["audit"]["critical"] == 0
    assert [(r["ok"], r["restyled"], r["already_done"]) for r in first["runs"]] == [(6, 0, 0)]
    again = nightly_catalog(CATALOG, ["monet"], run_date=DATE, max_side=64, audit_dir=audit_dir)
    assert again["status"] == "skipped" and again["reason"].startswith("completed by ")

    # A new production version: the next night redoes every image, once.
    reg = ModelRegistry(context.store())
    card = {
        k: v
        for k, v in json.loads((MODELS / "hoitsu.card.json").read_text()).items()
        if k in ("architecture", "train_config", "model_config")
    }
    card |= {
        "artwork_key": "artwork/monet/monet.jpg",
        "artwork_sha256": env.store.get("artwork/monet/monet.jpg").sha256,
    }
    v2 = reg.register(context.PER_STYLE, "monet", (MODELS / "hoitsu.safetensors").read_bytes(), card).version
    reg.promote(context.PER_STYLE, "monet", v2, reason="test")
    second = nightly_catalog(CATALOG, ["monet"], run_date="2026-11-22", max_side=64, audit_dir=audit_dir)
    assert [(r["model_version"], r["ok"], r["restyled"], r["already_done"]) for r in second["runs"]] == [
        ("v0002", 6, 6, 0)
    ]
    # The v0001 outputs stay in the store: the audit lists them as stale (warnings), nothing critical.
    assert second["audit"]["critical"] == 0 and second["audit"]["counts"]["stale"] == 6
    assert ok_rows("v0002") == env.catalog_keys

    # A claim left "running" by a flow run that is gone is taken over; the date still gets done.
    spec = {"styles": ["monet"], "method": "per-style", "model": None, "max_side": 64, "format": "jpeg", "quality": 90}
    env.store.put(
        claim_key(CATALOG, "2026-11-23", spec),
        json.dumps({"status": "running", "flow_run_id": str(uuid.uuid4())}).encode(),
    )
    third = nightly_catalog(CATALOG, ["monet"], run_date="2026-11-23", max_side=64, audit=False)
    assert third["status"] == "completed" and [(r["ok"], r["already_done"]) for r in third["runs"]] == [(0, 6)]
    with pytest.raises(ValueError, match="at least one style"):
        nightly_catalog(CATALOG, [], run_date=DATE)


SENSOR_CONFIG = {
    "steps": 30,
    "image_size": 64,
    "batch_size": 2,
    "channels": 8,
    "n_residual": 1,
    "style_size": 512,
    "checkpoint_every": 1000,
}


def test_artwork_sensor_trains_gates_and_promotes_new_art_and_refuses_a_worse_candidate(ops_env: PipelineEnv) -> None:  # noqa: F811
    env = ops_env
    for key in env.artwork_keys:
        if "/monet/" not in key:
            env.store.delete(key)
    monet = env.store.get_bytes("artwork/monet/monet.jpg")
    env.store.put("artwork/water-lilies/lilies.jpg", monet)  # new artwork lands
    reg = context.registry()

    first = artwork_sensor(families=["per-style"], config=SENSOR_CONFIG)
    assert [(r["style"], r["change"], r["version"], r["passed"], r["promoted"]) for r in first["results"]] == [
        ("water-lilies", "new", "v0001", True, True)
    ]
    assert first["results"][0]["reason"].startswith("first version: style loss")
    assert reg.production(context.PER_STYLE, "water-lilies") == "v0001"

    # Monet's artwork changes; 30 CPU steps of Johnson's direct output (texture blobs at that length,
    # docs/quality.md) cannot match the shipped model: refused, production kept.
    env.store.put("artwork/monet/monet.jpg", encode_image(decode_image(monet).pixels.flip(-1), "jpeg", quality=90))
    second = artwork_sensor(families=["per-style"], config={**SENSOR_CONFIG, "output": "direct", "palette": False})
    [refused] = second["results"]
    assert (refused["style"], refused["change"], refused["version"], refused["passed"], refused["promoted"]) == (
        "monet",
        "changed",
        "v0002",
        False,
        False,
    )
    assert "loss" in refused["reason"] and "production" in refused["reason"]
    assert reg.production(context.PER_STYLE, "monet") == "v0001"
    events = reg.events()
    assert list(events.loc[events["event"].str.startswith("gate"), "event"]) == ["gate-passed", "gate-refused"]

    third = artwork_sensor(families=["per-style"], config=SENSOR_CONFIG)  # nothing new: nothing trained
    assert third["results"] == [] and third["changes"] == {context.PER_STYLE: []}
    with pytest.raises(ValueError, match="families must be among"):
        artwork_sensor(families=["per-style", "nosuch"])


def test_artwork_sensor_from_the_pretrained_start_registers_the_prediction_then_the_fine_tune(
    ops_env: PipelineEnv,  # noqa: F811
    magenta_weights_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New artwork gets a usable version in seconds (the predicted vector, no step), gated and
    promoted as the style's first; then the vector fine-tune, gated against it."""
    monkeypatch.setenv("STYLEOPS_MAGENTA_WEIGHTS", str(magenta_weights_file))
    get_settings.cache_clear()
    env = ops_env
    env.store.put("artwork/water-lilies/lilies.jpg", env.store.get_bytes("artwork/monet/monet.jpg"))
    for key in env.artwork_keys:  # only the new artwork is new
        if "/monet/" not in key:
            env.store.delete(key)
    config = magenta_recipe(steps=2, batch_size=1, image_size=64, style_size=128, finetune="vector").to_dict()
    result = artwork_sensor(families=["per-style"], config=config)
    reg = context.registry()
    got = [(r["style"], r["change"], r["version"], r["promoted"]) for r in result["results"]]
    assert got[0] == ("water-lilies", "new", "v0001", True) and [g[:3] for g in got] == [
        ("water-lilies", "new", "v0001"),
        ("water-lilies", "new", "v0002"),
    ]
    cards = [reg.card(context.PER_STYLE, "water-lilies", v) for v in ("v0001", "v0002")]
    assert [c["architecture"] for c in cards] == ["MagentaStyleNet", "MagentaStyleNet"]
    assert [c["train_config"]["finetune"] for c in cards] == ["none", "vector"]
    assert [c["metrics"]["steps"] for c in cards] == [0, 2]
    assert reg.production(context.PER_STYLE, "water-lilies") == ("v0002" if got[1][3] else "v0001")
    get_settings.cache_clear()


def test_a_failed_night_is_refused_then_rerun_with_rerun_and_ends_with_one_ok_row_per_image(
    ops_env: PipelineEnv,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The night's second style has no model: monet is done, then the run fails. `trigger` says so
    and creates nothing; once hoitsu's model is there, `--rerun` starts a new run that takes the
    dead run's claim over, skips monet's outputs (done) and does hoitsu's."""
    from typer.testing import CliRunner

    from flows.cli import app
    from tasks.training import import_model_task
    from tests.integration.test_gate_sensor import MODELS  # noqa: F811

    date, cli = "2026-11-24", CliRunner()
    nightly = runner_deployments(only=["nightly-demo"])[0]
    nightly.parameters = {
        **nightly.parameters,
        "styles": ["monet", "hoitsu"],
        "max_side": 64,
        "audit_dir": str(tmp_path / "audit"),
    }
    runner = Runner(name="styleops-test-rerun")

    async def register() -> None:
        await runner.add_deployment(nightly)

    asyncio.run(register())

    def trigger(*extra: str) -> tuple[int, str]:
        result = cli.invoke(app, ["trigger", "nightly-catalog/nightly-demo", "--date", date, *extra])
        return result.exit_code, result.output

    def execute(run_id: str) -> StateType:
        async def go() -> None:
            async with runner:
                await runner.execute_flow_run(uuid.UUID(run_id))

        asyncio.run(go())
        with get_client(sync_client=True) as client:
            return client.read_flow_run(uuid.UUID(run_id)).state.type

    def run_id(output: str) -> str:
        return re.search(r"flow run \S+ \(([0-9a-f-]{36})\)", output).group(1)

    code, out = trigger()
    assert code == 0, out
    failed = run_id(out)
    assert execute(failed) == StateType.FAILED
    assert ok_rows("v0001") == ops_env.catalog_keys  # monet was done before hoitsu failed

    with get_client(sync_client=True) as client:
        before = {r.id for r in client.read_flow_runs()}
    code, out = trigger()
    assert code == 1
    assert out.strip().startswith(f"error: the run of nightly-catalog/nightly-demo for {date} (")
    assert f"{failed}) ended Failed: add --rerun" in " ".join(out.split())
    with get_client(sync_client=True) as client:
        assert {r.id for r in client.read_flow_runs()} == before  # nothing scheduled

    with disable_run_logger():
        import_model_task.fn(
            context.PER_STYLE, "hoitsu", str(MODELS / "hoitsu.safetensors"), str(MODELS / "hoitsu.card.json")
        )
    code, out = trigger("--rerun")
    assert code == 0 and "re-running after" in out and failed in out, out
    rerun = run_id(out.splitlines()[-1])
    assert rerun != failed and execute(rerun) == StateType.COMPLETED
    code, out = trigger("--rerun")
    assert code == 0 and "nothing to re-run" in out and run_id(out) == rerun  # the date's run is done

    rows = context.manifest().read(filters=[("catalog", "=", f"catalog/{CATALOG}/")])
    for style in ("monet", "hoitsu"):
        mine = rows[rows["style"] == style]
        assert sorted(mine["image_key"]) == ops_env.catalog_keys and set(mine["status"]) == {"ok"}, style
    spec = {
        "styles": ["hoitsu", "monet"],
        "method": "per-style",
        "model": None,
        "max_side": 64,
        "format": "jpeg",
        "quality": 90,
    }
    claim = ops_env.store.get_json(claim_key(CATALOG, date, spec))
    assert (claim["status"], claim["flow_run_id"]) == ("completed", rerun)
    assert [(r["style"], r["ok"]) for r in claim["summary"]["runs"]] == [("monet", 0), ("hoitsu", 6)]


def test_serve_starts_a_server_whose_ui_asks_its_own_api(tmp_path: Path) -> None:
    """`styleops serve`'s server runs on a free port; its UI must not ask Prefect's default
    127.0.0.1:4200 (nothing there, or another server's runs)."""
    import httpx

    from infra.prefect_server import local_server

    with local_server(tmp_path) as url:
        settings = httpx.get(url.removesuffix("/api") + "/ui-settings", timeout=10).json()
        page = httpx.get(url.removesuffix("/api") + "/", timeout=10, follow_redirects=True)
    assert settings["api_url"] == url and not url.endswith(":4200/api")
    assert page.status_code == 200 and "<html" in page.text.lower()  # the UI itself is served


def test_the_cli_keeps_one_prefect_server_across_commands_and_stops_it(
    pipeline_env,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without PREFECT_API_URL, commands share one local server kept running (not a temporary one
    each): the second command finds the first's, their flow runs are on it, and `styleops server
    stop` stops it."""
    import httpx
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cli.common import run
    from infra.prefect_server import kept_server_url

    monkeypatch.setenv("STYLEOPS_PREFECT_SERVER", "kept")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    get_settings.cache_clear()
    home = get_settings().home
    assert kept_server_url(home) is None

    @flow(name="kept-server-probe")
    def probe(n: int) -> str:
        return os.environ["PREFECT_API_URL"]

    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # not the test harness's server
        try:
            first = run(probe, n=1)
            state = json.loads((home / "prefect" / "kept.json").read_text())
            assert first == state["url"] == kept_server_url(home)
            assert run(probe, n=2) == first  # the same server, not a new one
            assert json.loads((home / "prefect" / "kept.json").read_text()) == state
            assert "PREFECT_API_URL" not in os.environ  # the command's setting does not leak
            runs = httpx.post(f"{first}/flow_runs/filter", json={"limit": 10}, timeout=10).json()
            assert sorted(r["parameters"]["n"] for r in runs) == [1, 2]
            status = CliRunner().invoke(app, ["server", "status"])
            assert status.exit_code == 0 and first in status.output
            ui = httpx.get(first.removesuffix("/api") + "/ui-settings", timeout=10).json()
            assert ui["api_url"] == first  # its UI asks its own API
        finally:
            stopped = CliRunner().invoke(app, ["server", "stop"])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    assert kept_server_url(home) is None and not Path(f"/proc/{state['pid']}").exists()
    again = CliRunner().invoke(app, ["server", "status"])
    assert again.exit_code == 1 and "not running" in again.output
