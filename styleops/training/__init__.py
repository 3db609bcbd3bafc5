"""Training loops: the shared feed-forward engine (`engine`: checkpoints, resume, NaN rollback;
per-style and multi-style nets), the AdaIN and swap decoders (`decoders`), super-resolution."""
