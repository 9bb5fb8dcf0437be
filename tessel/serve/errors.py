"""The one error a bad serving input raises: a trace, a length spec, a scheduler or KV setting.

It is a `UsageError`, so the command line prints it as one line `error: ...` and exits with
status 2, as it does for every other bad input (tessel/errors.py).
"""
from __future__ import annotations

from tessel.errors import UsageError

__all__ = ["ServeError"]


class ServeError(UsageError):
    """A bad serving input; the message names the file, line and column, or the setting and its value."""
