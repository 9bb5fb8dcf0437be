"""Output files that appear whole or not at all: `atomic_write(path, *parts)`.

The one writer of every file Tessel produces (programs, reports, logits, sweep tables and
plots). What it guarantees:

- the file under `path` is the old one or the complete new one, never a mix: the bytes go to
  a temporary file beside `path`, which is flushed to disk (fsync) and renamed over `path`;
  the folder is fsynced after the rename where the file system allows it;
- the new file has the mode `open(path, "w")` would give it: 0666 less the umask;
- the temporary file is removed on every exit Python runs: an error while writing,
  KeyboardInterrupt, and SIGTERM where the program turns it into an exception (the `tessel`
  command line does);
- after SIGKILL (or a power cut) nothing can run, so a temporary file may stay. Its name,
  `.NAME.HOST.PID.RANDOM.tmp`, says which process wrote it: the next write of the same
  `path` removes those of this host whose process has ended.

A `path` that is a symbolic link (`/dev/stdout`, a link to a file elsewhere) or exists and is
not a regular file (`/dev/null`, a named pipe) is written in place, without these guarantees:
a rename would replace the link or the device itself with a file.

A failure raises OSError whose `filename` is `path` as given, never the temporary file.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import BinaryIO, Iterable

__all__ = ["atomic_write", "written_in_place"]

_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, *parts: bytes | memoryview) -> None:
    """Write the concatenation of `parts` to `path`, atomically (see the module docstring)."""
    path = Path(path)
    try:
        if written_in_place(path):
            with open(path, "wb") as out:
                _write(out, parts)
        else:
            _replace(path, parts)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def written_in_place(path: Path) -> bool:
    """A link, a device or a pipe: never renamed over (see the module docstring)."""
    return path.is_symlink() or (path.exists() and not path.is_file() and not path.is_dir())


def _write(out: BinaryIO, parts: Iterable[bytes | memoryview]) -> None:
    for part in parts:
        out.write(part)
    out.flush()


def _replace(path: Path, parts: Iterable[bytes | memoryview]) -> None:
    """Write a temporary file beside `path`, fsync it, rename it over `path`; on any
    exception remove it."""
    _remove_stale_temporaries(path)
    host = socket.gethostname().replace(".", "-")
    temporary = path.with_name(f".{path.name}.{host}.{os.getpid()}.{secrets.token_hex(4)}{_SUFFIX}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as out:
            _write(out, parts)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some file systems cannot open or fsync a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` left by ended processes of this host (SIGKILL)."""
    prefix = f".{path.name}."
    host = socket.gethostname().replace(".", "-")
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(prefix) and p.name.endswith(_SUFFIX)]
    except OSError:
        return                      # the write itself reports an unreadable folder
    for candidate in candidates:
        fields = candidate.name[len(prefix):-len(_SUFFIX)].rsplit(".", 2)
        if len(fields) == 3 and fields[0] == host and fields[1].isdigit() and not _alive(int(fields[1])):
            candidate.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                 # another user's process
    return True
