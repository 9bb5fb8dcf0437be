"""The PIM-DRAM machine (PIM-GPT style): DRAM channels with MAC units, a host ASIC, its DMA.

Time base: DRAM clock cycles (tCK). pim queues are timed command by command by their
channel's DRAM state (sim/pim_channel.py; durations depend on start time, so the engine
asks at issue). ASIC vec/red take `vector_cycles` / `reduce_cycles` ASIC cycles, converted
to DRAM cycles (rounded up). dma0/dma1 move activations between the DRAM and the ASIC
buffer over the channels' I/O (shared: one resource, held for bytes at channels x
io_bw_gbps); the engine is pipelined, so the access latency tRCD_RD + tCL is paid by the
data, not the port: a `signal` on a DMA queue delivers its token that much later. Likewise a
`signal` on a pim queue delivers once the channel's reads (RDMAC, RD) have returned.

Energy (pJ, sources in the preset): ACT/PRE = banks activated x P_ACT x tRC (a refresh
counts as every bank activated: substitute, CENT gives no REF figure); MAC = MAC_ALL x 3 x
P_RD x tCCD_L (a single-bank MAC: that / banks); reads = RD and accumulator reads x P_RD x
tCCD_L, WR x P_WR x tCCD_L; I/O = bits over the DQ pins x io_pj_per_bit; ASIC = element
operations x asic_op_pj; background = PRE standby power per GDDR6 device (2 channels, as
GDDR6-AiM) + the ASIC's static power.
"""
from __future__ import annotations

import math
from operator import attrgetter
from typing import Mapping

import numpy as np

import isa
from arch.pim import PimArch
from sim.machines.base import Costs, Machine, register_machine
from sim.pim_channel import PimChannel
from sim.pim_functional import PimNumerics
from sim.timing import dma_cycles, reduce_cycles, vector_cycles

__all__ = ["PimMachine", "EVENTS"]

EVENTS = ("macs", "act_banks", "mac_all_cmds", "mac_cmds", "rd_bursts", "wr_bursts",
          "acc_reads", "io_bytes", "asic_ops", "dma_bytes")
IO_PORT = 0
CHANNELS_PER_DEVICE = 2          # GDDR6-AiM: 2 channels per chip (reference/pim.md)
_CONTROL = frozenset({"halt", "wait", "dmacfg", "vcfg"})
_UNARY = frozenset({"addi", "muli", "exp", "rsqrt", "recip", "gelu", "tanh", "copy"})


