"""Training data for the translation families: pair and domain makers, side-by-side AB images."""
