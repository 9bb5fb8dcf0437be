"""simulate(program, machine): timing from the machine model and the event engine, energy from
event counts, and (optionally) numpy execution of every instruction in start order."""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable

import numpy as np

import isa
from arch.links import LinkArch
from isa.opcodes import LINK_QUEUE
from isa.unroll import unrolled_marks
from sim.compact_costs import PatternCosts, marked_loops, op_segments, segment_counts, timing_plan
from sim.collectives import coll_price
from sim.engine import Timeline, simulate_events
from sim.functional import FunctionalExecutor, Memory
from sim.machines.base import Costs, Machine
from sim.node_result import exposed_cycles, idle_cycles, on_queue
from sim.periodic import schedule_periodic
from sim.result import OpStats, SimResult

__all__ = ["simulate", "Simulation", "Timed", "op_stats", "sim_result", "with_link"]


@dataclasses.dataclass(frozen=True)
class Simulation:
    """A simulation's measurements, for numeric runs the final memory, when it ran unrolled
    every instruction's start and end (a per-pattern run keeps op spans only), and for a
    node's device (`simulate(node=...)`) the cycles its link queue is busy while no other
    queue is (exposed) and those no queue is busy (idle), on either path."""

    result: SimResult
    memory: Memory | None
    timeline: Timeline | None = None
    exposed_cycles: int | None = None
    idle_cycles: int | None = None


def _quiet(stage: str, done: int) -> None:
    """No progress shown."""


