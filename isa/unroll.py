"""`unroll(program)`: the loop-free program a compact one means (docs/isa.md, "Loops").

The order in which the compact instructions run is built with numpy (each loop's body order
tiled `count` times), so it costs a few bytes per executed instruction; only strided
instructions get new `Instr` objects (one per iteration, their addresses in closed form), every
other executed instruction is the compact program's own object, shared. Op marks inside a body
repeat with it; symbols, data and the rest of the program are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice, repeat
from operator import attrgetter
from types import MappingProxyType

import numpy as np

from isa.bulk import no_gc
from isa.errors import LoopError
from isa.fields import trusted_addr
from isa.instr import Instr
from isa.loops import Loop, Structure, loop_structure, mark_name, where
from isa.opcodes import OPCODES
from isa.program import Program

__all__ = ["unroll", "instances", "executed_shell", "moving_values", "placed", "first_executed",
           "Unrolled", "unrolled_order", "unrolled_marks", "executed_count", "multiplicities"]


@dataclass(frozen=True, slots=True, eq=False)
class Unrolled:
    """The executed order of a compact program: `order[u]` is the compact index of the u-th
    executed instruction; `marks` the op marks of the unrolled program; `first` is
    `first_executed(order, ...)`; `iteration` how many executed words one iteration of each
    loop holds, so a word's execution in a loop nest is at its `first` plus each loop's
    iteration number times that loop's `iteration`."""

    structure: Structure
    order: np.ndarray
    marks: tuple[tuple[int, str], ...]
    first: np.ndarray                    # per compact word, where it first runs (-1: never)
    iteration: Mapping[int, int]         # loop header -> executed words of one iteration

    def locate(self, u: int) -> tuple[int, tuple[tuple[Loop, int], ...]]:
        """Executed instruction `u` as (compact index, ((loop, iteration), ...) outermost
        first): what an error about it names. O(u), for error paths."""
        index = int(self.order[u])
        occurrence = int(np.count_nonzero(self.order[:u] == index))
        iterations = []
        for loop in reversed(self.structure.chain(index)):
            occurrence, k = divmod(occurrence, loop.count)
            iterations.append((loop, k))
        return index, tuple(reversed(iterations))


def unrolled_order(structure: Structure, ops: tuple[tuple[int, str], ...] = ()) -> Unrolled:
    """The executed order of a program with loops `structure` and op marks `ops`. Written in
    place: each straight stretch of words once, each loop's first iteration once and the rest
    of its iterations copied from it in doubling blocks, so a loop nest costs a few numpy
    calls per loop and one pass over its output, not a copy per nesting level."""
    children = _children(structure)
    dtype = np.int32 if structure.size < 1 << 31 else np.int64
    body: dict[int, int] = {}                # loop header -> executed words of one iteration

    def length(lo: int, hi: int, parent: int | None) -> int:
        total, cursor = 0, lo
        for kid in children.get(parent, []):
            one = body[kid.header] = length(kid.body_start, kid.body_end, kid.header)
            total += kid.header - cursor + kid.count * one
            cursor = kid.body_end
        return total + hi - cursor

    out = np.empty(length(0, structure.size, None), dtype)
    first = np.full(structure.size, -1, np.int64)

    def fill(lo: int, hi: int, parent: int | None, at: int) -> int:
        cursor = lo
        for kid in children.get(parent, []) + [None]:
            stop = hi if kid is None else kid.header
            out[at:at + stop - cursor] = np.arange(cursor, stop, dtype=dtype)
            first[cursor:stop] = np.arange(at, at + stop - cursor)    # a first iteration
            at += stop - cursor
            if kid is None:
                return at
            one = body[kid.header]
            if kid.count and one:
                fill(kid.body_start, kid.body_end, kid.header, at)
                done = 1
                while done < kid.count:               # iterations [done, done + m) copied
                    m = min(done, kid.count - done)
                    out[at + done * one:at + (done + m) * one] = out[at:at + m * one]
                    done += m
            at += one * kid.count
            cursor = kid.body_end

    fill(0, structure.size, None, 0)
    return Unrolled(structure, out, unrolled_marks(structure, ops), first, MappingProxyType(body))


def unrolled_marks(structure: Structure, ops: tuple[tuple[int, str], ...]) -> tuple[tuple[int, str], ...]:
    """The op marks of the unrolled program, as (executed index, name): a mark inside a loop
    body is repeated each iteration, its name template filled in (`mark_name`). Without
    unrolling: O(loops + the marks it returns)."""
    children = _children(structure)

    def block(lo: int, hi: int, parent: int | None, marks: list[tuple[int, str]]):
        placed, length, cursor, m = [], 0, lo, 0
        for kid in children.get(parent, []) + [None]:
            stop = hi if kid is None else kid.header
            while m < len(marks) and marks[m][0] <= stop:
                placed.append((length + marks[m][0] - cursor, marks[m][1]))
                m += 1
            length += stop - cursor
            if kid is None:
                break
            inside = []
            while m < len(marks) and marks[m][0] < kid.body_end:
                inside.append(marks[m])
                m += 1
            body, body_marks = block(kid.body_start, kid.body_end, kid.header, inside)
            placed += [(length + k * body + p, mark_name(name, k))
                       for k in range(kid.count) for p, name in body_marks]
            length += body * kid.count
            cursor = kid.body_end
        return length, placed

    return tuple(block(0, structure.size, None, list(ops))[1])


