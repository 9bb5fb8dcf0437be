"""Where every executed instance of a compact program's instructions sits, without unrolling.

A program with loops means its unrolled equivalent (docs/isa.md, "Loops"); instance u of that
equivalent is instruction c of the compact program in some iteration of each loop around it.
The periodic engine (sim/periodic.py) walks each queue's instances in executed order with a
cursor (a stack of (loop, iteration) frames) and needs, in O(1) per step: the next instruction
of a queue inside one iteration of a loop body (`items`), the executed index u of an instance
(`offset` within its innermost body's iteration plus the frame's base), and how many times each
compact instruction executes (`count`, for the per-pattern sums of the report).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.loops import Loop, Structure

__all__ = ["LoopLayout", "loop_layout", "TOP"]

TOP = -1   # the container id of the program's top level (loops are numbered 0, 1, ...)


@dataclass(frozen=True, eq=False)
class LoopLayout:
    """The executed layout of a compact program.

    loops[h]: the h-th loop (header order); `parent[h]` its enclosing loop (TOP at top level).
    length[h]: executed instructions in one iteration of loop h's body.
    start[h]: executed offset of loop h's first iteration inside one iteration of its parent
      (inside the program for a top-level loop).
    offset[c]: executed offset of instruction c inside one iteration of its innermost loop
      (inside the program at top level); -1 for loop and stride words, which never execute.
    count[c]: how many times instruction c executes (the product of its loops' counts).
    items[(container, q)]: queue q's work directly inside the container, in order: an
      instruction index c >= 0, or ~h for a nested loop h that holds queue q's instructions.
    first[h]: the first instruction executed in each iteration of loop h.
    executed: the unrolled program's length.
    """

    loops: tuple[Loop, ...]
    parent: tuple[int, ...]
    length: tuple[int, ...]
    start: tuple[int, ...]
    offset: np.ndarray
    count: np.ndarray
    items: dict[tuple[int, int], list[int]]
    first: tuple[int, ...]
    executed: int


def loop_layout(structure: Structure, queue_of: np.ndarray) -> LoopLayout:
    """The layout of a program with loops `structure`; `queue_of[c]` is instruction c's queue
    id (-1 for loop and stride words)."""
    loops = structure.loops
    number = {loop.header: h for h, loop in enumerate(loops)}
    parent = tuple(TOP if loop.parent is None else number[loop.parent] for loop in loops)
    children: dict[int, list[int]] = {}
    for h, p in enumerate(parent):
        children.setdefault(p, []).append(h)
    size = structure.size
    offset = np.full(size, -1, np.int64)
    count = np.zeros(size, np.int64)
    length = [0] * len(loops)
    start = [0] * len(loops)
    items: dict[tuple[int, int], list[int]] = {}
    queues_in: list[set[int]] = [set() for _ in loops]

    def walk(container: int, lo: int, hi: int, times: int) -> tuple[int, set[int]]:
        """Lay out words [lo, hi) of `container` (executed `times` times in all): its
        executed length per iteration and the queues it holds."""
        executed, cursor, held = 0, lo, set()
        for h in children.get(container, []) + [None]:
            stop = hi if h is None else loops[h].header
            for c in range(cursor, stop):
                q = int(queue_of[c])
                offset[c] = executed
                count[c] = times
                executed += 1
                held.add(q)
                items.setdefault((container, q), []).append(c)
            if h is None:
                break
            loop = loops[h]
            start[h] = executed
            length[h], queues_in[h] = walk(h, loop.body_start, loop.body_end, times * loop.count)
            executed += length[h] * loop.count
            held |= queues_in[h]
            for q in sorted(queues_in[h]):
                items.setdefault((container, q), []).append(~h)
            cursor = loop.body_end
        return executed, held

    executed, _ = walk(TOP, 0, size, 1)

    def first_of(h: int) -> int:
        body = loops[h].body_start
        return first_of(number[body]) if body in number else body

    return LoopLayout(loops, parent, tuple(length), tuple(start), offset, count, items,
                      tuple(first_of(h) for h in range(len(loops))), executed)


def executed_instances(structure: Structure, wanted: np.ndarray) -> list[int]:
    """The executed instances of the compact instructions `wanted` (sorted indices), in
    executed order, as compact indices: O(the instances), whatever the program's length."""
    wanted = np.asarray(wanted, np.int64)
    children: dict[int | None, list[Loop]] = {}
    for loop in structure.loops:
        children.setdefault(loop.parent, []).append(loop)

    def holds(lo: int, hi: int) -> bool:
        return bool(np.searchsorted(wanted, hi) > np.searchsorted(wanted, lo))

    def walk(lo: int, hi: int, parent: int | None) -> list[int]:
        out: list[int] = []
        cursor = lo
        for kid in children.get(parent, []) + [None]:
            stop = hi if kid is None else kid.header
            a, b = np.searchsorted(wanted, [cursor, stop])
            out += wanted[a:b].tolist()
            if kid is None:
                break
            if holds(kid.body_start, kid.body_end):
                out += walk(kid.body_start, kid.body_end, kid.header) * kid.count
            cursor = kid.body_end
        return out

    return walk(0, structure.size, None)
