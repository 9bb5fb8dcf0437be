"""Pause the cyclic garbage collector while building millions of small immutable objects.

CPython's collector rescans every live container each time enough new ones have been made,
which turns building a million-instruction program from seconds into tens of seconds. Our
instructions hold no reference cycles, so nothing is lost by pausing it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["no_gc"]


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block (re-entrant; restores the prior state)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
