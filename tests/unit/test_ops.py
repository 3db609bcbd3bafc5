"""AdaIN and style swap (groundwork for issue 4): exact against brute force / definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from styleops.errors import InvalidInputError
from styleops.ops import adain, build_patch_bank, mean_std, style_swap


def brute_force_swap(content: torch.Tensor, patches: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest artwork patch by cosine similarity at every position, overlaps averaged."""
    n, c, h, w = content.shape
    out = torch.zeros_like(content)
    count = torch.zeros(1, 1, h, w)
    flat = patches.flatten(1)
    for b in range(n):
        for i in range(h - k + 1):
            for j in range(w - k + 1):
                p = content[b, :, i : i + k, j : j + k].flatten()
                best = F.cosine_similarity(flat, p[None], dim=1, eps=1e-12).argmax()
                out[b, :, i : i + k, j : j + k] += patches[best]
                if b == 0:
                    count[0, 0, i : i + k, j : j + k] += 1
    return out / count


@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_style_swap_equals_brute_force(chunk_size: int) -> None:
    torch.manual_seed(0)
    style = torch.relu(torch.randn(1, 8, 7, 6))
    content = torch.relu(torch.randn(2, 8, 6, 5))
    bank = build_patch_bank(style, patch_size=3)
    assert bank.patches.dtype == torch.float16 and bank.patches.shape == (5 * 4, 8, 3, 3)
    expected = brute_force_swap(content, bank.patches.float(), 3)
    torch.testing.assert_close(style_swap(content, bank, chunk_size=chunk_size), expected, atol=1e-4, rtol=1e-4)


def test_swapping_the_style_with_itself_gives_it_back() -> None:
    torch.manual_seed(1)
    style = torch.rand(1, 4, 6, 6) + 0.1
    bank = build_patch_bank(style)
    torch.testing.assert_close(style_swap(style, bank), style.half().float(), atol=1e-6, rtol=0)


def test_patch_bank_from_several_maps_and_subsampling() -> None:
    maps = [torch.rand(1, 4, 5, 5), torch.rand(1, 4, 4, 6)]
    assert len(build_patch_bank(maps)) == 9 + 8
    small = build_patch_bank(maps, max_patches=5)
    assert len(small) == 5 and torch.equal(small.patches[0], build_patch_bank(maps).patches[0])


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="too small"):
        build_patch_bank(torch.rand(1, 4, 2, 9))
    with pytest.raises(InvalidInputError, match="one C"):
        build_patch_bank([torch.rand(1, 4, 5, 5), torch.rand(1, 3, 5, 5)])
    bank = build_patch_bank(torch.rand(1, 4, 5, 5))
    with pytest.raises(InvalidInputError, match="do not match"):
        style_swap(torch.rand(1, 3, 5, 5), bank)


def test_adain_moves_content_statistics_to_the_style() -> None:
    torch.manual_seed(2)
    content, style = torch.randn(2, 3, 8, 8) * 3 + 1, torch.randn(2, 3, 5, 7) * 0.5 - 2
    out = adain(content, style)
    for got, want in zip(mean_std(out), mean_std(style)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # the normalized content pattern is kept: AdaIN of the output with the content's stats gives the content back
    torch.testing.assert_close(adain(out, content), content, atol=1e-4, rtol=1e-4)
    with pytest.raises(InvalidInputError):
        adain(content, torch.rand(1, 4, 5, 5))
