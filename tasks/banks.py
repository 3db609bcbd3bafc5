"""Style-swap patch bank tasks: list the artworks, build a style's bank, promote its first one.
The work is in runs.banks (what a bank holds, when a rebuild is skipped, loading)."""

from __future__ import annotations

from typing import Any

from prefect import task

from runs import banks
from tasks import common


@task(name="list-artworks")
def list_artworks_task(prefix: str = "artwork/") -> dict[str, list[str]]:
    """{style: sorted image keys} of the artwork/<style>/<file> images under `prefix`."""
    return banks.list_artworks(prefix)


@task(name="build-patch-bank", tags=["gpu"])
def build_patch_bank_task(
    style: str, artwork_keys: list[str], force: bool = False, encoder: str | None = None, layer: str | None = None
) -> dict[str, Any]:
    """Build and register the patch bank of `style` (runs.banks.build_bank); returns
    {"style", "version", "status": "unchanged"} or {"style", "version", "status": "built", "patches"}."""
    return banks.build_bank(style, artwork_keys, force, log=common.logger(), encoder=encoder, layer=layer)


@task(name="promote-bank-if-none-in-production")
def promote_bank_if_first_task(style: str, version: str) -> bool:
    """Promote bank `version` of `style` when none is in production yet; True if it did."""
    return banks.promote_bank_if_first(style, version)
