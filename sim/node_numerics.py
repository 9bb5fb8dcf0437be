"""A node's numerics: every device on its own memory, each collective applied to its members'
buffers once the last of them has started (sim/multi.py). Reductions add in the order a ring
all-reduce does (chunk c is summed from rank c+1 around the ring to rank c), rounding to the
element type after each addition, as NCCL does for reduced-precision types."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import isa
from isa.numerics import codec
from sim.functional import FunctionalExecutor, Memory
from sim.node_result import Collective

__all__ = ["apply_collective", "NodeNumerics"]

_REDUCING = ("all_reduce", "reduce_scatter")


def apply_collective(kind: str, buffers: Sequence[np.ndarray],
                     rounded: Callable[[np.ndarray], np.ndarray] = np.asarray) -> list[np.ndarray]:
    """The members' buffers after a collective, given them before (rank order, decoded values
    for a reduction, raw bytes otherwise; `send_recv`: [sender, receiver]); `rounded` rounds a
    partial sum to the element type after each addition."""
    n = len(buffers)
    if kind == "send_recv":
        return [buffers[0], buffers[0].copy()]
    chunks = [np.array_split(b, n) for b in buffers]
    out = [[c.copy() for c in cs] for cs in chunks]
    for c in range(n):
        if kind == "all_gather":
            for r in range(n):
                out[r][c] = chunks[c][c].copy()
        elif kind == "all_to_all":
            for r in range(n):
                out[r][c] = chunks[c][r].copy()
        else:                                          # all_reduce, reduce_scatter: ring order
            total = chunks[(c + 1) % n][c]
            for step in range(2, n + 1):
                total = rounded(total + chunks[(c + step) % n][c])
            for r in (range(n) if kind == "all_reduce" else (c,)):
                out[r][c] = total.copy()
    return [np.concatenate(cs) for cs in out]


class NodeNumerics:
    """Each device's executor on its own memory, and the collectives applied across them."""

    def __init__(self, programs, runs, views, collectives, device_of, local_of):
        self.memories, self.executors = [], []
        for program, run, view in zip(programs, runs, views):
            if program.data is None:
                raise isa.IsaError("numeric simulation needs every device program's data "
                                   "(weights and inputs); compile with data or simulate "
                                   "with --no-functional")
            sizes = {s.name: s.size_bytes for s in view.spaces.values()}
            memory = Memory(sizes, run.held_bytes(view))
            memory.load_program_data(program)
            models = {**run.functional_models(memory), "coll": _later}
            self.memories.append(memory)
            self.executors.append(FunctionalExecutor(program, memory, models=models))
        self.device_of, self.local_of = device_of, local_of
        self.pending = {(m, i): c for c in collectives for m, i in zip(c.members, c.at)}
        self.arrived: dict[int, int] = {}
        self.programs = programs

    def start(self, word: int) -> None:
        d, i = int(self.device_of[word]), int(self.local_of[word])
        if i < 0:
            return
        self.executors[d].execute(i)
        c = self.pending.get((d, i))
        if c is not None:
            self.arrived[id(c)] = self.arrived.get(id(c), 0) + 1
            if self.arrived[id(c)] == len(c.members):
                self._apply(c)

    def _apply(self, c: Collective) -> None:
        ins = [self.programs[m].instructions[i] for m, i in zip(c.members, c.at)]
        if c.kind in _REDUCING:
            n = c.nbytes // c.dtype.itemsize
            values = [self.memories[m].read(x["buf"], n, c.dtype).astype(np.float64)
                      for m, x in zip(c.members, ins)]
            found = codec(c.dtype)

            def rounded(v: np.ndarray) -> np.ndarray:
                with np.errstate(all="ignore"):
                    return found.decode(found.encode(v))
            for m, x, v in zip(c.members, ins, apply_collective(c.kind, values, rounded)):
                self.memories[m].write(x["buf"], v, c.dtype)
            return
        raw = [self.memories[m].read_bytes(x["buf"], c.nbytes) for m, x in zip(c.members, ins)]
        for m, x, v in zip(c.members, ins, apply_collective(c.kind, raw)):
            self.memories[m].write_bytes(x["buf"], v)


def _later(ins: isa.Instr) -> None:
    """A `coll` on one device does nothing alone: the node applies it once all have started."""
