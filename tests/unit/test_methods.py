"""Stylize methods as plug-ins (runs/methods/) and the run spec (runs/spec.py)."""

from __future__ import annotations

import pytest

from tasks.stylize import StylizeParams

# Computed from the code before StylizeParams moved out of tasks/stylize.py (commit 0025f29):
# existing manifests and output keys carry these hashes, so they must never change.
PINNED_HASHES = [
    (StylizeParams(), "30dfcdf69b3aab13"),
    (StylizeParams(max_side=64), "40cd025bf5a85cbc"),
    (StylizeParams(method="multi-style"), "28678ed2dea89b14"),
    (StylizeParams(method="adain", alpha=0.5), "58d80eede25c05db"),
    (StylizeParams(method="gatys", iterations=10, optimizer="adam", levels=2), "0d64b21ab3707bb2"),
    (StylizeParams(color="luminance", format="png", quality=80, max_side=None), "1f41a029a7399316"),
    (StylizeParams(method="swap", alpha=0.3, iterations=5), "e173d597bcd8a081"),  # fields a method does not use are not hashed
]


@pytest.mark.parametrize(("params", "expected"), PINNED_HASHES, ids=[h for _, h in PINNED_HASHES])
def test_params_hash_is_pinned(params: StylizeParams, expected: str) -> None:
    assert params.hash == expected
