"""A timing-only run of a PIM program with loops, without unrolling it (PimMachine.start_shell).

The run's program is the executed shell (`isa.executed_shell`: each executed instruction its
compact object, the operands loops move at their first iteration's values) with every burst
(sim/machines/pim/bursts.py) one entry. Only the operands that time a pim instruction (the
rows and columns its loops move) are read per iteration, as arrays (planning.moved_plans);
the DMA's and ASIC's costs read no operand a loop moves (addresses), so the shell prices them
as the unrolled program would. Every figure equals the unrolled program's
(tests/sim/machines/pim/test_shell.py).
"""
from __future__ import annotations

from array import array

import numpy as np

import isa
from isa.loops import Structure
from isa.unroll import unrolled_order
from sim.machines.base import Costs, Machine
from sim.machines.decode import CostSheet, decode_shell
from sim.machines.events import EventRows
from sim.machines.pim.bursts import Bursts, find_bursts
from sim.machines.pim.planning import mode_widths, moved_plans, plan_pim, unique_rows
from sim.machines.pim.run import PimPlans, PimRun

__all__ = ["shell_run"]


def shell_run(machine: Machine, program: isa.Program, structure: Structure) -> PimRun:
    """The run of `program` (with loops `structure`) on `machine` (a PimMachine) from its
    executed shell, bursts collapsed."""
    instrs = program.instructions
    unrolled = unrolled_order(structure, program.ops)
    order = unrolled.order
    channels = machine.new_channels()
    pim = moved_plans(channels[0], plan_pim(channels[0], instrs, unrolled, final=False), program,
                      unrolled)
    wide = mode_widths(instrs, order)
    numbers: dict[isa.Queue, int] = {}
    queue_of = np.fromiter((numbers.setdefault(ins.queue, len(numbers)) for ins in instrs),
                           np.int32, len(instrs))
    if len(numbers) <= 127:              # gathered per executed instruction: one byte each
        queue_of = queue_of.astype(np.int8)
    queue_index = np.array([q.index if q.unit.name == "pim" else -1 for q in numbers], np.int64)
    bursts = find_bursts(pim.plan_at, np.array([p is not None for p in pim.plans], bool),
                         queue_of[order], queue_index, [u for u, _ in unrolled.marks])
    del queue_of
    kept = bursts.kept
    shell = isa.executed_shell(program, unrolled, kept)
    entry_plan = pim.plan_at[kept]
    entry_plan.setflags(write=False)
    on_pim = entry_plan >= 0                         # a burst, or a pim `signal`
    n = len(kept)
    sheet = decode_shell(machine.cost_table, CostSheet.empty(n, machine.events), instrs,
                         order[kept], np.flatnonzero(~on_pim))
    sheet.durations[on_pim] = -1
    machine.set_widest(1 if wide is None else int(wide.max()))
    _burst_events(machine, sheet.events, bursts, pim.plans, wide)
    timed, timed_run = _hooks(shell.instructions, channels, pim.plans, bursts, n)
    costs = Costs(sheet.durations, sheet.resources, sheet.events.freeze(), timed=timed,
                  delays=sheet.delays, timed_run=timed_run)
    machine.share_memo(channels, pim.plans)
    run = PimRun(machine, shell, costs, channels=channels, pim=PimPlans(entry_plan, pim.plans),
                 bursts=bursts)
    run.shell_order = order[kept]
    run.executed = len(order)
    return run


def _burst_events(machine: Machine, events: EventRows, bursts: Bursts, plans,
                  wide: np.ndarray | None) -> None:
    """Each burst's energy events: its members' plans' events summed (a MAC under an N-bit
    mode makes `wide` = 16 / N times a BF16 column's MACs, as PimMachine's own events)."""
    per_plan: dict[str, np.ndarray] = {}
    for p, plan in enumerate(plans):
        for name, value in machine.plan_events(plan):
            per_plan.setdefault(name, np.zeros(len(plans), np.int64))[p] = value
    names = [name for name, column in per_plan.items() if column.any()]
    if not names or not len(bursts.first):
        return
    scaled = [name for name in names if name == "macs" and wide is not None]
    plain = [name for name in names if name not in scaled]
    summed = dict(zip(plain, bursts.sums_of([per_plan[name] for name in plain])))
    summed.update((name, bursts.sums(per_plan[name], wide)) for name in scaled)
    matrix = np.column_stack([summed[name] for name in names])
    distinct, inverse = unique_rows(matrix)
    rows = np.array([events.row(tuple((name, float(v)) for name, v in zip(names, row) if v))
                     for row in distinct.tolist()], np.int32)
    events.rows[bursts.entry] = rows[inverse]


def _hooks(instrs, channels, plans, bursts: Bursts, n: int):
    """The engine's `timed` and `timed_run` for a shell's entries: a burst is timed as the
    run of its members by its channel, a pim `signal` waits for its channel's reads."""
    burst_of = np.full(n, -1, np.int32)
    burst_of[bursts.entry] = np.arange(len(bursts.entry), dtype=np.int32)
    burst_of = array("i", burst_of.tobytes())              # indexed per call: C arrays
    first, end = array("q", bursts.first.tobytes()), array("q", bursts.end.tobytes())
    numbers = bursts.plan_at
    totals: dict[int, int] = {}          # id of a remembered run's durations -> their sum

    def timed(i: int, t: int) -> int:
        channel, b = channels[instrs[i].queue.index], burst_of[i]
        if b < 0:
            return channel.wait_reads(t)
        lo, hi = first[b], end[b]
        run = numbers[lo:hi]
        took = channel.state.replay_after(run.tobytes(), t)      # the commonest case first
        if took is None:
            took = channel.run_numbered(range(lo, hi), run, plans, t)
        if took.flags.writeable:         # not remembered (ChannelState keeps its own read-only)
            return int(took.sum())
        total = totals.get(id(took))     # the memo holds the array for the whole run
        if total is None:
            total = totals[id(took)] = int(took.sum())
        return total

    def timed_run(indices, t: int) -> list[int]:
        out = []
        for i in indices.tolist() if isinstance(indices, np.ndarray) else indices:
            d = timed(i, t)
            out.append(d)
            t += d
        return out
    return timed, timed_run
