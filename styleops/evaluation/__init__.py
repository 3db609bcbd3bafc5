"""Measures of outputs: appearance (structure, colour, texture; pixels only), per-image loss
metrics for the manifest, the quality gate, and super-resolution PSNR/SSIM."""
