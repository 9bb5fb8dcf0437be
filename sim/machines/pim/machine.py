"""The PIM-DRAM machine (PIM-GPT style): DRAM channels with MAC units, a host ASIC, its DMA.

Time base: DRAM clock cycles (tCK). pim queues are timed command by command by their
channel's DRAM state (sim/machines/pim/channel.py; durations depend on start time, so the engine
asks at issue). ASIC vec/red take `vector_cycles` / `reduce_cycles` ASIC cycles (a vquant
their sum: its group maxima, then its elements), converted to DRAM cycles (rounded up).
dma0/dma1 move activations between the DRAM and the ASIC buffer over the channels' I/O
(shared: one resource, held for bytes at channels x io_bw_gbps); the engine is pipelined, so
the access latency tRCD_RD + tCL is paid by the data, not the port: a `signal` on a DMA queue
delivers its token that much later. Likewise a `signal` on a pim queue delivers once the
channel's reads (RDMAC, RD) have returned.

Energy (pJ, sources in the preset): ACT/PRE = banks activated x P_ACT x tRC (a refresh
counts as every bank activated: substitute, CENT gives no REF figure); MAC = MAC_ALL x 3 x
P_RD x tCCD_L (a single-bank MAC: that / banks); reads = RD and accumulator reads x P_RD x
tCCD_L, WR x P_WR x tCCD_L; I/O = bits over the DQ pins x io_pj_per_bit; ASIC = element
operations x asic_op_pj; background = PRE standby power per GDDR6 device (2 channels, as
GDDR6-AiM) + the ASIC's static power.
"""
from __future__ import annotations

import math
from array import array
from typing import Mapping, Sequence

import numpy as np

import isa
from isa.loops import loop_structure
from arch.pim import PimArch
from sim.machines.base import Costs, Machine
from sim.machines.decode import CostSheet, CostTable, decode
from sim.machines.events import EventRows
from sim.machines.pim.channel import PimChannel, Plan
from sim.machines.pim.run_memo import PlanForms
from sim.machines.pim.planning import mode_widths, plan_pim
from sim.machines.pim.run import PimPlans, PimRun
from sim.machines.pim.shell import shell_run
from sim.timing import dma_cycles, quantise_cycles, reduce_cycles, vector_cycles

__all__ = ["PimMachine", "EVENTS"]

EVENTS = ("macs", "act_banks", "mac_all_cmds", "mac_cmds", "rd_bursts", "wr_bursts",
          "acc_reads", "io_bytes", "asic_ops", "dma_bytes")
IO_PORT = 0
CHANNELS_PER_DEVICE = 2          # GDDR6-AiM: 2 channels per chip (reference/pim.md)


