"""sim.engine: hand-made timelines, errors, and a property test against a cycle stepper."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isa
from sim.engine import _SHORT_RUN, PROGRESS_CHUNKS, EngineError, Timeline, simulate_events

HEADER = ".target test\n.isa 3\n.spaces dram sram acc\n"
TEMPLATES = {  # any valid operands: the engine reads only the opcode, queue and `sem`
    "load": "load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=64",
    "store": "store dst=dram[0x0] src=sram[0x0] rows=1 row_bytes=64",
    "gemm": "gemm c=acc[0x0] a=sram[0x0] b=sram[0x0] accumulate=0 transpose_b=0 stream=0 preloaded=0",
    "vec": "vec func=add bcast=none dst=sram[0x0] a=sram[0x0] b=sram[0x0]",
    "dmacfg": "dmacfg src_stride=0 dst_stride=0",
}


def build(text: str) -> tuple[isa.Program, np.ndarray, np.ndarray]:
    """Lines `queue op [sem=N] [cycles] [@resource]` -> program, durations, resources."""
    lines, durations, resources = [], [], []
    for line in text.strip().splitlines():
        queue, op, *rest = line.split()
        sems = [word for word in rest if word.startswith("sem=")]
        cycles = [int(word) for word in rest if word.isdigit()]
        held = [int(word[1:]) for word in rest if word.startswith("@")]
        lines.append(" ".join([queue, TEMPLATES.get(op, op), *sems]))
        durations.append(cycles[0] if cycles else 0)
        resources.append(held[0] if held else -1)
    program = isa.assemble(HEADER + "\n".join(lines) + "\n")
    return program, np.array(durations), np.array(resources)


def run(text: str) -> tuple[Timeline, list[int]]:
    program, durations, resources = build(text)
    order: list[int] = []
    return simulate_events(program, durations, resources, on_start=order.append), order


def test_dma_mxu_vpu_pipeline_with_double_buffer_tokens():
    # dma0 may fill two buffers ahead; mxu0 frees one per gemm (sem 2) and hands it to vpu0
    timeline, order = run("""
        dma0 load 10
        dma0 signal sem=1
        dma0 load 10
        dma0 signal sem=1
        dma0 wait sem=2
        dma0 load 10
        dma0 signal sem=1
        mxu0 wait sem=1
        mxu0 gemm 15
        mxu0 signal sem=2
        mxu0 signal sem=3
        mxu0 wait sem=1
        mxu0 gemm 15
        mxu0 signal sem=2
        mxu0 signal sem=3
        mxu0 wait sem=1
        mxu0 gemm 15
        mxu0 signal sem=2
        mxu0 signal sem=3
        vpu0 wait sem=3
        vpu0 vec 5
        vpu0 wait sem=3
        vpu0 vec 5
        vpu0 wait sem=3
        vpu0 vec 5
    """)
    assert timeline.start.tolist() == [0, 10, 10, 20, 25, 25, 35,
                                       10, 10, 25, 25, 25, 25, 40, 40, 40, 40, 55, 55,
                                       25, 25, 40, 40, 55, 55]
    assert timeline.end[[0, 2, 5, 8, 12, 16, 20, 22, 24]].tolist() == [10, 20, 35, 25, 40, 55,
                                                                       30, 45, 60]
    assert timeline.total_cycles == 60
    assert timeline.queues == ("dma0", "mxu0", "vpu0")
    assert timeline.queue_busy_cycles() == {"dma0": 30, "mxu0": 45, "vpu0": 15}
    assert [timeline.start[i] for i in order] == sorted(timeline.start.tolist())


def test_two_dma_queues_contend_for_one_port():
    # first come by start time; at equal times the lower instruction index wins
    timeline, _ = run("""
        dma0 load 10 @0
        dma1 load 4 @0
        dma1 load 4 @0
        dma0 load 10 @0
        dma1 dmacfg @0
        dma0 load 3 @1
    """)
    assert timeline.start.tolist() == [0, 10, 14, 18, 18, 28]
    assert timeline.end.tolist() == [10, 14, 18, 28, 18, 31]
    assert timeline.total_cycles == 31


def test_zero_duration_holders_do_not_occupy_a_resource():
    timeline, _ = run("""
        dma0 load 10 @0
        dma1 dmacfg @0
        dma1 load 2
    """)
    assert timeline.start.tolist() == [0, 0, 0]


def test_zero_duration_signals_chain_within_one_cycle():
    timeline, order = run("""
        vpu0 wait sem=2
        vpu0 vec 3
        mxu0 wait sem=1
        mxu0 signal sem=2
        dma0 load 5
        dma0 signal sem=1
    """)
    assert timeline.start.tolist() == [5, 5, 5, 5, 0, 5]
    assert timeline.total_cycles == 8
    assert order == [4, 5, 2, 3, 0, 1]  # each signal before the wait that takes its token


def test_wait_whose_signal_comes_later_on_another_queue():
    timeline, order = run("""
        mxu0 wait sem=7
        mxu0 gemm 4
        dma0 load 30
        dma0 signal sem=7
    """)
    assert timeline.start.tolist() == [30, 30, 0, 30]
    assert timeline.total_cycles == 34
    assert order == [2, 3, 0, 1]


def test_tokens_are_counted_and_taken_first_come():
    # two tokens (at 2 and 9); vpu0's wait is ready first and takes the first one
    timeline, _ = run("""
        mxu0 gemm 6
        mxu0 wait sem=1
        vpu0 wait sem=1
        dma0 load 2
        dma0 signal sem=1
        dma0 load 7
        dma0 signal sem=1
    """)
    assert timeline.start.tolist() == [0, 9, 2, 0, 2, 2, 9]


def test_halt_ends_its_queue():
    timeline, order = run("""
        dma0 load 4
        dma0 halt
        dma0 load 9
        mxu0 gemm 2
    """)
    assert timeline.start.tolist() == [0, 4, -1, 0]
    assert timeline.end.tolist() == [4, 4, -1, 2]
    assert timeline.total_cycles == 4
    assert sorted(order) == [0, 1, 3]
    assert timeline.queue_busy_cycles() == {"dma0": 4, "mxu0": 2}


def test_empty_program():
    timeline = simulate_events(isa.assemble(HEADER), np.zeros(0, np.int64))
    assert timeline.total_cycles == 0 and timeline.start.shape == (0,)
    assert timeline.queue_busy_cycles() == {}


def test_timeline_is_read_only():
    timeline, _ = run("dma0 load 3")
    with pytest.raises(ValueError):
        timeline.start[0] = 1


def test_deadlock_names_the_wait():
    program, durations, _ = build("""
        dma0 load 3
        mxu0 gemm 1
        mxu0 wait sem=3
    """)
    with pytest.raises(EngineError, match=r"^deadlock: wait at instruction 2 \(mxu0\) on "
                                          r"semaphore 3 never satisfied$") as error:
        simulate_events(program, durations)
    assert error.value.index == 2


def test_cyclic_wait_reports_the_lowest_blocked_wait():
    program, durations, _ = build("""
        mxu0 wait sem=1
        mxu0 signal sem=2
        dma0 load 3
        dma0 wait sem=2
        dma0 signal sem=1
    """)
    with pytest.raises(EngineError, match=r"^deadlock: wait at instruction 0 \(mxu0\) on "
                                          r"semaphore 1 never satisfied$"):
        simulate_events(program, durations)


@pytest.mark.parametrize(("durations", "resources", "message"), [
    ([1, 2], None, r"durations has shape \(2,\), expected \(3,\): one value per instruction"),
    ([1, -2, 0], None, r"durations\[1\] = -2 must be >= 0"),
    ([1.0, 2.0, 0.0], None, r"durations has dtype float64, expected integers"),
    ([1, 2, 0], [0, -2, 1], r"resources\[1\] = -2 must be >= -1"),
])
def test_bad_arrays_are_rejected(durations, resources, message):
    program, _, _ = build("dma0 load\ndma0 load\nmxu0 gemm")
    with pytest.raises(EngineError, match=f"^{message}$"):
        simulate_events(program, np.array(durations),
                        None if resources is None else np.array(resources))


def pipeline(tiles: int, load: int = 40, gemm: int = 64, store: int = 20):
    """A double-buffered load -> gemm -> store stream; dma0 and dma1 share DRAM port 0."""
    dma0, dma1, mxu0 = (isa.Queue.parse(q) for q in ("dma0", "dma1", "mxu0"))
    plain = {op: isa.assemble(f"{HEADER}{q} {TEMPLATES[op]}\n").instructions[0]
             for q, op in (("dma0", "load"), ("mxu0", "gemm"), ("dma1", "store"))}
    sync = {(op, q, s): isa.Instr.make(op, q, sem=s)
            for op in ("signal", "wait") for q in (dma0, dma1, mxu0) for s in (1, 2, 3)}
    block = [(sync["wait", dma0, 2], 0, -1), (plain["load"], load, 0),
             (sync["signal", dma0, 1], 0, -1), (sync["wait", mxu0, 1], 0, -1),
             (plain["gemm"], gemm, -1), (sync["signal", mxu0, 2], 0, -1),
             (sync["signal", mxu0, 3], 0, -1), (sync["wait", dma1, 3], 0, -1),
             (plain["store"], store, 0)]
    rows = block[1:] * 2 + block * (tiles - 2)
    instructions, durations, resources = zip(*rows)
    program = isa.Program("test", isa.ISA_VERSION, ("dram", "sram", "acc"), instructions=instructions)
    return program, np.array(durations), np.array(resources)


@pytest.mark.slow
def test_long_pipeline_matches_its_closed_form_quickly():
    # loads stay ahead of the gemms (load + store <= gemm on the shared port), so the
    # makespan is the first load, every gemm back to back, and the last store
    tiles = 20_000
    program, durations, resources = pipeline(tiles)
    begin = time.perf_counter()
    timeline = simulate_events(program, durations, resources)
    elapsed_s = time.perf_counter() - begin
    assert timeline.total_cycles == 40 + 64 * tiles + 20
    assert timeline.queue_busy_cycles() == {"dma0": 40 * tiles, "mxu0": 64 * tiles,
                                            "dma1": 20 * tiles}
    assert elapsed_s < 5.0  # about 0.2 s for these 180k instructions; a loose guard


# ---- property: the engine equals a cycle-by-cycle reference on random small programs ----

QUEUES = tuple(isa.Queue.parse(q) for q in ("dma0", "dma1", "mxu0", "vpu0"))
PLAIN = {q: isa.assemble(f"{HEADER}{q} {TEMPLATES[op]}\n").instructions[0]
         for q, op in zip(("dma0", "dma1", "mxu0", "vpu0"), ("load", "store", "gemm", "vec"))}


class Deadlock(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def reference(program: isa.Program, durations: list[int],
              resources: list[int]) -> tuple[list[int], list[int]]:
    """Step cycle by cycle; at each cycle start, while any can, the lowest-indexed queue head
    whose queue is free, whose resource is free at every cycle it needs, and (for a wait)
    whose semaphore holds a token. Returns starts (-1: never) and start order, or raises
    Deadlock (no idle cycle is possible before the end, so sum(durations) bounds the run)."""
    n = len(program.instructions)
    queues: dict[isa.Queue, list[int]] = {}
    for i, instr in enumerate(program.instructions):
        queues.setdefault(instr.queue, []).append(i)
    pending = {q: list(indices) for q, indices in queues.items()}
    ready = dict.fromkeys(queues, 0)
    busy: dict[int, set[int]] = {}  # resource -> occupied cycles
    tokens: dict[int, list[int]] = {}  # semaphore -> unconsumed token times, oldest first
    starts, order = [-1] * n, []

    def startable(i: int, t: int) -> bool:
        instr = program.instructions[i]
        if ready[instr.queue] > t:
            return False
        cycles = range(t, t + durations[i])
        if resources[i] >= 0 and any(c in busy.get(resources[i], ()) for c in cycles):
            return False
        if instr.opcode == "wait":
            queue_of_tokens = tokens.get(instr["sem"], [])
            return bool(queue_of_tokens) and queue_of_tokens[0] <= t
        return True

    for t in range(sum(durations) + 2):
        while True:
            heads = [indices[0] for indices in pending.values() if indices]
            candidates = [i for i in heads if startable(i, t)]
            if not candidates:
                break
            i = min(candidates)
            instr = program.instructions[i]
            starts[i] = t
            order.append(i)
            ready[instr.queue] = t + durations[i]
            if resources[i] >= 0:
                busy.setdefault(resources[i], set()).update(range(t, t + durations[i]))
            if instr.opcode == "signal":
                tokens.setdefault(instr["sem"], []).append(t)
            elif instr.opcode == "wait":
                tokens[instr["sem"]].pop(0)
            pending[instr.queue] = [] if instr.opcode == "halt" else pending[instr.queue][1:]
        if not any(pending.values()):
            return starts, order
    raise Deadlock(min(indices[0] for indices in pending.values() if indices))


@st.composite
def programs(draw, safe: bool = True):
    """Random programs on 2-4 queues. safe: each semaphore is waited on by one queue and each
    wait is paired with a signal placed before it in one serial order of the program, which
    then finishes whatever the timing; otherwise semaphores are arbitrary."""
    queues = QUEUES[:draw(st.integers(2, 4))]
    pick = st.integers(0, len(queues) - 1)
    serial = [queues[q] for q in draw(st.lists(pick, max_size=12))]  # plain instructions
    rows = [(q, PLAIN[str(q)]) for q in serial]
    for _ in range(draw(st.integers(0, 6))):
        signaller, waiter = queues[draw(pick)], queues[draw(pick)]
        sem = (QUEUES.index(waiter) * 2 + draw(st.integers(0, 1)) if safe
               else draw(st.integers(0, 2)))
        first = draw(st.integers(0, len(rows)))
        rows.insert(first, (signaller, isa.Instr.make("signal", signaller, sem=sem)))
        second = draw(st.integers(first + 1, len(rows)))
        if not safe and draw(st.booleans()):
            second = draw(st.integers(0, len(rows)))
        rows.insert(second, (waiter, isa.Instr.make("wait", waiter, sem=sem)))
    if rows and draw(st.booleans()):  # a halt, with a plain instruction after it
        q = rows[-1][0]
        rows += [(q, isa.Instr.make("halt", q)), (q, PLAIN[str(q)])]
    instructions = [instr for _, instr in rows]
    n = len(instructions)
    durations = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    resources = draw(st.lists(st.sampled_from([-1, -1, 0, 1]), min_size=n, max_size=n))
    program = isa.Program("test", isa.ISA_VERSION, ("dram", "sram", "acc"), instructions=instructions)
    return program, durations, resources


def check_against_reference(program, durations, resources) -> bool:
    """The engine's starts and start order equal the reference's, deadlocks included;
    True when the program finished."""
    order: list[int] = []
    arrays = np.array(durations, np.int64), np.array(resources, np.int64)
    try:
        starts, expected = reference(program, durations, resources)
    except Deadlock as deadlock:
        with pytest.raises(EngineError, match=f"^deadlock: wait at instruction "
                                              f"{deadlock.index} "):
            simulate_events(program, *arrays, on_start=order.append)
        return False
    timeline = simulate_events(program, *arrays, on_start=order.append)
    assert timeline.start.tolist() == starts
    assert order == expected
    issued = timeline.start >= 0
    assert np.array_equal(timeline.end[issued], timeline.start[issued] + arrays[0][issued])
    assert timeline.total_cycles == max(timeline.end.tolist(), default=0)
    return True


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(programs(safe=True))
def test_engine_equals_reference_on_programs_that_finish(case):
    assert check_against_reference(*case)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(programs(safe=False))
def test_engine_equals_reference_with_shared_semaphores_and_deadlocks(case):
    check_against_reference(*case)


def test_delayed_signal_lands_later_and_frees_its_queue_at_once():
    program, durations, resources = build("""
        vpu0 wait sem=1
        vpu0 vec 3
        dma0 load 5
        dma0 signal sem=1
        dma0 load 4
    """)
    delays = np.array([0, 0, 0, 20, 0])
    timeline = simulate_events(program, durations, resources, delays=delays)
    assert timeline.start.tolist() == [25, 25, 0, 5, 5]    # the token lands at 5 + 20
    assert timeline.total_cycles == 28


def test_state_dependent_signal_delay_comes_from_timed():
    program, durations, resources = build("""
        vpu0 wait sem=1
        dma0 load 5
        dma0 signal sem=1
    """)
    asked = []
    timeline = simulate_events(program, np.array([0, 5, -1]), resources,
                               timed=lambda i, t: asked.append((i, t)) or 7)
    assert asked == [(2, 5)]
    assert timeline.start.tolist() == [12, 0, 5]
    assert timeline.end.tolist()[2] == 5                   # the signal itself takes no cycles


def test_timed_run_equals_timed_one_by_one():
    """A queue's run of state-dependent instructions timed at once starts each where timing
    them one by one does; the signal ending the run and the other queue are unaffected."""
    program, durations, resources = build("""
        dma0 load 5
        vpu0 vec
        vpu0 vec
        dma0 signal sem=1
        vpu0 vec
        vpu0 wait sem=1
        vpu0 vec
        vpu0 vec
    """)
    durations = np.array([5, -1, -1, 0, -1, 0, -1, -1])
    grow = lambda i, t: 3 + t % 4                           # noqa: E731 (depends on the start)
    runs = []

    def timed_run(indices, t):
        runs.append(list(indices))
        out = []
        for i in indices:
            out.append(grow(i, t))
            t += out[-1]
        return out
    one = simulate_events(program, durations, resources, timed=grow)
    many = simulate_events(program, durations, resources, timed=grow, timed_run=timed_run)
    assert many.start.tolist() == one.start.tolist()
    assert many.end.tolist() == one.end.tolist()
    assert runs == [[1, 2, 4], [6, 7]]


@pytest.mark.parametrize("as_array", [False, True])
def test_long_timed_runs_written_as_arrays_equal_one_by_one(as_array):
    """Runs past the engine's short-run length are written as arrays (the durations given as
    a list or an int array): every start equals timing them one by one, on runs just below,
    at and above that length, with another queue's signal cutting one of them."""
    lengths = (_SHORT_RUN - 1, _SHORT_RUN, 3 * _SHORT_RUN + 1)
    lines = ["dma0 load 5"]
    for n in lengths:
        lines += ["vpu0 vec"] * n + ["vpu0 wait sem=1" if n == lengths[1] else "vpu0 signal sem=2"]
    lines += ["dma0 signal sem=1"]
    program, _, resources = build("\n".join(lines))
    durations = np.array([5 if ins.opcode == "load" else -1 if ins.opcode == "vec" else 0
                          for ins in program.instructions])
    grow = lambda i, t: 1 + (i * 7 + t) % 5                 # noqa: E731 (depends on the start)
    sizes = []

    def timed_run(indices, t):
        sizes.append(len(indices))
        out = []
        for i in indices:
            out.append(grow(int(i), t))
            t += out[-1]
        return np.array(out, np.int64) if as_array else out
    one = simulate_events(program, durations, resources, timed=grow)
    many = simulate_events(program, durations, resources, timed=grow, timed_run=timed_run)
    assert many.start.tolist() == one.start.tolist()
    assert many.end.tolist() == one.end.tolist()
    assert sizes == list(lengths)


def test_progress_counts_started_instructions_in_chunks():
    """progress(started) about every 1/PROGRESS_CHUNKS of the program, never more often, and
    the schedule is the one without it."""
    program, durations, resources = pipeline(400)        # 3,598 instructions
    counts: list[int] = []
    with_progress = simulate_events(program, durations, resources, progress=counts.append)
    plain = simulate_events(program, durations, resources)
    assert with_progress.start.tolist() == plain.start.tolist()
    n, chunk = len(program.instructions), len(program.instructions) // PROGRESS_CHUNKS
    assert len(counts) <= PROGRESS_CHUNKS and counts == sorted(counts) and counts[-1] <= n
    assert all(b - a >= chunk for a, b in zip(counts, counts[1:]))
    assert n - counts[-1] <= 2 * chunk                      # the last chunk is reported
