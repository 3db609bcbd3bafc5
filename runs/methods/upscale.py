"""upscale: Johnson et al.'s perceptual-loss super-resolution network (x2, x4, x8) alone.

style: the model's name in the `super-resolution` family (`styleops train-sr` names them x4, x8, ...);
model_version: 'v0003'. `max_side` caps the input's longer side; the output is `scale` times it.
No style metrics (there is no artwork): the manifest's losses stay empty."""

from __future__ import annotations

import torch

from infra.settings import Settings
from runs import context
from runs.methods.base import Built, NamedModel, OnIteration, Params, Resolved, Source
from styleops.errors import InvalidInputError
from styleops.inference.upscale import UpscaleEngine
from styleops.models.super_resolution import SuperResolutionNet


class Upscale(NamedModel):
    name = "upscale"
    rank = 60
    aliases = ("super-resolution", "sr")
    family = context.SUPER_RESOLUTION
    summary = "super-resolution alone, `style` names the model (`styleops train-sr`; `styleops upscale`)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        _known(style, f"--method upscale --style {style}")
        return super().resolve(style, version)

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        if params.color != "none":
            raise InvalidInputError("--method upscale keeps the photo's colours: colour preservation does not apply")
        net, card = load_upscaler(source)
        return Built(
            UpscaleEngine(net, device=device, max_side=params.max_side, max_output_pixels=settings.max_image_pixels),
            card["weights_sha256"],
            None,
            {"model": source.model_ref, "model_sha256": card["weights_sha256"]},
        )


def load_upscaler(source: Source) -> tuple[SuperResolutionNet, dict]:
    """The registered super-resolution net `source` names, and its card; InvalidInputError if the
    version holds another architecture."""
    net, card = context.load_model(context.registry(), source.family, str(source.name), str(source.version))
    if not isinstance(net, SuperResolutionNet):
        raise InvalidInputError(f"{source.model_ref} is a {type(net).__name__}, not a super-resolution network")
    return net, card


def upscaler_ref(asked: str) -> str:
    """The pinned 'super-resolution/<name>/<version>' for `--upscale`: a scale ('4': the production
    version of the model named x4), a model name (its production version), 'name@v0002', or a
    pinned ref (checked, kept). InvalidInputError naming the registered models otherwise."""
    family = context.SUPER_RESOLUTION
    name, _, version = asked.removeprefix(f"{family}/").replace("/", "@", 1).partition("@")
    scale = int(name) if name.isdigit() else None
    name = f"x{name}" if scale is not None else name
    _known(name, f"--upscale {asked}")
    pinned = context.registry().resolve(family, name, version or None)
    if scale is not None:
        _check_trained_scale(name, pinned, scale)
    return f"{family}/{name}/{pinned}"


def check_scale(name: str, version: str | None, scale: int) -> None:
    """InvalidInputError unless super-resolution model `name` (`version`, default production)
    upscales by `scale` (its card's factor): asked for x8, a x4 model must not quietly give x4."""
    _known(name, f"--model {name}")
    _check_trained_scale(name, context.registry().resolve(context.SUPER_RESOLUTION, name, version), scale)


def _check_trained_scale(name: str, pinned: str, scale: int) -> None:
    """InvalidInputError unless the card of super-resolution/`name`/`pinned` says x`scale`."""
    trained = context.registry().card(context.SUPER_RESOLUTION, name, pinned).get("scale")
    if trained != scale:
        raise InvalidInputError(f"{context.SUPER_RESOLUTION}/{name} {pinned} upscales x{trained}, not x{scale}")


def _known(name: str, asked: str) -> None:
    """InvalidInputError naming the registered super-resolution models unless `name` is one."""
    have = context.registry().names(context.SUPER_RESOLUTION)
    if name not in have:
        listed = ", ".join(have) or "none yet: `styleops train-sr`"
        raise InvalidInputError(f"no super-resolution model {name!r} for {asked}; registered: {listed}")


def upscaler_source(ref: str) -> Source:
    """The Source of a pinned ref from `upscaler_ref`."""
    family, name, version = ref.split("/")
    return Source(family=family, name=name, version=version)


METHOD = Upscale()
