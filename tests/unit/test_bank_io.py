"""PatchBank.to_bytes / from_bytes: a safetensors round trip, and refusal of anything else."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load, save

from styleops.errors import InvalidInputError
from styleops.ops import PatchBank, build_patch_bank


@pytest.fixture
def bank() -> PatchBank:
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(1, 8, 6, 7, generator=generator), torch.randn(1, 8, 5, 5, generator=generator)]
    return build_patch_bank(maps, patch_size=3, stride=2)


def test_round_trip_is_exact_and_keeps_metadata(bank: PatchBank) -> None:
    data = bank.to_bytes({"style": "monet", "layer": "relu3_1"})
    loaded, meta = PatchBank.from_bytes(data)
    assert meta == {"style": "monet", "layer": "relu3_1"}
    assert (loaded.patch_size, loaded.stride, len(loaded), loaded.channels) == (3, 2, 2 * 3 + 2 * 2, 8)
    assert loaded.patches.dtype == torch.float16 and loaded.norms.dtype == torch.float32
    assert torch.equal(loaded.patches, bank.patches) and torch.equal(loaded.norms, bank.norms)
    # the file is plain safetensors: two tensors, patch_size and stride as string metadata
    assert set(load(data)) == {"patches", "norms"}
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"] == {"style": "monet", "layer": "relu3_1", "patch_size": "3", "stride": "2"}
    assert PatchBank.from_bytes(bank.to_bytes())[1] == {}


def test_to_bytes_refuses_reserved_or_non_string_metadata(bank: PatchBank) -> None:
    with pytest.raises(InvalidInputError, match="reserved"):
        bank.to_bytes({"patch_size": "5"})
    with pytest.raises(InvalidInputError, match="strings"):
        bank.to_bytes({"n": 3})  # type: ignore[dict-item]


def _file(patches: torch.Tensor, norms: torch.Tensor | None, **meta: str) -> bytes:
    tensors = {"patches": patches} if norms is None else {"patches": patches, "norms": norms}
    return save(tensors, metadata={"patch_size": "3", "stride": "1", **meta})


P16 = torch.randn(4, 8, 3, 3).half()
N32 = torch.ones(4)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a patch bank"),
        (b"definitely not safetensors", "not a patch bank"),
        (_file(P16, N32)[:-5], "not a patch bank"),  # truncated
        (_file(P16, None), "holds tensors"),  # missing norms
        (
            save({"patches": P16, "norms": N32, "extra": N32.clone()}, metadata={"patch_size": "3", "stride": "1"}),
            "holds tensors",
        ),
        (save({"patches": P16, "norms": N32}), "metadata lacks"),
        (save({"patches": P16, "norms": N32}, metadata={"patch_size": "3"}), "metadata lacks"),
        (_file(P16, N32, stride="one"), "integers"),
        (_file(P16, N32, stride="0"), ">= 1"),
        (_file(P16.float(), N32), "float16"),  # fp32 patches
        (_file(P16, N32.half()), "float16"),  # fp16 norms
        (_file(P16, N32, patch_size="5"), r"\[P >= 1, C, 5, 5\]"),
        (_file(torch.randn(4, 8, 3, 2).half(), N32), r"\[P >= 1, C, 3, 3\]"),
        (_file(P16.flatten(1), N32), r"\[P >= 1, C, 3, 3\]"),
        (_file(torch.zeros(0, 8, 3, 3).half(), torch.zeros(0)), r"\[P >= 1, C, 3, 3\]"),
        (_file(P16, torch.ones(5)), r"norms must be \[4\]"),
    ],
)
def test_from_bytes_refuses_malformed_data(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        PatchBank.from_bytes(data)
