"""Keep the memory a run frees for its own next allocations (glibc's malloc).

A timing-only run of tens of millions of executed instructions (gpt2-xl prefill-128 on PIM:
66 M) works through numpy arrays of hundreds of MB, one pass after another: the executed
order, the costs, the row check's and the event engine's temporaries. glibc serves every
allocation above 32 MB with its own mmap and gives it back to the kernel when freed, so the
next pass's array is faulted in, page by page, and zeroed afresh. On the 2-core development
machine (a virtual machine) that first touch cost gpt2-xl prefill-32 on PIM 7.8 s of system
time in a 31.6 s run. With mmap off (`M_MMAP_MAX` 0) and the heap never trimmed below 2 GiB
of free top (`M_TRIM_THRESHOLD`), freed arrays stay in the heap and the next ones reuse
pages already faulted in: 3.9 s of system time, 23.1 s in all, peak memory 1.50 -> 1.59 GB
(docs/performance.md).

It is a process-wide policy, so only the command line's entry point sets it (`tessel.cli.main`
run as a program), never a library call or a test that calls `main(argv)` in its own process.
Elsewhere than glibc (macOS, musl) it does nothing. The simulated figures do not depend on it.
"""
from __future__ import annotations

import ctypes

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1          # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_TRIM_ABOVE = 2**31 - 1         # bytes of free heap top kept (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never give its free top back (glibc); whether
    the allocator took it (False: not glibc, nothing changed)."""
    try:
        libc = ctypes.CDLL(None)            # the process's own symbols, libc's among them
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    gnu = getattr(libc, "gnu_get_libc_version", None)
    if mallopt is None or gnu is None:          # mallopt alone: not glibc's semantics
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
