"""Once per date: the claim a nightly catalog run takes before any work.

A nightly run of (catalog, styles, settings) for a date writes `runs/nightly/<set>/<date>-<hash>.json`
with If-None-Match: {"status": "running", "flow_run_id", "started_at"}, and rewrites it (If-Match)
as {"status": "completed", "summary"} at the end. A second trigger for the same date finds it and
does nothing: "completed" -> skipped, "running" by a flow run that is still alive -> skipped. A
claim left "running" by a run that crashed, failed or was cancelled is taken over, so the date
still gets done. Deployment triggers also carry a Prefect idempotency key (`trigger_once`), so two
triggers through the API make one flow run in the first place.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import task
from prefect.runtime import flow_run

from infra.store import ObjectNotFoundError, PreconditionFailedError
from runs import context
from runs.keys import catalog_set
from tasks import common

PREFIX = "runs/nightly/"


def nightly_date(date: str | None, timezone: str) -> str:
    """The run's date (YYYY-MM-DD): `date` checked, else the flow run's scheduled start (or now)
    in `timezone`, so a 02:00 Europe/Paris run belongs to that Paris date."""
    tz = ZoneInfo(timezone)  # ZoneInfoNotFoundError (a KeyError) for unknown zones
    if date:
        return datetime.strptime(date, "%Y-%m-%d").date().isoformat()
    when = flow_run.scheduled_start_time or datetime.now(UTC)
    return datetime.fromisoformat(str(when)).astimezone(tz).date().isoformat()


def claim_key(catalog: str, date: str, spec: dict[str, Any]) -> str:
    """runs/nightly/<set>/<date>-<hash of the styles and settings>.json"""
    return f"{PREFIX}{catalog_set(catalog)}/{date}-{context.stable_hash(spec, n=8)}.json"


def _store():
    return context.store(writable=(PREFIX,))


def _alive(flow_run_id: str | None) -> bool:
    """True when that flow run exists and is not in a final state (Prefect API)."""
    if not flow_run_id:
        return False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception:  # noqa: BLE001 - unknown to this API: it cannot be running here
        return False
    return state is not None and not state.is_final()


@task(name="claim-nightly-date")
def claim_nightly_task(catalog: str, date: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Take the date's claim. Returns {"key", "claimed": bool, "status", "etag", "by"}: claimed False
    means another run did or is doing this date."""
    st, key = _store(), claim_key(catalog, date, spec)
    me = str(flow_run.id) if flow_run.id else None
    body = json.dumps(
        {
            "status": "running",
            "flow_run_id": me,
            "started_at": datetime.now(UTC).isoformat(),
            "catalog": catalog,
            "date": date,
            "spec": spec,
        }
    ).encode()
    try:
        put = st.put(key, body, content_type="application/json", if_none_match=True)
        return {"key": key, "claimed": True, "status": "running", "etag": put.etag, "by": me}
    except PreconditionFailedError:
        pass
    try:
        got = st.get(key)
    except ObjectNotFoundError:  # removed in between: try once more from the start
        put = st.put(key, body, content_type="application/json", if_none_match=True)
        return {"key": key, "claimed": True, "status": "running", "etag": put.etag, "by": me}
    current = json.loads(got.data)
    other = current.get("flow_run_id")
    if current["status"] == "completed" or (other != me and _alive(other)):
        common.logger().info(
            "nightly %s for %s: %s by flow run %s; nothing to do", catalog, date, current["status"], other
        )
        return {"key": key, "claimed": False, "status": current["status"], "etag": got.etag, "by": other}
    common.logger().warning(
        "nightly %s for %s: taking over the claim of flow run %s (no longer running)", catalog, date, other
    )
    try:
        put = st.put(key, body, content_type="application/json", if_match=got.etag)
    except PreconditionFailedError:
        return {
            "key": key,
            "claimed": False,
            "status": "running",
            "etag": None,
            "by": "another run that took over first",
        }
    return {"key": key, "claimed": True, "status": "running", "etag": put.etag, "by": me}


