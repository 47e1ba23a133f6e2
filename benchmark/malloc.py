"""glibc's allocator, set for PyTorch on the CPU: freed tensor memory is kept for the next step.

PyTorch's CPU allocator is plain malloc/free. With glibc's defaults a process that frees its step's
activations gives the pages back to the kernel (heap trimming, or munmap of a chunk above the mmap
threshold) and takes them again, zero-filled, on the next step: on this project's 2-core machine
(AMD EPYC) the digits U-Net's forward + VJP on 240 chains spent 1.3 of 7.9 s in the kernel. PyTorch's
CPU tuning guide answers this with jemalloc or tcmalloc; `tune()` does the same with glibc alone:
- M_MMAP_THRESHOLD 32 MiB: blocks below it come from the heap, not from mmap (glibc's ceiling);
- M_TRIM_THRESHOLD 1 GiB: free memory at the heap's top is returned only beyond 1 GiB;
- M_TOP_PAD 256 MiB: the heap grows in large steps (address space; pages count once touched).
Measured here (1 thread, quiet): the U-Net's forward + VJP on 240 chains 145 -> 108 ms; a digits tuning job
of 30 cells (`python -m benchmark run`, two runs each) 72.2 and 76.1 s -> 70.9 and 69.2 s, kernel time
8.0 and 7.1 s -> 0.6 and 0.5 s; the vector tasks' jobs (small tensors) unchanged. The numbers a
process computes are unchanged: only where its memory comes from.

Called first by `python -m benchmark` (every workflow job); a no-op where the C library is not glibc.
`GUIDEBENCH_MALLOC=default` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt parameters (glibc's malloc.h) and their values.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 256 << 20}


def tune() -> bool:
    """Apply SETTINGS with mallopt; True when all took effect (Linux with glibc), else False."""
    if os.environ.get("GUIDEBENCH_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):      # musl and others: their own allocator
            return False
        return all(libc.mallopt(key, value) == 1 for key, value in SETTINGS.items())
    except (OSError, AttributeError):
        return False