@register_machine("pim")
class PimMachine(Machine):
    units = ("pim", "asic", "dma")

    def __init__(self, arch: PimArch, *, exact_dram: bool = False) -> None:
        self.arch = arch
        self.clock_hz = arch.dram_clock_hz
        self.channels = [PimChannel(arch, exact=exact_dram) for _ in range(arch.channels)]
        self._asic_ratio = self.clock_hz / (arch.asic.clock_mhz * 1e6)
        t = arch.timing
        self._dma_latency = t.tRCD_RD + t.tCL
        self._io_bytes_per_s = int(round(arch.io_bw_total_gbps * 1e9))
        self._pim_index = np.zeros(0, np.int64)     # the program's pim queue instructions
        self._plan_of: list[int] = []      # costs(): per pim instruction, its plan
        self._plans: list = []
        self._queue_of: list[int] = []     # per pim instruction, its channel
        self._events: dict = {}
        self._events_of: dict = {}        # command kinds and counts -> events

    def mac_units(self) -> int:
        a = self.arch
        return a.channels * a.banks * a.macs_per_bank_per_access // a.timing.tCCD_L

    def static_w(self) -> float:
        e = self.arch.energy
        return (e.asic_static_w
                + self.arch.channels / CHANNELS_PER_DEVICE * e.p_pre_standby_mw * 1e-3)

    def dma(self, nbytes: int) -> int:
        return dma_cycles(nbytes, self._dma_latency, round(self.clock_hz), self._io_bytes_per_s)

    def asic(self, cycles: int) -> int:
        return math.ceil(cycles * self._asic_ratio - 1e-9)

    def costs(self, program: isa.Program) -> Costs:
        n = len(program.instructions)
        a = self.arch
        durations = np.zeros(n, dtype=np.int64)
        resources = np.full(n, -1, dtype=np.int64)
        delays = np.zeros(n, dtype=np.int64)
        events = {name: np.zeros(n) for name in EVENTS}
        lat, lanes = a.asic.latency_cycles, a.asic.vector_lanes
        vcfg: dict = {}
        pitch: dict = {}                       # queue -> its DMA (src, dst) row pitches
        instrs = program.instructions
        pim_index, plan_of, plans = self._plan_pim(instrs)
        on_pim = np.zeros(n, bool)
        on_pim[pim_index] = True
        plan_at = np.empty(n, object)                      # per instruction, its plan
        plan_at[pim_index] = np.fromiter(map(plans.__getitem__, plan_of), object, len(plan_of))
        plan_at = plan_at.tolist()
        for i in np.flatnonzero(~on_pim).tolist():          # the ASIC's and the DMA's
            ins = instrs[i]
            op = ins.opcode
            if ins.queue.unit.name == "pim":
                continue                                    # its wait and halt
            if op in _CONTROL or op == "signal":
                if op == "signal" and ins.queue.unit.name == "dma":
                    delays[i] = self._dma_latency
                elif op == "vcfg":
                    vcfg[ins.queue] = (ins["rows"], ins["cols"])
                elif op == "dmacfg":
                    pitch[ins.queue] = (ins["src_stride"], ins["dst_stride"])
            elif op in ("load", "store"):
                rows, width = ins["rows"], ins["row_bytes"]
                nbytes = rows * width
                step = pitch.get(ins.queue, (0, 0))[0 if op == "load" else 1]   # DRAM side
                if rows > 1 and step not in (0, width):   # rows apart: whole bursts each, a
                    bursts = rows * -(-width // a.burst_bytes)    # narrow one masked (GDDR6 WDM)
                    acts = rows if step >= a.row_bytes else -(-rows * step // a.row_bytes)
                    moved = bursts * a.burst_bytes
                else:
                    bursts, acts = -(-nbytes // a.burst_bytes), -(-nbytes // a.row_bytes)
                    moved = nbytes
                durations[i] = max(0, self.dma(moved) - self._dma_latency)
                resources[i] = IO_PORT
                events["dma_bytes"][i] = nbytes
                events["io_bytes"][i] = moved
                events["rd_bursts" if op == "load" else "wr_bursts"][i] = bursts
                events["act_banks"][i] = acts
            elif op == "gather":              # one table row per index, each a DRAM access
                row = pitch[ins.queue][0]
                per_row = self.dma(row) - self._dma_latency
                durations[i] = self._dma_latency + ins["n"] * per_row
                resources[i] = IO_PORT
                nbytes = ins["n"] * row
                events["dma_bytes"][i] = events["io_bytes"][i] = nbytes
                events["rd_bursts"][i] = ins["n"] * -(-row // a.burst_bytes)
                events["act_banks"][i] = ins["n"] * -(-row // a.row_bytes)
            elif op == "vec":
                rows, cols = vcfg[ins.queue]
                durations[i] = self.asic(vector_cycles(rows * cols, lanes, lat[ins["func"]]))
                events["asic_ops"][i] = rows * cols
            elif op == "red":
                rows, cols = vcfg[ins.queue]
                durations[i] = self.asic(reduce_cycles(rows, cols, lanes, lat[ins["func"]]))
                events["asic_ops"][i] = rows * cols
            else:
                raise isa.IsaError(f"instruction {i} ({ins.queue} {op}): not executable on a "
                                   "PIM machine")
        durations[pim_index] = -1
        self._fill_plan_events(events, pim_index, plan_of, plans)
        self._events = events
        self._pim_index = np.array(pim_index, np.int64)
        self._plan_of, self._plans = plan_of, plans
        self._queue_of = [ins.queue.index for ins in map(instrs.__getitem__, pim_index)]
        channels = self.channels

        def run(i: int, t: int) -> int:
            """One pim instruction (a `signal` waits for its channel's reads) at cycle t."""
            channel, plan = channels[instrs[i].queue.index], plan_at[i]
            return channel.wait_reads(t) if plan is None else channel.run((i,), (plan,), t)[0]

        def run_many(indices: list[int], t: int) -> list[int]:
            """Consecutive instructions of one pim queue, back to back from cycle t."""
            return channels[instrs[indices[0]].queue.index].run(
                indices, list(map(plan_at.__getitem__, indices)), t)
        return Costs(durations, resources, events, timed=run, delays=delays, timed_run=run_many)

    def _plan_pim(self, instrs) -> tuple[list[int], list[int], list]:
        """The pim queues' instructions but wait and halt (timed at issue), each one's plan
        (an index into the plans, in the same order) and the distinct plans. Each instruction
        object is decoded once, in program order (a bad one is named by its first index);
        instructions with equal timing operands share a plan object, numbered once.
        Whole-list passes where they can be: this runs over ~10^6 instructions."""
        queues = list(map(attrgetter("queue"), instrs))
        queue_ids = list(map(id, queues))
        on_pim = {key for key, q in dict(zip(queue_ids, queues)).items() if q.unit.name == "pim"}
        pim_index = [i for i, (key, op) in enumerate(zip(queue_ids, map(attrgetter("opcode"), instrs)))
                     if key in on_pim and op != "wait" and op != "halt"]
        pim_instrs = list(map(instrs.__getitem__, pim_index))
        first = isa.first_uses(pim_instrs)
        decode = self.channels[0].plan             # plans depend on the arch, not the channel
        plans: list = []
        number: dict[int, int] = {}                # id(plan) -> its index in plans
        plan_of_object: dict[int, int] = {}        # id(instruction) -> its plan's index
        for k in first:
            plan = decode(pim_index[k], pim_instrs[k])
            p = number.get(id(plan))
            if p is None:
                p = number[id(plan)] = len(plans)
                plans.append(plan)
            plan_of_object[id(pim_instrs[k])] = p
        return pim_index, [plan_of_object[id(x)] for x in pim_instrs], plans

    def _fill_plan_events(self, events: dict, pim_index: list[int], plan_of: list[int],
                          plans: list) -> None:
        """Each pim instruction's energy events, from its plan's (computed once per plan)."""
        per_plan = {name: np.zeros(len(plans)) for name in EVENTS}
        for p, plan in enumerate(plans):
            for name, value in self._plan_events(plan):
                per_plan[name][p] = value
        which = np.array(plan_of, np.int64)
        for name, values in per_plan.items():
            if values.any():
                events[name][pim_index] = values[which]

    def _plan_events(self, plan: tuple | None) -> tuple[tuple[str, float], ...]:
        """Energy events of one decoded pim instruction (cached per command kinds and counts)."""
        shape = (((plan[0][0].kind, plan[0][1]),) if plan and len(plan) == 1
                 else tuple((cmd.kind, n) for cmd, n, _ in plan or ()))
        found = self._events_of.get(shape)
        if found is not None:
            return found
        a, out = self.arch, {}
        def add(name, value):
            out[name] = out.get(name, 0) + value
        for cmd, n, _ in plan or ():
            k = cmd.kind
            if k in ("ACT", "ACT_ALL"):
                add("act_banks", a.banks if k == "ACT_ALL" else 1)
            elif k in ("MAC", "MAC_ALL"):
                add("mac_all_cmds" if k == "MAC_ALL" else "mac_cmds", n)
                add("macs", n * a.macs_per_bank_per_access * (a.banks if k == "MAC_ALL" else 1))
            elif k == "WRGB":
                add("io_bytes", n * a.burst_bytes)
            elif k in ("RDMAC", "RDMAC_ALL"):
                banks = a.banks if k == "RDMAC_ALL" else 1
                add("acc_reads", banks)
                add("io_bytes", 4 * banks)
            elif k in ("RD", "WR"):
                add("rd_bursts" if k == "RD" else "wr_bursts", n)
                add("io_bytes", n * a.burst_bytes)
        found = self._events_of[shape] = tuple(out.items())
        return found

    def memory_bytes(self, program: isa.Program, sizes: Mapping[str, int]) -> dict[str, int]:
        """The DRAM only up to the program's last symbol (nothing is addressed beyond it);
        the global buffers and the ASIC buffer whole (they hold no symbols)."""
        end = max((s.addr + s.size_bytes for s in program.symbols if s.space == "dram"), default=0)
        return {**sizes, "dram": min(sizes["dram"], max(end, 64))}

    def functional_models(self, memory) -> dict:
        return PimNumerics(self.arch, memory).models()

    def dram_stats(self):
        return [c.stats for c in self.channels]

    def run_totals(self) -> dict[str, float]:
        """What only the controller issued: refreshes and the row reopens after them."""
        stats = self.dram_stats()
        acts = sum(s.counts.get("ACT", 0) + self.arch.banks * s.counts.get("ACT_ALL", 0)
                   for s in stats)
        own = float(self._events["act_banks"][self._pim_index].sum())   # pim.act* opened
        return {"act_banks": acts - own,
                "refreshes": float(sum(s.counts.get("REF", 0) for s in stats))}

    def _mac_cycles(self, timeline) -> tuple[np.ndarray, np.ndarray]:
        """MAC column-slot cycles of each channel's issued pim instructions, and per bank
        (the all-bank ones plus the bank's own single-bank ones)."""
        a = self.arch
        issued = timeline.start[self._pim_index] >= 0
        every, bank, own = (np.array(v, np.int64) for v in zip(
            *(self.channels[0].mac_cycles(p) for p in self._plans))) if self._plans else \
            (np.zeros(0, np.int64),) * 3
        which = np.array(self._plan_of, np.int64)[issued]
        channel = np.array(self._queue_of, np.int64)[issued]
        all_bank = np.bincount(channel, every[which], minlength=a.channels)
        single = np.zeros((a.channels, a.banks))
        mine = bank[which] >= 0
        np.add.at(single, (channel[mine], bank[which][mine]), own[which][mine])
        return all_bank + single.sum(axis=1), all_bank[:, None] + single

    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        a, e = self.arch, self.arch.energy
        return {
            "act_pre": (totals["act_banks"] + totals.get("refreshes", 0) * a.banks) * a.e_act_pj,
            "mac": (totals["mac_all_cmds"] + totals["mac_cmds"] / a.banks) * a.e_mac_all_pj,
            "reads": (totals["rd_bursts"] + totals["acc_reads"] / a.banks) * a.e_rd_pj
                     + totals["wr_bursts"] * a.e_wr_pj,
            "io": totals["io_bytes"] * 8 * e.io_pj_per_bit,
            "asic": totals["asic_ops"] * e.asic_op_pj,
        }

    def report(self, timeline, cycles: int) -> dict:
        """Row-buffer hits, MAC utilisation per channel and bank, commands by kind, the
        non-VMM share of the time and the time in each clock domain."""
        a, stats = self.arch, self.dram_stats()
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
        return {
            "row_hit_rate": hits / accesses if accesses else 0.0,
            "dram_commands": commands,
            "mac_utilization_per_channel": per_channel,
            "mac_utilization_per_bank": per_bank,
            "non_vmm_share": _idle_share(timeline, "pim", cycles),
            "time_ns": time_ns,
            "clock_domains": {
                "dram": {"clock_mhz": self.clock_hz / 1e6, "cycles": cycles},
                "asic": {"clock_mhz": a.asic.clock_mhz,
                         "cycles": math.ceil(time_ns * a.asic.clock_mhz * 1e-3 - 1e-9)}},
        }


def _idle_share(timeline, unit: str, cycles: int) -> float:
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