def _children(structure: Structure) -> dict[int | None, list[Loop]]:
    children: dict[int | None, list[Loop]] = {}
    for loop in structure.loops:
        children.setdefault(loop.parent, []).append(loop)
    return children


def executed_count(program: Program) -> int:
    """How many instructions `program` executes (its unrolled length), without unrolling: a
    progress bar's total, a report's instruction count."""
    structure = loop_structure(program.instructions, ops=program.ops)
    children: dict[int | None, list[Loop]] = {}
    for loop in structure.loops:
        children.setdefault(loop.parent, []).append(loop)

    def executed(lo: int, hi: int, parent: int | None) -> int:
        total, cursor = 0, lo
        for kid in children.get(parent, []):
            total += kid.header - cursor + kid.count * executed(kid.body_start, kid.body_end, kid.header)
            cursor = kid.body_end
        return total + hi - cursor

    return executed(0, structure.size, None)


def multiplicities(structure: Structure) -> np.ndarray:
    """How many times each word of a compact program executes (int64 per word; loop and
    stride words 0): the product of its enclosing loops' counts, without unrolling."""
    times = np.ones(structure.size, dtype=np.int64)
    for loop in structure.loops:              # outer loops first: nested bodies multiply on
        times[loop.header:loop.body_start] = 0
        times[loop.body_start:loop.body_end] *= loop.count
    return times


def unroll(program: Program) -> Program:
    """The fully unrolled equivalent of `program` (the same object when it has no loops).
    LoopError when its loop words do not form loops or a strided address leaves its field."""
    with no_gc():
        return _unroll(program)


def _unroll(program: Program) -> Program:
    instructions = program.instructions
    opcodes = list(map(attrgetter("opcode"), instructions))
    structure = loop_structure(instructions, opcodes, program.ops)
    if not structure.loops:
        return program
    unrolled = unrolled_order(structure, program.ops)
    order = unrolled.order
    compact = np.empty(len(instructions), dtype=object)
    compact[:] = instructions
    out = compact[order].tolist()
    del compact
    strided = structure.strided()
    for index, places in placed(order, strided):
        moved = _moved(index, instructions[index], strided[index], structure)
        for u, instr in zip(places.tolist(), moved):
            out[u] = instr
    return replace(program, instructions=tuple(out), ops=unrolled.marks)


def placed(order: np.ndarray, indices) -> Iterator[tuple[int, np.ndarray]]:
    """(index, its places) for each of `indices` (ascending): where in `order` (compact
    indices in executed order) it stands, ascending, so its k-th place holds its k-th
    iteration (`moving_values`' k-th value). One sort for them all."""
    targets = np.array(sorted(indices), dtype=order.dtype)
    if not len(targets):
        return
    dense = np.full(max(int(order.max(initial=0)), int(targets[-1])) + 1, -1, np.int32)
    dense[targets] = np.arange(len(targets), dtype=np.int32)   # target -> its number; else -1
    number = dense[order]
    at = np.flatnonzero(number >= 0)
    keys = number[at]
    del number
    if len(targets) <= 1 << 16:          # numpy radix-sorts 16-bit keys (stable)
        keys = keys.astype(np.uint16)
    by_target = at[np.argsort(keys, kind="stable")]
    bounds = np.cumsum(np.bincount(keys, minlength=len(targets))).tolist()
    first = 0
    for index, last in zip(targets.tolist(), bounds):
        yield index, by_target[first:last]
        first = last


def first_executed(order: np.ndarray, n: int) -> np.ndarray:
    """Per compact instruction (of `n`), the place in `order` (compact indices in executed
    order) where it first runs, or -1 where it never does (a loop that runs 0 times)."""
    first = np.full(n, -1, np.int64)
    first[order[::-1]] = np.arange(len(order) - 1, -1, -1)     # the last write is the lowest
    return first


def instances(instructions: Sequence[Instr], structure: Structure,
              indices: Sequence[int]) -> dict[int, list[Instr]]:
    """Each instruction of `indices` (which its loops move) in every iteration, in executed
    order."""
    strided = structure.strided()
    return {index: _moved(index, instructions[index], strided[index], structure)
            for index in indices}


