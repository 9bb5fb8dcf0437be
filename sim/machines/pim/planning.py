"""Which decoded plan times each executed pim instruction: the plans of a program's pim
queues (decoded once per instruction object, or per distinct timing key where loops move a
row or column) and the MAC mode each executed instruction runs under."""
from __future__ import annotations

import math
from operator import attrgetter
from typing import Iterator, Mapping, Sequence

import numpy as np

import isa
from isa.loops import Structure
from isa.qformats import mode_bits
from isa.opcodes import OPCODES
from isa.unroll import Unrolled, moving_values
from sim.machines.pim.channel import TIMING_FIELDS, PimChannel, Plan
from sim.machines.pim.run import PimPlans

__all__ = ["UNTIMED", "mode_widths", "plan_pim", "moved_plans", "unique_rows"]

_QUEUE, _OPCODE = attrgetter("queue"), attrgetter("opcode")
_CHUNK = 1 << 21          # executions placed at a time (bounded temporaries)
UNTIMED = frozenset({"wait", "halt", "pim.qmode"})    # pim-queue opcodes the channel does not
                                                     # time (a mode is the controller's register)


def mode_widths(instrs: Sequence[isa.Instr], order: np.ndarray | None = None) -> np.ndarray | None:
    """Per executed instruction, the inputs its channel's MACs read per BF16 lane (16 / N under
    an N-bit pim.qmode, else 1); None for a program that sets no mode (every BF16 program).
    `order`: the compact index of each executed instruction (None: `instrs` run as listed).
    Whole-array passes per queue that sets a mode."""
    is_mode = np.fromiter(map(_OPCODE, instrs), object, len(instrs)) == "pim.qmode"
    if not is_mode.any():
        return None
    codes = np.array([16 // mode_bits(ins["fmt"]) if mode else 1
                      for ins, mode in zip(instrs, is_mode.tolist())], np.int32)
    queue = np.fromiter(map(id, map(_QUEUE, instrs)), np.int64, len(instrs))
    if order is not None:
        is_mode, codes, queue = is_mode[order], codes[order], queue[order]
    wide = np.ones(len(queue), np.int32)
    for q in np.unique(queue[is_mode]):
        at = np.flatnonzero(queue == q)
        marks = is_mode[at]
        last = np.maximum.accumulate(np.where(marks, np.arange(len(at)), -1))
        wide[at] = np.where(last >= 0, codes[at][np.maximum(last, 0)], 1)
    return wide


def plan_pim(channel: PimChannel, instrs: Sequence[isa.Instr], unrolled: Unrolled | None = None,
             final: bool = True) -> PimPlans:
    """The plan of every executed pim-queue instruction but wait and halt (timed at issue).
    `unrolled`: the executed order of `instrs` (a compact program's; None: `instrs` run as
    listed); `final` False leaves plan_at writable for the caller to refine (moved_plans). Each instruction object is decoded once, in order of first use (a
    bad one is named by its first executed index); instructions with equal timing operands
    share a plan object, numbered once. Whole-array passes: this runs over ~10^7
    instructions."""
    n = len(instrs)
    queues = dict(zip(map(id, map(_QUEUE, instrs)), map(_QUEUE, instrs)))   # queues are few
    pim_queues = np.array([key for key, q in queues.items() if q.unit.name == "pim"], np.int64)
    on_pim = np.isin(np.fromiter(map(id, map(_QUEUE, instrs)), np.int64, n), pim_queues)
    untimed = np.fromiter(map(UNTIMED.__contains__, map(_OPCODE, instrs)), bool, n)
    index = np.flatnonzero(on_pim & ~untimed)
    del on_pim, untimed
    if unrolled is None:
        used_at = index
    else:          # each compact instruction's first executed index (ascending with it)
        index = index[unrolled.first[index] >= 0]     # (a loop that runs 0 times)
        used_at = unrolled.first[index]
    objects = np.fromiter(instrs, object, n)[index]
    # id -> first position: filled from the end, so the last write (the lowest) stays
    first_at = dict(zip(map(id, objects[::-1]), range(len(objects) - 1, -1, -1)))
    decode_plan = channel.plan                 # plans depend on the arch, not the channel
    plans: list[Plan | None] = []
    number: dict[int, int] = {}                # id(plan) -> its index in plans
    plan_of_object: dict[int, int] = {}        # id(instruction) -> its plan's index
    for k in sorted(first_at.values()):
        plan = decode_plan(int(used_at[k]), objects[k])
        p = number.get(id(plan))
        if p is None:
            p = number[id(plan)] = len(plans)
            plans.append(plan)
        plan_of_object[id(objects[k])] = p
    plan_at = np.full(n, -1, np.int32)
    plan_at[index] = np.fromiter(map(plan_of_object.__getitem__, map(id, objects)), np.int32,
                                 len(objects))
    if unrolled is not None:
        plan_at = plan_at[unrolled.order]
    if final:
        plan_at.setflags(write=False)
    return PimPlans(plan_at, plans)


