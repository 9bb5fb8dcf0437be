"""One program on the dataflow machine: its section calls' timing and the report figures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import isa
from sim.engine import Timeline
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
        program, arch = self.program, self.machine.arch
        totals = self.costs.events.totals()
        held = {space: sum(s.size_bytes for s in program.symbols if s.space == space) for space in OFF_CHIP}
        runs = [i for i, ins in enumerate(program.instructions) if ins.opcode == "df.run"]
        configs = {program.instructions[i]["id"] for i in runs}
        pmus_peak = max((program.instructions[i]["pmus"] for i, ins in enumerate(program.instructions)
                         if ins.opcode == "df.section"), default=0)
        return DataflowReport(
            granularity=arch.kernel_granularity,
            calls=len(runs), sections=int(totals["sections"]), configurations=len(configs),
            tier_bytes={"sram": int(totals["sram_bytes"]),
                        "hbm": int(totals["hbm_read_bytes"] + totals["hbm_write_bytes"]),
                        "ddr": int(totals["ddr_read_bytes"] + totals["ddr_write_bytes"])},
            tier_occupancy={"sram": pmus_peak / arch.pmus, "hbm": held["hbm"] / arch.hbm_bytes,
                            "ddr": held["ddr"] / arch.ddr_bytes},
            tier_held_bytes={"sram": pmus_peak * arch.pmu_bytes, **held},
            pcu_utilization=totals["pcu_work_cycles"] / (arch.pcus * cycles) if cycles else 0.0,
            pmu_utilization=totals["pmu_cycles"] / (arch.pmus * cycles) if cycles else 0.0,
            switch_s=totals["switch_cycles"] / arch.clock_hz,
            calls_timing=tuple(sorted(self.calls, key=lambda c: -c.timing.cycles)),
            assumptions=ASSUMPTIONS)
