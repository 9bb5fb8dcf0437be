"""Output paths: checked before any work starts, then written atomically (isa/output.py).

`check_output(path, flag)` is called for every output argument right after the command line
is parsed (and by the sweep for its output folder), so a path that cannot be written fails
in a second with one line naming the argument and the path as the user gave it — not after
a whole simulation, and never naming a temporary file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from isa.output import atomic_write, written_in_place

__all__ = ["atomic_write", "check_output", "check_output_dir", "OutputError"]


class OutputError(ValueError):
    """An output path that cannot be written: its folder is missing or read-only, or it is a folder."""


def check_output(path: str | Path, flag: str) -> None:
    """Refuse `path` as an output file unless a file can be created beside it and renamed onto it."""
    given = Path(path)
    if given.is_dir():
        raise OutputError(f"{flag} {path}: is a directory, expected a file")
    if written_in_place(given):                       # /dev/stdout, a pipe: opened as it is
        if not os.access(given, os.W_OK):
            raise OutputError(f"{flag} {path}: cannot write to it")
        return
    _check_folder(given.parent, path, flag)


def check_output_dir(path: str | Path, flag: str) -> None:
    """Refuse `path` as an output folder unless it is one, or can be made, and files can be created in it."""
    given = Path(path)
    existing = given
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{flag} {path}: {existing} is not a directory")
    _check_folder(existing, path, flag)


def _check_folder(folder: Path, path: str | Path, flag: str) -> None:
    """Create (and at once drop) an unnamed file in `folder`: the test the write will face."""
    if not folder.exists():
        raise OutputError(f"{flag} {path}: directory {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{flag} {path}: {folder} is not a directory")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise OutputError(f"{flag} {path}: cannot create a file in {folder} ({error.strerror})") from None