def moved_plans(channel: PimChannel, pim: PimPlans, program: isa.Program,
                unrolled: Unrolled) -> PimPlans:
    """`pim`, planned on a program's executed shell (`unrolled`: its executed order with where
    each word first runs and each loop iteration's length; its plan_at refined in place where
    plan_pim left it writable), with the pim instructions whose
    loops move a timing operand (a row or column) planned per iteration: one plan per distinct
    timing key (decoded once, in order of first use, numbered after the shell's).

    A moving operand is affine in the iterations of the loops that move it, and an
    instruction's executions stand at its first plus each loop's iteration times that loop's
    length (`_Moves`): so its distinct keys are those of the grid of the moving loops'
    iterations alone, and each execution's key is its place on that grid, with no pass over
    the executed order."""
    instrs, structure = program.instructions, unrolled.structure
    strided = structure.strided()
    timing = {c: [p for p in moved if p in TIMING_FIELDS.get(instrs[c].opcode, ())]
              for c, moved in strided.items() if instrs[c].queue.unit.name == "pim"}
    timing = {c: moved for c, moved in timing.items() if moved}
    if not timing:
        pim.plan_at.setflags(write=False)
        return pim
    first, iteration = unrolled.first, unrolled.iteration
    of_opcode = _all_moves(structure, instrs, {c: m for c, m in timing.items() if first[c] >= 0},
                           first, iteration)          # (a loop around one may run 0 times)
    keys = []                     # (first executed index, opcode, key number, key values)
    numbered = {}                 # opcode -> (its instructions' grids, each grid point's key)
    for opcode, found in of_opcode.items():
        distinct, inverse = unique_rows(np.concatenate([m.values for m in found]))
        first_use = np.full(len(distinct), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_use, inverse, np.concatenate([m.first_use for m in found]))
        numbered[opcode] = (found, inverse)
        keys += [(u, opcode, j, (opcode, *row))
                 for j, (u, row) in enumerate(zip(first_use.tolist(), distinct.tolist()))]
    plan_at = pim.plan_at if pim.plan_at.flags.writeable else pim.plan_at.copy()
    plans = list(pim.plans)
    number = {id(plan): k for k, plan in enumerate(plans)}
    plan_of_key = {opcode: np.empty(len(inverse), np.int32)
                   for opcode, (_, inverse) in numbered.items()}
    for u, opcode, j, key in sorted(keys):
        plan = channel.plan_of_key(u, key)              # a bad key: named by its first use
        k = number.get(id(plan))
        if k is None:
            k = number[id(plan)] = len(plans)
            plans.append(plan)
        plan_of_key[opcode][j] = k
    for opcode, (found, inverse) in numbered.items():
        of_point = plan_of_key[opcode][inverse]
        at = 0
        for m in found:
            own = of_point[at:at + len(m.values)]
            for positions, points in m.executions():
                plan_at[positions] = own[points]
            at += len(m.values)
    plan_at.setflags(write=False)
    return PimPlans(plan_at, plans)


