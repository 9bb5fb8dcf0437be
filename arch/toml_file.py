"""Reading a TOML input file (an arch preset, a sweep spec, a quantisation recipe): each way
the file can be unreadable is one line naming it, never a traceback."""
from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["read_toml"]


def read_toml(path: str | Path, error: type[Exception], shown: str | None = None) -> dict:
    """The table of the TOML file at `path`. A file that cannot be read, bytes that are not
    UTF-8 and invalid TOML raise `error`, naming the file (`shown` where it cannot be read)."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as e:
        raise error(f"{shown or path}: cannot read ({e.strerror})") from None
    try:
        return tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: invalid TOML: {e}") from None
