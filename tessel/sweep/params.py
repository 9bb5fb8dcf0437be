"""Sweep parameters: value lists and ranges, checked against the base architecture's fields.

A parameter is a dotted field of the base preset's arch dataclass (`rows`, `timing.tRCD_RD`,
`vector_latency_cycles.exp`) with a list of values or a range table; a linked parameter
(`link = {field = values, ...}`) sets several fields together, one value of each per step.
Every value goes through the arch loader's own field check (type, range, choices), so a
value the loader would refuse is refused here, before anything runs.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from arch.config import ArchError, build

__all__ = ["SweepError", "Parameter", "parse_parameter", "MAX_VALUES"]

MAX_VALUES = 100_000          # values of one parameter; a larger range is a typo, not a sweep
_RANGE_KEYS = ("start", "stop", "step", "factor")
_FIXED = ("name", "target")   # identity fields of an arch, not design parameters


class SweepError(ValueError):
    """A bad sweep spec or run; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Parameter:
    label: str                              # its key under [parameters]
    fields: tuple[str, ...]                 # dotted arch fields it sets
    values: tuple[tuple[Any, ...], ...]     # one tuple per step, aligned with fields


def parse_parameter(label: str, raw: Any, base: Any, where: str) -> Parameter:
    """One [parameters] entry against the base arch instance; `where` is "file: parameters.x"."""
    if isinstance(raw, Mapping) and "link" in raw:
        if set(raw) != {"link"}:
            raise SweepError(f"{where}: a linked parameter has only the key 'link'")
        link = raw["link"]
        if not isinstance(link, Mapping) or len(link) < 2:
            raise SweepError(f"{where}.link: expected a table of two or more fields, each with its values")
        columns = {name: _checked(name, values, base, f"{where}.link.{name}") for name, values in link.items()}
        lengths = {name: len(v) for name, v in columns.items()}
        if len(set(lengths.values())) != 1:
            counts = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise SweepError(f"{where}.link: the value lists differ in length ({counts})")
        return Parameter(label, tuple(columns), tuple(zip(*columns.values())))
    values = _checked(label, raw, base, where)
    return Parameter(label, (label,), tuple((v,) for v in values))


def _checked(name: str, raw: Any, base: Any, where: str) -> tuple[Any, ...]:
    field, hint, entry, prefix = _resolve(name, base, where)
    return tuple(_check_value(field, hint, entry, prefix, v, f"{where}[{i}]")
                 for i, v in enumerate(_values(raw, where)))


def _resolve(dotted: str, base: Any, where: str) -> tuple[dataclasses.Field, Any, str | None, str]:
    """The dataclass field a dotted name reaches (and the dict entry, for a table of numbers)."""
    node, parts = base, dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(node) if f.init and not (node is base and f.name in _FIXED)}
        prefix = ".".join(parts[:i])
        if part not in fields:
            names = ", ".join(f"{prefix}.{n}" if prefix else n for n in fields)
            owner = f"{base.target} arch" + (f" table '{prefix}'" if prefix else "")
            raise SweepError(f"{where}: unknown parameter of {owner} (fields: {names})")
        hint, value, rest = typing.get_type_hints(type(node))[part], getattr(node, part), parts[i + 1:]
        if dataclasses.is_dataclass(hint):
            if not rest:
                raise SweepError(f"{where}: '{dotted}' is a table: sweep one of its fields, "
                                 f"such as {dotted}.{dataclasses.fields(hint)[0].name}")
            node = value
            continue
        if typing.get_origin(hint) is dict:
            if len(rest) != 1 or rest[0] not in value:
                raise SweepError(f"{where}: '{dotted}' must name one entry of the table "
                                 f"'{'.'.join(parts[:i + 1])}' ({', '.join(sorted(value))})")
            return fields[part], hint, rest[0], prefix
        if rest:
            raise SweepError(f"{where}: '{'.'.join(parts[:i + 1])}' is not a table")
        return fields[part], hint, None, prefix
    raise SweepError(f"{where}: empty parameter name")


def _check_value(field: dataclasses.Field, hint: Any, entry: str | None, prefix: str, value: Any,
                 where: str) -> Any:
    """The arch loader's check of one field, alone: a one-field dataclass built from its table."""
    single = dataclasses.make_dataclass("Value", [(field.name, hint, dataclasses.field(metadata=field.metadata))])
    table = {field.name: {entry: value} if entry else value}
    try:
        checked = getattr(build(single, table, where, f"{prefix}." if prefix else ""), field.name)
    except ArchError as e:
        raise SweepError(str(e)) from None
    if isinstance(checked, float) and not math.isfinite(checked):
        raise SweepError(f"{where}: field '{field.name}' must be finite, got {value!r}")
    return checked[entry] if entry else checked


def _values(raw: Any, where: str) -> list[Any]:
    """A list of values as given, or the values of a range table."""
    if isinstance(raw, list):
        if not raw:
            raise SweepError(f"{where}: empty list of values")
        return raw
    if not isinstance(raw, Mapping):
        raise SweepError(f"{where}: expected a list of values or a range table "
                         f"{{start, stop, step | factor}}, got {raw!r}")
    unknown = sorted(set(raw) - set(_RANGE_KEYS))
    if unknown:
        raise SweepError(f"{where}.{unknown[0]}: unknown key of a range (keys: {', '.join(_RANGE_KEYS)})")
    for key in ("start", "stop"):
        if key not in raw:
            raise SweepError(f"{where}: a range needs '{key}'")
    if ("step" in raw) == ("factor" in raw):
        raise SweepError(f"{where}: a range needs exactly one of 'step' (linear) or 'factor' (geometric)")
    for key, value in raw.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise SweepError(f"{where}.{key}: expected a number, got {value!r}")
    start, stop = raw["start"], raw["stop"]
    if start > stop:
        raise SweepError(f"{where}: empty range (start {start} > stop {stop})")
    return _linear(start, stop, raw["step"], where) if "step" in raw else _geometric(start, stop, raw["factor"], where)


def _linear(start: float, stop: float, step: float, where: str) -> list[Any]:
    if step <= 0:
        raise SweepError(f"{where}.step: must be positive, got {step}")
    count = math.floor((stop - start) / step * (1 + 1e-12)) + 1
    _limit(count, where)
    if all(isinstance(v, int) for v in (start, step)):
        return [start + i * step for i in range(count)]
    return [round(start + i * step, 12) for i in range(count)]


def _geometric(start: float, stop: float, factor: float, where: str) -> list[Any]:
    if factor <= 1:
        raise SweepError(f"{where}.factor: must be greater than 1, got {factor}")
    if start <= 0:
        raise SweepError(f"{where}.start: a geometric range starts above 0, got {start}")
    _limit(math.floor(math.log(stop / start, factor) + 1e-9) + 1, where)
    values, value = [], start
    while value <= stop * (1 + 1e-12):
        values.append(value if isinstance(value, int) else round(value, 12))
        value *= factor
    return values


def _limit(count: int, where: str) -> None:
    if count > MAX_VALUES:
        raise SweepError(f"{where}: the range has {count:,} values, more than {MAX_VALUES:,}")
