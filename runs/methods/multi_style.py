"""multi-style: one conditional-instance-norm network for many artworks (Dumoulin et al. 2017).

style: a style of the model's card, or a blend 'wave=0.7,udnie=0.3' of them; model_version:
'<model>/v0002' (default model 'collection'); loads multi-style/<model>/<version>. Older versions
whose outputs for the style are bit-identical stay current (`unchanged_ancestors`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from infra.registry import ModelCard
from runs import context
from runs.methods.base import Resolved, Source, StyleNetwork, blend_label, parse_blend
from styleops.errors import InvalidInputError
from styleops.losses.perceptual import LossWeights
from styleops.models.multistyle import Conditioned


def checked_blend(style: str, card: dict[str, Any], model_ref: str) -> dict[str, float]:
    """`parse_blend(style)` with every name checked against a multi-style card's styles."""
    known = [s["name"] for s in card["styles"]]
    blend = parse_blend(style)
    unknown = sorted(set(blend) - set(known))
    if unknown:
        raise InvalidInputError(f"multi-style/{model_ref} has no style {', '.join(unknown)}; it has {', '.join(known)}")
    return blend


def trained_in(card: dict[str, Any]) -> dict[str, str]:
    """style -> the version whose training last changed its parameters (multi-style cards)."""
    return {s["name"]: s.get("trained_in") or card["version"] for s in card["styles"]}


def unchanged_ancestors(card: dict[str, Any], blend: Mapping[str, float]) -> list[str]:
    """Versions up the card's parent chain that give the same outputs for `blend` (every blended
    style trained in the same version, so shared weights and its scale/shift are identical)."""
    reg, mine, found = context.registry(), trained_in(card), []
    parent = card.get("parent_version")
    while parent:
        up = reg.card(context.MULTI_STYLE, card["name"], parent)
        theirs = trained_in(up)
        if any(theirs.get(name) != mine[name] for name in blend):
            break
        found.append(parent)
        parent = up.get("parent_version")
    return found


class MultiStyle(StyleNetwork):
    name = "multi-style"
    rank = 20
    aliases = ("multi",)
    family = context.MULTI_STYLE
    default_model = "collection"
    takes_blend = True
    summary = "one network for many styles, or a blend of them (`styleops train-multistyle`)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        model = model or self.default_model
        reg = context.registry()
        v = reg.resolve(self.family, model, version)
        card = reg.card(self.family, model, v)
        blend = checked_blend(style, card, f"{model}/{v}")
        older = tuple(f"{model}/{u}" for u in unchanged_ancestors(card, blend))
        return Resolved(
            blend_label(blend), f"{model}/{v}", Source(family=self.family, name=model, version=v, blend=blend), older
        )

    def metrics_artwork(self, source: Source) -> str | None:
        card = context.registry().card(self.family, source.name, source.version)
        blend = source.blend or {}
        main = max(blend, key=blend.__getitem__)  # the blend's heaviest style, as `build` measures
        return next(s["artwork_key"] for s in card["styles"] if s["name"] == main)

    def source_for(self, style: str, model_version: str) -> Source:
        model, _, version = model_version.rpartition("/")
        return self.resolve(style, version, model or None).source

    def conditioned(self, net: nn.Module, card: ModelCard, source: Source) -> tuple[nn.Module, str, LossWeights]:
        known = [s["name"] for s in card["styles"]]
        blend = source.blend or {}
        main = card["styles"][known.index(max(blend, key=blend.__getitem__))]
        loss = LossWeights(**main.get("loss", card.get("loss") or card["train_config"]["loss"]))
        return Conditioned(net, [blend.get(k, 0.0) for k in known]), main["artwork_key"], loss


METHOD = MultiStyle()
