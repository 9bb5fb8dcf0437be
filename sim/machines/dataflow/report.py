"""What a dataflow run reports beyond the common figures: tier traffic and occupancy, PCU and
PMU utilisation, sections, model-switch time and each call's pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.machines.dataflow.pipeline import PipelineTiming

__all__ = ["DataflowReport", "CallTiming"]


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One `df.run` call's pipeline, as the report lists it."""

    first_op: str                # the op its body starts with
    loops: int
    tiles: int
    stages: int
    timing: PipelineTiming

    def to_json(self) -> dict[str, Any]:
        t = self.timing
        return {"loops": self.loops, "tiles": self.tiles, "stages": self.stages, "cycles": t.cycles,
                "launch": t.launch_cycles, "fill": t.fill_cycles, "steady": t.steady_cycles,
                "drain": t.drain_cycles, "bound": t.bound, "first_op": self.first_op}


@dataclass(frozen=True, slots=True)
class DataflowReport:
    granularity: str                     # kernel granularity: operator, layer or model
    calls: int                           # df.run calls
    sections: int                        # section runs (calls x loops)
    configurations: int                  # distinct section configurations
    tier_bytes: dict[str, int]           # traffic per tier (sram, hbm, ddr)
    tier_occupancy: dict[str, float]     # share of each tier held
    tier_held_bytes: dict[str, int]
    pcu_utilization: float               # busy PCU-cycles / (PCUs x cycles)
    pmu_utilization: float               # PMUs held by the running section, time-weighted
    switch_s: float                      # model switches (df.xfer DDR -> HBM)
    calls_timing: tuple[CallTiming, ...]  # longest first
    assumptions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Its figures under one `dataflow` key of the result's JSON."""
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["calls_timing"] = [c.to_json() for c in self.calls_timing]
        return {"dataflow": d}
