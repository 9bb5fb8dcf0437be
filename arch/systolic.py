"""Systolic-array accelerators (TPU / Gemmini / DRACO style): the architecture dataclass.

A rows x cols array of MAC PEs with a dataflow (ws, os, is), a unified on-chip SRAM for
operand and result tiles, an accumulator for partial sums, a vector unit for everything
that is not a GEMM, and DRAM behind a DMA engine. Memory spaces seen by programs: `dram`
(off-chip), `sram` and `acc` (on-chip). Queues: dma0 (loads), dma1 (stores), mxu0, vpu0.
"""
from __future__ import annotations

from dataclasses import dataclass

import isa
from arch.config import ArchError, check_mac_formats, choice, within
from arch.limits import (ARRAY_SIDE, BANDWIDTH_GBPS, CLOCK_MHZ, ENERGY_PJ, LANES, LATENCY_NS,
                         MACS_PER_PE, OFF_CHIP_BYTES, ON_CHIP_BYTES, PIPELINE_CYCLES, POWER_W)

__all__ = ["SystolicArch", "SystolicEnergy", "VECTOR_FUNCS"]

# Every vector/reduction function the vector unit needs a pipeline depth for.
VECTOR_FUNCS = ("add", "sub", "mul", "div", "max", "addi", "muli", "exp", "rsqrt", "recip",
                "gelu", "tanh", "copy", "sum")


@dataclass(frozen=True, slots=True)
class SystolicEnergy:
    """Energy per action; every preset names the source of each value beside it."""

    mac_pj: float = within(ENERGY_PJ)           # one multiply-accumulate at the array's dtype
    sram_read_pj_per_byte: float = within(ENERGY_PJ)
    sram_write_pj_per_byte: float = within(ENERGY_PJ)
    acc_pj_per_byte: float = within(ENERGY_PJ)  # accumulator read-modify-write, per byte
    dram_pj_per_byte: float = within(ENERGY_PJ)
    vector_op_pj: float = within(ENERGY_PJ)     # one element operation in the vector unit
    dequant_pj: float = within(ENERGY_PJ)       # code x scale (loadq), value / scale (storeq)
    static_w: float = within(POWER_W)           # leakage and clock tree, whole chip
    # one multiply-accumulate of two narrow codes, per format of the array's mac_formats
    mac_format_pj: dict[str, float] = within(ENERGY_PJ, default_factory=dict)


@dataclass(frozen=True, slots=True)
class SystolicArch:
    name: str
    target: str = choice("systolic")
    rows: int = within(ARRAY_SIDE)
    cols: int = within(ARRAY_SIDE)
    dataflow: str = choice("ws", "os", "is")
    clock_mhz: float = within(CLOCK_MHZ)
    dtype: str = choice("bf16", "fp32", "int8")     # matrix-unit operand type
    sram_bytes: int = within(ON_CHIP_BYTES)          # unified on-chip buffer
    acc_bytes: int = within(ON_CHIP_BYTES)           # accumulator (fp32 / int32 entries)
    dram_bytes: int = within(OFF_CHIP_BYTES)
    dram_bw_gbps: float = within(BANDWIDTH_GBPS)     # GB/s = 1e9 bytes/s
    dram_latency_ns: float = within(LATENCY_NS)
    vector_lanes: int = within(LANES)
    vector_latency_cycles: dict[str, int] = within(PIPELINE_CYCLES)  # pipeline depth per function
    weight_preload_overlap: bool                     # False: SCALE-Sim's fold arithmetic
    energy: SystolicEnergy
    attention: str = choice("fused", "unfused", default="fused")  # fused: where it fits on chip
    # the DMA engine keeps requests in flight: a transfer holds the DRAM port for its bytes only
    # and its data lands dram_latency_ns later (false: each holds the port for the latency too)
    dma_overlap: bool = False
    # narrow MACs: format -> products a PE makes a cycle when both operands are codes of it
    # (isa mfmt); none listed: every matmul at the operand type (a recipe that quantises both
    # operands of a matmul is refused, naming the field)
    mac_formats: dict[str, int] = within(MACS_PER_PE, default_factory=dict)

    def __post_init__(self) -> None:
        missing = [f for f in VECTOR_FUNCS if f not in self.vector_latency_cycles]
        if missing:
            raise ArchError(f"missing field 'vector_latency_cycles.{missing[0]}'")
        unknown = sorted(set(self.vector_latency_cycles) - set(VECTOR_FUNCS))
        if unknown:
            raise ArchError(f"unknown field 'vector_latency_cycles.{unknown[0]}'")
        check_mac_formats(self.mac_formats, self.energy.mac_format_pj, isa.MAC_FORMATS[1:])

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_bw_gbps * 1e9 / self.clock_hz

    @property
    def dram_latency_cycles(self) -> int:
        return round(self.dram_latency_ns * 1e-9 * self.clock_hz)

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def summary(self) -> str:
        """One line for reports."""
        preload = "overlapped" if self.weight_preload_overlap else "not overlapped"
        return f"{self.rows}x{self.cols} {self.dataflow}, preload {preload}"

    @property
    def queues(self) -> tuple[str, ...]:
        """The machine's unit queues, in the order programs end them (one halt each)."""
        return ("dma0", "dma1", "mxu0", "vpu0")

    def machine_view(self) -> isa.MachineView:
        """What the program verifier needs to know of this machine."""
        spaces = (isa.MemorySpace("dram", self.dram_bytes, on_chip=False),
                  isa.MemorySpace("sram", self.sram_bytes, on_chip=True),
                  isa.MemorySpace("acc", self.acc_bytes, on_chip=True))
        return isa.MachineView({s.name: s for s in spaces},
                               frozenset(self.queues), target="systolic")
