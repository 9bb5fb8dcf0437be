"""Three-tier dataflow accelerators (SambaNova SN40L style): the architecture dataclass.

A mesh of `pcus` compute units (PCU: a `pcu_rows` x `pcu_cols` systolic array for GEMMs, or
`pcu_cols` SIMD lanes for element-wise ops and reductions) and `pmus` memory units (PMU:
`pmu_bytes` of scratchpad each), with HBM and DDR behind the AGCUs. Facts and figures:
reference/dataflow.md; the target is described in docs/dataflow.md.

Memory spaces seen by programs: `sram` (all PMUs, on-chip), `hbm` and `ddr` (off-chip).
Queues: ctl0 (section configuration and launch), agcu0 (loads, PMU-to-PMU streams, tier
transfers), agcu1 (stores), dma0 (the AGCU's gather engine: the core `gather` runs on dma
queues), pcu0 (stages in systolic mode), pcu1 (stages in SIMD mode).
"""
from __future__ import annotations

from dataclasses import dataclass

import isa
from arch.config import ArchError, check_mac_formats, choice, within
from arch.limits import (ARRAY_SIDE, BANDWIDTH_GBPS, CLOCK_MHZ, ENERGY_PJ, HOST_TIME_US, LATENCY_NS,
                         MACS_PER_PE, OFF_CHIP_BYTES, ON_CHIP_BYTES, PIPELINE_CYCLES, POWER_W, UNITS)

__all__ = ["DataflowArch", "DataflowEnergy", "GRANULARITIES", "QUEUES"]

GRANULARITIES = ("operator", "layer", "model")
QUEUES = ("ctl0", "dma0", "agcu0", "agcu1", "pcu0", "pcu1")


@dataclass(frozen=True, slots=True)
class DataflowEnergy:
    """Energy per action; every preset names the source of each value beside it."""

    mac_pj: float = within(ENERGY_PJ)           # one multiply-accumulate at the PCU's dtype
    vector_op_pj: float = within(ENERGY_PJ)     # one element operation in SIMD mode
    dequant_pj: float = within(ENERGY_PJ)       # code x scale (loadq), value / scale (storeq)
    sram_pj_per_byte: float = within(ENERGY_PJ)  # PMU read or write
    hbm_pj_per_byte: float = within(ENERGY_PJ)
    ddr_pj_per_byte: float = within(ENERGY_PJ)
    static_w: float = within(POWER_W)           # leakage and clock tree, whole socket
    # one multiply-accumulate of two narrow codes, per format of the PCUs' mac_formats
    mac_format_pj: dict[str, float] = within(ENERGY_PJ, default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataflowArch:
    name: str
    target: str = choice("dataflow")
    clock_mhz: float = within(CLOCK_MHZ)
    dtype: str = choice("bf16", "fp32")          # PCU operand and storage type
    pcus: int = within(UNITS)
    pmus: int = within(UNITS)
    pmu_bytes: int = within(ON_CHIP_BYTES)       # scratchpad per PMU
    pcu_rows: int = within(ARRAY_SIDE)           # systolic mode: rows x cols MACs per cycle
    pcu_cols: int = within(ARRAY_SIDE)           # also the SIMD lanes in vector mode
    stage_latency_cycles: int = within(PIPELINE_CYCLES)  # pipeline depth of one PCU stage plus its hop
    hbm_bytes: int = within(OFF_CHIP_BYTES)
    hbm_bw_gbps: float = within(BANDWIDTH_GBPS)  # GB/s = 1e9 bytes/s
    hbm_latency_ns: float = within(LATENCY_NS)
    ddr_bytes: int = within(OFF_CHIP_BYTES)
    ddr_bw_gbps: float = within(BANDWIDTH_GBPS)
    ddr_latency_ns: float = within(LATENCY_NS)
    launch_us: float = within(HOST_TIME_US)      # one section call (df.run) from the host runtime
    reconfig_us: float = within(HOST_TIME_US)    # loading a different section configuration
    kernel_granularity: str = choice(*GRANULARITIES)
    energy: DataflowEnergy
    attention: str = choice("fused", "unfused", default="fused")  # fused: where it fits on chip
    # narrow MACs: format -> products a PCU's PE makes a cycle when both operands are codes of
    # it (isa mfmt); none listed: every matmul at the operand type (a recipe that quantises
    # both operands of a matmul is refused, naming the field)
    mac_formats: dict[str, int] = within(MACS_PER_PE, default_factory=dict)

    def __post_init__(self) -> None:
        if self.pmu_bytes % 64:
            raise ArchError(f"field 'pmu_bytes' must be a multiple of 64, got {self.pmu_bytes}")
        check_mac_formats(self.mac_formats, self.energy.mac_format_pj, isa.MAC_FORMATS[1:])

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def macs_per_pcu(self) -> int:
        return self.pcu_rows * self.pcu_cols

    @property
    def peak_tflops(self) -> float:
        """2 FLOPs per MAC, every PCU in systolic mode."""
        return 2 * self.pcus * self.macs_per_pcu * self.clock_hz / 1e12

    @property
    def sram_bytes(self) -> int:
        return self.pmus * self.pmu_bytes

    def cycles(self, seconds: float) -> int:
        return round(seconds * self.clock_hz)

    def summary(self) -> str:
        """One line for reports."""
        return (f"{self.pcus} PCUs, {self.pmus} PMUs, kernel granularity "
                f"{self.kernel_granularity}")

    @property
    def queues(self) -> tuple[str, ...]:
        """The machine's unit queues, in the order programs end them (one halt each)."""
        return QUEUES

    def machine_view(self) -> isa.MachineView:
        """What the program verifier needs to know of this machine (layout: module docstring)."""
        spaces = (isa.MemorySpace("sram", self.sram_bytes, on_chip=True),
                  isa.MemorySpace("hbm", self.hbm_bytes, on_chip=False),
                  isa.MemorySpace("ddr", self.ddr_bytes, on_chip=False))
        limits = {"pcus": self.pcus + 1, "pmus": self.pmus + 1}
        return isa.MachineView({s.name: s for s in spaces}, frozenset(self.queues), limits,
                               target="dataflow")
