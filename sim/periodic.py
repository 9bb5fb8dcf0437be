"""The event engine on a compact program: loops timed at the cost of their distinct patterns.

Same rules as sim/engine.py (each queue in program order; a resource granted first-come by
start time, ties to the lowest executed index; `signal`/`wait` tokens, a signal's token landing
`delay` cycles after it starts; `halt` ends its queue), on the executed instances of a program
with loops, walked by one cursor per queue (sim/loop_layout.py) instead of an unrolled list.

Periods. Whenever the first instance of an iteration k of a loop L starts, the engine takes the
state it is in, relative to that instant: every pending queue head and landing token (cycles
from now; which instance, as an offset from iteration k's first when it lies in this run of L,
by its absolute index otherwise), the sleeping waits, the token counts and each resource's
remaining busy cycles. The engine is deterministic and shift-invariant: its decisions depend
only on differences of cycles and on the order of executed indices, and the instances of L
repeat (same queue, kind, semaphore, duration, resource and delay in every iteration, which
sim/compact_costs.py checks). So when iteration k' = k + d finds the state of iteration k
again, lambda cycles later, everything from k' on is what happened from k on, d iterations and
lambda cycles further, for as long as the instances it reaches exist: the engine moves its
whole state m*d iterations and m*lambda cycles ahead at once, where m is the most periods that
keep every pending instance inside this run of L, and goes on one instance at a time for the
rest. An instance of another part of the program that started between k and k' would make the
states differ (its queue's head moved), so a jump never repeats work outside L. Nested loops
find their periods inside each outer iteration and the outer loop finds its own across them.

What the report needs and what it costs: durations, events and busy cycles are per pattern
times count (sim/compact_costs.py); the timing gives the total cycles and each op's first start
and last end (its span): every first start is an instance the engine simulated itself (a
jump only repeats later ones), and the last end of the instances a jump skips is the period's
last end plus m*lambda. Memory: O(instances simulated one at a time), not O(executed).

Exposure, when asked for a queue: its exposed cycles (busy while no other queue is) and the
idle cycles (no queue busy), measured as instances start (sim/node_result.py's BusyMeter, which
keeps only how far the queue's and the others' busy intervals reach past now). A snapshot keeps
the meter's gauge; a jump needs those reaches to repeat too, and then adds m times the measures
of the period found: every skipped period starts from the same state, so measures the same.
The engine's state shows when each queue's running instance ends, but not a finished queue's
last one: while that still runs the reaches differ, and the snapshot is renewed rather than
jumped from (the periods it outlasts are timed one at a time). Memory: O(1) more.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush, heappushpop

import numpy as np

from sim.engine import PROGRESS_CHUNKS, EngineError
from sim.loop_layout import TOP, LoopLayout
from sim.node_result import BusyMeter

__all__ = ["PeriodicTiming", "schedule_periodic", "PLAIN", "SIGNAL", "WAIT", "HALT"]

PLAIN, SIGNAL, WAIT, HALT = 0, 1, 2, 3
MAX_SNAPSHOTS = 512   # per run of a loop: iterations compared before it is timed one by one


@dataclass(frozen=True, slots=True)
class PeriodicTiming:
    """The schedule's figures. op_first_start[o] / op_last_end[o]: the first start and last
    end of op o's instances that take cycles (-1: none). simulated / skipped: instances started
    one at a time / moved over by periods. exposed_cycles / idle_cycles: the measured queue's
    exposed cycles and the cycles no queue is busy (None: no queue measured)."""

    total_cycles: int
    op_first_start: np.ndarray
    op_last_end: np.ndarray
    simulated: int
    skipped: int
    jumps: int
    exposed_cycles: int | None = None
    idle_cycles: int | None = None


def schedule_periodic(layout: LoopLayout, queue_names: Sequence[str], kind: bytes,
                      sem: Sequence[int], dur: Sequence[int], res: Sequence[int],
                      delay: Sequence[int], op_of: Sequence[int], n_ops: int,
                      progress: Callable[[int], None] | None = None,
                      marks: Sequence[int] | None = None,
                      marked: frozenset[int] = frozenset(),
                      exposure: int | None = None) -> PeriodicTiming:
    """Schedule the compact program laid out by `layout` (its items name queues by index
    into `queue_names`); per compact instruction c its kind (PLAIN/SIGNAL/WAIT/HALT),
    semaphore, duration, resource (-1 none), signal delay and op index (< n_ops). Raises
    EngineError for a wait that can never be satisfied.

    `marks`: when op marks lie inside loops (each iteration its own ops), the executed index
    of each op's first instruction (ascending; op o's instances are those from marks[o] to
    marks[o + 1]); op_of is then -1 and an instance's op is looked up by its executed index,
    op n_ops - 1 before the first mark. `marked`: the headers of the loops holding marks; a
    jump over their iterations gives each skipped iteration's ops their own spans.

    `exposure`: measure that queue's exposed cycles and the idle cycles (an index into
    queue_names; -1 for a queue the program does not use)."""
    return _Engine(layout, queue_names, kind, sem, dur, res, delay, op_of, n_ops,
                   progress, marks, marked, exposure).run()


class _Engine:
    def __init__(self, layout, queue_names, kind, sem, dur, res, delay, op_of, n_ops,
                 progress, marks=None, marked=frozenset(), exposure=None):
        self.layout = layout
        self.queue_names = queue_names
        self.kind, self.sem, self.dur, self.res, self.delay = kind, sem, dur, res, delay
        self.op_of = op_of
        queues = len(queue_names)
        self.queues = queues
        self.qbits = max(queues, 1).bit_length()
        self.ubits = max(layout.executed, 1).bit_length()
        self.shift = self.qbits + self.ubits
        self.qmask = (1 << self.qbits) - 1
        self.uqmask = (1 << self.shift) - 1
        self.first_of: dict[int, list[int]] = {}
        for h, c in enumerate(layout.first):
            self.first_of.setdefault(c, []).append(h)
        self.progress = progress
        self.n_ops = n_ops
        held = max((r for r in res), default=-1) + 1
        self.free = [0] * held
        self.tokens: dict[int, int] = {}
        self.asleep: dict[int, list[int]] = {}      # semaphore -> sleeping (u << qbits | q)
        self.in_flight: dict[int, int] = {}          # landing token (u << qbits | q) -> semaphore
        self.stacks: list[list[list]] = []           # per queue: frames [items, pos, k, base, h]
        self.head = [-1] * queues                    # per queue: compact index of its head
        self.first_start = [-1] * n_ops
        self.log_op = array("i")                     # ops and ends of instances with cycles,
        self.log_end = array("q")                    # in start order (and of jumped periods)
        self.marks = None if marks is None else np.asarray(marks, np.int64)
        self.marked = marked
        self.log_u = array("q")                      # with marks in loops: each logged
        self.log_start = array("q")                  # instance's executed index and start
        self.detect: dict[int, list] = {}            # loop -> [run start, snapshots, last k]
        self.meter = None if exposure is None else BusyMeter(exposure)
        self.started = self.skipped = self.jumps = 0

    # -- cursors ---------------------------------------------------------------------------
    def _advance(self, q: int) -> int:
        """Move queue q's cursor to its next instance: its compact index (-1: none left)."""
        stack, items, layout = self.stacks[q], self.layout.items, self.layout
        while True:
            frame = stack[-1]
            pos = frame[1] + 1
            work = frame[0]
            if pos < len(work):
                frame[1] = pos
                e = work[pos]
                if e >= 0:
                    return e
                h = ~e
                stack.append([items[(h, q)], -1, 0, frame[3] + layout.start[h], h])
                continue
            h = frame[4]
            if h == TOP:
                return -1
            if frame[2] + 1 < layout.loops[h].count:
                frame[2] += 1
                frame[3] += layout.length[h]
                frame[1] = -1
                continue
            stack.pop()

    def _u(self, q: int, c: int) -> int:
        return self.stacks[q][-1][3] + int(self.layout.offset[c])

    # -- the schedule ----------------------------------------------------------------------
    def run(self) -> PeriodicTiming:
        shift, qbits, qmask, uqmask = self.shift, self.qbits, self.qmask, self.uqmask
        kind, sem, dur, res, delay, op_of = self.kind, self.sem, self.dur, self.res, self.delay, self.op_of
        free, tokens, asleep, in_flight = self.free, self.tokens, self.asleep, self.in_flight
        head, first_start, first_of = self.head, self.first_start, self.first_of
        log_op, log_end = self.log_op, self.log_end
        log_u, log_start, n_last = self.log_u, self.log_start, self.n_ops - 1
        meter = None if self.meter is None else self.meter.start
        marks = [] if self.marks is None else self.marks.tolist()
        offset = self.layout.offset.tolist()
        stacks = self.stacks
        heap = []
        for q in range(self.queues):
            stacks.append([[self.layout.items.get((TOP, q), []), -1, 0, 0, TOP]])
            c = self._advance(q)
            head[q] = c
            if c >= 0:
                heap.append(self._u(q, c) << qbits | q)
        heapify(heap)
        executed = self.layout.executed
        chunk = max(executed // PROGRESS_CHUNKS, 1)
        report_at = chunk if self.progress is not None else executed + 1
        key = heappop(heap) if heap else -1
        last_start = 0            # starts come in time order: the last is the latest
        while key >= 0:
            if self.started >= report_at:
                self.progress(self.started)
                report_at = self.started + chunk
            t = key >> shift
            uq = key & uqmask
            if uq in in_flight:                  # a delayed token lands
                s = in_flight.pop(uq)
                tokens[s] = tokens.get(s, 0) + 1
                for w in asleep.pop(s, ()):
                    heappush(heap, t << shift | w)
                key = heappop(heap) if heap else -1
                continue
            q = uq & qmask
            u = uq >> qbits
            c = head[q]
            while True:
                if c in first_of:
                    t, u, heap = self._period(first_of[c], q, c, t, u, heap)
                d = dur[c]
                r = res[c]
                if r >= 0 and d and free[r] > t:  # the resource moved on: re-key
                    key = heappushpop(heap, free[r] << shift | u << qbits | q)
                    break
                k = kind[c]
                if k == WAIT:
                    s = sem[c]
                    if not tokens.get(s):
                        asleep.setdefault(s, []).append(u << qbits | q)
                        key = heappop(heap) if heap else -1
                        break
                    tokens[s] -= 1
                elif k == SIGNAL:
                    s = sem[c]
                    late = delay[c]
                    if late:
                        in_flight[u << qbits | q] = s
                        heappush(heap, (t + late) << shift | u << qbits | q)
                    else:
                        tokens[s] = tokens.get(s, 0) + 1
                        for w in asleep.pop(s, ()):
                            heappush(heap, t << shift | w)
                self.started += 1
                last_start = t
                if d:
                    o = op_of[c]
                    if o < 0:                    # marks inside loops: the op by executed index
                        o = bisect_right(marks, u) - 1
                        if o < 0:
                            o = n_last
                        log_u.append(u)
                        log_start.append(t)
                    if first_start[o] < 0:
                        first_start[o] = t
                    if meter is not None:
                        meter(q, t, t + d)
                    t += d
                    log_op.append(o)
                    log_end.append(t)
                    if r >= 0:
                        free[r] = t
                c = self._advance(q) if k != HALT else -1
                head[q] = c
                if c < 0:
                    key = heappop(heap) if heap else -1
                    break
                u = stacks[q][-1][3] + offset[c]
                if heap and heap[0] < (t << shift | u << qbits | q):
                    key = heappushpop(heap, t << shift | u << qbits | q)
                    break
        sleepers = [w for waits in asleep.values() for w in waits]
        if sleepers:
            w = min(sleepers)
            q = w & qmask
            raise EngineError(f"deadlock: wait at instruction {w >> qbits} "
                              f"({self.queue_names[q]}) on semaphore {sem[head[q]]} never "
                              "satisfied", w >> qbits)
        last_end = np.full(self.n_ops, -1, np.int64)
        if len(log_op):
            np.maximum.at(last_end, np.frombuffer(log_op, np.int32), np.frombuffer(log_end, np.int64))
        total = max(int(last_end.max(initial=0)), last_start)   # an instruction of 0 cycles ends as it starts
        exposed = idle = None
        if self.meter is not None:
            self.meter.advance(total)
            exposed, idle = self.meter.exposed, total - self.meter.covered
        return PeriodicTiming(total, np.array(first_start, np.int64), last_end,
                              self.started - self.skipped, self.skipped, self.jumps,
                              exposed, idle)

    # -- periods ---------------------------------------------------------------------------
    def _period(self, loops: list[int], q: int, c: int, t: int, u: int, heap: list[int]):
        """At the start of instance u (compact c, queue q) at cycle t, the first of an
        iteration of each loop in `loops`: compare the state with earlier iterations' and jump
        over whole periods when it repeats. Returns the (possibly moved) t, u and heap."""
        for h in loops:
            frame = next((f for f in self.stacks[q] if f[4] == h), None)
            if frame is None or frame[3] != u:
                continue
            loop = self.layout.loops[h]
            k, length = frame[2], self.layout.length[h]
            lo = u - k * length
            det = self.detect.get(h)
            if det is None or det[0] != lo:
                det = self.detect[h] = [lo, {}, -1]
            if det[2] >= k or det[1] is None:
                continue
            det[2] = k
            hi = lo + loop.count * length
            sig = self._signature(t, u, q, heap, lo, hi)
            seen = det[1].get(sig)
            gauge = None if self.meter is None else self.meter.gauge(t)
            if seen is None:
                if len(det[1]) >= MAX_SNAPSHOTS:
                    det[1] = None                 # no period found: time this run one by one
                else:
                    det[1][sig] = (k, t, len(self.log_op), self.started, gauge)
                continue
            k0, t0, pos0, started0, gauge0 = seen
            if gauge is not None and gauge[2:] != gauge0[2:]:     # a finished queue still busy
                det[1][sig] = (k, t, len(self.log_op), self.started, gauge)
                continue
            period, lam = k - k0, t - t0
            m = self._periods(u, q, heap, lo, hi, length, loop.count, period)
            if m < 1:
                continue
            t, u, heap = self._jump(t, u, q, heap, lo, hi, h, m * period, m * period * length,
                                    m * lam)
            self._repeat_log(pos0, m, lam, period * length, lo, hi, loop.header in self.marked)
            if gauge is not None:
                self.meter.repeat(gauge0, m, m * lam)
            self.skipped += m * (self.started - started0)
            self.started += m * (self.started - started0)
            self.jumps += 1
            det[1] = None                         # what is left of this run: one by one
        return t, u, heap

    def _pending(self, t: int, u: int, q: int, heap: list[int]):
        """Every pending entry: (cycles from t, executed index, queue, lands a token)."""
        shift, qbits, qmask, uqmask = self.shift, self.qbits, self.qmask, self.uqmask
        yield 0, u, q, False
        for key in heap:
            uq = key & uqmask
            yield (key >> shift) - t, uq >> qbits, uq & qmask, uq in self.in_flight

    def _signature(self, t: int, u0: int, q: int, heap: list[int], lo: int, hi: int) -> tuple:
        """The engine's state relative to cycle t and instance u0 (an iteration's first)."""
        qbits, qmask = self.qbits, self.qmask

        def ident(v: int) -> int:          # even: offset inside this run of the loop; odd: absolute
            return (v - u0) * 2 if lo <= v < hi else v * 2 + 1

        pending = tuple(sorted((dt, ident(v), p, flag) for dt, v, p, flag in self._pending(t, u0, q, heap)))
        asleep = tuple(sorted((s, ident(w >> qbits), w & qmask) for s, ws in self.asleep.items() for w in ws))
        tokens = tuple(sorted((s, n) for s, n in self.tokens.items() if n))
        free = tuple(f - t if f > t else 0 for f in self.free)
        return pending, asleep, tokens, free

    def _periods(self, u: int, q: int, heap: list[int], lo: int, hi: int, length: int,
                 count: int, period: int) -> int:
        """How many periods of `period` iterations keep every pending instance of this run
        of the loop inside it (its last iteration is count - 1)."""
        qbits = self.qbits
        latest = max((v for _, v, _, _ in self._pending(0, u, q, heap) if lo <= v < hi), default=u)
        for ws in self.asleep.values():
            for w in ws:
                if lo <= w >> qbits < hi:
                    latest = max(latest, w >> qbits)
        iteration = (latest - lo) // length
        return (count - 1 - iteration) // period

    def _jump(self, t: int, u: int, q: int, heap: list[int], lo: int, hi: int, h: int,
              iterations: int, du: int, dt: int):
        """Move the whole state `iterations` iterations (du instances) of this run of loop h
        and dt cycles ahead."""
        shift, qbits, qmask, uqmask = self.shift, self.qbits, self.qmask, self.uqmask

        def moved(v: int) -> int:
            return v + du if lo <= v < hi else v

        in_flight = {}
        new_heap = []
        for key in heap:
            uq = key & uqmask
            nuq = moved(uq >> qbits) << qbits | uq & qmask
            if uq in self.in_flight:
                in_flight[nuq] = self.in_flight[uq]
            new_heap.append(((key >> shift) + dt) << shift | nuq)
        heapify(new_heap)
        self.in_flight.clear()               # in place: the schedule loop holds these objects
        self.in_flight.update(in_flight)
        for ws in self.asleep.values():
            ws[:] = [moved(w >> qbits) << qbits | w & qmask for w in ws]
        self.free[:] = [f + dt if f > t else f for f in self.free]
        for p in range(self.queues):
            c = self.head[p]
            if c < 0:
                continue
            if not lo <= self._u(p, c) < hi:
                continue
            stack = self.stacks[p]
            j = next(j for j, f in enumerate(stack) if f[4] == h)
            stack[j][2] += iterations
            for f in stack[j:]:
                f[3] += du
        return t + dt, u + du, new_heap

    def _repeat_log(self, pos0: int, m: int, lam: int, du: int, lo: int, hi: int,
                    per_iteration_ops: bool) -> None:
        """The spans of the instances a jump of m periods (lam cycles and du instances each)
        moved over: those logged since the period began (pos0), repeated. Each instance of the
        jumped run of the loop [lo, hi) moves du instances a period; its op is the same in
        every period unless the loop's iterations have ops of their own (marks inside it),
        which then get first starts and last ends of their own."""
        ops = np.frombuffer(self.log_op[pos0:], np.int32).copy()     # the logs grow below
        ends = np.frombuffer(self.log_end[pos0:], np.int64).copy()
        if not len(ops):
            return
        dynamic = self.marks is not None
        if dynamic:
            us = np.frombuffer(self.log_u[pos0:], np.int64).copy()
            starts = np.frombuffer(self.log_start[pos0:], np.int64).copy()
            moves = ((us >= lo) & (us < hi)).astype(np.int64) * du
        if per_iteration_ops:
            first = np.full(self.n_ops, np.iinfo(np.int64).max, np.int64)
            for j in range(1, m + 1):
                u_j, start_j, end_j = us + j * moves, starts + j * lam, ends + j * lam
                op_j = np.searchsorted(self.marks, u_j, side="right") - 1
                op_j[op_j < 0] = self.n_ops - 1
                np.minimum.at(first, op_j, start_j)
                self.log_op.extend(op_j.astype(np.int32).tolist())
                self.log_end.extend(end_j.tolist())
                self.log_u.extend(u_j.tolist())
                self.log_start.extend(start_j.tolist())
            for o in np.flatnonzero(first < np.iinfo(np.int64).max).tolist():
                if self.first_start[o] < 0 or first[o] < self.first_start[o]:
                    self.first_start[o] = int(first[o])
            return
        last = np.full(self.n_ops, -1, np.int64)
        np.maximum.at(last, ops, ends)
        touched = np.flatnonzero(last >= 0)
        self.log_op.extend(touched.astype(np.int32).tolist())
        self.log_end.extend((last[touched] + m * lam).tolist())
        if dynamic:                     # where each op's latest instance went, for an enclosing
            latest = np.full(self.n_ops, -1, np.int64)        # loop's jump to move on
            np.maximum.at(latest, ops, np.arange(len(ops)))
            pick = latest[touched]
            self.log_u.extend((us[pick] + m * moves[pick]).tolist())
            self.log_start.extend((starts[pick] + m * lam).tolist())
