"""Architecture configs as frozen dataclasses, validated at the boundary: `build` checks a TOML
table against a dataclass whose fields declare a type and, in their metadata, the allowed
range (`within(limit)`, arch/limits.py) or choices. Every numeric field is finite and inside
its limit; an integer field takes integers only. Errors name the file (or the `--set`
argument that wrote the field), the field, the value and what was expected.
(Finding a config's dataclass by its `target`, presets and `--set`: arch/presets.py.)
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from arch.limits import Limit

__all__ = ["ArchError", "build", "within", "choice", "table_class", "CONFIG_DIR", "LINK_DIR", "link_names", "target_of"]

CONFIG_DIR = Path(__file__).parent / "configs"
LINK_DIR = CONFIG_DIR / "links"          # device-to-device link presets (arch/links.py)
T = TypeVar("T")
Blame = Callable[[str], str]          # dotted field -> who wrote it (file or --set argument)


class ArchError(ValueError):
    """A bad architecture file or override; the message names the file and the field."""


def link_names() -> list[str]:
    """The link presets (arch/links.py), which device presets name (a GPU's `link`)."""
    return sorted(p.stem for p in LINK_DIR.glob("*.toml"))


def target_of(cls: type) -> str:
    """The target a description class is for: the one choice of its `target` field."""
    (target,) = next(f for f in dataclasses.fields(cls) if f.name == "target").metadata["choices"]
    return target


def within(limit: Limit, **kw: Any) -> Any:
    """A numeric field (or table of numbers) whose values must be finite and inside `limit`."""
    return dataclasses.field(metadata={"limit": limit}, **kw)


def choice(*options: str, **kw: Any) -> Any:
    return dataclasses.field(metadata={"choices": options}, **kw)


def build(cls: type[T], table: Mapping[str, Any], source: str, prefix: str = "",
          origins: Mapping[str, str] | None = None) -> T:
    """Construct dataclass `cls` from a TOML table, checking every field.

    `origins` maps a dotted key to the `--set KEY=VALUE` argument that wrote it: an error in
    that field (or below it) names the argument instead of `source`.
    """
    origins = dict(origins or {})

    def blame(where: str) -> str:
        parts = where.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in origins:
                return origins[".".join(parts[:end])]
        return source

    settings = f" with {', '.join(origins.values())}" if origins else ""
    return _build(cls, table, blame, prefix, f"{source}{settings}")


def _build(cls: type[T], table: Any, blame: Blame, prefix: str, context: str) -> T:
    if not isinstance(table, Mapping):
        where = prefix.rstrip(".")
        raise ArchError(f"{blame(where)}: field '{where}' must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        where = f"{prefix}{unknown[0]}"
        raise ArchError(f"{blame(where)}: unknown field '{where}' ({_known(unknown[0], fields, prefix)})")
    values = {}
    for name, f in fields.items():
        where = f"{prefix}{name}"
        if name not in table:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ArchError(f"{blame(where)}: missing field '{where}'")
        values[name] = _check(hints[name], f, table[name], blame, where, context)
    try:
        return cls(**values)
    except ArchError as e:                      # cross-field checks in __post_init__
        raise ArchError(f"{context}: {e}") from None


def table_class(hint: Any) -> type | None:
    """The dataclass a field of type `hint` holds as a TOML table: `X`, or `X | None` for an
    optional table (absent: None); None for any other field."""
    if dataclasses.is_dataclass(hint):
        return hint
    optional = [a for a in typing.get_args(hint) if a is not type(None)]
    if (typing.get_origin(hint) in (typing.Union, types.UnionType) and len(optional) == 1
            and dataclasses.is_dataclass(optional[0])):
        return optional[0]
    return None


def _known(name: str, fields: Mapping[str, Any], prefix: str) -> str:
    """'did you mean X?' for a near miss, else the list of fields."""
    close = difflib.get_close_matches(name, list(fields), n=1)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return "fields: " + ", ".join(f"{prefix}{f}" for f in fields)


def _check(hint: Any, f: dataclasses.Field, value: Any, blame: Blame, where: str,
           context: str) -> Any:
    if table_class(hint) is not None:
        return _build(table_class(hint), value, blame, where + ".", context)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, Mapping):
            raise ArchError(f"{blame(where)}: field '{where}' must be a table, got {value!r}")
        _, item = typing.get_args(hint)
        return {k: _number(item, f, v, blame(f"{where}.{k}"), f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ArchError(f"{blame(where)}: field '{where}' must be true or false, got {value!r}")
        return value
    if hint is str:
        options = f.metadata.get("choices")
        if not isinstance(value, str) or (options and value not in options):
            expected = f"one of {', '.join(options)}" if options else "a string"
            raise ArchError(f"{blame(where)}: field '{where}' must be {expected}, got {value!r}")
        return value
    return _number(hint, f, value, blame(where), where)


def _number(hint: Any, f: dataclasses.Field, value: Any, origin: str, where: str) -> Any:
    """An int (int fields take no floats) or a float, finite and inside the field's limit."""
    limit: Limit = f.metadata["limit"]
    kind = "an integer" if hint is int else "a number"
    numeric = (int,) if hint is int else (int, float)
    if not isinstance(value, numeric) or isinstance(value, bool) or not limit.holds(value):
        raise ArchError(f"{origin}: field '{where}' must be {limit.describe(kind)}, got {value!r}")
    return float(value) if hint is float else value


def check_mac_formats(mac_formats: Mapping[str, int], priced: Mapping[str, float],
                      narrow: Sequence[str]) -> None:
    """An array's narrow MACs (`mac_formats`: format -> products a PE a cycle) are formats of
    `narrow` (isa MAC_FORMATS), each with its energy per MAC (`energy.mac_format_pj`) and no
    energy for a format not listed: ArchError of one line naming the field."""
    unknown = sorted(set(mac_formats) - set(narrow))
    if unknown:
        raise ArchError(f"unknown field 'mac_formats.{unknown[0]}' (formats: {', '.join(narrow)})")
    for fmt in sorted(set(mac_formats) ^ set(priced)):
        if fmt in mac_formats:
            raise ArchError(f"missing field 'energy.mac_format_pj.{fmt}'")
        raise ArchError(f"field 'energy.mac_format_pj.{fmt}' prices a format mac_formats does not list")

