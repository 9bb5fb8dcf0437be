"""Closed-form timing of one dataflow section call: fill, steady state, drain.

A section is a linear pipeline: a memory stage (the AGCUs streaming the section's HBM and
DDR bytes) followed by one compute stage per op, each on its own PCUs, with double-buffered
PMUs between stages. N tiles pass through it (tiles per iteration x loops). Stage i takes
s_i cycles per tile; the slowest stage b sets the steady state

    steady = max_i s_i,   s_0 = max(HBM bytes per tile / HBM bytes per cycle,
                                    DDR bytes per tile / DDR bytes per cycle)
    fill   = latency + sum_{i<b} s_i      (first tile up to the bottleneck)
    drain  = sum_{i>b} s_i                (last tile after it)
    run    = launch + fill + N x steady + drain

which is exact for a linear pipeline with buffering between stages: the last tile leaves
after sum_i s_i + (N - 1) x s_b. `latency` is the memory tier's latency plus each stage's
pipeline depth. Kernel looping runs L iterations as one call: one launch, one fill, one
drain, N = L x tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PipelineTiming", "section_timing", "allocate_pcus"]


@dataclass(frozen=True, slots=True)
class PipelineTiming:
    launch_cycles: int
    fill_cycles: int
    steady_cycles: int          # per tile
    tiles: int                  # N: tiles per iteration x loops
    drain_cycles: int
    bound: str                  # "compute" (a PCU stage) or "hbm" / "ddr" (bandwidth)

    @property
    def cycles(self) -> int:
        return self.launch_cycles + self.fill_cycles + self.tiles * self.steady_cycles + self.drain_cycles


def allocate_pcus(work_cycles: list[float], pcus: int) -> list[int]:
    """PCUs per stage in proportion to its work (at least one each): a balanced pipeline."""
    if len(work_cycles) > pcus:
        raise ValueError(f"{len(work_cycles)} stages need more than the section's {pcus} PCUs")
    total = sum(work_cycles)
    if total == 0:
        return [1] * len(work_cycles)
    spare = pcus - len(work_cycles)
    share = [1 + math.floor(spare * w / total) for w in work_cycles]
    left = pcus - sum(share)
    for i in sorted(range(len(share)), key=lambda i: -work_cycles[i])[:left]:
        share[i] += 1
    return share


def section_timing(stage_work_cycles: list[float], pcus: int, tiles: int, loops: int,
                   hbm_bytes: float, ddr_bytes: float, hbm_bytes_per_cycle: float,
                   ddr_bytes_per_cycle: float, latency_cycles: int, launch_cycles: int) -> PipelineTiming:
    """The call's timing from each stage's work (PCU-cycles on one PCU, all iterations)."""
    n = max(1, tiles) * max(1, loops)
    shares = allocate_pcus(stage_work_cycles, pcus) if stage_work_cycles else []
    per_tile = [w / p / n for w, p in zip(stage_work_cycles, shares)]
    memory = {"hbm": hbm_bytes / hbm_bytes_per_cycle / n, "ddr": ddr_bytes / ddr_bytes_per_cycle / n}
    tier = max(memory, key=memory.get)
    stages = [memory[tier]] + per_tile
    b = max(range(len(stages)), key=stages.__getitem__)
    steady = math.ceil(stages[b])
    fill = latency_cycles + math.ceil(sum(stages[:b]))
    drain = math.ceil(sum(stages[b + 1:]))
    return PipelineTiming(launch_cycles, fill, steady, n, drain, tier if b == 0 else "compute")
