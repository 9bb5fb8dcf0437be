"""One program on the PIM machine: its channels' DRAM state, which the timing hooks advance
as the engine issues pim instructions, and what is known only after the run (refreshes,
row hits, MAC utilisation per channel and bank)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

import isa
from sim.engine import Timeline
from sim.machines.base import MachineRun
from sim.machines.pim.bursts import Bursts
from sim.machines.pim.channel import PimChannel, Plan
from sim.machines.pim.commands import DramStats
from sim.machines.pim.numerics import PimNumerics
from sim.machines.pim.report import ClockDomain, PimReport

__all__ = ["PimRun", "PimPlans"]

_ROW_OPCODES = frozenset({"pim.act", "pim.act_all", "pim.wr", "pim.rd"})   # they name a row


@dataclass(frozen=True, eq=False)
class PimPlans:
    """Which decoded plan times each instruction of the pim queues (but wait and halt)."""

    plan_at: np.ndarray                  # int32 per instruction: index in `plans`; -1: none
    plans: list[Plan | None]             # the distinct plans (None: a `signal`)

    @cached_property
    def index(self) -> np.ndarray:
        """Program indices of the planned instructions, ascending (worked out once: plan_at
        is read-only)."""
        return np.flatnonzero(self.plan_at >= 0)


@dataclass(eq=False)
class PimRun(MachineRun):
    channels: tuple[PimChannel, ...] = ()
    pim: PimPlans | None = None
    bursts: Bursts | None = None        # a shell's bursts, each one entry (PimMachine.start_shell)

    def held_bytes(self, view: isa.MachineView) -> dict[str, int]:
        """What the symbols and footprints reach, in the DRAM every row block a pim
        instruction opens or accesses (the MACs read the open rows of all banks), and the
        global buffers whole (pim instructions address them by channel; they are small)."""
        held = super().held_bytes(view)
        a, end = self.machine.arch, 0
        instrs = self.program.instructions
        for instr in dict(zip(map(id, instrs), instrs)).values():
            if instr.opcode in _ROW_OPCODES:
                channel = instr.queue.index         # rows of all banks sit together (arch.pim)
                end = max(end, a.dram_address(channel, a.banks - 1, instr["row"]) + a.row_bytes)
        held["dram"] = min(view.spaces["dram"].size_bytes, max(held["dram"], end))
        held["gbuf"] = view.spaces["gbuf"].size_bytes
        return held

    def functional_models(self, memory) -> dict:
        return PimNumerics(self.machine.arch, memory).models()

    def dram_stats(self) -> list[DramStats]:
        return [c.stats for c in self.channels]

    def run_totals(self) -> dict[str, float]:
        """What only the controller issued: refreshes and the row reopens after them."""
        stats = self.dram_stats()
        acts = sum(s.counts.get("ACT", 0) + self.machine.arch.banks * s.counts.get("ACT_ALL", 0)
                   for s in stats)
        own = self.costs.events.total("act_banks", self.pim.plan_at >= 0)   # pim.act* opened
        return {"act_banks": acts - own,
                "refreshes": float(sum(s.counts.get("REF", 0) for s in stats))}

    def _mac_cycles(self, timeline: Timeline) -> tuple[np.ndarray, np.ndarray]:
        """MAC column-slot cycles of each channel's issued pim instructions, and per bank
        (the all-bank ones plus the bank's own single-bank ones): per channel, how often
        each plan issued, times the plan's cycles (integers, so the sums are exact)."""
        a, pim = self.machine.arch, self.pim
        every, bank, own = (np.array(v, np.int64) for v in zip(
            *(self.channels[0].mac_cycles(p) for p in pim.plans))) if pim.plans else \
            (np.zeros(0, np.int64),) * 3
        if self.bursts is not None:                   # channel, plan -> issues
            counts = self.bursts.plan_counts(a.channels, timeline.start[self.bursts.entry] >= 0)
        else:
            issued = (pim.plan_at >= 0) & (timeline.start >= 0)
            counts = np.zeros((a.channels, len(pim.plans)), np.int64)
            for q, name in enumerate(timeline.queues):
                queue = isa.Queue.parse(name)
                if queue.unit.name == "pim":
                    counts[queue.index] += np.bincount(
                        pim.plan_at[issued & (timeline.queue_of == q)], minlength=len(pim.plans))
        all_bank = (counts @ every).astype(np.float64)
        single = np.zeros((a.channels, a.banks))
        mine = bank >= 0
        for c in range(a.channels):
            np.add.at(single[c], bank[mine], counts[c, mine] * own[mine])
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
    of_unit = np.array([isa.Queue.parse(q).unit.name == unit for q in timeline.queues])
    mine = of_unit[timeline.queue_of] & (timeline.start >= 0) & (timeline.end > timeline.start)
    starts = timeline.start[mine]
    if not starts.size:
        return 1.0
    ends = timeline.end[mine]
    del mine
    starts.sort()
    ends.sort()
    # The k-th start never follows the k-th end, so no interval is open from the k-th end to
    # the (k+1)-th start: those are the gaps of the union.
    first, last = starts[0], ends[-1]
    gaps = np.subtract(starts[1:], ends[:-1], out=starts[1:])
    busy = last - first - np.maximum(gaps, 0, out=gaps).sum()
    return 1.0 - busy / cycles
