"""What changed under artwork/: each style's artwork sha256 against what the registry was trained on.

A style's artwork is the first image of artwork/<style>/ by key (the one per-style and
multi-style training use). It is compared with the *newest* registered version, not production,
so a candidate the quality gate refused is not retrained on every sensor tick; upload new bytes
(or train by hand) to try again. Patch banks are not listed here: `build_patch_banks` rebuilds
exactly the banks whose artworks changed.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from infra.registry import ModelNotFoundError
from runs import context
from runs.keys import is_image_key, style_from_artwork_key
from tasks import common

NEW, CHANGED = "new", "changed"


def _latest_card(family: str, name: str) -> dict[str, Any] | None:
    reg = context.registry()
    try:
        return reg.card(family, name, reg.resolve(family, name, "latest"))
    except ModelNotFoundError:
        return None


def current_artworks(prefix: str = "artwork/") -> dict[str, dict[str, str]]:
    """style -> {"key", "sha256"} of the first image of every artwork/<style>/ under `prefix`."""
    st, firsts = context.store(), {}
    for info in st.list(prefix):
        if is_image_key(info.key):
            firsts.setdefault(style_from_artwork_key(info.key), info.key)
    return {style: {"key": key, "sha256": st.get(key).sha256} for style, key in sorted(firsts.items())}


@task(name="detect-artwork-changes")
def detect_artwork_changes_task(
    prefix: str = "artwork/",
    families: list[str] | tuple[str, ...] = (context.PER_STYLE, context.MULTI_STYLE),
    multi_model: str = "collection",
) -> dict[str, list[dict[str, str]]]:
    """{family: [{"style", "key", "sha256", "change": "new"|"changed"}, ...]} for the trained
    families asked for. Multi-style: only when multi-style/<multi_model> exists (it is created by
    `train-multistyle`); a style missing from its newest version is new, one trained on other
    bytes is changed."""
    arts = current_artworks(prefix)
    changes: dict[str, list[dict[str, str]]] = {}
    if context.PER_STYLE in families:
        found = []
        for style, art in arts.items():
            card = _latest_card(context.PER_STYLE, style)
            if card is None or card.get("artwork_sha256") != art["sha256"]:
                found.append({"style": style, **art, "change": NEW if card is None else CHANGED})
        changes[context.PER_STYLE] = found
    if context.MULTI_STYLE in families:
        card, found = _latest_card(context.MULTI_STYLE, multi_model), []
        if card is None:
            common.logger().info(
                "no multi-style/%s yet: train one with `styleops train-multistyle`; "
                "the sensor then adds new styles to it",
                multi_model,
            )
        else:
            trained = {s["name"]: s["artwork_sha256"] for s in card["styles"]}
            for style, art in arts.items():
                if trained.get(style) != art["sha256"]:
                    found.append({"style": style, **art, "change": NEW if style not in trained else CHANGED})
        changes[context.MULTI_STYLE] = found
    summary = "; ".join(
        f"{fam}: " + (", ".join(f"{c['style']} ({c['change']})" for c in found) or "none")
        for fam, found in changes.items()
    )
    common.logger().info("%d artworks under %s; to train: %s", len(arts), prefix, summary or "nothing asked")
    return changes
