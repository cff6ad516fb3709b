"""Keep freed memory in the process, so that a step's activations do not page-fault.

glibc's malloc hands every block over its mmap threshold (128 KiB at first, raised up to
the largest block freed) back to the kernel when it is freed, and trims the heap's top
past twice that. An eager step allocates and frees the same few dozen activation tensors
every step, so each step faults their pages in again: for a stack of 32 ``plus_minus``
runs, 126 page faults a step (0.29 ms of kernel time, a tenth of the step); for 32 ``centers``
runs, 529 (1.6 ms). Raising both thresholds keeps those blocks in the heap for reuse:
no faults after the first steps. Blocks over 32 MiB (glibc's limit for the threshold)
are still mapped apart. Where the C library is not glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit (4 MiB · sizeof(long))
TRIM_THRESHOLD = 2**30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; whether it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
