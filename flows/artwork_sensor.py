"""Flow: new or changed artwork -> train what depends on it -> quality gate -> promote.

Runs on a schedule and on `artwork.uploaded` events (prefect.yaml). For each style whose artwork
bytes differ from what the registry was trained on: a per-style model, the style added to (or
retrained in) the multi-style model, and the patch banks rebuilt. Trained candidates are promoted
only when the quality gate passes; a refused one stays registered, production unchanged.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.build_patch_banks import build_patch_banks
from infra.settings import get_settings
from runs.context import MULTI_STYLE, PER_STYLE
from styleops.training.engine import config_from
from tasks.gate import promote_if_passed_task, quality_gate_task
from tasks.sensor import CHANGED, detect_artwork_changes_task
from tasks.training import add_style_task, train_per_style_task

FAMILIES = (PER_STYLE, MULTI_STYLE, "bank")


@flow(name="artwork-sensor")
def artwork_sensor(
    artworks: str = "artwork/",
    content: str | None = None,
    families: list[str] = list(FAMILIES),
    multi_model: str = "collection",
    config: dict[str, Any] | None = None,
    margin: float | None = None,
    max_content: int = 5000,
) -> dict[str, Any]:
    """Train, gate and promote for every new or changed artwork under `artworks`.

    content: training photos (default settings.train_content); families: any of per-style,
    multi-style, bank; config: TrainConfig overrides for the trainings (with {"init": "magenta"}:
    the pretrained start, per-style models registered and gated twice, the prediction first, then
    the fine-tune); margin: the gate's
    (default settings.gate_margin). Returns {"changes", "results": [{family, style, version,
    passed, promoted, reason}], "banks"}.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"families must be among {', '.join(FAMILIES)}; got {', '.join(unknown)}")
    content = content or get_settings().train_content
    cfg = config_from(config).to_dict()  # bad values fail before any work
    changes = detect_artwork_changes_task(artworks, [f for f in families if f != "bank"], multi_model)
    results = []
    # From the pretrained start, new artwork gets a usable version in seconds (the prediction), then
    # the fine-tuned one, each through the gate.
    stages = [{**cfg, "finetune": "none"}, cfg] if cfg.get("init") == "magenta" and cfg["finetune"] != "none" else [cfg]
    for change in changes.get(PER_STYLE, []):
        for stage in stages:
            trained = train_per_style_task(change["style"], change["key"], content, stage, None, max_content)
            results.append(_gate_and_promote(PER_STYLE, change["style"], trained["version"], change, None, margin))
    for change in changes.get(MULTI_STYLE, []):  # one at a time: each builds on the production of the moment
        added = add_style_task(
            multi_model,
            change["key"],
            content,
            cfg,
            None,
            change["style"],
            max_content,
            replace=change["change"] == CHANGED,
        )
        results.append(_gate_and_promote(MULTI_STYLE, multi_model, added["version"], change, change["style"], margin))
    banks = build_patch_banks(artworks) if "bank" in families else None
    rows = [
        {k: r[k] for k in ("family", "style", "change", "version", "passed", "promoted", "reason")} for r in results
    ]
    if banks:
        rows += [
            {
                "family": "bank",
                "style": s,
                "change": "rebuilt",
                "version": banks["banks"][s],
                "passed": None,
                "promoted": s in banks["promoted"],
                "reason": "patch banks are not gated: the newest bank is used",
            }
            for s in banks["built"]
        ]
    create_table_artifact(
        key="artwork-sensor",
        table=rows
        or [
            {
                "family": "-",
                "style": "-",
                "change": "nothing new",
                "version": "-",
                "passed": None,
                "promoted": False,
                "reason": "",
            }
        ],
        description=(
            f"artwork sensor over {artworks}: {len(results)} trained, {sum(r['promoted'] for r in results)} promoted"
        ),
    )
    return {"changes": changes, "results": results, "banks": banks}


def _gate_and_promote(
    family: str, name: str, version: str, change: dict[str, str], style: str | None, margin: float | None
) -> dict[str, Any]:
    gate = quality_gate_task(family, name, version, style=style, margin=margin)
    promoted = promote_if_passed_task(family, name, version, gate)
    return {
        "family": family,
        "name": name,
        "style": change["style"],
        "change": change["change"],
        "version": version,
        "passed": gate["passed"],
        "promoted": promoted,
        "reason": gate["reason"],
        "production_before": gate["production"],
    }
