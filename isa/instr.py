"""`Instr`: one decoded instruction — opcode mnemonic, issuing queue and named operands."""

from __future__ import annotations

from collections.abc import Sequence

import functools
from dataclasses import dataclass

from isa.errors import FieldError
from isa.opcodes import OPCODES, OpSpec
from isa.fields import U, AddressKind
from isa.values import Addr, Queue

__all__ = ["Instr", "first_uses"]

_FIELD_NAMES = {op: frozenset(spec.names) for op, spec in OPCODES.items()}
_POSITION = {op: {name: k for k, name in enumerate(spec.names)} for op, spec in OPCODES.items()}


def _checks(spec: OpSpec) -> tuple:
    """Per field: (name, kind, bound of a plain int, bound of an Addr's offset) — the common
    values (canonical ints and addresses) are checked inline, the rest by kind.coerce."""
    out = []
    for f in spec.fields:
        int_limit = 1 << f.kind.bits if type(f.kind) is U else 0
        addr_limit = 1 << f.kind.addr_bits if type(f.kind) is AddressKind else 0
        out.append((f.name, f.kind, int_limit, addr_limit))
    return tuple(out)


_CHECKS = {op: _checks(spec) for op, spec in OPCODES.items()}


@functools.lru_cache(maxsize=4096)
def _queue(text: str) -> Queue:
    """Queues are few: parse each text once."""
    return Queue.parse(text)


@dataclass(frozen=True, slots=True)
class Instr:
    """An instruction; `fields` holds (name, value) pairs in the opcode's field order.

    The plain constructor trusts its arguments (the decoder builds a million of these);
    use `Instr.make`, which checks the opcode, the unit and every value. `isa.verify` checks
    instructions however they were built.
    """

    opcode: str
    queue: Queue
    fields: tuple[tuple[str, object], ...]

    @staticmethod
    def make(opcode: str, queue: Queue | str, /, **fields: object) -> Instr:
        """Build a checked instruction: `Instr.make("load", "dma0", dst="sram[0x0]", ...)`.

        Addresses may be given as text, dtypes by name, flags as bools; values are stored
        in canonical form (F32 immediates rounded to float32).
        """
        spec = OPCODES.get(opcode)
        if spec is None:
            raise FieldError(f"unknown opcode {opcode!r}")
        queue = queue if type(queue) is Queue else _queue(str(queue))
        if queue.unit not in spec.units:
            raise FieldError(f"{opcode} is not allowed on {queue} (units: {_units(spec)})")
        names = _FIELD_NAMES[opcode]
        if fields.keys() != names:
            unknown = [name for name in fields if name not in names]
            if unknown:
                raise FieldError(f"{opcode} has no field {unknown[0]!r} (fields: {_names(spec)})")
            missing = [f.name for f in spec.fields if f.name not in fields]
            raise FieldError(f"{opcode} is missing field {missing[0]!r} (fields: {_names(spec)})")
        values = []
        for name, kind, int_limit, addr_limit in _CHECKS[opcode]:
            value = fields[name]
            if not (int_limit and type(value) is int and 0 <= value < int_limit
                    or addr_limit and type(value) is Addr and value.addr < addr_limit):
                value = kind.coerce(name, value)      # the general (and error-reporting) path
            values.append((name, value))
        return Instr(opcode, queue, tuple(values))

    @property
    def spec(self) -> OpSpec:
        return OPCODES[self.opcode]

    def get(self, name: str, default: object = None) -> object:
        position = _POSITION[self.opcode].get(name)
        return default if position is None else self.fields[position][1]

    def __getitem__(self, name: str) -> object:
        position = _POSITION[self.opcode].get(name)
        if position is None:
            raise KeyError(f"{self.opcode} has no field {name!r}")
        return self.fields[position][1]

    def replace(self, **fields: object) -> Instr:
        """A checked copy with some operands changed."""
        return Instr.make(self.opcode, self.queue, **{**dict(self.fields), **fields})

    def __str__(self) -> str:
        """The canonical assembly line."""
        spec = OPCODES[self.opcode]
        parts = [str(self.queue), self.opcode]
        parts += [f"{f.name}={f.kind.format(v)}" for f, (_, v) in zip(spec.fields, self.fields)]
        return " ".join(parts)


def _names(spec: OpSpec) -> str:
    return " ".join(spec.names) or "none"


def _units(spec: OpSpec) -> str:
    return " ".join(sorted(u.name for u in spec.units))


def first_uses(items: Sequence) -> list[int]:
    """Ascending indices of each distinct object's first appearance (by identity). Compilers
    share one object among equal instructions, so a check or decode that depends only on the
    instruction runs once per object; whole-list passes in C, for programs of ~10^6."""
    ids = list(map(id, items))
    return sorted(dict(zip(reversed(ids), range(len(ids) - 1, -1, -1))).values())
