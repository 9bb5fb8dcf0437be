"""What a PIM run reports beyond the common figures: DRAM row hits and commands, MAC
utilisation per channel and bank, the non-VMM share, and the time in each clock domain."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PimReport", "ClockDomain"]


@dataclass(frozen=True, slots=True)
class ClockDomain:
    clock_mhz: float
    cycles: int


@dataclass(frozen=True, slots=True)
class PimReport:
    row_hit_rate: float                            # column accesses to an already open row
    dram_commands: dict[str, int]                  # issued, by command kind
    mac_utilization_per_channel: list[float]       # MAC column slots / cycles
    mac_utilization_per_bank: list[list[float]]    # [channel][bank]
    non_vmm_share: float                           # time with no pim queue busy
    time_ns: float
    clock_domains: dict[str, ClockDomain]          # "dram", "asic"

    def to_json(self) -> dict[str, Any]:
        """Its figures as top-level keys of the result's JSON."""
        return dataclasses.asdict(self)
