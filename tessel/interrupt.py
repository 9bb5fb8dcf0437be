"""SIGINT and SIGTERM as an exception, so that clean-up code runs before the process ends.

Python's default SIGTERM ends the process at once: no `finally`, no `except` — temporary
files stay and a sweep cannot store the points that finished. Inside `signals_raise()` both
signals raise `Interrupted` in the main thread instead. It is a KeyboardInterrupt, so code
that already cleans up after Ctrl-C does the same for SIGTERM. The command line exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process
that a signal ended.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Interrupted", "signals_raise", "interrupted_by"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process got `signum`; `detail` says what was kept (for the one-line message)."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted ({name})" + (f": {self.detail}" if self.detail else "")


def interrupted_by(error: KeyboardInterrupt, detail: str = "") -> Interrupted:
    """`error` as an Interrupted with `detail`; a plain KeyboardInterrupt came from SIGINT."""
    return Interrupted(getattr(error, "signum", signal.SIGINT), detail)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise Interrupted; the previous handlers come back after.

    Only the main thread can set handlers: elsewhere the block runs with them unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _raise(signum: int, _frame: object) -> None:
    raise Interrupted(signum)
