"""One program on the PIM machine: its channels' DRAM state, which the timing hooks advance
as the engine issues pim instructions, and what is known only after the run (refreshes,
row hits, MAC utilisation per channel and bank)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

import isa
from sim.engine import Timeline
from sim.machines.base import MachineRun
from sim.machines.pim.channel import PimChannel, Plan
from sim.machines.pim.commands import DramStats
from sim.machines.pim.numerics import PimNumerics
from sim.machines.pim.report import ClockDomain, PimReport

__all__ = ["PimRun", "PimPlans"]


@dataclass(frozen=True, eq=False)
class PimPlans:
    """Which decoded plan times each instruction of the pim queues (but wait and halt)."""

    plan_at: np.ndarray                  # int32 per instruction: index in `plans`; -1: none
    plans: list[Plan | None]             # the distinct plans (None: a `signal`)

    @property
    def index(self) -> np.ndarray:
        """Program indices of the planned instructions, ascending."""
        return np.flatnonzero(self.plan_at >= 0)


@dataclass(eq=False)
class PimRun(MachineRun):
    channels: tuple[PimChannel, ...] = ()
    pim: PimPlans | None = None

    def memory_bytes(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """The DRAM only up to the program's last symbol (nothing is addressed beyond it);
        the global buffers and the ASIC buffer whole (they hold no symbols)."""
        end = max((s.addr + s.size_bytes for s in self.program.symbols if s.space == "dram"), default=0)
        return {**sizes, "dram": min(sizes["dram"], max(end, 64))}

    def functional_models(self, memory) -> dict:
        return PimNumerics(self.machine.arch, memory).models()

    def dram_stats(self) -> list[DramStats]:
        return [c.stats for c in self.channels]

    def run_totals(self) -> dict[str, float]:
        """What only the controller issued: refreshes and the row reopens after them."""
        stats = self.dram_stats()
        acts = sum(s.counts.get("ACT", 0) + self.machine.arch.banks * s.counts.get("ACT_ALL", 0)
                   for s in stats)
        own = self.costs.events.total("act_banks", self.pim.index)   # pim.act* opened
        return {"act_banks": acts - own,
                "refreshes": float(sum(s.counts.get("REF", 0) for s in stats))}

    def _mac_cycles(self, timeline: Timeline) -> tuple[np.ndarray, np.ndarray]:
        """MAC column-slot cycles of each channel's issued pim instructions, and per bank
        (the all-bank ones plus the bank's own single-bank ones)."""
        a, pim = self.machine.arch, self.pim
        index = pim.index
        issued = timeline.start[index] >= 0
        every, bank, own = (np.array(v, np.int64) for v in zip(
            *(self.channels[0].mac_cycles(p) for p in pim.plans))) if pim.plans else \
            (np.zeros(0, np.int64),) * 3
        which = pim.plan_at[index][issued].astype(np.int64)
        channel_of_queue = np.array([isa.Queue.parse(q).index for q in timeline.queues], np.int64)
        channel = channel_of_queue[timeline.queue_of[index][issued]]
        all_bank = np.bincount(channel, every[which], minlength=a.channels)
        single = np.zeros((a.channels, a.banks))
        mine = bank[which] >= 0
        np.add.at(single, (channel[mine], bank[which][mine]), own[which][mine])
        return all_bank + single.sum(axis=1), all_bank[:, None] + single

    def report(self, timeline: Timeline, cycles: int) -> PimReport:
        """Row-buffer hits, MAC utilisation per channel and bank, commands by kind, the
        non-VMM share of the time and the time in each clock domain."""
        a, stats = self.machine.arch, self.dram_stats()
        hits = sum(s.row_hits for s in stats)
        accesses = hits + sum(s.row_misses for s in stats)
        commands: dict[str, int] = {}
        for s in stats:
            for kind, count in s.counts.items():
                commands[kind] = commands.get(kind, 0) + count
        channel_mac, bank_mac = self._mac_cycles(timeline)
        per_channel = (channel_mac / cycles if cycles else 0 * channel_mac).tolist()
        per_bank = (bank_mac / cycles if cycles else 0 * bank_mac).tolist()
        time_ns = cycles * a.tck_ns
        return PimReport(
            row_hit_rate=hits / accesses if accesses else 0.0,
            dram_commands=commands,
            mac_utilization_per_channel=per_channel,
            mac_utilization_per_bank=per_bank,
            non_vmm_share=_idle_share(timeline, "pim", cycles),
            time_ns=time_ns,
            clock_domains={
                "dram": ClockDomain(self.machine.clock_hz / 1e6, cycles),
                "asic": ClockDomain(a.asic.clock_mhz,
                                    math.ceil(time_ns * a.asic.clock_mhz * 1e-3 - 1e-9))})


def _idle_share(timeline: Timeline, unit: str, cycles: int) -> float:
    """Share of the run during which no queue of `unit` is busy (union of busy intervals)."""
    if not cycles:
        return 0.0
    names = [q for q in timeline.queues if isa.Queue.parse(q).unit.name == unit]
    ids = [timeline.queues.index(q) for q in names]
    mine = np.isin(timeline.queue_of, ids) & (timeline.start >= 0) & (timeline.end > timeline.start)
    starts, ends = timeline.start[mine], timeline.end[mine]
    if not starts.size:
        return 1.0
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    gaps = np.maximum(starts[1:] - ends[:-1], 0).sum()
    busy = ends[-1] - starts[0] - gaps
    return 1.0 - busy / cycles
