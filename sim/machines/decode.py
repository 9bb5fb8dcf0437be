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

__all__ = ["CostSheet", "CostFn", "CostTable", "ONE_OPERAND_FUNCS", "NODE_PRICED", "decode", "decode_shell"]

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


def decode_shell(table: CostTable[SheetT], sheet: SheetT, instructions: Sequence[isa.Instr],
                 entries: np.ndarray, indices: np.ndarray) -> SheetT:
    """`decode` of a compact program's shell (its i-th instruction `instructions[entries[i]]`)
    at `indices` (ascending), with the same costs and the same first error, for a pure table:
    each (instruction, configuration) pair is priced once, the configurations walked only over
    the configuring instructions, the rest in whole-array passes (a shell has millions of
    instructions and few distinct pairs)."""
    if not table.pure:
        raise ValueError(f"decode_shell needs a pure cost table ({table.machine}'s is not)")
    ops = [ins.opcode for ins in instructions]
    fns = [table.costs.get(op, _MISSING) for op in ops]
    queue_numbers: dict[isa.Queue, int] = {}
    queue_of = np.array([queue_numbers.setdefault(ins.queue, len(queue_numbers))
                         for ins in instructions], np.int32)
    compact = entries[indices]
    is_config = np.array([op in CONFIG_OPCODES for op in ops], bool)[compact]
    configuring = indices[is_config]
    configs, config_at = _configs(instructions, queue_of, entries[configuring])
    # per entry, the configuration of its queue's last configuring entry at or before it
    config_of = np.zeros(len(indices), np.int64)
    queue_at = queue_of[compact]
    for q in np.unique(queue_of[entries[configuring]]).tolist():
        mine = np.flatnonzero(queue_at == q)
        last = np.where(is_config[mine], np.arange(len(mine)), -1)
        np.maximum.accumulate(last, out=last)
        known = last >= 0
        rank = np.searchsorted(configuring, indices[mine[last[known]]])
        config_of[mine[known]] = config_at[rank]
    missing = np.array([fn is _MISSING for fn in fns], bool)[compact]
    first_missing = int(indices[np.argmax(missing)]) if missing.any() else None
    priced = np.array([fn is not None and fn is not _MISSING and op not in NODE_PRICED
                       for fn, op in zip(fns, ops)], bool)[compact]
    at, compact, config_of = indices[priced], compact[priced], config_of[priced]
    codes = compact.astype(np.int64) * len(configs) + config_of
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    for j in np.sort(first).tolist():
        i = int(at[j])
        if first_missing is not None and first_missing < i:
            break
        fns[compact[j]](sheet, i, instructions[compact[j]], configs[config_of[j]])
    if first_missing is not None:
        ins = instructions[entries[first_missing]]
        raise isa.IsaError(f"instruction {first_missing} ({ins.queue} {ins.opcode}): not "
                           f"executable on {table.machine}")
    source = at[first][inverse.ravel()]
    for column in (sheet.durations, sheet.resources, sheet.delays, sheet.events.rows):
        column[at] = column[source]
    return sheet


def _configs(instructions: Sequence[isa.Instr], queue_of: np.ndarray, walk: np.ndarray
             ) -> tuple[list[isa.QueueConfig], np.ndarray]:
    """The distinct configurations (the first: none set) and, per configuring instruction of
    `walk` (compact indices in executed order), the configuration its queue has after it."""
    configs: list[isa.QueueConfig] = [_RESET]
    number = {_RESET: 0}
    after: dict[tuple[int, int], int] = {}         # (configuration, instruction) -> next
    current: dict[int, int] = {}
    out = np.empty(len(walk), np.int64)
    for k, c in enumerate(walk.tolist()):
        q = int(queue_of[c])
        key = (current.get(q, 0), c)
        found = after.get(key)
        if found is None:
            config = configs[key[0]].after(instructions[c])
            found = number.setdefault(config, len(configs))
            if found == len(configs):
                configs.append(config)
            after[key] = found
        current[q] = out[k] = found
    return configs, out
