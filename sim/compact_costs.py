"""A compact program's costs per pattern: one set of costs per compact instruction, standing
for every iteration, when the machine's costs are the same in every iteration.

The machine prices a small unrolled program: each loop cut to at most two iterations. An
instruction's cost may depend on state its queue carries (the `mcfg`, `vcfg`, `qcfg` and
`dmacfg` registers set before it), and iteration 0 sees the state from before the loop while
later iterations see the state the body leaves; state repeats from iteration 1 on (each
register holds its last write). So when every instance of each instruction in the cut program has the
same duration, resource, signal delay and event counts, every iteration of the full program
has them too, and the engine may treat iterations as one pattern (sim/periodic.py). A cost that
sums the work of other instructions (a dataflow call's pipeline over its body) weighs each cut
instance by how many full instances it stands for (`Machine.start`'s repeats). Otherwise,
or when the machine times instructions by state it keeps (PIM's DRAM rows and refresh), the
caller simulates every executed instance (the machine's `start_shell`; `why_not` says which).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from operator import attrgetter

import numpy as np

import isa
from isa.loops import Loop, Structure, loop_structure, mark_name
from isa.opcodes import STRUCTURE
from isa.unroll import unrolled_order
from sim.machines.base import Machine, MachineRun
from sim.machines.events import Events
from sim.loop_layout import LoopLayout, loop_layout
from sim.periodic import HALT, PLAIN, SIGNAL, WAIT

__all__ = ["PatternCosts", "pattern_costs", "timing_plan", "timed_per_pattern", "marked_loops",
           "marks_outside_patterns", "op_segments", "segment_counts"]

_KIND = {"signal": SIGNAL, "wait": WAIT, "halt": HALT}
_OPCODE = attrgetter("opcode")
_STATE_TIMED = "the machine times instructions by the state it keeps (DRAM rows, refresh)"


@dataclass(frozen=True, eq=False)
class PatternCosts:
    """Per compact instruction c: queue id, kind, semaphore, duration, resource, signal delay,
    event counts (`events`, one row each) and how many times it executes (`layout.count`).
    `run` is the machine's run of the cut program (its report hooks); a machine with a report
    of its own gives it per pattern with `pattern_report`."""

    layout: LoopLayout
    queue_names: tuple[str, ...]
    queue_of: np.ndarray
    kind: bytes
    sem: list[int]
    durations: np.ndarray
    resources: np.ndarray
    delays: np.ndarray
    events: Events
    run: MachineRun
    structure: Structure
    cut_order: np.ndarray            # the cut program's instruction i is compact cut_order[i]

    def target_report(self, program: isa.Program, totals: dict[str, float], cycles: int):
        """The machine's own report of the unrolled program (None when it has none)."""
        if not hasattr(self.run, "pattern_report"):
            return None
        return self.run.pattern_report(program, self.structure, self.layout.count,
                                       self.cut_order, totals, cycles)


def pattern_costs(machine: Machine, program: isa.Program,
                  structure: Structure | None = None) -> PatternCosts | str:
    """The costs of `program` (which has loops) per pattern, or why they are not (a phrase)."""
    instructions = program.instructions
    structure = structure or loop_structure(instructions, ops=program.ops)
    if machine.state_timed:
        return _STATE_TIMED
    why = _outside_patterns(program, structure)
    if why:
        return why
    if machine.mark_fold_boundaries:
        for loop in marked_loops(program, structure).values():
            body = {ins.opcode for ins in instructions[loop.body_start:loop.body_end]}
            if not body & machine.mark_fold_boundaries:
                return (f"loop at {loop.header} repeats op marks inside one call, whose stages "
                        "take its op marks in executed order")
    names: dict[str, int] = {}
    n = len(instructions)
    queue_of = np.full(n, -1, np.int32)
    kind = bytearray(n)
    sem = [0] * n
    for c, ins in enumerate(instructions):
        if ins.opcode in STRUCTURE:
            continue
        queue_of[c] = names.setdefault(str(ins.queue), len(names))
        kind[c] = _KIND.get(ins.opcode, PLAIN)
        if kind[c] in (SIGNAL, WAIT):
            sem[c] = ins["sem"]
    layout = loop_layout(structure, queue_of)
    cut = [ins.replace(count=min(ins["count"], 2)) if ins.opcode == "loop" else ins
           for ins in instructions]
    cut_structure = loop_structure(cut, ops=program.ops)
    order = unrolled_order(cut_structure, program.ops).order
    cut_count = loop_layout(cut_structure, queue_of).count
    repeats = (layout.count / np.maximum(cut_count, 1))[order]   # exact: counts / 1 or 2 each
    run = machine.start(isa.unroll(replace(program, instructions=tuple(cut))), repeats)
    costs = run.costs
    if costs.timed is not None or costs.timed_run is not None:
        return _STATE_TIMED
    if type(run).report is not MachineRun.report and not hasattr(run, "pattern_report"):
        return "the machine's own report is per executed instruction"
    delays = costs.delays if costs.delays is not None else np.zeros(len(order), np.int32)
    per_pattern = []
    for values in (costs.durations, costs.resources, delays, costs.events.rows):
        first = np.zeros(n, values.dtype)
        first[order[::-1]] = values[::-1]          # each instruction's first instance
        if (values != first[order]).any():
            c = int(order[np.argmax(values != first[order])])
            return f"instruction {c} ({instructions[c].queue} {instructions[c].opcode}) costs " \
                   "differ between iterations"
        per_pattern.append(first)
    durations, resources, delays, rows = per_pattern
    events = costs.events.regrouped(rows)
    for name in events.names:
        column = events[name]
        if (column != np.round(column)).any():
            return f"event {name} has fractional counts (their sums would depend on order)"
    return PatternCosts(layout, tuple(names), queue_of, bytes(kind), sem, durations,
                        resources, delays, events, run, structure, order)


