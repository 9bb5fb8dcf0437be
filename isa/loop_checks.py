"""What `verify` checks of loops on the compact program, without unrolling it.

- The walk: each body is checked once for iteration 0 and once for iterations 1..count-1
  (one pass for all when the body sets no configuration register): a queue's configuration at
  an iteration's start is the entry one for iteration 0 and the same end-of-body one for every
  later iteration, since a body's *cfg words set constants.
- Bounds in closed form: a strided address is affine in the iteration numbers, so its extremes
  over a walk's iterations are at their ends; the first failing iteration (in executed order)
  is found per loop, outermost first.
- Token balance: per iteration of a loop, every semaphore is signalled as often as waited on.
- Moving writes: a write whose stride is smaller than what it writes overlaps itself in the
  next iteration.
The synchronisation run runs on the executed order of the sync instructions (`Executed`),
from the order `isa.unroll` builds; so does the naming of a PIM row violation, once
isa/row_loops.py has found that the compact program has one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from isa.errors import VerifyError
from isa.instr import Instr
from isa.loops import Loop, Structure, where
from isa.unroll import unrolled_order

__all__ = ["Context", "visits", "first_beyond", "check_token_balance", "overlaps", "Executed",
           "CONFIG_OPCODES"]

Context = tuple[tuple[Loop, int, int], ...]     # enclosing loops, outermost first: (loop, k_lo, k_hi)
CONFIG_OPCODES = frozenset({"dmacfg", "mcfg", "vcfg", "qcfg", "pim.qmode", "mfmt"})


def visits(structure: Structure, wanted: Sequence[int],
           opcodes: Sequence[str]) -> Iterable[tuple[int, Context]]:
    """The sorted indices `wanted`, each with the loop iterations it stands for, in the order
    their checks must run (iteration 0 of a configuring body before its later iterations)."""
    children: dict[int | None, list[Loop]] = {}
    for loop in structure.loops:
        children.setdefault(loop.parent, []).append(loop)

    def plain(lo: int, hi: int, context: Context):
        for index in wanted[bisect_left(wanted, lo):bisect_left(wanted, hi)]:
            yield index, context

    def walk(lo: int, hi: int, parent: int | None, context: Context):
        cursor = lo
        for kid in children.get(parent, ()):
            yield from plain(cursor, kid.header, context)
            body = (kid.body_start, kid.body_end, kid.header)
            configures = any(op in CONFIG_OPCODES for op in opcodes[kid.body_start:kid.body_end])
            if kid.count > 1 and configures:
                yield from walk(*body, context + ((kid, 0, 0),))
                yield from walk(*body, context + ((kid, 1, kid.count - 1),))
            else:
                yield from walk(*body, context + ((kid, 0, kid.count - 1),))
            cursor = kid.body_end
        yield from plain(cursor, hi, context)

    return walk(0, structure.size, None, ())


def first_beyond(moves: Sequence[tuple[Loop, int, int, int]], base: int,
                 limit: int) -> dict[int, int] | None:
    """The first iterations (in executed order) at which base + sum(k * delta) > limit, as
    {loop header: k}, over moves (loop, k_lo, k_hi, delta) outermost first; None if none."""
    tails = [0] * (len(moves) + 1)          # the largest sum the loops from l on can add
    for l in range(len(moves) - 1, -1, -1):
        _, lo, hi, delta = moves[l]
        tails[l] = tails[l + 1] + max(lo * delta, hi * delta)
    if base + tails[0] <= limit:
        return None
    found, total = {}, base
    for l, (loop, lo, _, delta) in enumerate(moves):
        need = limit - total - tails[l + 1]          # the smallest k with k * delta > need
        k = max(lo, need // delta + 1) if delta > 0 else lo
        found[loop.header] = k
        total += k * delta
    return found


def check_token_balance(instructions: Sequence[Instr], opcodes: Sequence[str],
                        structure: Structure) -> None:
    """VerifyError for the first loop (in header order) whose one iteration signals some
    semaphore a different number of times than it waits on it (nested loops times count)."""
    sync = [i for i, op in enumerate(opcodes) if op in ("signal", "wait")]
    children: dict[int | None, list[Loop]] = {}
    for loop in structure.loops:
        children.setdefault(loop.parent, []).append(loop)
    tallies: dict[int, Counter] = {}

    def tally(loop: Loop) -> Counter:
        if loop.header not in tallies:
            counts: Counter = Counter()
            cursor = loop.body_start
            for kid in children.get(loop.header, []) + [None]:
                stop = loop.body_end if kid is None else kid.header
                for i in sync[bisect_left(sync, cursor):bisect_left(sync, stop)]:
                    counts[(opcodes[i], instructions[i]["sem"])] += 1
                if kid is not None:
                    for key, n in tally(kid).items():
                        counts[key] += n * kid.count
                    cursor = kid.body_end
            tallies[loop.header] = counts
        return tallies[loop.header]

    for loop in structure.loops:
        counts = tally(loop)
        for sem in sorted({sem for _, sem in counts}):
            signals, waits = counts[("signal", sem)], counts[("wait", sem)]
            if signals != waits:
                raise VerifyError(f"loop at {loop.header}: semaphore {sem} is signalled {signals} "
                                  f"and waited {waits} times per iteration", loop.header)


def overlaps(rows, row_bytes, pitch, shift):
    """Whether `rows` rows of `row_bytes` at `pitch` meet themselves moved by `shift` > 0 bytes:
    some row difference j in [-(rows-1), rows-1] has |shift - j*pitch| < row_bytes. Integers
    or numpy arrays alike (elementwise: the compiler's roll pass asks it of many writes at
    once, the verifier of one, with plain ints: worked out without numpy, ten times faster)."""
    if type(rows) is int and type(row_bytes) is int and type(pitch) is int and type(shift) is int:
        pitch = max(pitch, 1)
        nearest = shift // pitch
        return any(abs(shift - min(max(j, 1 - rows), rows - 1) * pitch) < row_bytes
                   for j in (nearest, nearest + 1))
    pitch = np.maximum(pitch, 1)
    nearest = shift // pitch
    hit = False
    for j in (nearest, nearest + 1):
        j = np.clip(j, 1 - rows, rows - 1)
        hit = hit | (np.abs(shift - j * pitch) < row_bytes)
    return hit


class Executed:
    """The instructions of a compact program whose opcodes are in `keep`, in executed order
    (`instructions[k]` is the compact instruction run at executed position `positions[k]`),
    named by loop iteration in messages."""

    def __init__(self, program_instructions: Sequence[Instr], structure: Structure,
                 keep: frozenset[str], opcodes: Sequence[str]) -> None:
        unrolled = unrolled_order(structure)
        mask = np.array([op in keep for op in opcodes], dtype=bool)
        self.positions = np.flatnonzero(mask[unrolled.order])
        self.compact = unrolled.order[self.positions].tolist()     # per executed position
        self.instructions = [program_instructions[c] for c in self.compact]
        self.opcodes = [opcodes[c] for c in self.compact]
        self._unrolled = unrolled
        self._compact = program_instructions

    def locate(self, k: int) -> tuple[int, tuple[tuple[Loop, int], ...]]:
        return self._unrolled.locate(int(self.positions[k]))

    def name(self, k: int) -> str:
        """`instruction 41 in loop at 12, iteration 3` (for the middle of a message)."""
        index, iterations = self.locate(k)
        return where(index, None, iterations)

    def error(self, k: int, reason: str) -> VerifyError:
        index, iterations = self.locate(k)
        return VerifyError(f"{where(index, self._compact[index], iterations)}: {reason}", index)