def executed_shell(program: Program, unrolled: Unrolled | None = None,
                   entries: np.ndarray | None = None) -> Program:
    """The unrolled program's instructions with no stride applied: each executed instruction
    is its compact instruction's own object, so the operands its loops move keep their first
    iteration's values. Op marks are the unrolled program's. Costs a reference an executed
    instruction (no new objects): for a consumer that reads no moving operand (the event
    engine reads queues, opcodes and semaphores; op statistics read marks), beside
    `moving_values` for the operands it does read. `unrolled`: the program's executed order,
    when the caller has it. `entries`: only these executed instructions (ascending, each op
    mark's among them; a machine that times the ones between as one, sim/machines/pim/shell.py),
    the marks placed among them."""
    if unrolled is None:
        structure = loop_structure(program.instructions, ops=program.ops)
        if not structure.loops:
            return program
        unrolled = unrolled_order(structure, program.ops)
    order, marks = unrolled.order, unrolled.marks
    if entries is not None:
        order = order[entries]
        places = np.searchsorted(entries, np.array([u for u, _ in marks], np.int64)).tolist()
        marks = tuple(zip(places, (name for _, name in marks)))
    compact = np.empty(len(program.instructions), dtype=object)
    compact[:] = program.instructions
    return replace(program, instructions=tuple(compact[order].tolist()), ops=marks)


def moving_values(structure: Structure, index: int, instr: Instr, position: int,
                  pairs: tuple[tuple[Loop, int], ...]) -> np.ndarray:
    """Field `position` of instruction `index` (`instr`), which the loops `pairs` move
    (`structure.strided()[index][position]`), in every iteration of its loops, in executed
    order, as int64: an integer's values, an address field's byte addresses. LoopError when
    one leaves its field."""
    chain = structure.chain(index)
    return _field_values(index, instr, position, pairs, chain, _digits(chain))


def _digits(chain: tuple[Loop, ...]) -> dict[int, np.ndarray]:
    """Per loop of `chain` (outermost first), its iteration at each occurrence of an
    instruction inside them all, occurrences in executed order."""
    counts = [loop.count for loop in chain]
    occurrences = np.arange(int(np.prod(counts, dtype=np.int64)), dtype=np.int64)
    digits, step = {}, 1
    for loop in reversed(chain):
        digits[loop.header] = occurrences // step % loop.count
        step *= loop.count
    return digits


def _field_values(index: int, instr: Instr, position: int, pairs: tuple[tuple[Loop, int], ...],
                  chain: tuple[Loop, ...], digits: dict[int, np.ndarray]) -> np.ndarray:
    name, base = instr.fields[position]
    offsets = sum(digits[loop.header] * delta for loop, delta in pairs)
    kind = OPCODES[instr.opcode].fields[position].kind
    if type(base) is int:              # a moving integer (isa.opcodes.MOVING_INTS)
        values = base + offsets
        low, high = kind.bounds
        outside = (values < low) | (values > high)
        if outside.any():
            j = int(np.argmax(outside))
            iterations = [(loop, int(digits[loop.header][j])) for loop in chain]
            raise LoopError(f"{where(index, instr, iterations)}: {name}={int(values[j])} is "
                            f"outside {kind.label} ({low}..{high})", chain[0].header)
        return values
    addresses = base.addr + offsets
    outside = (addresses < 0) | (addresses > kind.reach - kind.granule)
    if outside.any():
        j = int(np.argmax(outside))
        iterations = [(loop, int(digits[loop.header][j])) for loop in chain]
        raise LoopError(f"{where(index, instr, iterations)}: {name}={base.space}"
                        f"[{int(addresses[j]):#x}] is outside {kind.label} (address "
                        f"0x0..{kind.reach - kind.granule:#x})", chain[0].header)
    return addresses


def _moved(index: int, instr: Instr, fields: dict[int, tuple[tuple[Loop, int], ...]],
           structure: Structure) -> list[Instr]:
    """Instruction `index` in every iteration of its loops, in executed order."""
    chain = structure.chain(index)
    digits = _digits(chain)
    n = len(next(iter(digits.values())))
    columns: list = [repeat(pair) for pair in instr.fields]    # (name, value) per field
    for position, pairs in sorted(fields.items()):
        name, base = instr.fields[position]
        values = _field_values(index, instr, position, pairs, chain, digits).tolist()
        columns[position] = zip(repeat(name), values if type(base) is int else
                                map(trusted_addr, repeat(base.space), values))
    rows = zip(*columns) if columns else repeat((), n)
    occurrences = range(n)
    made: dict[tuple, Instr] = {}      # equal instances share one object, as a compiler's do
    out = []
    for row in islice(rows, len(occurrences)):
        found = made.get(row)
        if found is None:
            found = made[row] = Instr(instr.opcode, instr.queue, row)
        out.append(found)
    return out
