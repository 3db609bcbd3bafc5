"""Every key the pipeline makes or reads by convention, in one place.

    catalog/<set>/<path>                                         catalog images (`catalog_prefix`)
    artwork/<style>/<file>                                       artworks (`style_from_artwork_key`)
    stylized/<set>/<style>/<model_version>/<params_hash[:8]>/<path>.<ext>   outputs (`output_key`)

Which keys are images (`is_image_key`, by `styleops.io.images.IMAGE_SUFFIXES`: the suffixes of the
formats styleops decodes, the list training uses too), and the keys of Prefect artifacts (`artifact_key`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Protocol

from infra.store import validate_key
from styleops.io.images import IMAGE_SUFFIXES  # the one list: what styleops decodes

OUTPUT_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


class OutputSettings(Protocol):
    """What an output key depends on besides the image, style and model (runs.spec.StylizeParams)."""

    @property
    def format(self) -> str: ...

    @property
    def hash(self) -> str: ...


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_SUFFIXES)


def catalog_prefix(catalog: str) -> str:
    """`demo`, `catalog/demo` or `catalog/demo/` -> `catalog/demo/`."""
    name = catalog.strip("/")
    name = "" if name == "catalog" else name.removeprefix("catalog/")  # "catalog/" is the root, not a set
    if not name or "/" in name:
        raise ValueError(f"a catalog is a set name under catalog/, e.g. 'shop' for catalog/shop/; got {catalog!r}")
    validate_key(name)  # InvalidKeyError (a ValueError) for '.', '..', backslashes, control characters
    return f"catalog/{name}/"


def catalog_set(catalog: str) -> str:
    """`demo`, `catalog/demo/` -> `demo`."""
    return catalog_prefix(catalog).split("/")[1]


def style_from_artwork_key(key: str) -> str:
    """`artwork/<style>/<file>` -> `<style>`."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "artwork":
        raise ValueError(f"artwork keys look like artwork/<style>/<file>, got {key!r}")
    return parts[1]


def output_prefix(catalog: str, style: str, model_version: str, params: OutputSettings) -> str:
    """stylized/<set>/<style>/<model_version>/<params_hash[:8]>/: where one run's outputs go (and
    the only prefix its shards may write). A blend label's '=' and ',' become '-' and '+'; a
    multi-style version is '<name>/<version>'."""
    style = style.replace("=", "-").replace(",", "+")
    return f"stylized/{catalog_set(catalog)}/{style}/{model_version}/{params.hash[:8]}/"


def output_key(image_key: str, catalog: str, style: str, model_version: str, params: OutputSettings) -> str:
    """`output_prefix` + the image's path in its set, the output format's extension appended unless
    the path already has it (`a.png` -> `a.png.jpg`, so `a.png` and `a.jpg` never collide)."""
    prefix = catalog_prefix(catalog)
    rel = image_key[len(prefix) :]
    ext = OUTPUT_EXTENSIONS[params.format]
    if PurePosixPath(rel).suffix.lower() != ext:
        rel += ext
    return output_prefix(catalog, style, model_version, params) + rel


def artifact_key(kind: str, name: str, *, empty: str = "all") -> str:
    """'<kind>-<name>' as Prefect wants artifact keys: lowercase letters, digits and single dashes
    (`name` slugged and cut to 60 characters; `empty` when nothing of it is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    return f"{kind}-{slug or empty}"
