"""The Program container: target, ISA version, memory-space table, symbols, instructions, data,
and the architecture it was compiled for (as data: isa does not know the architecture classes)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from isa.errors import IsaError
from isa.fields import SPACE_BITS
from isa.instr import Instr
from isa.values import NAME_RE, DType

__all__ = ["Symbol", "Program", "SYMBOL_NAME_RE", "OP_NAME_RE", "TARGET_RE", "VERSION_RE",
           "arch_table"]

SYMBOL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # dots for `h.0.attn.weight`
# an op mark's name: a symbol name, or one holding a template {+N} that its loop fills in
OP_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(\{\+[0-9]+(\*[1-9][0-9]*)?\}[A-Za-z0-9_.]*)?")
TARGET_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
VERSION_RE = re.compile(r"[A-Za-z0-9_.+!\-]+")          # a PEP 440 version's characters


@dataclass(frozen=True, slots=True)
class Symbol:
    """A named tensor placed in memory: `space[addr]`, dense row-major `shape` of `dtype`."""

    name: str
    space: str
    addr: int
    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self) -> None:
        if type(self.name) is not str or SYMBOL_NAME_RE.fullmatch(self.name) is None:
            raise IsaError(f"symbol name {self.name!r} must match {SYMBOL_NAME_RE.pattern}")
        if type(self.space) is not str or NAME_RE.fullmatch(self.space) is None:
            raise IsaError(f"symbol {self.name}: space {self.space!r} is not an identifier")
        if type(self.addr) is not int or self.addr < 0:
            raise IsaError(f"symbol {self.name}: addr={self.addr!r} must be a non-negative int")
        shape = tuple(self.shape)
        if not shape or any(type(d) is not int or d <= 0 for d in shape):
            raise IsaError(f"symbol {self.name}: shape {shape!r} must be one or more positive ints")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", DType.of(self.dtype))

    @property
    def size_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Program:
    """A whole program for one target.

    data: initial contents of symbols (name -> array of the symbol's shape, stored in
    `DType.storage`: bf16 as uint16 bits), or None. Construction checks only what is cheap
    (names, the space table, symbol spaces); `isa.verify` checks the rest against a machine.
    Programs compare equal by value (arrays by content) and are not hashable.
    ops: where each source-graph op's instructions begin, as (first instruction index, op
    name) in program order; reports attribute cycles and energy to ops with it.
    arch: the architecture the program was compiled for, as its field table (what
    `dataclasses.asdict` gives of an arch/ description, with its `name` and `target`), read-only;
    None when unknown (hand-written programs). tool_version: the tessel that compiled it.
    """

    target: str
    isa_version: int
    spaces: tuple[str, ...]
    symbols: tuple[Symbol, ...] = ()
    instructions: tuple[Instr, ...] = ()
    data: Mapping[str, np.ndarray] | None = None
    ops: tuple[tuple[int, str], ...] = ()
    arch: Mapping[str, object] | None = None
    tool_version: str | None = None

    def __post_init__(self) -> None:
        if type(self.target) is not str or TARGET_RE.fullmatch(self.target) is None:
            raise IsaError(f"target {self.target!r} must match {TARGET_RE.pattern}")
        if type(self.isa_version) is not int or self.isa_version < 1:
            raise IsaError(f"isa_version={self.isa_version!r} must be a positive int")
        spaces = tuple(self.spaces)
        if not 1 <= len(spaces) <= 1 << SPACE_BITS:
            raise IsaError(f"a program names 1..{1 << SPACE_BITS} memory spaces, got {len(spaces)}")
        for name in spaces:
            if type(name) is not str or NAME_RE.fullmatch(name) is None:
                raise IsaError(f"memory space name {name!r} is not an identifier")
        if len(set(spaces)) != len(spaces):
            raise IsaError(f"memory space listed twice in {' '.join(spaces)}")
        symbols = tuple(self.symbols)
        seen: set[str] = set()
        for symbol in symbols:
            if not isinstance(symbol, Symbol):
                raise IsaError(f"symbols must be Symbol objects, got {symbol!r}")
            if symbol.name in seen:
                raise IsaError(f"symbol {symbol.name} defined twice")
            if symbol.space not in spaces:
                raise IsaError(f"symbol {symbol.name}: space {symbol.space} is not in the "
                               f"program's spaces ({' '.join(spaces)})")
            seen.add(symbol.name)
        object.__setattr__(self, "spaces", spaces)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "instructions", tuple(self.instructions))
        ops = tuple((int(i), str(n)) for i, n in self.ops)
        previous = 0
        for index, name in ops:
            if not previous <= index <= len(self.instructions) or OP_NAME_RE.fullmatch(name) is None:
                raise IsaError(f"op mark ({index}, {name!r}) out of order or not a name")
            previous = index
        object.__setattr__(self, "ops", ops)
        if self.data is not None:
            data = dict(self.data)
            for name, array in data.items():
                if type(name) is not str or not isinstance(array, np.ndarray):
                    raise IsaError(f"data must map symbol names to numpy arrays, got {name!r}")
            object.__setattr__(self, "data", MappingProxyType(data))
        if self.arch is not None:
            object.__setattr__(self, "arch", arch_table(self.arch, self.target))
        if self.tool_version is not None and (type(self.tool_version) is not str or
                                              VERSION_RE.fullmatch(self.tool_version) is None):
            raise IsaError(f"tool_version {self.tool_version!r} must match {VERSION_RE.pattern}")

    def symbol(self, name: str) -> Symbol:
        for symbol in self.symbols:
            if symbol.name == name:
                return symbol
        raise KeyError(f"no symbol {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        head = (self.target, self.isa_version, self.spaces, self.symbols, self.ops, self.arch,
                self.tool_version)
        if head != (other.target, other.isa_version, other.spaces, other.symbols, other.ops,
                    other.arch, other.tool_version):
            return False
        return _same_data(self.data, other.data) and self.instructions == other.instructions

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """A summary: programs hold up to millions of instructions."""
        data = "None" if self.data is None else f"<{len(self.data)} arrays>"
        arch = "None" if self.arch is None else f"<{self.arch['name']}>"
        return (f"Program(target={self.target!r}, isa_version={self.isa_version}, "
                f"spaces={self.spaces!r}, symbols=<{len(self.symbols)}>, "
                f"instructions=<{len(self.instructions)}>, data={data}, arch={arch}, "
                f"tool_version={self.tool_version!r})")


def arch_table(table: object, target: str) -> Mapping[str, object]:
    """`table` checked and frozen as an architecture record: a mapping of field names to
    strings, booleans, finite numbers or tables of the same, with a string `name` and the
    program's `target`. IsaError names the field at fault."""
    frozen = _frozen(table, "")
    if type(frozen.get("name")) is not str:
        raise IsaError(f"arch field 'name' must be a string, got {frozen.get('name')!r}")
    if frozen.get("target") != target:
        raise IsaError(f"arch field 'target' is {frozen.get('target')!r} but the program is "
                       f"for {target!r}")
    return frozen


def _frozen(table: object, prefix: str) -> Mapping[str, object]:
    if not isinstance(table, Mapping):
        what = f"arch field {prefix[:-1]!r}" if prefix else "the arch record"
        raise IsaError(f"{what} must be a table, got {type(table).__name__}")
    out: dict[str, object] = {}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if type(key) is not str:
            raise IsaError(f"arch field name {key!r} is not a string")
        if isinstance(value, Mapping):
            value = _frozen(value, where + ".")
        elif type(value) is float and not math.isfinite(value):
            raise IsaError(f"arch field {where!r} = {value!r} is not finite")
        elif type(value) not in (str, bool, int, float):
            raise IsaError(f"arch field {where!r} must be a string, boolean, number or table, "
                           f"got {type(value).__name__}")
        out[key] = value
    return MappingProxyType(out)


def _same_data(a: Mapping[str, np.ndarray] | None, b: Mapping[str, np.ndarray] | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.keys() != b.keys():
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               and a[k].tobytes() == b[k].tobytes() for k in a)