# Timed per pattern only when the loops stand for at least this many executed instructions a
# word: per word, verifying, pricing and the periodic engine cost several times what the flat
# engine costs per instruction (llama-3.1-8b prefill-512 on systolic-128: 6.2 M executed in
# 4.3 M words took 78 s per pattern against 55 s unrolled; both are exact).
MIN_GAIN = 2


def timing_plan(machine: Machine, program: isa.Program) -> PatternCosts | str:
    """How a timing-only simulation of `program` is timed: its PatternCosts when per pattern,
    else why it runs unrolled (a phrase)."""
    if machine.state_timed:
        return _STATE_TIMED
    if "loop" not in map(_OPCODE, program.instructions):      # a C-level scan: flat programs are long
        return "no loops"
    if isa.executed_count(program) < MIN_GAIN * len(program.instructions):
        return (f"its loops stand for fewer than {MIN_GAIN} executed instructions a word "
                "(verifying and pricing per pattern would cost more than they save)")
    return pattern_costs(machine, program)


def timed_per_pattern(machine: Machine, program: isa.Program) -> bool:
    """Whether a timing-only simulation of `program` is timed per pattern, not unrolled."""
    return isinstance(timing_plan(machine, program), PatternCosts)


def marked_loops(program: isa.Program, structure: Structure) -> dict[int, Loop]:
    """The loops whose bodies hold op marks (each iteration its own ops), by header."""
    found: dict[int, Loop] = {}
    for index, _ in program.ops:
        for loop in structure.chain(index):
            found.setdefault(loop.header, loop)
    return found


def marks_outside_patterns(program: isa.Program, structure: Structure) -> str:
    """Op marks inside loops are kept per pattern when the loop that holds them is not nested
    in another, no mark lies in a loop nested in it and none marks its header: each iteration
    then has its ops (`op_segments`). Else why not (a phrase; '' when they are)."""
    headers = {loop.header for loop in marked_loops(program, structure).values()}
    for index, name in program.ops:
        chain = structure.chain(index)
        if index in headers:
            return f"op mark {name!r} marks loop at {index}, whose iterations have ops of their own"
        if len(chain) > 1:
            return f"op mark {name!r} lies inside loop at {chain[-1].header}, nested in another"
    return ""


def op_segments(program: isa.Program, structure: Structure) -> list[tuple[str, list]]:
    """The unrolled program's ops in order, each as (name, [(lo, hi, loop or None), ...]):
    compact ranges whose executions it holds, all of them (loop None) or one iteration's
    (loop: their count over that loop's count). An op mark outside loops is one op; a loop
    holding marks (`marks_outside_patterns` says '') gives one op per mark and iteration,
    named by `mark_name`. Words of its body before its first mark run in the op before: the
    op before the loop in iteration 0, the last op of the iteration before in the others;
    the words after the loop up to the next mark belong to the last iteration's last op."""
    n = len(program.instructions)
    marks = list(program.ops)
    ends = [i for i, _ in marks[1:]] + [n]
    loops = marked_loops(program, structure)
    out: list[tuple[str, list]] = []
    k = 0
    while k < len(marks):
        lo, name = marks[k]
        chain = structure.chain(lo) if loops else ()
        ahead = chain[0] if chain else next(
            (loop for loop in loops.values() if lo < loop.header < ends[k]), None)
        if ahead is None:
            out.append((name, [(lo, ends[k], None)]))
            k += 1
            continue
        body = [j for j in range(k, len(marks)) if ahead.contains(marks[j][0])]
        first = marks[body[0]][0]
        prefix = (ahead.body_start, first, ahead)
        if not chain:                 # the mark before the loop: up to it, and iteration 0's
            out.append((name, [(lo, ahead.header, None)]        # words before its first mark
                        + ([prefix] if first > ahead.body_start else [])))
        after = ends[body[-1]]        # the next mark after the loop (or the end)
        for iteration in range(ahead.count):
            last = iteration == ahead.count - 1
            for j in body:
                start, label = marks[j]
                segments = [(start, ends[j] if j != body[-1] else ahead.body_end, ahead)]
                if j == body[-1]:
                    if not last and first > ahead.body_start:
                        segments.append(prefix)
                    if last and after > ahead.body_end:
                        segments.append((ahead.body_end, after, None))
                out.append((mark_name(label, iteration), segments))
        k = body[-1] + 1
    return out


def segment_counts(counts: np.ndarray, loop: Loop | None) -> np.ndarray:
    """Per compact instruction, the executions an `op_segments` segment of `loop` holds: all
    of them (loop None), or one iteration's of `loop` (index it by the segment's range)."""
    return counts if loop is None else counts // loop.count


def _outside_patterns(program: isa.Program, structure: Structure) -> str:
    """Why the program's report could not be kept per pattern ('' when it can)."""
    why = marks_outside_patterns(program, structure)
    if why:
        return why
    last_on_queue: dict[str, int] = {}
    for c, ins in enumerate(program.instructions):
        last_on_queue[str(ins.queue)] = c
    for c, ins in enumerate(program.instructions):
        if ins.opcode == "halt" and (last_on_queue[str(ins.queue)] != c
                                     or any(loop.contains(c) for loop in structure.loops)):
            return f"halt at instruction {c} is not its queue's last, outside loops"
    return ""