def _all_moves(structure: Structure, instrs: Sequence[isa.Instr], timing: Mapping[int, list[int]],
               first: np.ndarray, iteration: Mapping[int, int]) -> dict[str, list]:
    """Per opcode, the timing keys over their moving loops of the instructions `timing` names
    (index -> its moved timing fields): those one loop moves (nearly all) built together per
    opcode (`_MovedOnce`), the others one by one (`_Moves`). A key outside its field's range is
    named by the lowest such instruction, as built one by one in index order."""
    once: dict[str, list] = {}
    of_opcode: dict[str, list] = {}
    for c in sorted(timing):
        chain, moving, strided = _moving_loops(structure, c, timing[c])
        if len(moving) == 1:
            once.setdefault(instrs[c].opcode, []).append((c, chain, moving[0], strided))
        else:
            of_opcode.setdefault(instrs[c].opcode, []).append(
                _Moves(structure, c, instrs[c], timing[c], int(first[c]), iteration))
    built = {opcode: _MovedOnce(instrs, items, timing, first, iteration)
             for opcode, items in once.items()}
    if any(batch.out_of_range for batch in built.values()):
        for c in sorted(timing):             # raises at the first, as one by one would
            _Moves(structure, c, instrs[c], timing[c], int(first[c]), iteration)
    for opcode, batch in built.items():
        of_opcode.setdefault(opcode, []).append(batch)
    return of_opcode


def _moving_loops(structure: Structure, index: int, moved: Sequence[int]
                  ) -> tuple[tuple, list[int], Mapping]:
    """(the loops around instruction `index` outermost first, the positions among them of
    those that move one of its `moved` fields, its strides per field)."""
    strided = structure.strided()[index]
    chain = structure.chain(index)
    by_loop = {loop.header for p in moved for loop, delta in strided[p] if delta}
    return chain, [k for k, loop in enumerate(chain) if loop.header in by_loop], strided


