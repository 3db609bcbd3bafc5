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
from runs.methods.base import (
    Built,
    Method,
    OnIteration,
    Options,
    Params,
    Resolved,
    Source,
    artworks_identity,
    blend_label,
    checked_artworks,
    engine,
    in_unit_interval,
    knob,
    parse_blend,
)
from styleops.errors import InvalidInputError
from styleops.io.images import to_float
from styleops.models.magenta import MagentaStylizer, blend_vectors, style_vector

MODEL = "arbitrary"


@dataclass(frozen=True)
class MagentaOptions(Options):
    alpha: float = knob(
        1.0, "1 the artwork's style vector, 0 the photo's own (the paper's interpolation)", in_unit_interval
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
        blend = parse_blend(style)
        artworks = {name: checked_artworks(name) for name in blend}
        sha = context.magenta().sha256  # WeightsNotFoundError here, before any work
        ident = artworks_identity([art for found in artworks.values() for art in found])
        keys = {name: tuple(key for key, _etag in found) for name, found in artworks.items()}
        return Resolved(
            blend_label(blend),
            f"{MODEL}-{sha[:8]}+art-{ident}",
            Source(family=self.name, name=MODEL, version=sha[:8], blend=blend, artworks=keys),
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
        st, blend = context.store(), source.blend or {}
        vectors, mix, arts = [], [], []
        with torch.inference_mode():
            for name, keys in (source.artworks or {}).items():
                for key in keys:
                    pixels, sha = context.artwork_pixels(st, key, settings)
                    vectors.append(style_vector(predictor, to_float(pixels))[0])
                    mix.append(blend[name] / len(keys))
                    arts.append({"key": key, "sha256": sha, "weight": round(mix[-1], 6)})
        style = blend_vectors(torch.stack(vectors).float().cpu(), torch.tensor(mix, dtype=torch.float64))
        lineage: dict[str, Any] = {
            "weights": f"magenta/{MODEL}",
            "weights_sha256": weights.sha256,
            "artworks": arts,
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
            engine(model, params, device, settings, batch_size),
            weights.sha256,
            max(arts, key=lambda a: a["weight"])["key"],
            lineage,
        )


METHOD = Magenta()
