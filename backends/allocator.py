"""The C allocator's policy for the NumPy backend's large arrays (glibc only).

A training step frees and allocates the same large arrays every step (activations,
gradients, BatchNorm's and pooling's outputs: megabytes each). glibc's malloc hands freed
memory at the top of its heap back to the OS once more than ``M_TRIM_THRESHOLD`` is free
there, and serves large requests from fresh ``mmap`` pages: every step then faults in and
zeroes the same memory again. Measured on the benchmark CNN (batch 128, one thread):
1,536 page faults per step, 16.0 ms per step; with the thresholds below, 0.2 faults and
12.1 ms. ``keep_freed_memory`` raises both thresholds once, when the NumPy backend is
first used, unless the user set them (``MALLOC_TRIM_THRESHOLD_`` /
``MALLOC_MMAP_THRESHOLD_``) or turned this off (``TENSORNET_MALLOC_TUNING=0``). The cost:
a process keeps up to ``TRIM_THRESHOLD`` of freed memory for reuse instead of returning it
to the OS at once (``malloc_trim(0)`` returns it on request).
"""
from __future__ import annotations

import os
import platform

MMAP_THRESHOLD = 32 << 20    # glibc's largest allowed value: arrays up to 32 MiB reuse heap memory
TRIM_THRESHOLD = 256 << 20   # free memory kept at the heap's top before returning any
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (malloc.h)
_done = []


def keep_freed_memory() -> bool:
    """Set the thresholds (once per process); True when glibc accepted them."""
    if _done:
        return _done[0]
    _done.append(False)
    if os.environ.get("TENSORNET_MALLOC_TUNING", "1").strip() in ("0", "false", "no", "off"):
        return False
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        accepted = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                    and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False
    _done[0] = accepted
    return accepted
