"""One program on the dataflow machine: its section calls' timing and the report figures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import isa
from isa.loops import Structure
from sim.engine import Timeline
from sim.loop_layout import executed_instances
from sim.machines.base import MachineRun
from sim.machines.dataflow.report import CallTiming, DataflowReport

__all__ = ["DataflowRun", "OFF_CHIP", "ASSUMPTIONS"]

OFF_CHIP = ("hbm", "ddr")
ASSUMPTIONS = ("section values stay in PMUs; only section inputs, outputs and weights cross HBM/DDR",
               "a section's time is its df.run pipeline (launch + fill + tiles x steady + drain); "
               "body instructions take none of their own",
               "PCUs are shared among a section's stages in proportion to their work")


@dataclass(eq=False)
class DataflowRun(MachineRun):
    calls: tuple[CallTiming, ...] = ()
    call_at: tuple[int, ...] = ()        # each call's df.run: its index in `program`

    def functional_models(self, memory) -> dict[str, Callable[[isa.Instr], None]]:
        """Numerics of the dataflow opcodes: configuration and launch move no data; a stream
        or a tier transfer copies bytes."""
        def copy(dst: isa.Addr, src: isa.Addr, nbytes: int) -> None:
            memory.write_bytes(dst, memory.read_bytes(src, nbytes))

        return {"df.section": lambda ins: None, "df.run": lambda ins: None,
                "df.stream": lambda ins: copy(ins["dst"], ins["src"], ins["tiles"] * ins["tile_bytes"]),
                "df.xfer": lambda ins: copy(ins["dst"], ins["src"], ins["kib"] * 1024)}

    def report(self, timeline: Timeline, cycles: int) -> DataflowReport:
        """Figures beyond the common ones: tiers, PCU/PMU utilisation, sections, switch time."""
        runs = sum(ins.opcode == "df.run" for ins in self.program.instructions)
        return self._report(self.program, runs, self.costs.events.totals(), self.calls, cycles)

    def pattern_report(self, compact: isa.Program, structure: Structure, count: np.ndarray,
                       cut_order: np.ndarray, totals: dict[str, float],
                       cycles: int) -> DataflowReport:
        """`report` of the unrolled equivalent of `compact`, this run being of its cut program
        (cut_order[i]: the compact instruction of instruction i): every iteration's call is
        the cut program's first call of the same df.run, in executed order."""
        timing_of: dict[int, CallTiming] = {}
        for at, call in zip(self.call_at, self.calls):
            timing_of.setdefault(int(cut_order[at]), call)
        executed = executed_instances(structure, np.array(sorted(timing_of), np.int64))
        runs = int(sum(count[c] for c, ins in enumerate(compact.instructions) if ins.opcode == "df.run"))
        return self._report(compact, runs, totals, [timing_of[c] for c in executed], cycles)

    def _report(self, program: isa.Program, runs: int, totals: dict[str, float],
                calls, cycles: int) -> DataflowReport:
        arch = self.machine.arch
        held = {space: sum(s.size_bytes for s in program.symbols if s.space == space) for space in OFF_CHIP}
        configs = {ins["id"] for ins in program.instructions if ins.opcode == "df.run"}
        pmus_peak = max((ins["pmus"] for ins in program.instructions if ins.opcode == "df.section"),
                        default=0)
        return DataflowReport(
            granularity=arch.kernel_granularity,
            calls=runs, sections=int(totals["sections"]), configurations=len(configs),
            tier_bytes={"sram": int(totals["sram_bytes"]),
                        "hbm": int(totals["hbm_read_bytes"] + totals["hbm_write_bytes"]),
                        "ddr": int(totals["ddr_read_bytes"] + totals["ddr_write_bytes"])},
            tier_occupancy={"sram": pmus_peak / arch.pmus, "hbm": held["hbm"] / arch.hbm_bytes,
                            "ddr": held["ddr"] / arch.ddr_bytes},
            tier_held_bytes={"sram": pmus_peak * arch.pmu_bytes, **held},
            pcu_utilization=totals["pcu_work_cycles"] / (arch.pcus * cycles) if cycles else 0.0,
            pmu_utilization=totals["pmu_cycles"] / (arch.pmus * cycles) if cycles else 0.0,
            switch_s=totals["switch_cycles"] / arch.clock_hz,
            calls_timing=tuple(sorted(calls, key=lambda c: -c.timing.cycles)),
            assumptions=ASSUMPTIONS)
