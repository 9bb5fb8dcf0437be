"""The dataflow machine (SN40L style): sections timed as pipelines, tier-to-tier transfers.

Durations: `df.section` costs the reconfiguration time when it loads a configuration other
than the one in place; `df.run` costs the closed-form pipeline of its section call
(sim/machines/dataflow/pipeline.py) from the work of the body that follows it (every
instruction up to the next `df.section`): GEMM tiles in PCU systolic mode, vec/red/vquant in
SIMD mode (a vquant: two passes), one stage per source op (op marks, taken modulo the section's
stage count under kernel looping), and the body's HBM and DDR bytes. Body instructions carry
the numerics and take no time of their own: their time is the section's. `df.xfer` moves bytes
between tiers at the slower tier's bandwidth plus its latency. docs/dataflow.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

import isa
from isa.footprint import (loadp_rows, loadq_row_bytes, scale_bytes, scale_rows,
                           storeq_scale_bytes)
from arch.dataflow import DataflowArch
from sim.machines.base import Costs, Machine
from sim.machines.dataflow.pipeline import PipelineTiming, section_timing
from sim.machines.dataflow.report import CallTiming
from sim.machines.dataflow.run import OFF_CHIP, DataflowRun
from sim.machines.decode import CostSheet, CostTable, decode
from sim.machines.macs import MAC_EVENTS, gemm_pack, mac_energy_pj, program_peak
from sim.timing import gemm_cycles, quantise_cycles, reduce_cycles, vector_cycles

__all__ = ["DataflowMachine", "EVENTS"]

_NO_DEPTH = {"max": 0, "mul": 0}     # PCU SIMD passes: the stage latency is the pipeline's
_READ_EVENT = {"hbm": "hbm_read_bytes", "ddr": "ddr_read_bytes"}   # a loadq's source tier
EVENTS = ("macs", "vector_ops", "dequant_ops", "sram_bytes", "hbm_read_bytes", "hbm_write_bytes", "ddr_read_bytes",
          "ddr_write_bytes", "pcu_work_cycles", "pmu_cycles", "sections", "switch_cycles", *MAC_EVENTS)


@dataclass(eq=False, slots=True)
class _Call:
    """A `df.run` whose body is being walked: what its pipeline is timed from."""

    at: int                                  # the df.run's index
    tiles: int
    loops: int
    stages: int                              # the section's, at least 1
    pmus: int
    work: dict[int, float] = field(default_factory=dict)    # op mark -> PCU work cycles
    tier_bytes: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OFF_CHIP, 0.0))
    timing: PipelineTiming | None = None     # once the body is walked


@dataclass(eq=False, slots=True)
class _SectionSheet(CostSheet):
    """Costs plus the walk's position: the loaded section and the call being walked."""

    marks: np.ndarray | None = None          # first instruction of every op mark (start sets it)
    loaded: int | None = None                # id of the configuration in place
    stages: int = 1
    pmus: int = 0
    call: _Call | None = None
    calls: list[_Call] = field(default_factory=list)       # the timed ones
    repeats: np.ndarray | None = None        # Machine.start's: instances each instruction stands for

    def weight(self, i: int) -> float:
        """How many of instruction i's instances one execution of the current call holds."""
        if self.repeats is None:
            return 1
        return float(self.repeats[i]) / float(self.repeats[self.call.at])


