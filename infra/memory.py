"""Give the heap's free memory back to the operating system after a shard.

A catalog shard allocates and frees image-sized buffers (decode, tensors, encode) on several
threads. glibc's malloc keeps freed memory in per-thread arenas, and its mmap threshold rises
with the largest block freed, so later image buffers come from the arenas and stay there. In the
soak (docs/reliability.md) 260 of the 780 MiB that RSS grew over 25 rounds was such free heap,
and `malloc_trim(0)` returned it. Calling it at the end of each shard keeps a long-running
worker's RSS at what it uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, macOS, Windows)


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS with glibc's `malloc_trim(0)` (milliseconds; no
    `gc.collect()`, which takes a second with a million objects). Returns False where the C library
    has no malloc_trim."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