class _MovedOnce:
    """`_Moves` of many instructions of one opcode, each moved by one loop: its grid is that
    loop's iterations, so every instruction's keys and first uses are one arange scaled and
    all are built in a few array operations; `executions()` concatenates theirs (points
    numbered across the batch). `out_of_range`: some key leaves its field's range."""

    def __init__(self, instrs: Sequence[isa.Instr], items: Sequence[tuple],
                 timing: Mapping[int, list[int]], first: np.ndarray,
                 iteration: Mapping[int, int]) -> None:
        opcode = instrs[items[0][0]].opcode
        fields = TIMING_FIELDS[opcode]
        counts = np.array([chain[m].count for _, chain, m, _ in items], np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        k = np.arange(starts[-1], dtype=np.int64) - np.repeat(starts[:-1], counts)
        columns = []
        self.out_of_range = False
        for p in fields:
            base = np.array([instrs[c].fields[p][1] for c, _, _, _ in items], np.int64)
            delta = np.array([sum(d for loop, d in strided.get(p, ()) if loop.header ==
                                  chain[m].header) if p in timing[c] else 0
                              for c, chain, m, strided in items], np.int64)
            value = np.repeat(base, counts) + np.repeat(delta, counts) * k
            if delta.any() and len(value):
                low, high = OPCODES[opcode].fields[p].kind.bounds
                self.out_of_range |= bool(value.min() < low or value.max() > high)
            columns.append(value)
        self.values = np.column_stack(columns) if columns else np.zeros((len(k), 0), np.int64)
        firsts = first[[c for c, _, _, _ in items]].astype(np.int64)
        lengths = np.array([iteration[chain[m].header] for _, chain, m, _ in items], np.int64)
        self.first_use = np.repeat(firsts, counts) + np.repeat(lengths, counts) * k
        by_shape: dict[tuple[int, int], list] = {}       # (loops around, moving one's place)
        for f, (_, chain, m, _), o in zip(firsts.tolist(), items, starts[:-1].tolist()):
            by_shape.setdefault((len(chain), m), []).append(
                (f, o, *(loop.count for loop in chain), *(iteration[loop.header] for loop in chain)))
        self._shapes = {shape: np.array(rows, np.int64) for shape, rows in by_shape.items()}

    def executions(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Where executions stand in the executed order and their points in `values`, in
        chunks of about _CHUNK: each instruction's executions are its first plus each loop's
        iteration times that loop's executed length, its point the moving loop's iteration
        (mixed-radix digits of the execution's number)."""
        for (depth, m), rows in self._shapes.items():
            first, offset = rows[:, 0], rows[:, 1]
            counts, lengths = rows[:, 2:2 + depth], rows[:, 2 + depth:]
            sizes = counts.prod(axis=1)
            ends = np.cumsum(sizes)
            a = 0
            while a < len(rows):
                b = max(a + 1, int(np.searchsorted(ends, ends[a] - sizes[a] + _CHUNK, "right")))
                n = sizes[a:b]
                e = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
                place, point = np.repeat(first[a:b], n), np.repeat(offset[a:b], n)
                for j in reversed(range(depth)):
                    count = np.repeat(counts[a:b, j], n)
                    digit = e % count
                    e //= count
                    place += digit * np.repeat(lengths[a:b, j], n)
                    if j == m:
                        point += digit
                yield place, point
                a = b


class _Moves:
    """One pim instruction's timing key over the loops that move it: `values` per point of
    the grid of those loops' iterations (outermost first, the last fastest), `first_use` the
    executed index where each point first runs, `executions()` where each execution stands
    and its point. `first`: where the instruction first runs; `iteration`: each loop's
    executed words an iteration (isa.unroll.Unrolled)."""

    def __init__(self, structure: Structure, index: int, instr: isa.Instr,
                 moved: Sequence[int], first: int, iteration: Mapping[int, int]) -> None:
        self.chain, self.moving, strided = _moving_loops(structure, index, moved)
        counts = [self.chain[k].count for k in self.moving]
        grid = np.indices(counts, np.int64).reshape(len(counts), -1) if counts \
            else np.zeros((0, 1), np.int64)
        of_loop = dict(zip((self.chain[k].header for k in self.moving), grid))
        columns = []
        for p in TIMING_FIELDS[instr.opcode]:
            value = np.full(grid.shape[1], instr.fields[p][1], np.int64)
            if p in moved:
                for loop, delta in strided[p]:
                    if delta:
                        value += delta * of_loop[loop.header]
            columns.append(value)
        self.values = np.column_stack(columns)
        self._check(structure, index, instr, moved)
        self.first = first
        self.lengths = [iteration[loop.header] for loop in self.chain]
        lengths = np.array([[self.lengths[k]] for k in self.moving], np.int64).reshape(-1, 1)
        self.first_use = first + (grid * lengths).sum(axis=0)

    def executions(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Where each execution stands in the executed order and its grid point, in executed
        order (one chunk): both sums over the loops around it, each loop's iteration times its executed
        length for the place, times its mixed-radix weight among the moving loops (zero for
        a loop that moves nothing) for the point."""
        weight, size = {}, 1
        for k in reversed(self.moving):
            weight[k] = size
            size *= self.chain[k].count
        place, point = np.full(1, self.first, np.int64), np.zeros(1, np.int64)
        for k, loop in enumerate(self.chain):
            steps = np.arange(loop.count, dtype=np.int64)
            place = np.add.outer(place, steps * self.lengths[k]).ravel()
            point = np.add.outer(point, steps * weight.get(k, 0)).ravel()
        yield place, point

    def _check(self, structure: Structure, index: int, instr: isa.Instr,
               moved: Sequence[int]) -> None:
        """A key outside its field's range is the unrolled program's error (moving_values
        names the first execution that leaves it; the verifier refuses such programs first)."""
        for column, p in enumerate(TIMING_FIELDS[instr.opcode]):
            if p in moved:
                low, high = OPCODES[instr.opcode].fields[p].kind.bounds
                values = self.values[:, column]
                if values.min(initial=low) < low or values.max(initial=high) > high:
                    moving_values(structure, index, instr, p, structure.strided()[index][p])


def unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, axis=0, return_inverse=True)` for a 2-D integer array, through one
    int64 code per row (mixed radix over each column's span) where the spans' product fits:
    a one-dimensional unique, ten times faster than numpy's by-rows one on 10^5 rows. Where
    it does not fit (sums of energy events), each column is first replaced by its rank among
    its distinct values (order kept, so the rows sort as before) and the ranks are coded."""
    low = values.min(axis=0)
    spans = values.max(axis=0) - low + 1
    columns = [values[:, c] - low[c] for c in range(values.shape[1])]
    if math.prod(spans.tolist()) >= 2 ** 62:
        ranked = [np.unique(column, return_inverse=True) for column in columns]
        columns = [inverse.ravel() for _, inverse in ranked]
        spans = np.array([len(distinct) for distinct, _ in ranked], np.int64)
        if math.prod(spans.tolist()) >= 2 ** 62:
            distinct, inverse = np.unique(values, axis=0, return_inverse=True)
            return distinct, inverse.ravel()
    code = np.zeros(len(values), np.int64)
    for column, span in zip(columns, spans.tolist()):
        code = code * span + column
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return values[first], inverse.ravel()
