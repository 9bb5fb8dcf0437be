"""simulate(program, machine): timing from the machine model and the event engine, energy from
event counts, and (optionally) numpy execution of every instruction in start order."""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable

import numpy as np

import isa
from sim.engine import simulate_events
from sim.functional import FunctionalExecutor, Memory
from sim.machines.base import Costs, Machine
from sim.result import OpStats, SimResult

__all__ = ["simulate", "Simulation"]


@dataclasses.dataclass(frozen=True)
class Simulation:
    """A simulation's measurements and, for numeric runs, the final memory."""

    result: SimResult
    memory: Memory | None


def _quiet(stage: str, done: int) -> None:
    """No progress shown."""


def _units(timeline, program: isa.Program) -> tuple[dict[str, int], dict[str, int]]:
    busy: dict[str, int] = {}
    queues: dict[str, int] = {}
    for queue, cycles in timeline.queue_busy_cycles().items():
        unit = isa.Queue.parse(queue).unit.name
        busy[unit] = busy.get(unit, 0) + int(cycles)
        queues[unit] = queues.get(unit, 0) + 1
    return busy, queues


def _op_stats(program: isa.Program, timeline, costs: Costs, machine: Machine) -> tuple[OpStats, ...]:
    marks = list(program.ops)
    if not marks:
        return ()
    n = len(program.instructions)
    starts = [i for i, _ in marks]
    bounds = list(zip(starts, starts[1:] + [n]))
    unit_names = [isa.Queue.parse(q).unit.name for q in timeline.queues]
    unit_of_queue = np.array([machine.units.index(u) if u in machine.units else -1
                              for u in unit_names], np.int8)
    stats = []
    for (lo, hi), (_, name) in zip(bounds, marks):
        if hi <= lo:
            continue
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


def simulate(program: isa.Program, machine: Machine, *, functional: bool = True,
             assumptions: tuple[str, ...] = (),
             progress: Callable[[str, int], None] | None = None) -> Simulation:
    """Verify `program` against the machine's arch, then run it on a fresh `machine.start`.
    progress(stage, instructions started), when given, follows the stages (verify, costs,
    data, events, report) and the engine's count in chunks (sim/engine.py).

    A program with loops is verified compact and then run as its unrolled equivalent: this is
    the one place the simulator unrolls, so every model below (cost sheets, engine, functional
    executor, op stats) sees only executed instructions."""
    tell = progress or _quiet
    arch = machine.arch
    tell("verify", 0)
    isa.verify(program, arch.machine_view())
    program = isa.unroll(program)
    tell("costs", 0)
    run = machine.start(program)
    costs = run.costs
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
    timeline = simulate_events(program, costs.durations, costs.resources, on_start, costs.timed,
                               costs.delays, costs.timed_run,
                               progress=None if progress is None else partial(progress, "events"))
    tell("report", len(program.instructions))
    after_run = run.run_totals()            # totals known only after the run (e.g. refreshes)
    totals = costs.events.totals()
    for k, v in after_run.items():
        totals[k] = totals.get(k, 0.0) + v
    cycles = timeline.total_cycles
    energy = {k: v * 1e-12 for k, v in machine.energy_pj(totals).items()}
    energy["static"] = machine.static_w() * cycles / machine.clock_hz
    busy, queues = _units(timeline, program)
    busy = {u: busy.get(u, 0) for u in machine.units}
    share = {"dma": 1}   # the DMA queues share one DRAM port: their busy cycles never overlap
    utilization = {u: busy[u] / (cycles * share.get(u, queues.get(u, 1))) if cycles else 0.0
                   for u in machine.units}
    macs = int(totals.get("macs", 0))
    result = SimResult(
        target=program.target, arch_name=arch.name, cycles=cycles, clock_hz=machine.clock_hz,
        instructions=len(program.instructions), energy_breakdown_j=energy,
        unit_busy_cycles=busy, utilization=utilization,
        mac_utilization=macs / (machine.mac_units() * cycles) if cycles else 0.0, macs=macs,
        bytes={k.removesuffix("_bytes"): int(v) for k, v in totals.items() if k.endswith("_bytes")},
        ops=_op_stats(program, timeline, costs, machine),
        arch=dataclasses.asdict(arch), assumptions=assumptions,
        arch_summary=arch.summary(), target_report=run.report(timeline, cycles))
    return Simulation(result, memory)
