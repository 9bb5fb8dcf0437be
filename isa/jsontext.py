"""Strict JSON objects for program files (the `.tbin` header, the `.tasm` `.arch` line).

`json.loads` keeps the last of repeated keys and reads NaN and Infinity; a program file must
not say one thing twice, so repeated keys are refused (non-finite numbers are refused by the
fields that read them). Every failure is a ValueError with a one-line message.
"""

from __future__ import annotations

import json

__all__ = ["load_object", "dump_object", "RepeatedKey", "no_repeats"]


class RepeatedKey(ValueError):
    """A JSON object names `key` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} appears twice")
        self.key = key


def no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """`json.loads` object_pairs_hook that refuses a repeated key (RepeatedKey)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out


def load_object(text: str) -> dict[str, object]:
    """The JSON object in `text`; ValueError when it is not one, or repeats a key."""
    try:
        value = json.loads(text, object_pairs_hook=no_repeats)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error.msg} at character {error.pos}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def dump_object(value: object) -> str:
    """Compact one-line JSON, ASCII only; read-only mappings are written as objects."""
    return json.dumps(value, separators=(",", ":"), default=dict)
