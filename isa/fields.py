"""Operand field kinds: how one named operand is checked, printed, parsed and packed into bits.

The opcode table lists each instruction's fields as (name, kind); the encoder, decoder,
printer and parser all call the kind, so a value round-trips through text and binary by
construction. Column methods (`to_raw`/`from_raw`) work on whole numpy columns so that
programs of a million instructions encode and decode in seconds.
"""

from __future__ import annotations

import abc
import enum
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from isa.errors import FieldError
from isa.values import Addr, DType, parse_int

__all__ = ["FieldKind", "AddressKind", "Field", "U", "S", "E", "Flag", "A32", "A40", "A32_64B", "F32", "DTYPE", "SPACE_BITS",
           "ColumnError", "trusted_addr"]

SPACE_BITS = 4  # a program names at most 2**4 spaces; an address operand indexes the first
                # 2**space_bits of them (AddressKind.space_bits <= SPACE_BITS)


class ColumnError(Exception):
    """Internal: the value at `position` of a column is bad; callers add the instruction."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


class FieldKind(abc.ABC):
    """One kind of operand field; every kind implements all six methods."""

    bits: int

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """Short name used in docs and range messages (`U16`, `A40`)."""

    @abc.abstractmethod
    def coerce(self, name: str, value: object) -> object:
        """Return the canonical value for `value` or raise FieldError naming the field."""

    @abc.abstractmethod
    def format(self, value: object) -> str:
        """Canonical assembly text of a (coerced) value."""

    @abc.abstractmethod
    def from_text(self, name: str, text: str) -> object:
        """Parse assembly text into a canonical value; FieldError when it does not fit."""

    @abc.abstractmethod
    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        """Pack a column of values into uint64 bit patterns; ColumnError on a bad value."""

    @abc.abstractmethod
    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        """Unpack a uint64 column into values; ColumnError on an undecodable pattern.

        The decoder passes each distinct bit pattern once, so this may be slowish.
        """

    def _first_bad(self, name: str, values: Sequence) -> ColumnError:
        """Slow path: find the first value that is not canonical, for the error message."""
        for position, value in enumerate(values):
            try:
                canonical = self.coerce(name, value)
            except FieldError as error:
                return ColumnError(position, str(error))
            if type(canonical) is not type(value) or canonical != value:
                return ColumnError(position, f"{name}={value!r} is not a canonical {self.label} "
                                   "value (build instructions with Instr.make)")
        return ColumnError(0, f"{name}: column does not encode")


@dataclass(frozen=True, slots=True)
class Field:
    """A named operand slot of an opcode."""

    name: str
    kind: FieldKind


def _int_text(name: str, text: str) -> int:
    try:
        return parse_int(text)
    except ValueError:
        raise FieldError(f"{name}={text} is not an integer") from None


@dataclass(frozen=True, slots=True)
class U(FieldKind):
    """Unsigned integer of `bits` bits, printed in decimal."""

    bits: int

    @property
    def label(self) -> str:
        return f"U{self.bits}"

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and the largest value."""
        return 0, (1 << self.bits) - 1

    def coerce(self, name: str, value: object) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise FieldError(f"{name}={value!r} is not an integer ({self.label})")
        value = int(value)
        low, high = self.bounds
        if not low <= value <= high:
            raise FieldError(f"{name}={value} does not fit {self.label} ({low}..{high})")
        return value

    def format(self, value: object) -> str:
        return str(value)

    def from_text(self, name: str, text: str) -> int:
        return self.coerce(name, _int_text(name, text))

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        if not set(map(type, values)) <= {int}:
            raise self._first_bad(name, values)
        try:
            column = np.array(values, dtype=np.int64)
        except OverflowError:
            raise self._first_bad(name, values) from None
        if len(column) and (column.min() < 0 or column.max() >= 1 << self.bits):
            raise self._first_bad(name, values)
        return column.astype(np.uint64)

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        return raw.tolist()


@dataclass(frozen=True, slots=True)
class S(U):
    """Signed (two's complement) integer of `bits` bits, printed in decimal: a loop stride,
    which may move an address down as well as up."""

    @property
    def label(self) -> str:
        return f"S{self.bits}"

    @property
    def bounds(self) -> tuple[int, int]:
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        low, high = self.bounds
        if not set(map(type, values)) <= {int} or any(not low <= v <= high for v in values):
            raise self._first_bad(name, values)
        return np.array([v & ((1 << self.bits) - 1) for v in values], dtype=np.uint64)

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        sign = 1 << (self.bits - 1)
        return [v - (sign << 1) if v & sign else v for v in raw.tolist()]


