"""The dataflow machine (SN40L style): sections timed as pipelines, tier-to-tier transfers.

Durations: `df.section` costs the reconfiguration time when it loads a configuration other
than the one in place; `df.run` costs the closed-form pipeline of its section call
(sim/pipeline.py) from the work of the body that follows it (every instruction up to the
next `df.section`): GEMM tiles in PCU systolic mode, vec/red in SIMD mode, one stage per
source op (op marks, taken modulo the section's stage count under kernel looping), and the
body's HBM and DDR bytes. Body instructions carry the numerics and take no time of their
own: their time is the section's. `df.xfer` moves bytes between tiers at the slower tier's
bandwidth plus its latency. docs/dataflow.md.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Mapping

import numpy as np

import isa
from arch.dataflow import DataflowArch
from sim.machines.base import Costs, Machine, register_machine
from sim.pipeline import section_timing
from sim.timing import gemm_cycles, reduce_cycles, vector_cycles

__all__ = ["DataflowMachine", "EVENTS"]

EVENTS = ("macs", "vector_ops", "sram_bytes", "hbm_read_bytes", "hbm_write_bytes", "ddr_read_bytes",
          "ddr_write_bytes", "pcu_work_cycles", "pmu_cycles", "sections", "switch_cycles")
_OFF_CHIP = ("hbm", "ddr")
ASSUMPTIONS = ("section values stay in PMUs; only section inputs, outputs and weights cross HBM/DDR",
               "a section's time is its df.run pipeline (launch + fill + tiles x steady + drain); "
               "body instructions take none of their own",
               "PCUs are shared among a section's stages in proportion to their work")


@register_machine("dataflow")
class DataflowMachine(Machine):
    units = ("ctl", "agcu")

    def __init__(self, arch: DataflowArch) -> None:
        self.arch = arch
        self.clock_hz = arch.clock_hz
        self._bpc = {"hbm": arch.hbm_bw_gbps * 1e9 / arch.clock_hz, "ddr": arch.ddr_bw_gbps * 1e9 / arch.clock_hz}
        self._latency = {"hbm": arch.cycles(arch.hbm_latency_ns * 1e-9), "ddr": arch.cycles(arch.ddr_latency_ns * 1e-9)}
        self._last: tuple = (None, {})
        self._calls: list[dict] = []

    def mac_units(self) -> int:
        return self.arch.pcus * self.arch.macs_per_pcu

    def static_w(self) -> float:
        return self.arch.energy.static_w

    def costs(self, program: isa.Program) -> Costs:
        n = len(program.instructions)
        durations = np.zeros(n, dtype=np.int64)
        events = {name: np.zeros(n) for name in EVENTS}
        marks = np.array([i for i, _ in program.ops] or [0], dtype=np.int64)
        arch, lanes = self.arch, self.arch.pcu_cols
        mcfg: dict = {}
        vcfg: dict = {}
        pitch: dict = {}
        loaded, stages, pmus = None, 1, 0
        self._calls: list[dict] = []
        run: dict | None = None
        for i, ins in enumerate(program.instructions):
            op = ins.opcode
            if op == "df.section":
                self._finish(run, durations, events)
                run = None
                if ins["id"] != loaded:
                    durations[i] = arch.cycles(arch.reconfig_us * 1e-6)
                    loaded = ins["id"]
                stages, pmus = ins["stages"], ins["pmus"]
            elif op == "df.run":
                self._finish(run, durations, events)
                run = {"at": i, "tiles": ins["tiles"], "loops": ins["loops"], "stages": stages,
                       "pmus": pmus, "work": {}, "hbm": 0.0, "ddr": 0.0}
            elif op == "mcfg":
                mcfg[ins.queue] = (ins["m"], ins["n"], ins["k"], ins["dtype"].itemsize, ins["acc"].itemsize)
            elif op == "vcfg":
                vcfg[ins.queue] = (ins["rows"], ins["cols"], ins["dtype"].itemsize, ins["out"].itemsize)
            elif op == "dmacfg":
                pitch[ins.queue] = ins["src_stride"]
            elif op in ("load", "store", "gather"):
                far = ins["src"] if op == "load" else ins["table"] if op == "gather" else ins["dst"]
                nbytes = ins["n"] * pitch[ins.queue] if op == "gather" else ins["rows"] * ins["row_bytes"]
                tier_event = f"{far.space}_{'write' if op == 'store' else 'read'}_bytes"
                events[tier_event][i] = nbytes
                events["sram_bytes"][i] = nbytes
                if run is not None:
                    run[far.space] += nbytes
            elif op == "df.stream":
                events["sram_bytes"][i] = 2 * ins["tiles"] * ins["tile_bytes"]
            elif op == "df.xfer":
                nbytes = ins["kib"] * 1024
                src, dst = ins["src"].space, ins["dst"].space
                slow = min((s for s in (src, dst) if s in self._bpc), key=self._bpc.get)
                durations[i] = self._latency[slow] + int(np.ceil(nbytes / self._bpc[slow]))
                events[f"{src}_read_bytes"][i] = nbytes
                events[f"{dst}_write_bytes"][i] = nbytes
                events["switch_cycles"][i] = durations[i]
            elif op in ("gemm", "vec", "red"):
                if op == "gemm":
                    m, nn, k, isz, asz = mcfg[ins.queue]
                    work = gemm_cycles(m, nn, k, arch.pcu_rows, arch.pcu_cols, "ws", True)
                    events["macs"][i] = m * nn * k
                    events["sram_bytes"][i] = (m * k + k * nn) * isz + m * nn * asz
                else:
                    rows, cols, isz, osz = vcfg[ins.queue]
                    work = (vector_cycles(rows * cols, lanes, 0) if op == "vec"
                            else reduce_cycles(rows, cols, lanes, 0))
                    events["vector_ops"][i] = rows * cols
                    events["sram_bytes"][i] = rows * cols * (isz + osz)
                events["pcu_work_cycles"][i] = work
                if run is not None:
                    mark = int(np.searchsorted(marks, i, side="right")) - 1
                    run["work"][mark] = run["work"].get(mark, 0) + work
            elif op not in ("halt", "signal", "wait"):
                raise isa.IsaError(f"instruction {i} ({ins.queue} {op}): not executable on a dataflow machine")
        self._finish(run, durations, events)
        self._last = (program, events)       # for report(), which sim.simulate calls after the run
        first_op = [name for _, name in program.ops]
        for call in self._calls:
            mark = int(np.searchsorted(marks, call["at"], side="right"))
            call["first_op"] = first_op[mark] if mark < len(first_op) else ""
            del call["at"]
        return Costs(durations, np.full(n, -1, dtype=np.int64), events)

    def _finish(self, run: dict | None, durations: np.ndarray, events: dict) -> None:
        """Time a finished call: stage work by op mark, folded onto the section's stages."""
        if run is None:
            return
        arch, s = self.arch, max(1, run["stages"])
        stage_work = [0.0] * min(s, max(1, len(run["work"])))
        for k, (_, work) in enumerate(sorted(run["work"].items())):
            stage_work[k % len(stage_work)] += work
        latency = (self._latency["ddr"] if run["ddr"] else self._latency["hbm"]) + s * arch.stage_latency_cycles
        timing = section_timing(stage_work, arch.pcus, run["tiles"], run["loops"], run["hbm"], run["ddr"],
                                self._bpc["hbm"], self._bpc["ddr"], latency, arch.cycles(arch.launch_us * 1e-6))
        at = run["at"]
        durations[at] = timing.cycles
        self._calls.append({"at": at, "loops": run["loops"], "tiles": run["tiles"], "stages": s,
                            "cycles": timing.cycles, "launch": timing.launch_cycles,
                            "fill": timing.fill_cycles, "steady": timing.steady_cycles,
                            "drain": timing.drain_cycles, "bound": timing.bound})
        events["pmu_cycles"][at] = run["pmus"] * timing.cycles
        events["sections"][at] = run["loops"]

    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        e = self.arch.energy
        return {
            "compute": totals["macs"] * e.mac_pj,
            "sram": totals["sram_bytes"] * e.sram_pj_per_byte,
            "hbm": (totals["hbm_read_bytes"] + totals["hbm_write_bytes"]) * e.hbm_pj_per_byte,
            "ddr": (totals["ddr_read_bytes"] + totals["ddr_write_bytes"]) * e.ddr_pj_per_byte,
            "vector": totals["vector_ops"] * e.vector_op_pj,
        }

    # -- hooks used by sim.simulate ------------------------------------------------------
    def memory_bytes(self, program: isa.Program, sizes: Mapping[str, int]) -> dict[str, int]:
        """Numeric runs hold the off-chip tiers only up to the program's last symbol (a
        1.5 TB DDR is not allocated); the program touches nothing beyond its symbols there."""
        ends = {name: 0 for name in sizes}
        for s in program.symbols:
            ends[s.space] = max(ends[s.space], s.addr + s.size_bytes)
        return {name: size if name not in _OFF_CHIP else min(size, max(ends[name], 64))
                for name, size in sizes.items()}

    def functional_models(self, memory) -> dict[str, Callable[[isa.Instr], None]]:
        """Numerics of the dataflow opcodes: configuration and launch move no data; a stream
        or a tier transfer copies bytes."""
        def copy(dst: isa.Addr, src: isa.Addr, nbytes: int) -> None:
            memory.write_bytes(dst, memory.read_bytes(src, nbytes))

        return {"df.section": lambda ins: None, "df.run": lambda ins: None,
                "df.stream": lambda ins: copy(ins["dst"], ins["src"], ins["tiles"] * ins["tile_bytes"]),
                "df.xfer": lambda ins: copy(ins["dst"], ins["src"], ins["kib"] * 1024)}

    def report(self, timeline, cycles: int) -> dict:
        """Figures beyond the common ones: tiers, PCU/PMU utilisation, sections, switch time."""
        program, events = self._last
        arch, totals = self.arch, {k: float(v.sum()) for k, v in events.items()}
        held = {space: sum(s.size_bytes for s in program.symbols if s.space == space) for space in _OFF_CHIP}
        runs = [i for i, ins in enumerate(program.instructions) if ins.opcode == "df.run"]
        configs = {program.instructions[i]["id"] for i in runs}
        pmus_peak = max((program.instructions[i]["pmus"] for i, ins in enumerate(program.instructions)
                         if ins.opcode == "df.section"), default=0)
        return {"dataflow": {
            "granularity": arch.kernel_granularity,
            "calls": len(runs), "sections": int(totals["sections"]), "configurations": len(configs),
            "tier_bytes": {"sram": int(totals["sram_bytes"]),
                           "hbm": int(totals["hbm_read_bytes"] + totals["hbm_write_bytes"]),
                           "ddr": int(totals["ddr_read_bytes"] + totals["ddr_write_bytes"])},
            "tier_occupancy": {"sram": pmus_peak / arch.pmus, "hbm": held["hbm"] / arch.hbm_bytes,
                               "ddr": held["ddr"] / arch.ddr_bytes},
            "tier_held_bytes": {"sram": pmus_peak * arch.pmu_bytes, **held},
            "pcu_utilization": totals["pcu_work_cycles"] / (arch.pcus * cycles) if cycles else 0.0,
            "pmu_utilization": totals["pmu_cycles"] / (arch.pmus * cycles) if cycles else 0.0,
            "switch_s": totals["switch_cycles"] / arch.clock_hz,
            "calls_timing": sorted(self._calls, key=lambda c: -c["cycles"]),
            "assumptions": ASSUMPTIONS,
        }}
