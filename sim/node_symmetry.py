"""Nodes whose devices stand for each other, timed with fewer of them (sim/multi.py).

A symmetric node (every device the same program on the same machine, every collective one group
of all of them: tensor parallelism without stages) is timed on one device: each device reaches
each collective in the same cycle as the others, so the whole node's run is n copies of one
device's run with every collective lasting its time, and that run may be per pattern
(sim/periodic.py). With pipeline stages, one rank of each tensor-parallel group stands for the
group (`rank_groups`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import isa
from arch.links import LinkArch
from isa.loops import loop_structure
from isa.unroll import multiplicities
from sim.collectives import coll_price
from sim.machines.base import Machine
from sim.node_result import Collective, NodeResult, group_members
from sim.simulate import simulate

__all__ = ["symmetric", "rank_groups", "symmetric_node"]



def symmetric(programs: Sequence[isa.Program], machines: Sequence[Machine]) -> bool:
    """Every device runs the same program on the same machine, and every collective is one
    group of all of them (a tensor-parallel node without pipeline stages): then every device
    reaches each collective in the same cycle, and one device's run is every device's."""
    first, n = programs[0], len(programs)
    if any(p is not first for p in programs) or any(
            type(m) is not type(machines[0]) or m.arch != machines[0].arch for m in machines):
        return False
    return all(ins["kind"] not in ("send", "recv") and ins["ranks"] == n and ins["stride"] == 1
               for ins in first.instructions if ins.opcode == "coll")


def rank_groups(programs: Sequence[isa.Program],
                 machines: Sequence[Machine]) -> list[tuple[int, ...]] | None:
    """Tensor-parallel ranks that one of them can stand for: when every device's reducing
    collectives use one group, whose members run that device's program on its machine, and
    every send or receive goes to the same rank of the peer's group, the ranks of a group
    reach each collective together. Then the groups (each once, in order), else None (also
    when no group has two devices: nothing to save)."""
    n = len(programs)
    shapes: dict[int, set] = {}
    for p in {id(p): p for p in programs}.values():
        shapes[id(p)] = {(ins["kind"] in ("send", "recv"), ins["ranks"], ins["stride"])
                         for ins in p.instructions if ins.opcode == "coll"}
    group_of: dict[int, tuple[int, ...]] = {}
    for d, p in enumerate(programs):
        reducing = {(r, s) for p2p, r, s in shapes[id(p)] if not p2p}
        if len(reducing) > 1:
            return None
        ranks, stride = reducing.pop() if reducing else (1, 1)
        group_of[d] = group_members(d, ranks, stride)
        if group_of[d][-1] >= n or any(programs[m] is not p or type(machines[m]) is not type(
                machines[d]) or machines[m].arch != machines[d].arch for m in group_of[d]):
            return None
    for d, p in enumerate(programs):
        for p2p, _, stride in shapes[id(p)]:
            peers = [d + stride, d - stride] if p2p else []
            for peer in (q for q in peers if 0 <= q < n):
                if group_of[peer].index(peer) != group_of[d].index(d):
                    return None
    groups = list(dict.fromkeys(group_of[d] for d in range(n)))
    return groups if any(len(g) > 1 for g in groups) else None


def symmetric_node(program: isa.Program, machine: Machine, n: int, link: LinkArch,
                   progress: Callable[[str, int], None] | None = None,
                   unrolled: bool = False) -> NodeResult:
    """One device simulated for all, each collective timed as the whole group arriving at once:
    per pattern where the program allows it (sim/simulate.py), else (or when `unrolled`)
    instruction by instruction. Exposed and idle cycles are measured exactly on both paths:
    from every instruction's interval, or as instances start (sim/periodic.py)."""
    run = simulate(program, machine, functional=False, node=link, progress=progress,
                   patterns="unrolled: asked for" if unrolled else None)
    result = run.result
    counts = multiplicities(loop_structure(program.instructions, ops=program.ops))
    collectives = []
    for i, ins in enumerate(program.instructions):
        if ins.opcode == "coll":
            cycles, cost = coll_price(ins, link, machine.clock_hz)
            collectives.append(Collective(ins["kind"], tuple(range(n)), ins["bytes"], ins["dtype"],
                                          (i,) * n, cycles, cost.energy_j, cost.bytes_per_rank,
                                          cost.algorithm, int(counts[i])))
    busy = sum(c.cycles * c.count for c in collectives)
    sent = sum(c.bytes_per_rank * c.count for c in collectives)
    return NodeResult((result,) * n, result.cycles, machine.clock_hz, tuple(collectives),
                      (busy,) * n, (sent,) * n, (run.exposed_cycles,) * n, (run.idle_cycles,) * n)
