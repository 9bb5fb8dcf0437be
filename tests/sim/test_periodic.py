"""The periodic engine (sim/periodic.py) schedules a compact program exactly as the event
engine schedules its unrolled equivalent: total cycles, every op's first start and last end,
a queue's exposed and the idle cycles when asked, and the same deadlock, on random nested
loops with several queues, a shared resource, token delays and counts long enough for periods
to be found and jumped over (80 random programs in the slow tier)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa.loops import Loop, Structure
from isa.unroll import unrolled_order
from sim.engine import EngineError, simulate_events
from sim.loop_layout import loop_layout
from sim.node_result import exposed_cycles, idle_cycles, on_queue
from sim.periodic import HALT, PLAIN, SIGNAL, WAIT, schedule_periodic

QUEUES = ("dma0", "dma1", "mxu0", "vpu0")
_OPCODE = {PLAIN: "op", SIGNAL: "signal", WAIT: "wait", HALT: "halt"}


@dataclass(frozen=True)
class _Instr:                       # what sim/engine.py reads of an instruction
    queue: str
    opcode: str
    fields: tuple


@dataclass(frozen=True)
class _Program:
    instructions: tuple


@dataclass
class _Compact:
    """Words of a compact program: per word its queue (-1 for a loop header), kind,
    semaphore, duration, resource, delay and op; and its loops."""

    queue: list
    kind: list
    sem: list
    dur: list
    res: list
    delay: list
    op: list
    loops: list


@st.composite
def _work(draw, words: _Compact, op: int) -> None:
    """One piece of work at the end of `words`: a plain instruction, or a signal on one
    queue and its wait on another (balanced inside whatever loop holds them)."""
    if draw(st.booleans()):
        words.queue.append(draw(st.integers(0, len(QUEUES) - 1)))
        words.kind.append(PLAIN)
        words.sem.append(0)
        words.dur.append(draw(st.sampled_from([0, 1, 3, 7, 20, 64])))
        words.res.append(draw(st.sampled_from([-1, -1, 0, 1])))
        words.delay.append(0)
        words.op.append(op)
        return
    src, dst = draw(st.lists(st.integers(0, len(QUEUES) - 1), min_size=2, max_size=2, unique=True))
    s = draw(st.integers(0, 3))
    for q, kind, late in ((src, SIGNAL, draw(st.sampled_from([0, 0, 5, 40]))), (dst, WAIT, 0)):
        words.queue.append(q)
        words.kind.append(kind)
        words.sem.append(s)
        words.dur.append(0)
        words.res.append(-1)
        words.delay.append(late)
        words.op.append(op)


@st.composite
def _body(draw, words: _Compact, depth: int, parent: int | None, op: int) -> None:
    for _ in range(draw(st.integers(1, 4))):
        if depth < 3 and draw(st.integers(0, 2)) == 0:
            header = len(words.queue)
            for column in (words.queue, words.kind, words.sem, words.dur, words.res,
                           words.delay, words.op):
                column.append(-1 if column is words.queue else 0)
            words.op[-1] = op
            slot = len(words.loops)
            words.loops.append(None)
            draw(_body(words, depth + 1, header, op))
            count = draw(st.sampled_from([1, 2, 3, 5, 9, 17, 40]))
            words.loops[slot] = Loop(header, count, header + 1, len(words.queue), {}, parent)
        else:
            draw(_work(words, op))


@st.composite
def _programs(draw) -> _Compact:
    words = _Compact([], [], [], [], [], [], [], [])
    for op in range(draw(st.integers(1, 3))):
        draw(_body(words, 0, None, op))
    if draw(st.booleans()):                       # a halt as some queue's last instruction
        q = draw(st.integers(0, len(QUEUES) - 1))
        for column, value in ((words.queue, q), (words.kind, HALT), (words.sem, 0), (words.dur, 0),
                              (words.res, -1), (words.delay, 0), (words.op, words.op[-1])):
            column.append(value)
    return words


def _timeline(words: _Compact, structure: Structure, queues=QUEUES):
    """The unrolled program's timeline, and each executed instruction's compact index."""
    order = unrolled_order(structure).order
    instrs = tuple(_Instr(queues[words.queue[c]], _OPCODE[words.kind[c]], (("sem", words.sem[c]),))
                   for c in order.tolist())
    pick = lambda column: np.array(column, np.int64)[order]
    return simulate_events(_Program(instrs), pick(words.dur), pick(words.res),
                           delays=pick(words.delay)), order


def _unrolled(words: _Compact, structure: Structure, exposure: int | None = None):
    timeline, order = _timeline(words, structure)
    ops = np.array(words.op, np.int64)[order]
    n_ops = max(words.op) + 1
    first, last = np.full(n_ops, -1), np.full(n_ops, -1)
    active = (timeline.end > timeline.start) & (timeline.start >= 0)
    for o in range(n_ops):
        mine = active & (ops == o)
        if mine.any():
            first[o], last[o] = timeline.start[mine].min(), timeline.end[mine].max()
    measured = None, None
    if exposure is not None:
        on = on_queue(timeline, QUEUES[exposure]) if exposure >= 0 else np.zeros_like(ops, bool)
        measured = exposed_cycles(timeline, on), idle_cycles(timeline, timeline.total_cycles)
    return timeline.total_cycles, first, last, measured


def _periodic(words: _Compact, structure: Structure, exposure: int | None = None):
    layout = loop_layout(structure, np.array(words.queue))
    kind = bytes(words.kind)
    timing = schedule_periodic(layout, QUEUES, kind, words.sem, words.dur, words.res,
                               words.delay, words.op, max(words.op) + 1, exposure=exposure)
    return timing


@pytest.mark.slow
@settings(max_examples=80, deadline=None, database=None)
@given(words=_programs(), exposure=st.none() | st.integers(-1, len(QUEUES) - 1))
def test_periodic_schedule_equals_the_unrolled_schedule(words, exposure):
    structure = Structure(tuple(sorted(words.loops, key=lambda loop: loop.header)), len(words.queue))
    try:
        expected = _unrolled(words, structure, exposure)
    except EngineError as e:
        with pytest.raises(EngineError) as caught:
            _periodic(words, structure, exposure)
        assert (caught.value.index, str(caught.value)) == (e.index, str(e))
        return
    timing = _periodic(words, structure, exposure)
    assert timing.total_cycles == expected[0]
    assert timing.op_first_start.tolist() == expected[1].tolist()
    assert timing.op_last_end.tolist() == expected[2].tolist()
    assert (timing.exposed_cycles, timing.idle_cycles) == expected[3]
    assert timing.simulated + timing.skipped == len(unrolled_order(structure).order)


@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_a_long_loop_is_timed_by_its_period_not_instance_by_instance():
    """Double-buffered load -> compute -> store with back-pressure (two credits), 10,000
    iterations: a few iterations are simulated, the rest jumped over in one go, and the
    cycles are the unrolled schedule's."""
    words = _Compact([], [], [], [], [], [], [], [])
    credits = [(0, SIGNAL, 3, 0, -1, 0)] * 2
    body = [(0, WAIT, 3, 0, -1, 0), (0, PLAIN, 0, 30, 0, 0), (0, SIGNAL, 1, 0, -1, 12),
            (2, WAIT, 1, 0, -1, 0), (2, PLAIN, 0, 41, -1, 0), (2, SIGNAL, 3, 0, -1, 0),
            (2, SIGNAL, 2, 0, -1, 0), (3, WAIT, 2, 0, -1, 0), (3, PLAIN, 0, 9, 0, 0)]
    for q, kind, sem, dur, res, late in credits + [(-1, 0, 0, 0, 0, 0)] + body:
        for column, value in zip((words.queue, words.kind, words.sem, words.dur, words.res,
                                  words.delay, words.op), (q, kind, sem, dur, res, late, 0)):
            column.append(value)
    words.loops.append(Loop(2, 10_000, 3, len(words.queue), {}, None))
    structure = Structure(tuple(words.loops), len(words.queue))
    timing = _periodic(words, structure)
    assert timing.total_cycles == _unrolled(words, structure)[0]
    assert timing.simulated < 100 and timing.jumps == 1


@pytest.mark.slow
def test_the_double_buffered_example_is_timed_from_its_first_iterations():
    """examples/double_buffered_loop.tasm, 1.2 M executed instructions: its cycles are the
    pipeline's closed form (a tile's load is shorter than its gemm: the matrix unit bounds
    it, after the first load),
    from a few dozen instances simulated one by one."""
    from pathlib import Path

    import isa
    from arch import load_arch
    from sim.compact_costs import pattern_costs
    from sim.machines import SystolicMachine
    from sim.simulate import simulate

    text = (Path(__file__).parents[2] / "examples/double_buffered_loop.tasm").read_text()
    program = isa.assemble(text, filename="double_buffered_loop.tasm")
    machine = SystolicMachine(load_arch("systolic-128"))
    plan = pattern_costs(machine, program)
    gemm = int(plan.durations[[i for i, ins in enumerate(program.instructions)
                               if ins.opcode == "gemm"][0]])
    load = int(plan.durations[[i for i, ins in enumerate(program.instructions)
                               if ins.opcode == "load"][0]])
    result = simulate(program, machine, functional=False).result
    assert result.instructions == 1_200_006
    assert load < gemm
    assert result.cycles == load + 200_000 * gemm        # the first load, then gemm-bound
