"""Image in, image out at inference: the batched engine (`engine`), tiles with whole-image norm
statistics (`tiling`), the overlapped load -> device -> write stream of a shard (`stream`), Gatys
optimization (`gatys`), the swap and AdaIN stylizers (`arbitrary`) and colour preservation."""
