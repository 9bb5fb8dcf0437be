"""Discrete-event engine: when every instruction of a program starts, given its cycle count.

Target-agnostic: a machine model computes `durations` (and which shared `resources` each
instruction holds) beforehand; the engine only orders. Each queue issues in program order;
instruction i starts at the earliest cycle t >= the end of its queue's previous instruction at
which

- its resource (if any, and if it lasts at least one cycle) is free over [t, t + duration):
  resources are granted first-come by start time, never back-filled;
- for `wait sem=s`, a token of s is available: `signal sem=s` adds one at its start, `wait`
  takes one.

Contention at equal times is decided by the rule that makes the schedule unique: at each
cycle, the engine repeatedly starts, among the queue heads that can start then, the one with
the lowest instruction index (so a zero-duration `signal` lets a `wait` start in the same
cycle). `halt` starts like any instruction and ends its queue; later instructions on that queue
never issue (start = end = -1).

Cost: O(n log q) for n instructions on q queues. A heap holds the queue heads keyed by a lower
bound of their start (`time << shift | index`: one int compare per step); a head whose resource
was taken meanwhile is re-keyed when it surfaces (lazy re-evaluation); a `wait` without a token
sleeps off the heap until a `signal` on its semaphore wakes it (with the other, at most q,
sleepers there); and the next instruction of a queue that is due before every other head starts
without touching the heap. Idle cycles cost nothing. Memory: about 40 bytes an instruction
while it runs, in C arrays (`array.array`, `bytes`) rather than lists of ints
(docs/performance.md).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush, heappushpop
from itertools import repeat
from operator import attrgetter

import numpy as np

import isa
from isa.unroll import first_executed

__all__ = ["EngineError", "Timeline", "simulate_events"]

_PLAIN, _SIGNAL, _WAIT, _HALT = 0, 1, 2, 3
_KIND_OF_OPCODE = {"signal": _SIGNAL, "wait": _WAIT, "halt": _HALT}
_SEMAPHORES = 1 << 16  # `sem` is a U16 field (docs/isa.md, signal/wait)
_QUEUE, _OPCODE = attrgetter("queue"), attrgetter("opcode")
PROGRESS_CHUNKS = 200  # progress(started) calls in a run, at most: a bar moves in 0.5 % steps
_SHORT_RUN = 16  # a run this short is written member by member; longer ones as arrays


class EngineError(ValueError):
    """Bad input to the engine or a program that cannot finish; one line. `index` is the
    offending instruction's position when there is one."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.index = index


@dataclass(frozen=True, slots=True, eq=False)
class Timeline:
    """Start and end cycle of every instruction (-1 for those after a `halt` on their queue).

    queues: the queue texts in order of first appearance; queue_of[i] indexes it.
    """

    start: np.ndarray
    end: np.ndarray
    total_cycles: int
    queues: tuple[str, ...]
    queue_of: np.ndarray

    def queue_busy_cycles(self) -> dict[str, int]:
        """Per queue text ("dma0"): the sum of its issued instructions' durations."""
        busy = {}
        for q, name in enumerate(self.queues):   # an instruction never issued has end = start
            mine = self.queue_of == q
            busy[name] = int((self.end[mine] - self.start[mine]).sum())
        return busy


