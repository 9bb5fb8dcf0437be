"""Several devices in one simulation: each device's program on its own machine, joined where
their link queues issue collectives (`coll`, docs/isa.md), timed by the node's link model.

Why one engine rather than one simulation per device: a collective starts when the last device
of its group reaches it, so a device that is late delays the others exactly where their programs
wait for the collective's data, and compute that does not wait for it goes on (overlap). The
engine (sim/engine.py) already orders queues by tokens; the node only has to give it every
device's instructions at once and turn each collective into tokens:

- device d's instructions keep their order; its queues become the engine's queues `d<d>.<q>`
  and its semaphores are renumbered into a range of their own;
- before the k-th `coll` of a group, each member's link queue signals every other member and
  waits for a token from each: the members' `coll`s then start in the same cycle, when the last
  one arrives, and each lasts the collective's time (`sim/collectives.py`, the device clock).
  A `send` and its `recv` are a group of two.

Nodes whose devices stand for each other are timed with fewer of them (sim/node_symmetry.py);
numerics run every device on its own memory and apply each collective across them
(sim/node_numerics.py); what is measured: sim/node_result.py.
"""
from __future__ import annotations

import dataclasses
from collections import namedtuple
from collections.abc import Callable, Sequence
from functools import partial
from types import SimpleNamespace

import numpy as np

import isa
from arch.links import LinkArch
from isa.opcodes import LINK_QUEUE
from sim.collectives import coll_price
from sim.engine import EngineError, Timeline, simulate_events
from sim.machines.base import Machine
from sim.node_numerics import NodeNumerics
from sim.node_result import (Collective, NodeResult, exposed_cycles, group_members, idle_cycles,
                              on_queue)
from sim.node_symmetry import rank_groups, symmetric, symmetric_node
from sim.simulate import Timed, op_stats, sim_result, with_link

__all__ = ["NodeResult", "Collective", "simulate_node", "group_of_coll"]

_SEMAPHORES = 1 << 16                      # `sem` is a U16 field
_Word = namedtuple("_Word", "opcode queue fields")   # what the engine reads of an instruction


def group_of_coll(device: int, devices: int, ins: isa.Instr,
                  index: int) -> tuple[str, tuple[int, ...]]:
    """The collective kind (send and recv are one `send_recv`) and the members, in rank order."""
    kind, ranks, stride = ins["kind"], ins["ranks"], ins["stride"]
    where = f"device {device} instruction {index} (coll {kind})"
    if stride < 1:
        raise isa.IsaError(f"{where}: stride={stride} must be >= 1")
    if kind in ("send", "recv"):
        if ranks != 1:
            raise isa.IsaError(f"{where}: ranks={ranks} must be 1 (one peer, `stride` away)")
        peer = device + stride if kind == "send" else device - stride
        if not 0 <= peer < devices:
            raise isa.IsaError(f"{where}: peer device {peer} is not in the node "
                               f"(devices 0..{devices - 1})")
        return "send_recv", (device, peer) if kind == "send" else (peer, device)
    if ranks < 1:
        raise isa.IsaError(f"{where}: ranks={ranks} must be >= 1")
    members = group_members(device, ranks, stride)
    if members[-1] >= devices:
        raise isa.IsaError(f"{where}: group {list(members)} runs past the node's {devices} devices")
    if kind == "all_reduce":                           # it may split unevenly, not mid-element
        if ins["bytes"] % ins["dtype"].itemsize:
            raise isa.IsaError(f"{where}: bytes={ins['bytes']} is not whole {ins['dtype']} elements")
    elif ins["bytes"] % (ranks * ins["dtype"].itemsize):
        raise isa.IsaError(f"{where}: bytes={ins['bytes']} is not {ranks} chunks of whole "
                           f"{ins['dtype']} elements")
    return kind, members


