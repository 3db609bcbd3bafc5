"""Feature-space operations: AdaIN and style swap."""

from styleops.ops.adain import adain, mean_std
from styleops.ops.style_swap import PatchBank, bank_statistics, build_patch_bank, style_swap

__all__ = ["PatchBank", "adain", "bank_statistics", "build_patch_bank", "mean_std", "style_swap"]