@dataclass(frozen=True, slots=True)
class Flag(FieldKind):
    """One bit, printed 0/1; booleans are accepted and stored as ints."""

    bits = 1  # a constant, not a dataclass field

    @property
    def label(self) -> str:
        return "Flag"

    def coerce(self, name: str, value: object) -> int:
        if isinstance(value, (bool, np.bool_)):
            return int(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return int(value)
        raise FieldError(f"{name}={value!r} does not fit Flag (0 or 1)")

    def format(self, value: object) -> str:
        return str(value)

    def from_text(self, name: str, text: str) -> int:
        return self.coerce(name, _int_text(name, text))

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        return U(1).to_raw(name, values, space_index)

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        return raw.tolist()


@dataclass(frozen=True, slots=True)
class E(FieldKind):
    """Enumeration of `bits` bits printed by name; code = position in `names`.

    With `enum` set (DType), values are that enum's members, else plain strings.
    """

    bits: int
    names: tuple[str, ...]
    enum: type[enum.Enum] | None = None

    def __post_init__(self) -> None:
        if len(self.names) > 1 << self.bits:
            raise ValueError(f"{len(self.names)} names do not fit E{self.bits}")

    @property
    def label(self) -> str:
        return f"E{self.bits}"

    def coerce(self, name: str, value: object) -> object:
        if isinstance(value, str) and value in self.names:
            return self.enum(value) if self.enum is not None else str(value)
        raise FieldError(f"{name}={value!r} is not one of {', '.join(self.names)}")

    def format(self, value: object) -> str:
        return str(value)

    def from_text(self, name: str, text: str) -> object:
        return self.coerce(name, text)

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        codes = {n: i for i, n in enumerate(self.names)}
        want = str if self.enum is None else self.enum
        if not set(map(type, values)) <= {want}:
            raise self._first_bad(name, values)
        try:
            return np.array([codes[v] for v in values], dtype=np.uint64)
        except KeyError:
            raise self._first_bad(name, values) from None

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        if len(raw) and raw.max() >= len(self.names):
            position = int(np.argmax(raw >= len(self.names)))
            raise ColumnError(
                position,
                f"{name} has no value {int(raw[position])} (0..{len(self.names) - 1})",
            )
        members = [self.coerce(name, n) for n in self.names]
        return [members[i] for i in raw.tolist()]


@dataclass(frozen=True, slots=True)
class AddressKind(FieldKind):
    """Address operand: `space_bits` of index into the program's space table, then `addr_bits`
    bits that count `granule`-byte units (1: bytes; a coarser granule trades alignment for
    reach). A narrower space index buys reach: a program may name 16 spaces, but an operand
    reaches only the first 2**space_bits of them. Text and decoded values are byte addresses
    either way."""

    space_bits: int
    addr_bits: int
    granule: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.space_bits <= SPACE_BITS:
            raise ValueError(f"space_bits={self.space_bits} must be 1..{SPACE_BITS}")

    @property
    def bits(self) -> int:
        return self.space_bits + self.addr_bits

    @property
    def spaces(self) -> int:
        """How many of the program's spaces (the first ones) this operand can name."""
        return 1 << self.space_bits

    def space_error(self, name: str, value: Addr, index: int) -> str:
        """The refusal of an operand whose space sits beyond the index this kind holds."""
        return (f"{name}={value}: space {value.space} is index {index} of the program's "
                f"spaces, beyond the {self.space_bits}-bit space index of {self.label} "
                f"(0..{self.spaces - 1})")

    @property
    def reach(self) -> int:
        """Bytes of a space this operand can address."""
        return self.granule << self.addr_bits

    @property
    def label(self) -> str:
        return f"A{self.bits}" if self.granule == 1 else f"A{self.bits}/{self.granule}B"

    def coerce(self, name: str, value: object) -> Addr:
        if isinstance(value, str):
            try:
                value = Addr.parse(value)
            except FieldError as error:
                raise FieldError(f"{name}: {error}") from None
        if not isinstance(value, Addr):
            raise FieldError(f"{name}={value!r} is not an address (space[0x...])")
        if value.addr >= self.reach:
            limit = self.reach - self.granule
            raise FieldError(f"{name}={value} does not fit {self.label} (address 0x0..{limit:#x})")
        if value.addr % self.granule:
            raise FieldError(f"{name}={value} is not a multiple of {self.granule} bytes ({self.label})")
        return value

    def format(self, value: object) -> str:
        return str(value)

    def from_text(self, name: str, text: str) -> Addr:
        return self.coerce(name, text)

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        if not set(map(type, values)) <= {Addr}:
            raise self._first_bad(name, values)
        space = np.array([space_index.get(v.space, -1) for v in values], dtype=np.int64)
        if len(space) and space.min() < 0:
            position = int(np.argmin(space))
            known = " ".join(space_index)
            raise ColumnError(position, f"{name}={values[position]}: unknown space "
                              f"{values[position].space!r} (program spaces: {known})")
        if len(space) and space.max() >= self.spaces:
            position = int(np.argmax(space >= self.spaces))
            raise ColumnError(position, self.space_error(name, values[position], int(space[position])))
        try:
            addr = np.array([v.addr for v in values], dtype=np.int64)
        except OverflowError:
            raise self._first_bad(name, values) from None
        if len(addr) and (addr.max() >= self.reach or (addr % self.granule).any()):
            raise self._first_bad(name, values)
        units = addr // self.granule
        return space.astype(np.uint64) << np.uint64(self.addr_bits) | units.astype(np.uint64)

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        space = raw >> np.uint64(self.addr_bits)
        if len(space) and space.max() >= len(spaces):
            position = int(np.argmax(space >= len(spaces)))
            raise ColumnError(position, f"{name} uses space index {int(space[position])} but "
                              f"the program declares {len(spaces)} spaces")
        units = raw & np.uint64((1 << self.addr_bits) - 1)
        return [trusted_addr(spaces[s], a * self.granule) for s, a in zip(space.tolist(), units.tolist())]


_SET_SPACE = Addr.__dict__["space"].__set__  # slot setters: bypass the frozen __setattr__
_SET_ADDR = Addr.__dict__["addr"].__set__


def trusted_addr(space: str, addr: int) -> Addr:
    """Build an Addr from decoded bits, skipping the checks they cannot fail."""
    value = object.__new__(Addr)
    _SET_SPACE(value, space)
    _SET_ADDR(value, addr)
    return value


A32 = AddressKind(space_bits=4, addr_bits=28)   # on-chip: 256 MiB of any of 16 spaces
# Off-chip: 256 GiB (Llama-3.1-70B's 141 GB of bf16 weights in one DRAM). Every target names
# at most 3 spaces (systolic dram sram acc, dataflow sram hbm ddr, pim dram gbuf abuf), so 2 bits
# of space index suffice.
A40 = AddressKind(space_bits=2, addr_bits=38)
A32_64B = AddressKind(space_bits=4, addr_bits=28, granule=64)   # 64-byte aligned, 16 GiB of reach

_F32_MAX = float(np.finfo(np.float32).max)
_F32_MAX_TEXT = str(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class _Float32(FieldKind):
    """IEEE float32 immediate; text is the shortest decimal that reads back the same float32."""

    bits = 32  # a constant, not a dataclass field

    @property
    def label(self) -> str:
        return "F32"

    def coerce(self, name: str, value: object) -> float:
        numbers = (int, float, np.integer, np.floating)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers):
            raise FieldError(f"{name}={value!r} is not a number (F32)")
        value = float(value)
        if math.isnan(value):
            raise FieldError(f"{name}=nan: NaN is not allowed in F32 fields")
        try:
            return struct.unpack("<f", struct.pack("<f", value))[0]
        except OverflowError:
            raise FieldError(
                f"{name}={value!r} does not fit F32 (|x| <= {_F32_MAX_TEXT})") from None

    def format(self, value: object) -> str:
        return str(np.float32(value))

    def from_text(self, name: str, text: str) -> float:
        magnitude = text.lower().lstrip("+-")
        if magnitude == "nan":
            raise FieldError(f"{name}={text}: NaN is not allowed in F32 fields")
        if magnitude == "inf":
            return float(text.lower())
        try:
            value = float(text)
        except ValueError:
            raise FieldError(f"{name}={text} is not a number") from None
        try:
            if math.isinf(value):
                raise FieldError(text)
            return self.coerce(name, value)  # just above the largest float32 still rounds down
        except FieldError:
            raise FieldError(f"{name}={text} does not fit F32 (|x| <= {_F32_MAX_TEXT})") from None

    def to_raw(self, name: str, values: Sequence, space_index: Mapping[str, int]) -> np.ndarray:
        if not set(map(type, values)) <= {float}:
            raise self._first_bad(name, values)
        wide = np.array(values, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            narrow = wide.astype(np.float32)
        if len(wide) and not np.array_equal(narrow.astype(np.float64), wide):
            raise self._first_bad(name, values)
        return narrow.view(np.uint32).astype(np.uint64)

    def from_raw(self, name: str, raw: np.ndarray, spaces: Sequence[str]) -> list:
        narrow = raw.astype(np.uint32).view(np.float32)
        if np.isnan(narrow).any():
            position = int(np.argmax(np.isnan(narrow)))
            raise ColumnError(position,
                              f"{name} holds a NaN bit pattern {int(raw[position]):#010x}")
        return narrow.astype(np.float64).tolist()


F32 = _Float32()
DTYPE = E(4, tuple(d.value for d in DType), DType)
