"""`Instr`: one decoded instruction — opcode mnemonic, issuing queue and named operands."""

from __future__ import annotations

from dataclasses import dataclass

from isa.errors import FieldError
from isa.opcodes import OPCODES, OpSpec
from isa.values import Queue

__all__ = ["Instr"]

_MISSING = object()


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
        queue = Queue.of(queue)
        if queue.unit not in spec.units:
            raise FieldError(f"{opcode} is not allowed on {queue} (units: {_units(spec)})")
        missing = [f.name for f in spec.fields if f.name not in fields]
        unknown = [name for name in fields if name not in spec.names]
        if unknown:
            raise FieldError(f"{opcode} has no field {unknown[0]!r} (fields: {_names(spec)})")
        if missing:
            raise FieldError(f"{opcode} is missing field {missing[0]!r} (fields: {_names(spec)})")
        values = tuple((f.name, f.kind.coerce(f.name, fields[f.name])) for f in spec.fields)
        return Instr(opcode, queue, values)

    @property
    def spec(self) -> OpSpec:
        return OPCODES[self.opcode]

    def get(self, name: str, default: object = None) -> object:
        for key, value in self.fields:
            if key == name:
                return value
        return default

    def __getitem__(self, name: str) -> object:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(f"{self.opcode} has no field {name!r}")
        return value

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
