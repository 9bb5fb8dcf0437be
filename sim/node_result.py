"""What a node's simulation measures (sim/multi.py): its collectives, per device its report
and communication, and the busy-interval arithmetic behind exposed and idle cycles: from a
Timeline's intervals, or as the instructions start (`BusyMeter`, the periodic engine's)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import isa
from sim.engine import Timeline
from sim.functional import Memory
from sim.result import SimResult

__all__ = ["Collective", "NodeResult", "group_members", "on_queue", "exposed_cycles",
           "idle_cycles", "BusyMeter"]


def group_members(device: int, ranks: int, stride: int) -> tuple[int, ...]:
    """The group of a `coll` that `device` issues with `ranks` and `stride` (docs/isa.md): the
    devices d0 + i*stride, i < ranks, d0 the lowest such group holding `device`."""
    span = ranks * stride
    first = device // span * span + device % stride
    return tuple(range(first, first + span, stride))


@dataclass(frozen=True, slots=True)
class Collective:
    """One collective of the node: its kind, the members' devices (in rank order), the bytes
    of each member's buffer and its element type, and each member's `coll` (local index)."""

    kind: str
    members: tuple[int, ...]
    nbytes: int
    dtype: isa.DType
    at: tuple[int, ...]                    # per member: the index of its `coll` in its program
    cycles: int
    energy_j: float
    bytes_per_rank: int
    algorithm: str
    count: int = 1                         # executions (a symmetric node's compact program)


@dataclass(frozen=True)
class NodeResult:
    """Per device its own report over the node's whole run (a device that waits still burns its
    static power), the collectives, and each device's communication: link busy cycles, bytes
    sent, the cycles its link was busy while none of its other queues was (exposed) and the
    cycles none of its queues was (idle: a pipeline's bubble, waits for other devices)."""

    devices: tuple[SimResult, ...]
    cycles: int
    clock_hz: float
    collectives: tuple[Collective, ...]
    link_busy_cycles: tuple[int, ...]
    link_bytes: tuple[int, ...]
    exposed_cycles: tuple[int, ...]
    idle_cycles: tuple[int, ...]               # no queue of the device busy: bubble and waits
    memories: tuple[Memory, ...] | None = None

    @property
    def time_s(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def energy_j(self) -> float:
        return sum(r.energy_j for r in self.devices)

    @property
    def link_share(self) -> float:
        """The busiest link's busy share of the run."""
        return max(self.link_busy_cycles) / self.cycles if self.cycles else 0.0

    @property
    def exposed_share(self) -> float:
        """The largest exposed share of a device's link."""
        return max(self.exposed_cycles) / self.cycles if self.cycles else 0.0

    @property
    def idle_share(self) -> float:
        """Device-cycles with no queue busy, over all devices."""
        return sum(self.idle_cycles) / (self.cycles * len(self.devices)) if self.cycles else 0.0


def on_queue(timeline: Timeline, queue: str) -> np.ndarray:
    if queue not in timeline.queues:
        return np.zeros(len(timeline.queue_of), bool)
    return timeline.queue_of == timeline.queues.index(queue)


def idle_cycles(own: Timeline, cycles: int) -> int:
    """Cycles of the run during which none of the device's queues is busy."""
    issued = own.start >= 0
    return cycles - _measure(_union(own.start[issued], own.end[issued]))


def exposed_cycles(own: Timeline, on_link: np.ndarray) -> int:
    """Cycles the link is busy while no other queue of the device is: |link| - |link and other|,
    the measures of unions of busy intervals (disjoint and sorted, so one merge walk)."""
    issued = own.start >= 0
    link = _union(own.start[on_link & issued], own.end[on_link & issued])
    other = _union(own.start[~on_link & issued], own.end[~on_link & issued])
    both, j = 0, 0
    for lo, hi in link:
        while j < len(other) and other[j][1] <= lo:
            j += 1
        k = j
        while k < len(other) and other[k][0] < hi:
            both += min(hi, other[k][1]) - max(lo, other[k][0])
            k += 1
    return _measure(link) - both


def _measure(intervals: list[tuple[int, int]]) -> int:
    return sum(hi - lo for lo, hi in intervals)


def _union(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """The busy intervals [start, end) merged into disjoint ones, sorted."""
    keep = ends > starts
    order = np.argsort(starts[keep], kind="stable")
    out: list[list[int]] = []
    for lo, hi in zip(starts[keep][order].tolist(), ends[keep][order].tolist()):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


class BusyMeter:
    """Exposed cycles of one queue (busy while no other queue is) and covered cycles (some
    queue busy), measured as instructions start, in time order, as the engines start them.
    Every busy interval of a class (the queue's, the others') started by cycle t covers
    [t, reach) from t on, reach the latest of their ends; so the measures of [last, t) follow
    from the two reaches, and the two reaches relative to now (`gauge`) are all that the
    measures of later cycles depend on besides the instructions still to start."""

    __slots__ = ("queue", "last", "mine", "other", "exposed", "covered")

    def __init__(self, queue: int) -> None:
        self.queue = queue                   # -1: a queue the program does not use
        self.last = 0                        # measured up to this cycle
        self.mine = self.other = 0           # the reach of the queue's, of the others'
        self.exposed = self.covered = 0

    def start(self, q: int, t: int, end: int) -> None:
        """Queue q starts an instruction busy over [t, end), t no earlier than any before.
        The measures need bringing up to t only where a reach grows (one compare else)."""
        if q == self.queue:
            if end > self.mine:
                self.advance(t)
                self.mine = end
        elif end > self.other:
            self.advance(t)
            self.other = end

    def advance(self, t: int) -> None:
        """Measure up to cycle t, the reaches unchanged since the last cycle measured."""
        last = self.last
        if t <= last:
            return
        mine = min(max(self.mine, last), t)          # the queue busy over [last, mine),
        other = min(max(self.other, last), t)        # the others over [last, other)
        self.exposed += max(mine - other, 0)
        self.covered += max(mine, other) - last
        self.last = t

    def gauge(self, t: int) -> tuple[int, int, int, int]:
        """At cycle t (measured up to it): exposed and covered cycles, and the cycles each
        class stays busy from t on."""
        self.advance(t)
        return self.exposed, self.covered, max(self.mine - t, 0), max(self.other - t, 0)

    def repeat(self, since: tuple[int, int, int, int], m: int, dt: int) -> None:
        """m more periods like the one since gauge `since` (whose reaches the present gauge
        repeats), dt cycles in all: each adds the same measures."""
        self.exposed += m * (self.exposed - since[0])
        self.covered += m * (self.covered - since[1])
        if self.mine > self.last:
            self.mine += dt
        if self.other > self.last:
            self.other += dt
        self.last += dt
