"""The quality gate in the pipeline: score a candidate against production, record, promote.

The rule itself lives in `styleops.evaluation.quality_gate`. Here: the held-out photos come from the store
(`settings.gate_holdout`, the first `gate_max_images` by key, shrunk to `gate_size` px), the
artwork is the one the candidate's card names (its current bytes), the decision goes to the
registry table ("gate-passed" / "gate-refused" events) and to a Prefect table artifact.
"""

from __future__ import annotations

from typing import Any

import torch
from prefect import task
from prefect.artifacts import create_table_artifact

from infra.registry import PromotionConflictError
from infra.settings import get_settings
from runs import context, methods
from runs.keys import artifact_key, is_image_key
from runs.methods.base import ARTWORK_SIZE
from runs.spec import StylizeParams
from styleops.device import resolve_device
from styleops.errors import InvalidInputError
from styleops.evaluation.metrics import StyleMetrics
from styleops.evaluation.quality_gate import GateDecision, decide, score
from styleops.io.images import decode_image, resize_max_side, to_float
from styleops.losses.perceptual import LossWeights
from tasks import common

GATED_FAMILIES = (context.PER_STYLE, context.MULTI_STYLE)


def holdout_photos(prefix: str | None = None) -> list[torch.Tensor]:
    """The fixed held-out set: float [3, H, W] in [0, 1], longer side <= settings.gate_size."""
    s = get_settings()
    prefix = prefix or s.gate_holdout
    st = context.store()
    keys = sorted(info.key for info in st.list(prefix) if is_image_key(info.key))[: s.gate_max_images]
    if not keys:
        raise InvalidInputError(
            f"no held-out photos under {st.uri(prefix)}: upload a few (styleops upload DIR {prefix})"
        )
    return [
        resize_max_side(
            to_float(decode_image(st.get_bytes(k), max_pixels=s.max_image_pixels, max_bytes=s.max_image_bytes).pixels),
            s.gate_size,
        )
        for k in keys
    ]


def _stylizer(family: str, name: str, version: str, style: str | None) -> tuple[Any, str] | None:
    """(float [3,H,W] -> float [3,H,W] function, artwork key) of a version, as the stylize method
    of its family resolves and builds it (the engine a catalog run uses: what is scored is what a
    catalog would get); None when a multi-style version has no style of that name."""
    method = methods.get(family)
    if family == context.MULTI_STYLE and style not in {
        s["name"] for s in context.registry().card(family, name, version)["styles"]
    }:
        return None
    resolved = method.resolve(style if family == context.MULTI_STYLE else name, version, name)
    settings = get_settings()
    device = resolve_device(settings.device)
    built = method.build(resolved.source, StylizeParams(method=family, max_side=None), device, settings, batch_size=1)
    return (lambda x: built.engine.stylize_prepared([x.to(device)])[0].float().cpu()), built.metrics_artwork_key


@task(name="quality-gate")
def quality_gate_task(
    family: str,
    name: str,
    version: str,
    style: str | None = None,
    holdout: str | None = None,
    margin: float | None = None,
) -> dict[str, Any]:
    """Score `version` of family/name and the production version (for multi-style: the style
    `style` of each) on the held-out photos against the candidate's artwork; record the decision.

    Returns {"passed", "reason", "production", "numbers": GateDecision.to_dict()}.
    """
    if family not in GATED_FAMILIES:
        raise InvalidInputError(f"the quality gate scores {' and '.join(GATED_FAMILIES)} models, not {family!r}")
    if family == context.MULTI_STYLE and not style:
        raise InvalidInputError("gating a multi-style version needs the style to score")
    s = get_settings()
    margin = s.gate_margin if margin is None else margin
    reg = context.registry()
    production = reg.production(family, name)
    candidate = _stylizer(family, name, version, style)
    if candidate is None:
        raise InvalidInputError(f"{family}/{name} {version} has no style {style!r}")
    prod = _stylizer(family, name, production, style) if production not in (None, version) else None
    art, _ = context.artwork_pixels(context.store(), candidate[1], s)
    weights = LossWeights()  # one scoring loss for both, whatever each was trained with
    device = resolve_device(s.device)
    metrics = StyleMetrics(
        context.encoder(weights.layers, device, s),
        to_float(art),
        weights,
        size=min(256, s.gate_size),
        style_size=ARTWORK_SIZE,
    )
    photos = holdout_photos(holdout)
    decision = decide(
        score(candidate[0], photos, metrics),
        score(prod[0], photos, metrics) if prod else None,
        score(lambda x: x, photos, metrics),
        margin,
    )
    label = f"{family}/{name}" + (f" style {style}" if family == context.MULTI_STYLE else "")
    common.logger().info(
        "quality gate %s %s vs production %s: %s (%s)",
        label,
        version,
        production,
        "passed" if decision.passed else "REFUSED",
        decision.reason,
    )
    numbers = {**decision.to_dict(), "style": style, "production_version": production}
    reg.record_gate(family, name, version, passed=decision.passed, numbers=numbers, reason=decision.reason)
    create_table_artifact(
        key=artifact_key("gate", f"{family}-{name}-{style or ''}"),
        table=gate_table(decision, version, production),
        description=(
            f"quality gate of {label} {version}: {'passed' if decision.passed else 'refused'}. {decision.reason}"
        ),
    )
    return {"passed": decision.passed, "reason": decision.reason, "production": production, "numbers": numbers}


def gate_table(decision: GateDecision, version: str, production: str | None) -> list[dict[str, Any]]:
    """Rows of the artifact: candidate, production and baseline mean losses."""
    rows = [{"model": f"candidate {version}", "content": decision.candidate.content, "style": decision.candidate.style}]
    if decision.production is not None:
        rows.append(
            {
                "model": f"production {production}",
                "content": decision.production.content,
                "style": decision.production.style,
            }
        )
    rows.append({"model": "unstylized photos", "content": decision.baseline.content, "style": decision.baseline.style})
    return [
        {
            **r,
            "content": round(r["content"], 1),
            "style": round(r["style"], 1),
            "passed": decision.passed,
            "margin": decision.margin,
        }
        for r in rows
    ]


@task(name="promote-if-gate-passed")
def promote_if_passed_task(family: str, name: str, version: str, gate: dict[str, Any]) -> bool:
    """Promote `version` when its gate passed and production is still what the gate compared
    against; True if promoted. A refused gate keeps production as it was."""
    if not gate["passed"]:
        return False
    reg = context.registry()
    if reg.production(family, name) != gate["production"]:
        common.logger().warning(
            "%s/%s: production moved since the gate of %s ran; not promoting", family, name, version
        )
        return False
    try:
        reg.promote(family, name, version, reason=f"quality gate passed: {gate['reason']}")
    except PromotionConflictError as exc:
        common.logger().warning("%s", exc)
        return False
    return True
