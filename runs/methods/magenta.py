"""magenta: Magenta's pretrained arbitrary stylization network (Ghiasi et al. 2017): any artwork,
no training. The style predictor turns each artwork into a 100-number style vector; the
transformer paints the photo with it (`styleops.models.magenta`; weights from `styleops weights
install`, sha256-pinned).

style: a style or a blend of artwork/<style>/ folders (a blend mixes the style vectors; a style
with several artworks averages theirs); model_version 'arbitrary-<8 hex of the weights>+art-<8 hex
of the artworks' keys and etags>', so new artwork bytes or new weights mean new outputs; `alpha`
(default 1): < 1 moves each photo's vector towards its own predicted one, as in the paper."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from infra.settings import Settings, get_settings
from runs import context
from runs.methods import base
from runs.methods.base import Built, Method, OnIteration, Options, Params, Resolved, Source, knob
from styleops.errors import InvalidInputError
from styleops.io.images import to_float
from styleops.models.magenta import MagentaStylizer, blend_vectors, style_vector

MODEL = "arbitrary"


@dataclass(frozen=True)
class MagentaOptions(Options):
    alpha: float = knob(
        1.0, "1 the artwork's style vector, 0 the photo's own (the paper's interpolation)", base.in_unit_interval
    )


class Magenta(Method):
    name = "magenta"
    family = None  # pretrained weights from the local cache, not a registry model
    takes_blend = True
    options = MagentaOptions
    summary = "Magenta's pretrained arbitrary network: any artwork or blend, no training (--alpha)"

    def resolve(self, style: str, version: str | None, model: str | None = None) -> Resolved:
        if version not in (None, "production", "latest"):
            raise InvalidInputError(f"--method magenta has one version (the installed weights), not {version!r}")
        art = base.artworks_of(style)
        sha = context.magenta().sha256  # WeightsNotFoundError here, before any work
        return Resolved(
            art.label,
            f"{MODEL}-{sha[:8]}+art-{art.identity}",
            Source(family=self.name, name=MODEL, version=sha[:8], blend=art.blend, artworks=art.keys),
        )

    def build(
        self,
        source: Source,
        params: Params,
        device: torch.device,
        settings: Settings,
        batch_size: int | None = None,
        on_iteration: OnIteration | None = None,
    ) -> Built:
        weights = context.magenta(settings or get_settings())
        if weights.sha256[:8] != source.version:
            raise InvalidInputError(
                f"the installed Magenta weights ({weights.sha256[:8]}) are not the run's ({source.version})"
            )
        alpha = self.options_of(params).alpha
        predictor = copy.deepcopy(weights.predictor).to(device)  # one instance per shard: no shared state
        pixels, mix, arts = zip(*base.weighted_artworks(source, settings), strict=True)
        with torch.inference_mode():
            vectors = [style_vector(predictor, to_float(p))[0] for p in pixels]
        style = blend_vectors(torch.stack(vectors).float().cpu(), torch.tensor(mix, dtype=torch.float64))
        lineage: dict[str, Any] = {
            "weights": f"magenta/{MODEL}",
            "weights_sha256": weights.sha256,
            "artworks": list(arts),
            "style_vector_sha256": hashlib.sha256(style.numpy().tobytes()).hexdigest(),
            "alpha": alpha,
        }
        model = MagentaStylizer(
            copy.deepcopy(weights.transformer),
            style,
            alpha=alpha,
            predictor=predictor.cpu() if alpha < 1 else None,
        )
        return Built(
            base.engine(model, params, device, settings, batch_size),
            weights.sha256,
            base.heaviest(list(arts)),
            lineage,
        )


METHOD = Magenta()