class PimMachine(Machine[PimArch]):
    units = ("pim", "asic", "dma")
    events = EVENTS
    state_timed = True                     # the channels' rows and refresh time each command

    def __init__(self, arch: PimArch, *, exact_dram: bool = False) -> None:
        self.arch = arch
        self.exact_dram = exact_dram       # issue every DRAM command by the rules (ground truth)
        self.clock_hz = arch.dram_clock_hz
        self._asic_ratio = self.clock_hz / (arch.asic.clock_mhz * 1e6)
        t = arch.timing
        self._dma_latency = t.tRCD_RD + t.tCL
        self._io_bytes_per_s = int(round(arch.io_bw_total_gbps * 1e9))
        # the DMA's and the ASIC's opcodes; pim queues' instructions are planned per object
        self._wide = 1                     # the narrowest MAC mode's inputs per BF16 lane (start)
        self.cost_table = CostTable("a PIM machine", {
            "halt": None, "wait": None, "dmacfg": None, "vcfg": None, "pim.qmode": None,
            "signal": self._signal,
            "load": self._transfer, "store": self._transfer, "gather": self._gather, "gatherw": self._gather,
            "vec": self._vec, "red": self._red, "vquant": self._vquant}, pure=True)

    def mac_units(self) -> int:
        """Peak MACs a cycle, at the lanes of the narrowest mode the program set (pim.qmode:
        16 / N times the BF16 lanes for N-bit codes)."""
        a = self.arch
        return a.channels * a.banks * a.macs_per_bank_per_access * self._wide // a.timing.tCCD_L

    def static_w(self) -> float:
        e = self.arch.energy
        return (e.asic_static_w
                + self.arch.channels / CHANNELS_PER_DEVICE * e.p_pre_standby_mw * 1e-3)

    def dma(self, nbytes: int) -> int:
        return dma_cycles(nbytes, self._dma_latency, round(self.clock_hz), self._io_bytes_per_s)

    def asic(self, cycles: int) -> int:
        return math.ceil(cycles * self._asic_ratio - 1e-9)

    def start(self, program: isa.Program, repeats=None) -> PimRun:
        """Fresh channels for the (loop-free) program; the ASIC's and DMA's costs by the cost
        table, the pim queues' from their plans, timed by the channels at issue."""
        channels = self.new_channels()
        return self._run(program, channels, plan_pim(channels[0], program.instructions),
                         mode_widths(program.instructions))

    def start_shell(self, program: isa.Program) -> PimRun:
        """A timing-only run of a program with loops, without unrolling it: its executed
        shell, each burst of a channel's DRAM-timed instructions one entry
        (sim/machines/pim/shell.py), with the unrolled program's figures."""
        structure = loop_structure(program.instructions, ops=program.ops)
        if not structure.loops:
            return self.start(program)
        return shell_run(self, program, structure)

    def new_channels(self) -> tuple[PimChannel, ...]:
        """Fresh DRAM channels for one run."""
        return tuple(PimChannel(self.arch, exact=self.exact_dram) for _ in range(self.arch.channels))

    @staticmethod
    def share_memo(channels: Sequence[PimChannel], plans: Sequence[Plan | None]) -> None:
        """The channels of one run share one memo of lockstep runs timed, and the plans'
        forms it keys them by (ChannelState.run_plans)."""
        runs, forms = {}, PlanForms(plans)
        for channel in channels:
            channel.state.runs, channel.state.forms = runs, forms

    def set_widest(self, wide: int) -> None:
        """The narrowest MAC mode of the program to run: its inputs per BF16 lane (mac_units)."""
        self._wide = wide

    def _run(self, program: isa.Program, channels: tuple[PimChannel, ...], pim: PimPlans,
             wide: np.ndarray | None) -> PimRun:
        """The run of `program` (executed instructions) on `channels`, its pim instructions
        planned by `pim`, their MAC modes' widths `wide` (planning.mode_widths)."""
        n = len(program.instructions)
        instrs = program.instructions
        self.share_memo(channels, pim.plans)
        on_pim = pim.plan_at >= 0
        sheet = decode(self.cost_table, CostSheet.empty(n, EVENTS), instrs,
                       np.flatnonzero(~on_pim).tolist())
        sheet.durations[on_pim] = -1
        self.set_widest(1 if wide is None else int(wide.max()))
        self._fill_plan_events(sheet.events, pim, wide)
        plans, numbers = pim.plans, pim.plan_at
        plan_at = array("i", numbers.tobytes())     # indexed per call: a C array, not numpy

        def run(i: int, t: int) -> int:
            """One pim instruction (a `signal` waits for its channel's reads) at cycle t."""
            channel, plan = channels[instrs[i].queue.index], plans[plan_at[i]]
            return channel.wait_reads(t) if plan is None else int(channel.run((i,), (plan,), t)[0])

        def run_many(indices, t: int):
            """Consecutive instructions of one pim queue (a list or an int array), back to
            back from cycle t: their durations."""
            return channels[instrs[indices[0]].queue.index].run_numbered(
                indices, numbers[indices], plans, t)
        costs = Costs(sheet.durations, sheet.resources, sheet.events.freeze(), timed=run,
                      delays=sheet.delays, timed_run=run_many)
        return PimRun(self, program, costs, channels=channels, pim=pim)

    # -- cost functions of the DMA and ASIC opcodes: fn(sheet, index, instruction, config) --
    def _signal(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        if ins.queue.unit.name == "dma":        # its data lands after the access latency
            s.delays[i] = self._dma_latency

    def _transfer(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        a, load = self.arch, ins.opcode == "load"
        rows, width = ins["rows"], ins["row_bytes"]
        nbytes = rows * width
        step = cfg.src_stride if load else cfg.dst_stride       # the DRAM side's pitch
        if rows > 1 and step not in (0, width):   # rows apart: whole bursts each, a
            bursts = rows * -(-width // a.burst_bytes)    # narrow one masked (GDDR6 WDM)
            acts = rows if step >= a.row_bytes else -(-rows * step // a.row_bytes)
            moved = bursts * a.burst_bytes
        else:
            bursts, acts = -(-nbytes // a.burst_bytes), -(-nbytes // a.row_bytes)
            moved = nbytes
        s.durations[i] = max(0, self.dma(moved) - self._dma_latency)
        s.resources[i] = IO_PORT
        s.events.set(i, dma_bytes=nbytes, io_bytes=moved, act_banks=acts,
                     **{"rd_bursts" if load else "wr_bursts": bursts})

    def _gather(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """One table row per index, each a DRAM access."""
        a, row, n = self.arch, isa.gather_row_bytes(cfg), ins["n"]
        per_row = self.dma(row) - self._dma_latency
        s.durations[i] = self._dma_latency + n * per_row
        s.resources[i] = IO_PORT
        s.events.set(i, dma_bytes=n * row, io_bytes=n * row, rd_bursts=n * -(-row // a.burst_bytes),
                     act_banks=n * -(-row // a.row_bytes))

    def _vec(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        asic, elems = self.arch.asic, cfg.vcfg["rows"] * cfg.vcfg["cols"]
        s.durations[i] = self.asic(vector_cycles(elems, asic.vector_lanes, asic.latency_cycles[ins["func"]]))
        s.events.set(i, asic_ops=elems)

    def _red(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        asic, rows, cols = self.arch.asic, cfg.vcfg["rows"], cfg.vcfg["cols"]
        s.durations[i] = self.asic(reduce_cycles(rows, cols, asic.vector_lanes, asic.latency_cycles[ins["func"]]))
        s.events.set(i, asic_ops=rows * cols)

    def _vquant(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """Two ASIC passes: the group maxima (a row reduction), then the elements."""
        asic, rows, cols = self.arch.asic, cfg.vcfg["rows"], cfg.vcfg["cols"]
        s.durations[i] = self.asic(quantise_cycles(rows, cols, asic.vector_lanes, asic.latency_cycles))
        s.events.set(i, asic_ops=2 * rows * cols)

    def _fill_plan_events(self, events: EventRows, pim: PimPlans, wide: np.ndarray | None) -> None:
        """Each pim instruction's energy events: its plan's (computed once per plan, and once
        per command kinds and counts); a MAC under an N-bit mode (`wide` = 16 / N) makes
        `wide` times the multiply-accumulates of a BF16 column, for the same commands (the
        preset's energy per MAC command is taken for its narrow lanes too: an assumption)."""
        of_shape: dict[tuple, tuple[tuple[str, float], ...]] = {}
        rows = np.zeros(len(pim.plans), np.int32)
        for p, plan in enumerate(pim.plans):
            shape = (((plan[0][0].kind, plan[0][1]),) if plan and len(plan) == 1
                     else tuple((cmd.kind, n) for cmd, n, _ in plan or ()))
            found = of_shape.get(shape)
            if found is None:
                found = of_shape[shape] = self.plan_events(plan)
            rows[p] = events.row(found)
        index = pim.index
        events.rows[index] = rows[pim.plan_at[index]]
        if wide is None:
            return
        narrow = index[wide[index] > 1]
        pairs, which = np.unique(pim.plan_at[narrow].astype(np.int64) * 32 + wide[narrow],
                                 return_inverse=True)        # (plan, width), widths below 32
        rows_of = np.empty(len(pairs), np.int32)
        for u, pair in enumerate(pairs.tolist()):
            p, w = divmod(pair, 32)
            counts = dict(self.plan_events(pim.plans[p]))
            if "macs" in counts:
                counts["macs"] *= w
            rows_of[u] = events.row(tuple(counts.items()))
        events.rows[narrow] = rows_of[which]

    def plan_events(self, plan: Plan | None) -> tuple[tuple[str, float], ...]:
        """Energy events of one decoded pim instruction."""
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
        return tuple(out.items())

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
