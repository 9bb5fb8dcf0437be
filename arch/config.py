"""Load architecture configs: TOML files into frozen dataclasses, validated at the boundary.

A config file names its `target`; the target's dataclass (registered with `register`)
declares every field with a type and, in its metadata, the allowed range or choices.
Errors name the file, the field, the value and what was expected. `--set key=value`
overrides go through the same validation (dotted keys reach nested tables).
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

__all__ = ["ArchError", "register", "ARCH_CLASSES", "load_arch", "preset_names", "positive",
           "non_negative", "choice", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).parent / "configs"
ARCH_CLASSES: dict[str, type] = {}
T = TypeVar("T")


class ArchError(ValueError):
    """A bad architecture file or override; the message names the file and the field."""


def register(target: str):
    """Class decorator: the dataclass that describes architectures of `target`."""
    def wrap(cls: type[T]) -> type[T]:
        ARCH_CLASSES[target] = cls
        return cls
    return wrap


def positive(**kw: Any) -> Any:
    return dataclasses.field(metadata={"min": 0, "strict": True}, **kw)


def non_negative(**kw: Any) -> Any:
    return dataclasses.field(metadata={"min": 0, "strict": False}, **kw)


def choice(*options: str, **kw: Any) -> Any:
    return dataclasses.field(metadata={"choices": options}, **kw)


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _read(spec: str | Path) -> tuple[str, dict]:
    path = Path(spec)
    if path.suffix != ".toml":
        if str(spec) not in preset_names():
            raise ArchError(f"unknown architecture '{spec}': not a preset "
                            f"({', '.join(preset_names())}) or a .toml file")
        path = CONFIG_DIR / f"{spec}.toml"
    try:
        text = path.read_text()
    except OSError as e:
        raise ArchError(f"{spec}: cannot read ({e.strerror})") from None
    try:
        return str(path), tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ArchError(f"{path}: invalid TOML: {e}") from None


def _override(source: str, table: dict, assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ArchError(f"--set {assignment}: expected key=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()                       # a bare word such as os or bf16
    *parents, leaf = key.strip().split(".")
    node = table
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ArchError(f"--set {assignment}: '{p}' is not a table in {source}")
    node[leaf] = value


def load_arch(spec: str | Path, overrides: Sequence[str] = ()) -> Any:
    """A preset name or a .toml path, with `key=value` overrides, as a validated dataclass."""
    source, table = _read(spec)
    for assignment in overrides:
        _override(source, table, assignment)
    target = table.get("target")
    if target not in ARCH_CLASSES:
        known = ", ".join(sorted(ARCH_CLASSES)) or "none registered"
        raise ArchError(f"{source}: field 'target' must be one of {known}, got {target!r}")
    return build(ARCH_CLASSES[target], table, source)


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
