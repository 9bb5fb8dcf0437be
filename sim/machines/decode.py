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
    # every cost function writes only the CostSheet's own columns, from the instruction and its
    # queue's configuration alone: an executed instance of an instruction object already priced
    # under an equal configuration takes the same costs (a loop's iterations, a program's
    # executed shell), copied rather than worked out again
    pure: bool = False


def decode(table: CostTable[SheetT], sheet: SheetT, instructions: Sequence[isa.Instr],
           indices: Sequence[int] | None = None) -> SheetT:
    """Fill `sheet` from `instructions` (those at `indices`, in order; default all)."""
    configs: dict[isa.Queue, isa.QueueConfig] = {}
    lookup = table.costs.get
    skip = NODE_PRICED
    priced: dict[tuple[int, int], int] | None = {} if table.pure else None
    interned: dict[isa.QueueConfig, isa.QueueConfig] = {}    # one object per configuration
    rows = sheet.events.rows
    pairs = (enumerate(instructions) if indices is None
             else zip(indices, map(instructions.__getitem__, indices)))
    for i, ins in pairs:
        op = ins.opcode
        fn = lookup(op, _MISSING)
        if op in CONFIG_OPCODES:
            config = configs.get(ins.queue, _RESET).after(ins)
            configs[ins.queue] = interned.setdefault(config, config) if table.pure else config
        if fn is None or op in skip:
            continue
        if fn is _MISSING:
            raise isa.IsaError(f"instruction {i} ({ins.queue} {op}): not executable on "
                               f"{table.machine}")
        config = configs.get(ins.queue, _RESET)
        if priced is not None:
            j = priced.setdefault((id(ins), id(config)), i)
            if j != i:
                sheet.durations[i], sheet.resources[i] = sheet.durations[j], sheet.resources[j]
                sheet.delays[i], rows[i] = sheet.delays[j], rows[j]
                continue
        fn(sheet, i, ins, config)
    return sheet