def _units(queue_busy: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Busy cycles and queue count per unit kind, from busy cycles per queue text."""
    busy: dict[str, int] = {}
    queues: dict[str, int] = {}
    for queue, cycles in queue_busy.items():
        unit = isa.Queue.parse(queue).unit.name
        busy[unit] = busy.get(unit, 0) + int(cycles)
        queues[unit] = queues.get(unit, 0) + 1
    return busy, queues


def _op_ranges(program: isa.Program) -> list[tuple[int, int, str]]:
    """Each op mark's instructions [lo, hi) and name, in mark order, empty ranges left out."""
    marks = list(program.ops)
    ends = [i for i, _ in marks[1:]] + [len(program.instructions)]
    return [(lo, hi, name) for (lo, name), hi in zip(marks, ends) if hi > lo]


def _unit_of_queue(machine: Machine, queues) -> np.ndarray:
    """Per queue text, the index of its unit in machine.units (-1: a unit it does not report)."""
    names = [isa.Queue.parse(q).unit.name for q in queues]
    return np.array([machine.units.index(u) if u in machine.units else -1 for u in names], np.int8)


def op_stats(program: isa.Program, timeline, costs: Costs, machine: Machine) -> tuple[OpStats, ...]:
    unit_of_queue = _unit_of_queue(machine, timeline.queues)
    stats = []
    for lo, hi, name in _op_ranges(program):
        issued = timeline.start[lo:hi] >= 0
        dur = np.where(issued, timeline.end[lo:hi] - timeline.start[lo:hi], 0)
        active = (dur > 0) & issued
        span = int(timeline.end[lo:hi][active].max() - timeline.start[lo:hi][active].min()) if active.any() else 0
        units = unit_of_queue[timeline.queue_of[lo:hi]]
        busy = {u: int(dur[units == k].sum()) for k, u in enumerate(machine.units)}
        totals = costs.events.totals(slice(lo, hi))
        energy = sum(machine.energy_pj(totals).values()) * 1e-12
        stats.append(OpStats(name, span, busy, energy, int(totals.get("macs", 0))))
    return tuple(sorted(stats, key=lambda s: -s.cycles))


def _pattern_op_stats(program: isa.Program, plan: PatternCosts, first_start: np.ndarray,
                      last_end: np.ndarray, machine: Machine) -> tuple[OpStats, ...]:
    """`op_stats` of the unrolled program from the compact one, in the unrolled program's op
    order (the engine's op numbers): busy cycles and events are per pattern times count, the
    span from the periodic engine. An op mark outside loops is one op, its instances its
    compact instructions' instances; the marks of a loop's body are one op per iteration
    (`op_segments`), each with its instructions' count in one iteration and its own span."""
    units = np.append(_unit_of_queue(machine, plan.queue_names), -1)[plan.queue_of]  # loop words: -1
    count = plan.layout.count
    stats = []
    for o, (name, segments) in enumerate(op_segments(program, plan.structure)):
        if all(hi <= lo for lo, hi, _ in segments):
            continue
        span = int(last_end[o] - first_start[o]) if first_start[o] >= 0 else 0
        busy = dict.fromkeys(machine.units, 0)
        totals: dict[str, float] = {}
        for lo, hi, loop in segments:
            times = segment_counts(count, loop)
            busy_of = plan.durations[lo:hi] * times[lo:hi]
            for j, u in enumerate(machine.units):
                busy[u] += int(busy_of[units[lo:hi] == j].sum())
            for key, value in plan.events.weighted_totals(times, slice(lo, hi)).items():
                totals[key] = totals.get(key, 0) + value
        energy = sum(machine.energy_pj(totals).values()) * 1e-12
        stats.append(OpStats(name, span, busy, energy, int(totals.get("macs", 0))))
    return tuple(sorted(stats, key=lambda s: -s.cycles))


@dataclasses.dataclass(frozen=True)
class Timed:
    """What a timing path measured, for the result: cycles, busy cycles per queue text,
    executed instructions, op stats, event totals, the machine's own report; for a node's
    device, its link's exposed cycles and its idle cycles."""

    cycles: int
    queue_busy: dict[str, int]
    instructions: int
    ops: tuple[OpStats, ...]
    totals: dict[str, float]
    target_report: object
    exposed_cycles: int | None = None
    idle_cycles: int | None = None


def _periodic(program: isa.Program, plan: PatternCosts, machine: Machine,
              progress: Callable[[str, int], None] | None, node: bool) -> Timed:
    """Time a compact program per pattern (sim/periodic.py): nothing is unrolled. A node's
    device (`node`) has its link's exposure measured."""
    marked = marked_loops(program, plan.structure)
    if marked:                    # each iteration its own ops: looked up by executed index
        unrolled = unrolled_marks(plan.structure, program.ops)
        n_ops = len(unrolled)
        op_of = np.full(len(program.instructions), -1, np.int64)
        marks = [u for u, _ in unrolled]
    else:
        marks = [i for i, _ in program.ops]
        n_ops = len(marks)
        op_of = np.searchsorted(np.array(marks, np.int64), np.arange(len(program.instructions)),
                                side="right") - 1
        op_of[op_of < 0] = n_ops                   # before the first mark: no op (slot n_ops)
        marks = None
    link = None
    if node:                                       # -1: a device that never uses its link
        link = plan.queue_names.index(LINK_QUEUE) if LINK_QUEUE in plan.queue_names else -1
    timing = schedule_periodic(plan.layout, plan.queue_names, plan.kind, plan.sem,
                               plan.durations.tolist(), plan.resources.tolist(),
                               plan.delays.tolist(), op_of.tolist(), n_ops + 1,
                               progress=None if progress is None else partial(progress, "events"),
                               marks=marks, marked=frozenset(marked), exposure=link)
    count = plan.layout.count
    busy_of = plan.durations * count
    queue_busy = {name: int(busy_of[plan.queue_of == q].sum())
                  for q, name in enumerate(plan.queue_names)}
    totals = plan.events.weighted_totals(count)
    ops = _pattern_op_stats(program, plan, timing.op_first_start, timing.op_last_end, machine)
    return Timed(timing.total_cycles, queue_busy, plan.layout.executed, ops, totals,
                  plan.target_report(program, totals, timing.total_cycles),
                  timing.exposed_cycles, timing.idle_cycles)


def simulate(program: isa.Program, machine: Machine, *, functional: bool = True,
             assumptions: tuple[str, ...] = (),
             progress: Callable[[str, int], None] | None = None,
             patterns: PatternCosts | str | None = None,
             node: LinkArch | None = None) -> Simulation:
    """Verify `program` against the machine's arch, then run it on a fresh `machine.start`.
    progress(stage, instructions started), when given, follows the stages (verify, costs,
    data, events, report) and the engine's count in chunks (sim/engine.py).

    A program with loops is verified compact. Timing only, when its costs are the same in
    every iteration (sim/compact_costs.py), it is timed compact, per pattern, by the periodic
    engine (sim/periodic.py); otherwise it runs as its unrolled equivalent, so every model below
    sees only executed instructions: with numerics the unrolled program itself (the one place
    the simulator unrolls), timing only what the machine's `start_shell` gives (the PIM
    machine, whose DRAM state times every command: the executed shell, no unrolled copy). All
    give the same figures.
    `patterns`: what `timing_plan` found for this program and machine, when the caller
    has already worked it out (its memory check), so it is not worked out twice.

    `node`: the program is every device of a node alike (a symmetric tensor-parallel group,
    sim/multi.py): it may use the link queue, and each `coll` takes the time `node` gives the
    collective, every member arriving with it; energy gains the links' share ("link"), and
    the link's exposed cycles and the idle cycles are measured on either path."""
    tell = progress or _quiet
    arch = machine.arch
    tell("verify", 0)
    flat = None
    if functional:                            # it runs unrolled: unroll once, for both
        try:
            flat = isa.unroll(program)
        except isa.LoopError:
            pass                                  # the verifier says what is wrong
    isa.verify(program, arch.machine_view() if node is None else with_link(arch.machine_view()),
               flat)
    if not functional:
        tell("costs", 0)
        plan = patterns if patterns is not None else timing_plan(machine, program)
        if isinstance(plan, PatternCosts):
            link_j = 0.0
            if node is not None:
                plan, link_j = _priced_plan(plan, program, node, machine.clock_hz)
            tell("events", 0)
            timed = _periodic(program, plan, machine, progress, node is not None)
            tell("report", timed.instructions)
            return Simulation(_with_link_energy(sim_result(program, machine, timed, assumptions),
                                                node, link_j), None, None, timed.exposed_cycles,
                              timed.idle_cycles)
    tell("costs", 0)
    if functional:
        program = flat if flat is not None else isa.unroll(program)
        run = machine.start(program)
    else:
        run = machine.start_shell(program)
        compact, program = program, run.program
    costs = run.costs
    link_j = 0.0
    if node is not None:
        for i, (cycles, energy_j) in _coll_prices(program.instructions, node, machine.clock_hz):
            costs.durations[i] = cycles
            link_j += energy_j
    memory = None
    on_start = None
    if functional:
        if program.data is None:
            raise isa.IsaError("numeric simulation needs the program's data (weights and inputs); "
                               "compile with data or simulate with --no-functional")
        tell("data", 0)
        view = arch.machine_view()
        sizes = {s.name: s.size_bytes for s in view.spaces.values()}
        memory = Memory(sizes, run.held_bytes(view))
        memory.load_program_data(program)
        models = run.functional_models(memory)
        on_start = FunctionalExecutor(program, memory, models=models).execute
    tell("events", 0)
    executed = len(program.instructions) if run.executed is None else run.executed
    timeline = simulate_events(program if run.shell_order is None else compact, costs.durations,
                               costs.resources, on_start, costs.timed, costs.delays, costs.timed_run,
                               progress=None if progress is None else partial(
                                   _scaled, progress, executed, len(program.instructions)),
                               order=run.shell_order)
    tell("report", executed)
    after_run = run.run_totals()            # totals known only after the run (e.g. refreshes)
    totals = costs.events.totals()
    for k, v in after_run.items():
        totals[k] = totals.get(k, 0.0) + v
    cycles = timeline.total_cycles
    exposed = idle = None
    if node is not None:
        exposed = exposed_cycles(timeline, on_queue(timeline, LINK_QUEUE))
        idle = idle_cycles(timeline, cycles)
    timed = Timed(cycles, timeline.queue_busy_cycles(), executed,
                   op_stats(program, timeline, costs, machine), totals,
                   run.report(timeline, cycles), exposed, idle)
    return Simulation(_with_link_energy(sim_result(program, machine, timed, assumptions), node,
                                        link_j), memory, timeline, exposed, idle)


def _scaled(progress: Callable[[str, int], None], executed: int, entries: int,
            started: int) -> None:
    """The engine's count of started entries as executed instructions (a run whose entries
    stand for several instructions each reports its share of them)."""
    progress("events", started if executed == entries else started * executed // max(entries, 1))


def with_link(view: isa.MachineView) -> isa.MachineView:
    """A device's view with its link queue (a node's device, sim/multi.py)."""
    return isa.MachineView(view.spaces, view.queues | {LINK_QUEUE}, view.limits, view.target)


def _coll_prices(instructions, node: LinkArch, clock_hz: float):
    """(index, (cycles, link energy one member spends)) of every `coll`."""
    for i, ins in enumerate(instructions):
        if ins.opcode == "coll":
            cycles, cost = coll_price(ins, node, clock_hz)
            members = 2 if ins["kind"] in ("send", "recv") else ins["ranks"]
            yield i, (cycles, cost.energy_j / members)


def _priced_plan(plan: PatternCosts, program: isa.Program, node: LinkArch,
                 clock_hz: float) -> tuple[PatternCosts, float]:
    """The plan with each `coll` pattern's cycles, and the links' energy over every execution."""
    durations = plan.durations.copy()
    link_j = 0.0
    for c, (cycles, energy_j) in _coll_prices(program.instructions, node, clock_hz):
        durations[c] = cycles
        link_j += energy_j * int(plan.layout.count[c])
    return dataclasses.replace(plan, durations=durations), link_j


def _with_link_energy(result: SimResult, node: LinkArch | None, link_j: float) -> SimResult:
    if node is None:
        return result
    return dataclasses.replace(result, energy_breakdown_j={**result.energy_breakdown_j,
                                                           "link": link_j})


def sim_result(program: isa.Program, machine: Machine, timed: Timed,
            assumptions: tuple[str, ...]) -> SimResult:
    """The result's figures from what either timing path measured."""
    arch, cycles, totals = machine.arch, timed.cycles, timed.totals
    energy = {k: v * 1e-12 for k, v in machine.energy_pj(totals).items()}
    energy["static"] = machine.static_w() * cycles / machine.clock_hz
    busy, queues = _units(timed.queue_busy)
    busy = {u: busy.get(u, 0) for u in machine.units}
    share = {"dma": 1}   # the DMA queues share one DRAM port: their busy cycles never overlap
    utilization = {u: busy[u] / (cycles * share.get(u, queues.get(u, 1))) if cycles else 0.0
                   for u in machine.units}
    macs = int(totals.get("macs", 0))
    return SimResult(
        target=program.target, arch_name=arch.name, cycles=cycles, clock_hz=machine.clock_hz,
        instructions=timed.instructions, energy_breakdown_j=energy,
        unit_busy_cycles=busy, utilization=utilization,
        mac_utilization=macs / (machine.mac_units() * cycles) if cycles else 0.0, macs=macs,
        bytes={k.removesuffix("_bytes"): int(v) for k, v in totals.items() if k.endswith("_bytes")},
        ops=timed.ops, arch=dataclasses.asdict(arch), assumptions=assumptions,
        arch_summary=arch.summary(), target_report=timed.target_report)