class DataflowMachine(Machine[DataflowArch]):
    units = ("ctl", "agcu")
    mark_fold_boundaries = frozenset({"df.section", "df.run"})   # `_finish` folds a call's marks

    def __init__(self, arch: DataflowArch) -> None:
        self.arch = arch
        self.clock_hz = arch.clock_hz
        self._bpc = {"hbm": arch.hbm_bw_gbps * 1e9 / arch.clock_hz, "ddr": arch.ddr_bw_gbps * 1e9 / arch.clock_hz}
        self._latency = {"hbm": arch.cycles(arch.hbm_latency_ns * 1e-9), "ddr": arch.cycles(arch.ddr_latency_ns * 1e-9)}
        self._peak = 1                      # products a PE a cycle in the program's formats
        transfer = self._transfer
        self._table = CostTable("a dataflow machine", {
            "halt": None, "signal": None, "wait": None, "mcfg": None, "vcfg": None, "dmacfg": None,
            "mfmt": None,
            "df.section": self._section, "df.run": self._run, "df.stream": self._stream,
            "df.xfer": self._xfer, "load": transfer, "store": transfer, "gather": transfer, "gatherw": transfer,
            "qcfg": None, "loadq": self._loadq, "loadp": self._loadp, "storeq": self._storeq,
            "gemm": self._gemm, "vec": self._vector, "red": self._vector,
            "vquant": self._quantise})

    def mac_units(self) -> int:
        """Peak MACs a cycle: every PCU's PEs times the most products a PE makes in the formats
        the program's mfmt set (one, at the operand type, for a program that sets none)."""
        return self.arch.pcus * self.arch.macs_per_pcu * self._peak

    def static_w(self) -> float:
        return self.arch.energy.static_w

    def start(self, program: isa.Program, repeats: np.ndarray | None = None) -> DataflowRun:
        """Costs of every instruction; a call's from the work of its body, each body
        instruction weighed by repeats[i] / repeats[the call's df.run] (Machine.start)."""
        n = len(program.instructions)
        sheet = CostSheet.empty(n, EVENTS)
        sheet = _SectionSheet(sheet.durations, sheet.resources, sheet.delays, sheet.events,
                              marks=np.array([i for i, _ in program.ops] or [0], dtype=np.int64),
                              repeats=repeats)
        decode(self._table, sheet, program.instructions)
        self._peak = program_peak(program, self.arch.mac_formats)
        self._finish(sheet)
        first_op = [name for _, name in program.ops]
        calls = []
        for call in sheet.calls:
            mark = int(np.searchsorted(sheet.marks, call.at, side="right"))
            calls.append(CallTiming(first_op[mark] if mark < len(first_op) else "", call.loops,
                                    call.tiles, call.stages, call.timing))
        costs = Costs(sheet.durations, sheet.resources, sheet.events.freeze())
        return DataflowRun(self, program, costs, calls=tuple(calls), call_at=tuple(c.at for c in sheet.calls))

    # -- cost functions: fn(sheet, index, instruction, its queue's configuration) ----------
    def _section(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        self._finish(s)
        if ins["id"] != s.loaded:
            s.durations[i] = self.arch.cycles(self.arch.reconfig_us * 1e-6)
            s.loaded = ins["id"]
        s.stages, s.pmus = ins["stages"], ins["pmus"]

    def _run(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        self._finish(s)
        s.call = _Call(i, ins["tiles"], ins["loops"], max(1, s.stages), s.pmus)

    def _transfer(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        op = ins.opcode
        far = ins["src"] if op == "load" else ins["table"] if op.startswith("gather") else ins["dst"]
        nbytes = ins["n"] * isa.gather_row_bytes(cfg) if op.startswith("gather") else ins["rows"] * ins["row_bytes"]
        s.events.set(i, **{f"{far.space}_{'write' if op == 'store' else 'read'}_bytes": nbytes},
                     sram_bytes=nbytes)
        if s.call is not None:
            s.call.tier_bytes[far.space] += nbytes * s.weight(i)

    def _loadq(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """A quantised load: its packed codes and its scale rows from the tier, the dequantised
        tile into the PMUs; the AGCU dequantises at the tier's rate (one multiply an element,
        `dequant_ops`, priced at the preset's `dequant_pj` in the "vector" energy entry)."""
        packed, written = loadq_row_bytes(ins, cfg)
        self._dequantised(s, i, ins["src"].space, ins["rows"], packed, written, cfg.qcfg)

    def _loadp(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """A bit-nested load: as a loadq whose rows are the code bytes of the planes it reads."""
        found = loadp_rows(ins, cfg)
        self._dequantised(s, i, ins["src"].space, ins["rows"], found.read, found.written, cfg.qcfg)

    @staticmethod
    def _dequantised(s: _SectionSheet, i: int, tier: str, rows: int, code_bytes: int,
                     written: int, qcfg: isa.Instr) -> None:
        """A load that dequantises: `code_bytes` a row and the qcfg's scale rows from `tier`,
        `written` bytes a row into the PMUs, one multiply an element."""
        nbytes = rows * code_bytes + scale_rows(qcfg, rows) * scale_bytes(qcfg)
        s.events.set(i, **{_READ_EVENT[tier]: nbytes}, sram_bytes=rows * written,
                     dequant_ops=rows * qcfg.fields[2][1])
        if s.call is not None:
            s.call.tier_bytes[tier] += nbytes * s.weight(i)

    def _storeq(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """A quantised store: the tile out of the PMUs, its packed codes written to the tier of
        `dst` and its scales to the tier of the qcfg's `scales` (as a store's bytes); the AGCU
        quantises at the tier's rate (one multiply an element, `dequant_ops`, priced as
        loadq's)."""
        packed, read = loadq_row_bytes(ins, cfg)
        (_, dst), _, (_, rows) = ins.fields
        qcfg = cfg.qcfg
        writes = {dst.space: rows * packed}
        tier = qcfg["scales"].space
        writes[tier] = writes.get(tier, 0) + storeq_scale_bytes(qcfg, rows)
        s.events.set(i, **{f"{space}_write_bytes": n for space, n in writes.items()},
                     sram_bytes=rows * read, dequant_ops=rows * qcfg["cols"])
        if s.call is not None:
            for space, n in writes.items():
                s.call.tier_bytes[space] += n * s.weight(i)

    def _stream(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        s.events.set(i, sram_bytes=2 * ins["tiles"] * ins["tile_bytes"])

    def _xfer(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        nbytes = ins["kib"] * 1024
        src, dst = ins["src"].space, ins["dst"].space
        slow = min((t for t in (src, dst) if t in self._bpc), key=self._bpc.get)
        s.durations[i] = self._latency[slow] + int(np.ceil(nbytes / self._bpc[slow]))
        s.events.set(i, **{f"{src}_read_bytes": nbytes}, **{f"{dst}_write_bytes": nbytes},
                     switch_cycles=int(s.durations[i]))

    def _gemm(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        arch, mcfg = self.arch, cfg.mcfg
        m, n, k = mcfg["m"], mcfg["n"], mcfg["k"]
        fmt, pack = gemm_pack(i, ins, cfg, arch.mac_formats, arch.name)
        narrow = {} if fmt == "none" else {f"macs_{fmt}": m * n * k}
        s.events.set(i, macs=m * n * k, **narrow,
                     sram_bytes=(m * k + k * n) * mcfg["dtype"].itemsize + m * n * mcfg["acc"].itemsize)
        self._work(s, i, gemm_cycles(m, n, k, arch.pcu_rows, arch.pcu_cols, "ws", True,
                                     bool(ins["stream"]), bool(ins["preloaded"]), pack))

    def _vector(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        vcfg, lanes = cfg.vcfg, self.arch.pcu_cols
        rows, cols = vcfg["rows"], vcfg["cols"]
        s.events.set(i, vector_ops=rows * cols,
                     sram_bytes=rows * cols * (vcfg["dtype"].itemsize + vcfg["out"].itemsize))
        self._work(s, i, vector_cycles(rows * cols, lanes, 0) if ins.opcode == "vec"
                   else reduce_cycles(rows, cols, lanes, 0))

    def _quantise(self, s: _SectionSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """A vquant: two SIMD passes, the group maxima (a row reduction) then the elements;
        the tile read in each, the result written once."""
        vcfg, lanes = cfg.vcfg, self.arch.pcu_cols
        rows, cols = vcfg["rows"], vcfg["cols"]
        s.events.set(i, vector_ops=2 * rows * cols,
                     sram_bytes=rows * cols * (2 * vcfg["dtype"].itemsize + vcfg["out"].itemsize))
        self._work(s, i, quantise_cycles(rows, cols, lanes, _NO_DEPTH))

    @staticmethod
    def _work(s: _SectionSheet, i: int, work: int) -> None:
        """PCU work of a body instruction, charged to its op mark's stage of the call."""
        s.events.set(i, pcu_work_cycles=work)
        if s.call is not None:
            mark = int(np.searchsorted(s.marks, i, side="right")) - 1
            s.call.work[mark] = s.call.work.get(mark, 0) + work * s.weight(i)

    def _finish(self, s: _SectionSheet) -> None:
        """Time the call being walked: stage work by op mark, folded onto the section's stages."""
        call = s.call
        if call is None:
            return
        s.call = None
        arch, stages = self.arch, call.stages
        stage_work = [0.0] * min(stages, max(1, len(call.work)))
        for k, (_, work) in enumerate(sorted(call.work.items())):
            stage_work[k % len(stage_work)] += work
        hbm, ddr = call.tier_bytes["hbm"], call.tier_bytes["ddr"]
        latency = (self._latency["ddr"] if ddr else self._latency["hbm"]) + stages * arch.stage_latency_cycles
        timing = section_timing(stage_work, arch.pcus, call.tiles, call.loops, hbm, ddr,
                                self._bpc["hbm"], self._bpc["ddr"], latency, arch.cycles(arch.launch_us * 1e-6))
        s.durations[call.at] = timing.cycles
        call.timing = timing
        s.calls.append(call)
        s.events.set(call.at, pmu_cycles=call.pmus * timing.cycles, sections=call.loops)

    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        e = self.arch.energy
        return {
            "compute": mac_energy_pj(totals, e.mac_pj, e.mac_format_pj),
            "sram": totals["sram_bytes"] * e.sram_pj_per_byte,
            "hbm": (totals["hbm_read_bytes"] + totals["hbm_write_bytes"]) * e.hbm_pj_per_byte,
            "ddr": (totals["ddr_read_bytes"] + totals["ddr_write_bytes"]) * e.ddr_pj_per_byte,
            "vector": totals["vector_ops"] * e.vector_op_pj + totals["dequant_ops"] * e.dequant_pj,
        }