@task(name="complete-nightly-date")
def complete_nightly_task(claim: dict[str, Any], summary: dict[str, Any]) -> None:
    """Mark the date done (If-Match on the claim this run holds)."""
    st = _store()
    previous = json.loads(st.get(claim["key"]).data)
    body = {**previous, "status": "completed", "finished_at": datetime.now(UTC).isoformat(), "summary": summary}
    st.put(
        claim["key"], json.dumps(body, default=str).encode(), content_type="application/json", if_match=claim["etag"]
    )


def trigger_once(deployment: str, date: str, parameters: dict[str, Any] | None = None) -> Any:
    """Create (or find) the flow run of `deployment` ('flow-name/deployment-name') for `date`:
    the idempotency key makes a second trigger return the first one's flow run."""
    return _create(deployment, date, parameters, f"{deployment}:{date}")


def _create(deployment: str, date: str, parameters: dict[str, Any] | None, key: str) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(
        deployment,
        parameters={**(parameters or {}), "run_date": date},
        idempotency_key=key,
        tags=[date_tag(date)],
        timeout=0,
        as_subflow=False,
    )


ENDED_BADLY = ("FAILED", "CRASHED", "CANCELLED")


class TriggerRefused(ValueError):
    """`trigger_night` did not create or find a flow run; the message says why and what to do."""


def date_tag(date: str) -> str:
    """The tag on every flow run triggered for `date` (how a night's runs are found again)."""
    return f"run-date:{date}"


def checked_date(date: str) -> str:
    """`date` when it is a real YYYY-MM-DD date; TriggerRefused otherwise."""
    try:
        return datetime.strptime(date, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise TriggerRefused(f"--date must be a date as YYYY-MM-DD, got {date!r}") from None


def deployment_names(client: Any) -> list[str]:
    """'flow-name/deployment-name' of every deployment on the API (what `trigger` takes)."""
    flows = {f.id: f.name for f in client.read_flows()}
    return sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments())


def trigger_night(deployment: str, date: str, *, rerun: bool = False) -> tuple[Any, Any | None]:
    """The flow run of `deployment` for `date`, created if the date has none, else the existing
    one; with `rerun`, a new one when the newest run of the date failed, crashed or was cancelled
    (a new idempotency key; the once-per-date claim of the dead run is taken over, and what the
    manifest has `ok` is skipped). Returns (flow run, the ended run it re-runs or None).

    Nothing is created for a bad deployment name, an unknown deployment or a bad date
    (TriggerRefused), nor for a failed night without `rerun` (TriggerRefused naming --rerun)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.exceptions import ObjectNotFound

    flow_name, sep, name = deployment.partition("/")
    with get_client(sync_client=True) as client:
        if not (sep and flow_name and name) or "/" in name:
            raise TriggerRefused(
                f"a deployment is named '<flow>/<deployment>', got {deployment!r}; "
                f"deployments: {', '.join(deployment_names(client)) or 'none'}"
            )
        date = checked_date(date)
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise TriggerRefused(
                f"no deployment {deployment!r} on {client.api_url}; "
                f"deployments: {', '.join(deployment_names(client)) or 'none'} "
                "(`styleops serve --list` shows the ones served)"
            ) from None
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[date_tag(date)])),
        )
    newest = max(runs, key=lambda r: r.created, default=None)
    ended = newest is not None and newest.state is not None and newest.state.type.value in ENDED_BADLY
    if newest is None:
        return trigger_once(deployment, date), None
    if not ended:  # scheduled, running or completed: that is the date's run
        return newest, None
    if not rerun:
        raise TriggerRefused(
            f"the run of {deployment} for {date} ({newest.name}, {newest.id}) ended {newest.state.name}: "
            f"add --rerun to start the night again (what was done is skipped)"
        )
    return _create(deployment, date, None, f"{deployment}:{date}:after:{newest.id}"), newest
