"""Architecture configs as frozen dataclasses, validated at the boundary: `build` checks a TOML
table against a dataclass whose fields declare a type and, in their metadata, the allowed
range or choices. Errors name the file, the field, the value and what was expected.
(Finding a config's dataclass by its `target`, presets and `--set`: arch/presets.py.)
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

__all__ = ["ArchError", "build", "positive", "non_negative", "choice", "CONFIG_DIR", "target_of"]

CONFIG_DIR = Path(__file__).parent / "configs"
T = TypeVar("T")


class ArchError(ValueError):
    """A bad architecture file or override; the message names the file and the field."""


def target_of(cls: type) -> str:
    """The target a description class is for: the one choice of its `target` field."""
    (target,) = next(f for f in dataclasses.fields(cls) if f.name == "target").metadata["choices"]
    return target


def positive(**kw: Any) -> Any:
    return dataclasses.field(metadata={"min": 0, "strict": True}, **kw)


def non_negative(**kw: Any) -> Any:
    return dataclasses.field(metadata={"min": 0, "strict": False}, **kw)


def choice(*options: str, **kw: Any) -> Any:
    return dataclasses.field(metadata={"choices": options}, **kw)


def build(cls: type[T], table: Mapping[str, Any], source: str, prefix: str = "") -> T:
    """Construct dataclass `cls` from a TOML table, checking every field."""
    if not isinstance(table, Mapping):
        raise ArchError(f"{source}: field '{prefix.rstrip('.')}' must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ArchError(f"{source}: unknown field '{prefix}{unknown[0]}'")
    values = {}
    for name, f in fields.items():
        where = f"{prefix}{name}"
        if name not in table:
            if f.default is not dataclasses.MISSING:
                continue
            raise ArchError(f"{source}: missing field '{where}'")
        values[name] = _check(hints[name], f, table[name], source, where)
    try:
        return cls(**values)
    except ArchError as e:                      # cross-field checks in __post_init__
        raise ArchError(f"{source}: {e}") from None


def _check(hint: Any, f: dataclasses.Field, value: Any, source: str, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, where + ".")
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()):
            raise ArchError(f"{source}: field '{where}' must be a table of non-negative numbers")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ArchError(f"{source}: field '{where}' must be true or false, got {value!r}")
        return value
    if hint is str:
        options = f.metadata.get("choices")
        if not isinstance(value, str) or (options and value not in options):
            expected = f"one of {', '.join(options)}" if options else "a string"
            raise ArchError(f"{source}: field '{where}' must be {expected}, got {value!r}")
        return value
    numeric = (int,) if hint is int else (int, float)
    kind = "an integer" if hint is int else "a number"
    if "min" in f.metadata:
        kind = ("a positive " if f.metadata["strict"] else "a non-negative ") + kind.split()[-1]
    if not isinstance(value, numeric) or isinstance(value, bool):
        raise ArchError(f"{source}: field '{where}' must be {kind}, got {value!r}")
    low, strict = f.metadata.get("min"), f.metadata.get("strict")
    if low is not None and (value <= low if strict else value < low):
        raise ArchError(f"{source}: field '{where}' must be {kind}, got {value!r}")
    return float(value) if hint is float else value