def simulate_events(program: isa.Program, durations: np.ndarray,
                    resources: np.ndarray | None = None,
                    on_start: Callable[[int], None] | None = None,
                    timed: Callable[[int, int], int] | None = None,
                    delays: np.ndarray | None = None,
                    timed_run: Callable[[list[int], int], list[int]] | None = None,
                    progress: Callable[[int], None] | None = None,
                    order: np.ndarray | None = None) -> Timeline:
    """Schedule `program`: durations[i] >= 0 cycles for instruction i, resources[i] the id of
    the shared resource it holds for its duration (-1: none).

    durations[i] = -1 marks a state-dependent instruction (a DRAM command sequence whose
    cycles depend on when it starts): timed(i, t) returns its duration when it starts at
    cycle t. It is called once per such instruction, in start order, so the model behind it
    can keep state (open rows, refresh schedule); such instructions hold no resource.

    delays[i] >= 0 for a `signal`: its token appears delays[i] cycles after it starts (data
    still in flight when the signal issues, e.g. a DMA's latency) while its queue goes on at
    once. A `signal` with durations[i] = -1 gets its delay from timed(i, t) (and lasts 0).

    on_start(i) is called for every issued instruction in the order the engine starts them
    (non-decreasing start; a `wait` after the `signal` whose token it takes), so a functional
    executor called from it sees every write of the instructions that started earlier.

    timed_run(indices, t), when given and there is no on_start, times a whole run at once:
    `indices` are consecutive instructions of one queue (a list, or for a long run an int
    array), each state-dependent, holding no resource and neither `signal`, `wait` nor `halt`,
    the first starting at cycle t; it returns their durations as a sequence of ints or an int
    array (each starts when the one before ends). Nothing on another queue
    can affect such a run, so this equals calling timed(i, t) for each in turn (per queue the
    order is the same; a machine keeps its state per queue) at a fraction of the engine's work.

    progress(started), when given, is told how many instructions have started, at most
    PROGRESS_CHUNKS times a run (a counter in the loop and a call per chunk: a progress bar
    costs the engine well under 1 %, docs/performance.md).
    `order`, when given: `program` is a compact program and the engine schedules its executed
    instructions, the u-th being program.instructions[order[u]] (the engine reads only queues,
    opcodes and semaphores, which no loop moves; the arrays above are per executed instruction).

    Raises EngineError for malformed arrays and for a `wait` that can never be satisfied.
    """
    instrs = program.instructions
    n = len(instrs) if order is None else len(order)
    dur = _check_array("durations", durations, n, lowest=-1 if timed else 0)
    res = (np.full(n, -1, np.int8) if resources is None
           else _check_array("resources", resources, n, lowest=-1))
    bad = np.flatnonzero((dur < 0) & (res >= 0))
    if bad.size:
        raise EngineError(f"instruction {int(bad[0])}: a state-dependent duration cannot hold "
                          "a resource", int(bad[0]))
    queues, queue_of, order, kind, sem, nxt, heads = _decode(instrs, order)
    delay: dict[int, int] = {}            # the signals with a delay (few): index -> cycles
    if delays is not None:
        given = _check_array("delays", delays, n, lowest=0)
        late = np.flatnonzero(given)
        delay = dict(zip(late.tolist(), given[late].tolist()))
    runs = (_timed_runs(order, queue_of, kind, dur) if timed_run is not None and on_start is None
            else _Runs(order[:0], {}))
    dur_work = _compact("q", dur)         # the loop replaces state-dependent entries
    held = int(res.max(initial=-1)) + 1   # resources 0..held-1
    start, blocked = _schedule(kind, sem, nxt, dur_work, _compact("b" if held <= 127 else "q", res),
                               held, heads, on_start, timed, delay, runs, timed_run, progress)
    if blocked is not None:
        raise EngineError(f"deadlock: wait at instruction {blocked} "
                          f"({queues[queue_of[blocked]]}) on semaphore {sem[blocked]} "
                          f"never satisfied", blocked)
    del kind, sem, nxt, order, runs         # ~10^7 instructions: free before the end times
    start_arr = np.frombuffer(start, np.int64)
    end = start_arr + np.frombuffer(dur_work, np.int64)
    del dur_work
    end[start_arr < 0] = -1
    for values in (start_arr, end, queue_of):
        values.setflags(write=False)
    return Timeline(start_arr, end, int(end.max(initial=0)), queues, queue_of)


def _check_array(name: str, values: object, n: int, lowest: int) -> np.ndarray:
    """`values` as a 1-D integer array (not copied when it is one) of length n, every element
    >= lowest. The engine never writes to it."""
    checked = np.asarray(values)
    if checked.shape != (n,):
        raise EngineError(f"{name} has shape {checked.shape}, expected ({n},): "
                          f"one value per instruction")
    if not np.issubdtype(checked.dtype, np.integer):
        raise EngineError(f"{name} has dtype {checked.dtype}, expected integers")
    bad = np.flatnonzero(checked < lowest)
    if bad.size:
        i = int(bad[0])
        raise EngineError(f"{name}[{i}] = {checked[i]} must be >= {lowest}", i)
    return checked


