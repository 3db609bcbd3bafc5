"""Training objectives: the perceptual (content + Gram style + total variation) loss of Johnson et
al. and Gatys et al. (`perceptual`)."""