def _collectives(programs: Sequence[isa.Program], ids: Sequence[int], devices: int,
                 link: LinkArch, clock_hz: float) -> list[Collective]:
    """Every collective of the node, matched across its members in program order; each
    member's k-th `coll` of a group must agree on kind, bytes and type with the others'.
    `ids`: each program's device; a group of which only one device is simulated (it stands
    for its tensor-parallel ranks, sim/node_symmetry.py) is that device's alone."""
    simulated = set(ids)
    found: dict[tuple, list[dict[int, tuple[int, isa.Instr]]]] = {}
    seen: dict[tuple, dict[int, int]] = {}
    for d, program in zip(ids, programs):
        for i, ins in enumerate(program.instructions):
            if ins.opcode != "coll":
                continue
            if str(ins.queue) != LINK_QUEUE:
                raise isa.IsaError(f"device {d} instruction {i}: coll on {ins.queue}, "
                                   f"expected {LINK_QUEUE}")
            kind, members = group_of_coll(d, devices, ins, i)
            members = tuple(m for m in members if m in simulated)
            key = (kind, members)
            k = seen.setdefault(key, {}).get(d, 0)
            seen[key][d] = k + 1
            instances = found.setdefault(key, [])
            if k == len(instances):
                instances.append({})
            instances[k][d] = (i, ins)
    out = []
    for (kind, members), instances in found.items():
        for k, arrived in enumerate(instances):
            missing = [m for m in members if m not in arrived]
            if missing:
                d = next(iter(arrived))
                raise isa.IsaError(f"device {d} instruction {arrived[d][0]}: coll {kind} "
                                   f"number {k} of group {list(members)} has no partner on "
                                   f"device {missing[0]}")
            first = arrived[members[0]][1]
            for m in members[1:]:
                i, ins = arrived[m]
                if (ins["bytes"], ins["dtype"]) != (first["bytes"], first["dtype"]):
                    raise isa.IsaError(
                        f"device {m} instruction {i}: coll {ins['kind']} of {ins['bytes']} bytes "
                        f"{ins['dtype']} does not match device {members[0]}'s "
                        f"{first['bytes']} bytes {first['dtype']} (group {list(members)})")
            cycles, cost = coll_price(first, link, clock_hz)
            out.append(Collective(kind, members, first["bytes"], first["dtype"],
                                  tuple(arrived[m][0] for m in members), cycles, cost.energy_j,
                                  cost.bytes_per_rank, cost.algorithm))
    return out


def _merge(programs: Sequence[isa.Program], collectives: Sequence[Collective]):
    """The engine's instruction list: every device's words with queues and semaphores of their
    own, each `coll` preceded by its barrier. Returns the words, per word its device and local
    index (-1 for a barrier word) and per device its first semaphore."""
    before: dict[tuple[int, int], list[tuple[str, int]]] = {}   # (device, coll index) -> words
    bases, top = [], 0
    for program in programs:
        bases.append(top)
        sems = [ins.fields[0][1] for ins in program.instructions
                if ins.opcode in ("signal", "wait")]
        top += max(sems, default=-1) + 1
    for c in collectives:
        token = {m: top + r for r, m in enumerate(c.members)}
        top += len(c.members)
        for m, i in zip(c.members, c.at):
            others = [o for o in c.members if o != m]
            before[(m, i)] = ([("signal", token[o]) for o in others]
                              + [("wait", token[m])] * len(others))
    if top > _SEMAPHORES:
        raise isa.IsaError(f"the node needs {top} semaphores, more than {_SEMAPHORES}")
    words, device_of, local_of = [], [], []
    for d, program in enumerate(programs):
        queues: dict[isa.Queue, str] = {}
        link = f"d{d}.{LINK_QUEUE}"
        for i, ins in enumerate(program.instructions):
            for op, sem in before.get((d, i), ()):
                words.append(_Word(op, link, (("sem", sem),)))
                device_of.append(d)
                local_of.append(-1)
            queue = queues.get(ins.queue) or queues.setdefault(ins.queue, f"d{d}.{ins.queue}")
            fields = ins.fields
            if ins.opcode in ("signal", "wait"):
                fields = (("sem", fields[0][1] + bases[d]),)
            words.append(_Word(ins.opcode, queue, fields))
            device_of.append(d)
            local_of.append(i)
    return words, np.array(device_of, np.int32), np.array(local_of, np.int64)