def _compact(code: str, values: np.ndarray) -> array:
    """A copy of `values` (which fit) as a C array (array.array): 1-8 bytes an element where
    a list takes 8 plus 32 per int above 256, and indexed about as fast as a list."""
    out = array(code, [0]) * len(values)
    np.frombuffer(out, np.dtype(code))[:] = values
    return out


def _decode(instrs: Sequence[isa.Instr], executed: np.ndarray | None = None
            ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, bytes, array, array, list[int]]:
    """Per executed instruction: queue id, kind, semaphore (0 if none), next instruction on
    the same queue (-1 at the end); the queue texts, the instructions in queue order (stable)
    and the first instruction of each queue. `executed`: the index in `instrs` of each
    executed instruction (None: `instrs` as listed).
    Whole-list passes in C (map, fromiter): programs have up to ~10^7 instructions."""
    n = len(instrs)
    by_id = dict(zip(map(id, map(_QUEUE, instrs)), map(_QUEUE, instrs)))  # queues are few
    ids: dict[isa.Queue, int] = {}      # equal queues share an id, numbered by first appearance
    if executed is not None:            # ... of the executed instructions
        first = first_executed(executed, n)
        for i in np.argsort(first, kind="stable")[np.sort(first) >= 0].tolist():
            ids.setdefault(instrs[i].queue, len(ids))
    id_of_object = {key: ids.setdefault(queue, len(ids)) for key, queue in by_id.items()}
    queue_of = np.fromiter(map(id_of_object.__getitem__, map(id, map(_QUEUE, instrs))), np.int32, n)
    kinds = np.frombuffer(bytes(map(_KIND_OF_OPCODE.get, map(_OPCODE, instrs), repeat(_PLAIN, n))),
                          np.uint8)
    sems = np.zeros(n, np.uint16)
    for i in np.flatnonzero((kinds == _SIGNAL) | (kinds == _WAIT)).tolist():
        sems[i] = instrs[i].fields[0][1]
    if executed is not None:
        queue_of, kinds, sems, n = queue_of[executed], kinds[executed], sems[executed], len(executed)
    kind = kinds.tobytes()
    sem = array("H", sems.tobytes())
    index = "i" if n < 1 << 31 else "q"
    # a stable sort of few distinct small ints: numpy radix-sorts 8- and 16-bit keys
    keys = queue_of.astype(np.uint8 if len(ids) <= 256 else np.uint16) if len(ids) < 1 << 16 \
        else queue_of
    order = np.argsort(keys, kind="stable").astype(np.dtype(index))
    del keys
    in_order = queue_of[order]
    same = in_order[:-1] == in_order[1:]
    heads = sorted(order[np.flatnonzero(np.r_[True, ~same])].tolist()) if n else []
    del in_order
    nxt = array(index, [-1]) * n
    np.frombuffer(nxt, np.dtype(index))[order[:-1]] = np.where(same, order[1:], -1)
    return tuple(str(q) for q in ids), queue_of, order, kind, sem, nxt, heads


@dataclass(frozen=True)
class _Runs:
    """Runs of state-dependent instructions: `first[i]` = (lo, hi) for the run whose first
    instruction is i, its members being order[lo:hi] (kept as one array, not a list each)."""

    order: np.ndarray
    first: dict[int, tuple[int, int]]


def _timed_runs(order: np.ndarray, queue_of: np.ndarray, kind: bytes, dur: np.ndarray) -> _Runs:
    """Every maximal run of at least two consecutive instructions of one queue (`order`: the
    instructions in queue order) that are state-dependent and plain (not signal, wait or
    halt)."""
    if not len(order):
        return _Runs(order, {})
    eligible = ((dur == -1) & (np.frombuffer(kind, np.uint8) == _PLAIN))[order]
    queue = queue_of[order]
    edges = np.ones(len(order) + 1, bool)     # a run breaks where eligibility or the queue changes
    np.not_equal(eligible[1:], eligible[:-1], out=edges[1:-1])
    edges[1:-1] |= queue[1:] != queue[:-1]
    del queue
    edge = np.flatnonzero(edges)
    lo, hi = edge[:-1], edge[1:]
    keep = (hi - lo >= 2) & eligible[lo]
    lo, hi = lo[keep], hi[keep]
    return _Runs(order, dict(zip(order[lo].tolist(), zip(lo.tolist(), hi.tolist()))))


