"""The `.tbin` header: one JSON object with every part of a Program but its words and data.

    {"target": str, "isa": int, "spaces": [str, ...],
     "symbols": [{"name": str, "space": str, "addr": int, "shape": [int, ...], "dtype": str}, ...],
     "ops": [[int, str], ...],                       # optional: op marks
     "arch": {...},                                  # optional: the architecture record
     "tool_version": str}                            # optional: the tessel that compiled it

Reading checks every key and the type of every value before anything is built, so a header
that is not of this shape is one error naming the field (`read_header`).
"""

from __future__ import annotations

from dataclasses import dataclass

from isa.errors import IsaError
from isa.jsontext import dump_object, load_object
from isa.opcodes import ISA_VERSION
from isa.program import Program, Symbol

__all__ = ["Header", "header_json", "read_header"]

_REQUIRED = ("target", "isa", "spaces", "symbols")
_OPTIONAL = ("ops", "arch", "tool_version")
_SYMBOL_KEYS = ("name", "space", "addr", "shape", "dtype")


def header_json(program: Program) -> str:
    """The header of `program` as compact JSON (optional keys only when they have a value)."""
    header: dict[str, object] = {
        "target": program.target,
        "isa": program.isa_version,
        "spaces": list(program.spaces),
        "symbols": [{"name": s.name, "space": s.space, "addr": s.addr,
                     "shape": list(s.shape), "dtype": str(s.dtype)} for s in program.symbols],
        "ops": [[index, name] for index, name in program.ops],
    }
    if program.arch is not None:
        header["arch"] = program.arch
    if program.tool_version is not None:
        header["tool_version"] = program.tool_version
    return dump_object(header)


@dataclass(frozen=True)
class Header:
    """A checked header; `program` adds the instructions and data."""

    fields: dict

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.fields["spaces"])

    def program(self, instructions, data) -> Program:
        f = self.fields
        return Program(f["target"], f["isa"], self.spaces, f["symbols"], instructions, data,
                       tuple(tuple(mark) for mark in f.get("ops", ())), f.get("arch"),
                       f.get("tool_version"))


def read_header(raw: bytes) -> Header:
    """Parse and check a header; IsaError names the field and what it must be."""
    try:
        fields = load_object(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise IsaError(f"not UTF-8 (byte {error.start})") from None
    except ValueError as error:
        raise IsaError(str(error)) from None
    unknown = [k for k in fields if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise IsaError(f"unknown field {unknown[0]!r} (fields: {', '.join(_REQUIRED + _OPTIONAL)})")
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise IsaError(f"missing field {missing[0]!r}")
    if fields["isa"] != ISA_VERSION or type(fields["isa"]) is not int:
        raise IsaError(f"unsupported ISA version {fields['isa']!r} (this build reads {ISA_VERSION})")
    _expect(fields, "target", str, "a string")
    _expect(fields, "tool_version", str, "a string")
    _expect(fields, "arch", dict, "an object")
    if not _list_of(fields["spaces"], str):
        raise IsaError(f"field 'spaces' must be a list of strings, got {_short(fields['spaces'])}")
    if not isinstance(fields.get("ops", []), list) or not all(
            isinstance(m, list) and len(m) == 2 and type(m[0]) is int and type(m[1]) is str
            for m in fields.get("ops", [])):
        raise IsaError(f"field 'ops' must be a list of [index, name] pairs, "
                       f"got {_short(fields['ops'])}")
    if not isinstance(fields["symbols"], list):
        raise IsaError(f"field 'symbols' must be a list, got {_short(fields['symbols'])}")
    fields["symbols"] = tuple(_symbol(k, s) for k, s in enumerate(fields["symbols"]))
    return Header(fields)


def _symbol(k: int, entry: object) -> Symbol:
    if not isinstance(entry, dict) or sorted(entry) != sorted(_SYMBOL_KEYS):
        raise IsaError(f"symbols[{k}] must be an object with exactly the keys "
                       f"{', '.join(_SYMBOL_KEYS)}, got {_short(entry)}")
    if not _list_of(entry["shape"], int) or type(entry["dtype"]) is not str:
        raise IsaError(f"symbols[{k}]: shape must be a list of integers and dtype a string, "
                       f"got {_short(entry)}")
    return Symbol(entry["name"], entry["space"], entry["addr"], tuple(entry["shape"]),
                  entry["dtype"])


def _expect(fields: dict, key: str, kind: type, what: str) -> None:
    if key in fields and type(fields[key]) is not kind:
        raise IsaError(f"field {key!r} must be {what}, got {_short(fields[key])}")


def _list_of(value: object, kind: type) -> bool:
    return isinstance(value, list) and all(type(v) is kind for v in value)


def _short(value: object, limit: int = 60) -> str:
    """A value as it appears in an error: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
