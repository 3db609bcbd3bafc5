"""The deployments of prefect.yaml as `flow.serve`-able RunnerDeployments (one source of truth).

`prefect deploy --all` reads prefect.yaml for a real server and its work pools; `styleops serve`
reads the same entries through `runner_deployments` (name, entrypoint, description, parameters,
cron/interval schedules with their timezones, event triggers, tags, concurrency limit) and
ignores their work_pool, since the serving process runs the flows itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentTriggerTypes
from prefect.flows import Flow
from prefect.schedules import Cron, Interval, Schedule
from pydantic import TypeAdapter

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def read_specs(path: Path | str = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of a prefect.yaml."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no deployment file at {path}")
    specs = (yaml.safe_load(path.read_text()) or {}).get("deployments") or []
    if not specs:
        raise ValueError(f"{path} defines no deployments")
    return specs


def load_flow(entrypoint: str) -> Flow:
    """'flows/nightly.py:nightly_catalog' -> the flow object (imported as flows.nightly)."""
    file, _, name = entrypoint.partition(":")
    if not name or not file.endswith(".py"):
        raise ValueError(f"entrypoint must look like 'flows/<file>.py:<flow function>', got {entrypoint!r}")
    obj = getattr(importlib.import_module(file[:-3].replace("/", ".")), name, None)
    if not isinstance(obj, Flow):
        raise ValueError(f"{entrypoint} is not a Prefect flow")
    return obj


def schedules(spec: dict[str, Any]) -> list[Schedule]:
    """prefect.yaml schedule entries (cron or interval seconds, each with an optional timezone)."""
    found = []
    for s in spec.get("schedules") or []:
        if "cron" in s:
            found.append(Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True)))
        elif "interval" in s:
            found.append(Interval(s["interval"], timezone=s.get("timezone"), active=s.get("active", True)))
        else:
            raise ValueError(f"deployment {spec['name']}: a schedule needs cron or interval, got {s}")
    return found


def triggers(spec: dict[str, Any]) -> list[DeploymentTriggerTypes]:
    """prefect.yaml trigger entries, validated the way `prefect deploy` does."""
    adapter: TypeAdapter[DeploymentTriggerTypes] = TypeAdapter(DeploymentTriggerTypes)
    return [
        adapter.validate_python({"name": f"{spec['name']}__automation_{i}", **t})
        for i, t in enumerate(spec.get("triggers") or [], start=1)
    ]


def runner_deployments(path: Path | str = PREFECT_YAML, only: list[str] | None = None) -> list[RunnerDeployment]:
    """RunnerDeployments for the entries of `path` (those named in `only`, if given)."""
    specs = read_specs(path)
    if only:
        unknown = sorted(set(only) - {s["name"] for s in specs})
        if unknown:
            raise ValueError(
                f"no deployment named {', '.join(unknown)} in {path}; it has {', '.join(s['name'] for s in specs)}"
            )
        specs = [s for s in specs if s["name"] in only]
    return [
        load_flow(spec["entrypoint"]).to_deployment(
            name=spec["name"],
            description=spec.get("description"),
            parameters=spec.get("parameters") or {},
            schedules=schedules(spec),
            triggers=triggers(spec),
            tags=spec.get("tags"),
            concurrency_limit=spec.get("concurrency_limit"),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec in specs
    ]
