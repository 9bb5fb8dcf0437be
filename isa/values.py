"""Small value types that instructions are made of: units, queues, data types, addresses.

They are immutable and hashable so that instructions built from them are too, and each has
one canonical text form (`str`) with a matching `parse`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import numpy as np

from isa.errors import FieldError

__all__ = ["Unit", "Queue", "DType", "Addr", "NAME_RE", "QUEUE_INDEX_BITS", "parse_int"]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
QUEUE_INDEX_BITS = 12
_QUEUE_RE = re.compile(r"([a-z]+)([0-9]+)")
_ADDR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(0[xX][0-9a-fA-F]+|[0-9]+)\]")


def parse_int(text: str) -> int:
    """Read a decimal or 0x-hex integer literal (with optional sign); ValueError otherwise."""
    body = text[1:] if text[:1] in "+-" else text
    value = int(body[2:], 16) if body[:2] in ("0x", "0X") else int(body, 10)
    if body[:1] in "+-" or "_" in body:
        raise ValueError(f"malformed integer {text!r}")
    return -value if text[:1] == "-" else value


class Unit(enum.IntEnum):
    """Kind of execution unit that owns a queue; the value is its 4-bit code in a word."""

    ctl = 0  # control processor (dataflow section launch)
    dma = 1  # DMA engine between off-chip and on-chip memory
    mxu = 2  # matrix unit (systolic array)
    vpu = 3  # vector unit
    pim = 4  # one PIM DRAM channel
    asic = 5  # host ASIC beside PIM DRAM (non-linear functions)
    pcu = 6  # dataflow pattern compute unit
    pmu = 7  # dataflow pattern memory unit
    agcu = 8  # dataflow address generator / off-chip port
    seq = 9  # program structure (loop headers and strides): words of no hardware queue
    link = 10  # one device's port to the inter-device links (collectives, sends, receives)


_UNITS_BY_NAME = {u.name: u for u in Unit}


@dataclass(frozen=True, slots=True)
class Queue:
    """One in-order instruction queue: a unit kind and its index (`dma0`, `pim3`, `pcu12`)."""

    unit: Unit
    index: int

    def __post_init__(self) -> None:
        if not isinstance(self.unit, Unit):
            raise FieldError(f"queue unit must be a Unit, got {self.unit!r}")
        if type(self.index) is not int or not 0 <= self.index < 1 << QUEUE_INDEX_BITS:
            raise FieldError(
                f"queue index {self.index!r} out of range 0..{(1 << QUEUE_INDEX_BITS) - 1}"
            )

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def parse(text: str) -> Queue:
        """Read `<unit><index>`; queues are few, so results are cached and shared."""
        match = _QUEUE_RE.fullmatch(text)
        if match is None or match.group(1) not in _UNITS_BY_NAME:
            units = ", ".join(_UNITS_BY_NAME)
            raise FieldError(f"unknown queue {text!r} "
                             f"(expected <unit><index>, unit one of {units})")
        return Queue(_UNITS_BY_NAME[match.group(1)], int(match.group(2)))

    @staticmethod
    def of(value: Queue | str) -> Queue:
        """Accept a Queue or its text form."""
        return value if isinstance(value, Queue) else Queue.parse(str(value))

    @property
    def code(self) -> int:
        """The 16-bit queue field of an instruction word: unit (4 bits) then index (12)."""
        return int(self.unit) << QUEUE_INDEX_BITS | self.index

    def __str__(self) -> str:
        return f"{self.unit.name}{self.index}"


class DType(str, enum.Enum):
    """Element type of a tile; the declaration order gives the 4-bit code."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"
    int32 = "int32"

    def __str__(self) -> str:
        return self.value

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE_BYTES[self.value]

    @property
    def storage(self) -> np.dtype:
        """numpy dtype of arrays that hold this type in memory (bf16 as its uint16 bits)."""
        return np.dtype(_STORAGE[self.value])

    @staticmethod
    def of(value: DType | str) -> DType:
        """Accept a DType or its name."""
        try:
            return DType(value)
        except ValueError:
            names = ", ".join(d.value for d in DType)
            raise FieldError(f"unknown dtype {value!r} (expected one of {names})") from None


_ITEMSIZE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int32": 4}
_STORAGE = {"fp32": "<f4", "bf16": "<u2", "fp16": "<f2", "int8": "i1", "int32": "<i4"}


@dataclass(frozen=True, slots=True)
class Addr:
    """A byte address in a named memory space; text `sram[0x1a0]`."""

    space: str
    addr: int

    def __post_init__(self) -> None:
        if type(self.space) is not str or self.space not in _SPACE_NAMES_SEEN:
            _check_space_name(self.space)
        if type(self.addr) is not int or self.addr < 0:
            raise FieldError(f"address {self.addr!r} must be a non-negative int")

    @staticmethod
    def parse(text: str) -> Addr:
        """Read `space[addr]` with a decimal or 0x-hex address."""
        match = _ADDR_RE.fullmatch(text.strip())
        if match is None:
            raise FieldError(f"malformed address {text!r} (expected space[0x...])")
        return Addr(match.group(1), parse_int(match.group(2)))

    @staticmethod
    def of(value: Addr | str) -> Addr:
        """Accept an Addr or its text form."""
        return value if isinstance(value, Addr) else Addr.parse(str(value))

    def __add__(self, offset_bytes: int) -> Addr:
        return Addr(self.space, self.addr + offset_bytes)

    def __str__(self) -> str:
        return f"{self.space}[{self.addr:#x}]"


_SPACE_NAMES_SEEN: set[str] = set()  # names already checked; Addr is built millions of times


def _check_space_name(name: object) -> None:
    if type(name) is not str or NAME_RE.fullmatch(name) is None:
        raise FieldError(f"memory space name {name!r} is not an identifier")
    if len(_SPACE_NAMES_SEEN) < 4096:
        _SPACE_NAMES_SEEN.add(name)