def simulate_node(programs: Sequence[isa.Program], machines: Sequence[Machine], link: LinkArch,
                  *, functional: bool = False,
                  progress: Callable[[str, int], None] | None = None) -> NodeResult:
    """Verify each device's program on its machine (plus the link queue), run them together
    and report per device and for the node. progress(stage, instructions started), when
    given, follows the engine as sim/simulate.py's does."""
    if len(programs) != len(machines) or not programs:
        raise ValueError("one machine per device program, at least one")
    clock = machines[0].clock_hz
    if any(m.clock_hz != clock for m in machines):
        raise isa.IsaError("the node's devices must share one clock (a mixed node is not modelled)")
    if not functional and symmetric(programs, machines):
        return symmetric_node(programs[0], machines[0], len(programs), link, progress)
    devices = len(programs)
    groups = None if functional else rank_groups(programs, machines)
    ids = sorted({g[0] for g in groups}) if groups else list(range(devices))
    programs, machines = [programs[d] for d in ids], [machines[d] for d in ids]
    views = []
    for d, program, machine in zip(ids, programs, machines):
        view = with_link(machine.arch.machine_view())
        try:
            isa.verify(program, view)
        except isa.IsaError as error:
            raise type(error)(f"device {d}: {error}") from None
        views.append(view)
    unrolled = {id(p): isa.unroll(p) for p in programs}      # devices may share one program
    programs = [unrolled[id(p)] for p in programs]
    collectives = _collectives(programs, ids, devices, link, clock)
    position = {d: k for k, d in enumerate(ids)}          # the engine numbers programs 0..
    words, device_of, local_of = _merge(programs, [dataclasses.replace(
        c, members=tuple(position[m] for m in c.members)) for c in collectives])
    runs = [m.start(p) for m, p in zip(machines, programs)]
    n = len(words)
    durations = np.zeros(n, np.int64)
    resources = np.full(n, -1, np.int64)
    delays = np.zeros(n, np.int64)
    top = 0
    words_of = []                          # per device: its instruction i is engine word [i]
    for d, run in enumerate(runs):
        mine = np.flatnonzero((device_of == d) & (local_of >= 0))
        words_of.append(mine)
        local = local_of[mine]
        durations[mine] = run.costs.durations[local]
        held = run.costs.resources[local].astype(np.int64)
        resources[mine] = np.where(held >= 0, held + top, -1)
        top += int(run.costs.resources.max(initial=-1)) + 1
        if run.costs.delays is not None:
            delays[mine] = run.costs.delays[local]
    for c in collectives:
        for m, i in zip(c.members, c.at):
            durations[words_of[position[m]][i]] = c.cycles
    numerics = (NodeNumerics(programs, runs, views, collectives, device_of, local_of)
                if functional else None)
    timed = _StateTimed(runs, device_of, local_of)
    try:
        timeline = simulate_events(SimpleNamespace(instructions=words), durations, resources,
                                   None if numerics is None else numerics.start, timed.one,
                                   delays, timed.run,
                                   progress=None if progress is None else partial(progress, "events"))
    except EngineError as error:
        if error.index is None:
            raise
        raise EngineError(_blocked(programs, ids, device_of, local_of, error.index),
                          error.index) from None
    cycles = timeline.total_cycles
    if groups:                        # each collective over its whole group again, and
        group_of = {g[0]: g for g in groups}          # each rank's send and receive
        collectives = [dataclasses.replace(c, members=group_of[c.members[0]],
                                           at=c.at * len(group_of[c.members[0]]))
                       if c.kind != "send_recv" else c for c in collectives] + [
            dataclasses.replace(c, members=(group_of[c.members[0]][r], group_of[c.members[1]][r]))
            for c in collectives if c.kind == "send_recv"
            for r in range(1, len(group_of[c.members[0]]))]
    results, busy, sent, exposed, idle = [], [], [], [], []
    for k, (d, program, machine, run) in enumerate(zip(ids, programs, machines, runs)):
        mine = np.flatnonzero((device_of == k) & (local_of >= 0))
        own = _device_timeline(timeline, mine, program)
        timed = Timed(cycles, own.queue_busy_cycles(), len(program.instructions),
                       op_stats(program, own, run.costs, machine), _totals(run),
                       run.report(own, cycles))
        link_energy = sum(c.energy_j / len(c.members) for c in collectives if d in c.members)
        result = sim_result(program, machine, timed, ())
        energy = {**result.energy_breakdown_j, "link": link_energy}
        results.append(dataclasses.replace(result, energy_breakdown_j=energy))
        on_link = on_queue(own, LINK_QUEUE)
        busy.append(int((own.end - own.start)[on_link & (own.start >= 0)].sum()))
        sent.append(sum((c.nbytes if d == c.members[0] else 0) if c.kind == "send_recv"
                        else c.bytes_per_rank for c in collectives if d in c.members))
        exposed.append(exposed_cycles(own, on_link))
        idle.append(idle_cycles(own, cycles))
    if groups:                        # every rank as the rank that stood for it
        stand = {m: ids.index(g[0]) for g in groups for m in g}
        results, busy, sent, exposed, idle = (
            [values[stand[d]] for d in range(devices)]
            for values in (results, busy, sent, exposed, idle))
    return NodeResult(tuple(results), cycles, clock, tuple(collectives), tuple(busy), tuple(sent),
                      tuple(exposed), tuple(idle),
                      None if numerics is None else tuple(numerics.memories))
