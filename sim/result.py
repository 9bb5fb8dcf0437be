"""SimResult: everything one simulation measured, as a typed object that serialises to JSON."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SimResult", "OpStats"]


@dataclass(frozen=True, slots=True)
class OpStats:
    """One graph op's share: the span from its first start to its last end, busy cycles per
    unit, dynamic energy and useful MACs."""

    name: str
    cycles: int
    busy_cycles: dict[str, int]
    energy_j: float
    macs: int


@dataclass(frozen=True)
class SimResult:
    target: str
    arch_name: str
    cycles: int
    clock_hz: float
    instructions: int
    energy_breakdown_j: dict[str, float]     # compute, sram, dram, vector, static (per target)
    unit_busy_cycles: dict[str, int]         # per unit kind (dma, mxu, vpu, ...)
    utilization: dict[str, float]            # busy / (cycles x queues of that unit)
    mac_utilization: float                   # useful MACs / (MAC units x cycles)
    macs: int
    bytes: dict[str, int]                    # traffic per memory tier
    ops: tuple[OpStats, ...]                 # sorted by cycles, largest first
    arch: dict[str, Any]                     # the architecture, as simulated
    assumptions: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)   # target-specific figures

    @property
    def time_s(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def energy_j(self) -> float:
        return sum(self.energy_breakdown_j.values())

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d["ops"] = [dataclasses.asdict(op) for op in self.ops]
        d["assumptions"] = list(self.assumptions)
        d.update(time_s=self.time_s, energy_j=self.energy_j, **self.extra)
        return json.loads(json.dumps(d, default=str))