def _schedule(kind: bytes, sem: array, nxt: array, dur: array, res: array, held: int,
              heads: list[int],
              on_start: Callable[[int], None] | None,
              timed: Callable[[int, int], int] | None,
              delay: dict[int, int], runs: _Runs,
              timed_run: Callable[[list[int], int], list[int]] | None,
              progress: Callable[[int], None] | None,
              ) -> tuple[array, int | None]:
    """Start cycle of every instruction (-1: never issued) and the index of the lowest
    wait left blocked (None when every queue finished); state-dependent entries of `dur`
    are replaced by timed(i, start). Heap keys are `time << shift | i`."""
    n = len(kind)
    shift = max(n, 1).bit_length()
    mask = (1 << shift) - 1
    start = array("q", [-1]) * n
    free = [0] * held  # cycle at which each resource frees up
    first_of_run, run_order = runs.first, runs.order
    start_of = np.frombuffer(start, np.int64)          # array views of `start` and `dur`
    dur_of = np.frombuffer(dur, np.int64)
    tokens = [0] * _SEMAPHORES
    asleep: dict[int, list[int]] = {}  # semaphore -> waits without a token
    heap = list(heads)  # time 0: keys equal indices; sorted, so already a heap
    in_flight: set[int] = set()  # delayed signals whose token is still on its way
    key = heappop(heap) if heap else -1
    started = 0
    chunk = max(n // PROGRESS_CHUNKS, 1)
    report_at = chunk if progress is not None else n + 1  # never reached without a progress
    while key >= 0:
        if started >= report_at:
            progress(started)
            report_at = started + chunk
        t = key >> shift
        i = key & mask
        if i in in_flight:  # a delayed token lands: as a signal at this cycle
            in_flight.discard(i)
            s = sem[i]
            tokens[s] += 1
            for w in asleep.pop(s, ()):
                heappush(heap, t << shift | w)
            key = heappop(heap) if heap else -1
            continue
        while True:  # start i at t, then its queue's next while it is due before any other
            d = dur[i]
            if d < 0 and i in first_of_run:  # a run of state-dependent instructions: timed at once
                lo, hi = first_of_run[i]
                members = run_order[lo:hi]
                if hi - lo < _SHORT_RUN:
                    members = members.tolist()
                    took = timed_run(members, t)
                    for j, d in zip(members, took.tolist() if type(took) is np.ndarray else took):
                        start[j] = t
                        dur[j] = d
                        t += d
                else:                       # long: written as arrays, no Python per member
                    took = np.asarray(timed_run(members, t), np.int64)
                    ends = np.cumsum(took)
                    start_of[members] = ends - took + t
                    dur_of[members] = took
                    t += int(ends[-1])
                started += hi - lo
                i = nxt[int(members[-1])]
                if i < 0:
                    key = heappop(heap) if heap else -1
                    break
                if heap and heap[0] < (t << shift | i):
                    key = heappushpop(heap, t << shift | i)
                    break
                continue
            r = res[i]
            if r >= 0 and d and free[r] > t:  # the resource moved on: re-key
                key = heappushpop(heap, free[r] << shift | i)
                break
            k = kind[i]
            if k == _WAIT:
                s = sem[i]
                if not tokens[s]:
                    asleep.setdefault(s, []).append(i)
                    key = heappop(heap) if heap else -1
                    break
                tokens[s] -= 1
            elif k == _SIGNAL:
                late = delay.get(i, 0)
                if d < 0:
                    late, d = timed(i, t), 0
                    dur[i] = 0
                if late:
                    in_flight.add(i)
                    heappush(heap, (t + late) << shift | i)
                else:
                    s = sem[i]
                    tokens[s] += 1
                    for w in asleep.pop(s, ()):  # every sleeper races; the lowest index wins
                        heappush(heap, t << shift | w)
            start[i] = t
            started += 1
            if on_start is not None:
                on_start(i)
            if d < 0:
                d = dur[i] = timed(i, t)
            t += d
            if r >= 0 and d:
                free[r] = t
            i = nxt[i]
            if i < 0 or k == _HALT:
                key = heappop(heap) if heap else -1
                break
            if heap and heap[0] < (t << shift | i):
                key = heappushpop(heap, t << shift | i)
                break
    return start, min((min(waits) for waits in asleep.values()), default=None)