def _blocked(programs, ids, device_of: np.ndarray, local_of: np.ndarray, w: int) -> str:
    """The deadlock at engine word w, in the device's own terms (a barrier word: its `coll`)."""
    k = int(device_of[w])
    d = ids[k]
    if local_of[w] >= 0:
        i = int(local_of[w])
        ins = programs[k].instructions[i]
        return (f"device {d} instruction {i} ({ins.queue} {ins.opcode}): deadlock: waits on "
                f"semaphore {ins['sem']} forever")
    i = int(local_of[w + int(np.argmax(local_of[w:] >= 0))])    # the coll the barrier precedes
    ins = programs[k].instructions[i]
    return (f"device {d} instruction {i} ({ins.queue} coll {ins['kind']}): deadlock: a device of "
            "its group never reaches it (the devices issue their collectives in different orders)")


class _StateTimed:
    """The engine's hooks for instructions a machine times at issue (PIM's DRAM commands),
    handed to their device's run with its own instruction indices."""

    def __init__(self, runs, device_of: np.ndarray, local_of: np.ndarray) -> None:
        self.runs, self.device_of, self.local_of = runs, device_of, local_of

    def one(self, word: int, t: int) -> int:
        return self.runs[self.device_of[word]].costs.timed(int(self.local_of[word]), t)

    def run(self, words: list[int], t: int) -> list[int]:
        """A run of one device queue's consecutive state-timed instructions (the engine
        forms runs only of those, and a machine with `timed` gives `timed_run`)."""
        return self.runs[self.device_of[words[0]]].costs.timed_run(self.local_of[words].tolist(), t)


def _totals(run) -> dict[str, float]:
    totals = run.costs.events.totals()
    for k, v in run.run_totals().items():
        totals[k] = totals.get(k, 0.0) + v
    return totals


def _device_timeline(timeline: Timeline, words: np.ndarray, program: isa.Program) -> Timeline:
    """One device's part of the node's timeline, with its own queue names and indices."""
    names = {q: timeline.queues[q].split(".", 1)[1] for q in np.unique(timeline.queue_of[words])}
    order = sorted(names, key=lambda q: names[q])
    renumber = np.full(len(timeline.queues), -1, np.int32)
    renumber[order] = np.arange(len(order), dtype=np.int32)
    start, end = timeline.start[words], timeline.end[words]
    return Timeline(start, end, int(end.max(initial=0)), tuple(names[q] for q in order),
                    renumber[timeline.queue_of[words]])
