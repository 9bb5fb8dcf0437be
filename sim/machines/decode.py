"""The one walk over a program that every machine's costs share.

It keeps each queue's configuration registers (`isa.QueueConfig`: dmacfg strides, the last
mcfg, vcfg and qcfg) and hands every instruction, with its queue's configuration at that point,
to the machine's cost function for its opcode (a `CostTable`). A machine lists every opcode it
executes; any other is rejected with the instruction's index, queue and opcode.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

import isa
from isa.loop_checks import CONFIG_OPCODES
from isa.opcodes import VEC_IMMEDIATE, VEC_UNARY
from sim.machines.events import EventRows

__all__ = ["CostSheet", "CostFn", "CostTable", "ONE_OPERAND_FUNCS", "NODE_PRICED", "decode"]

ONE_OPERAND_FUNCS = frozenset(VEC_IMMEDIATE + VEC_UNARY)   # vec functions that read only `a`
# Opcodes no machine prices: a collective's time is the node's link model's (sim/multi.py),
# and a single machine's view has no link queue, so its verifier refuses them.
NODE_PRICED = frozenset({"coll"})
_RESET = isa.QueueConfig()
_MISSING = object()


@dataclass(eq=False, slots=True)
class CostSheet:
    """Per-instruction costs as the cost functions fill them (one entry per instruction)."""

    durations: np.ndarray                  # int64 cycles
    resources: np.ndarray                  # int8 shared resource, -1 none (machines have few)
    delays: np.ndarray                     # int32 cycles a `signal`'s token is in flight
    events: EventRows                      # event counts: events.set(i, macs=..., ...)

    @classmethod
    def empty(cls, n: int, events: Sequence[str]) -> CostSheet:
        """Zero costs, no resource held. The narrow integer types keep a 10^7-instruction
        sheet small; a value that does not fit raises (numpy refuses out-of-range ints)."""
        return cls(np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int8),
                   np.zeros(n, dtype=np.int32), EventRows(n, events))


SheetT = TypeVar("SheetT", bound=CostSheet)
# fn(sheet, index, instruction, its queue's configuration): writes the instruction's costs
CostFn = Callable[[SheetT, int, isa.Instr, isa.QueueConfig], None]


@dataclass(frozen=True)
class CostTable(Generic[SheetT]):
    """A machine's opcodes: each one's cost function, or None for one that costs nothing."""

    machine: str                                   # "a PIM machine": named in the error
    costs: Mapping[str, CostFn | None]


def decode(table: CostTable[SheetT], sheet: SheetT, instructions: Sequence[isa.Instr],
           indices: Sequence[int] | None = None) -> SheetT:
    """Fill `sheet` from `instructions` (those at `indices`, in order; default all)."""
    configs: dict[isa.Queue, isa.QueueConfig] = {}
    lookup = table.costs.get
    skip = NODE_PRICED
    pairs = (enumerate(instructions) if indices is None
             else zip(indices, map(instructions.__getitem__, indices)))
    for i, ins in pairs:
        op = ins.opcode
        fn = lookup(op, _MISSING)
        if op in CONFIG_OPCODES:
            configs[ins.queue] = configs.get(ins.queue, _RESET).after(ins)
        if fn is None or op in skip:
            continue
        if fn is _MISSING:
            raise isa.IsaError(f"instruction {i} ({ins.queue} {op}): not executable on "
                               f"{table.machine}")
        fn(sheet, i, ins, configs.get(ins.queue, _RESET))
    return sheet
