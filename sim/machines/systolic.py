"""The systolic-array machine: exact cycles per instruction and energy events.

dma0 and dma1 share the DRAM port (resource 0). Cycle formulas are in sim/timing.py;
energy events follow docs/systolic.md: a GEMM reads its A tile from SRAM once per column
fold and its B tile once, and read-modify-writes its fp32/int32 output once per row fold.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

import isa
from arch.systolic import SystolicArch
from sim.machines.base import Costs, Machine, register_machine
from sim.timing import dma_cycles, gemm_cycles, reduce_cycles, vector_cycles

__all__ = ["SystolicMachine", "EVENTS"]

EVENTS = ("macs", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes", "sram_write_bytes",
          "acc_bytes", "vector_ops")
DRAM_PORT = 0
_CONTROL = frozenset({"halt", "signal", "wait", "dmacfg", "mcfg", "vcfg"})


@register_machine("systolic")
class SystolicMachine(Machine):
    units = ("dma", "mxu", "vpu")

    def __init__(self, arch: SystolicArch) -> None:
        self.arch = arch
        self.clock_hz = arch.clock_hz
        self._clock = int(round(arch.clock_hz))
        self._bw = int(round(arch.dram_bw_gbps * 1e9))
        self._latency = arch.dram_latency_cycles

    def mac_units(self) -> int:
        return self.arch.pes

    def static_w(self) -> float:
        return self.arch.energy.static_w

    def dma(self, nbytes: int) -> int:
        return dma_cycles(nbytes, self._latency, self._clock, self._bw)

    def costs(self, program: isa.Program) -> Costs:
        n = len(program.instructions)
        durations = np.zeros(n, dtype=np.int64)
        resources = np.full(n, -1, dtype=np.int64)
        events = {name: np.zeros(n) for name in EVENTS}
        arch, lat = self.arch, self.arch.vector_latency_cycles
        mcfg: dict = {}
        vcfg: dict = {}
        src_stride: dict = {}
        for i, ins in enumerate(program.instructions):
            op = ins.opcode
            if op in _CONTROL:
                if op == "mcfg":
                    mcfg[ins.queue] = (ins["m"], ins["n"], ins["k"], ins["dtype"].itemsize, ins["acc"].itemsize)
                elif op == "dmacfg":
                    src_stride[ins.queue] = ins["src_stride"]
                elif op == "vcfg":
                    vcfg[ins.queue] = (ins["rows"], ins["cols"], ins["dtype"].itemsize, ins["out"].itemsize)
                continue
            if op in ("load", "store"):
                nbytes = ins["rows"] * ins["row_bytes"]
                durations[i] = self.dma(nbytes)
                resources[i] = DRAM_PORT
                events["dram_read_bytes" if op == "load" else "dram_write_bytes"][i] = nbytes
                events["sram_write_bytes" if op == "load" else "sram_read_bytes"][i] = nbytes
            elif op == "gather":
                row = src_stride[ins.queue]
                durations[i] = self._latency + ins["n"] * (self.dma(row) - self._latency)
                resources[i] = DRAM_PORT
                events["dram_read_bytes"][i] = ins["n"] * row
                events["sram_write_bytes"][i] = ins["n"] * row
                events["sram_read_bytes"][i] = ins["n"] * 4
            elif op == "gemm":
                m, nn, k, isz, asz = mcfg[ins.queue]
                durations[i] = gemm_cycles(m, nn, k, arch.rows, arch.cols, arch.dataflow,
                                           arch.weight_preload_overlap)
                events["macs"][i] = m * nn * k
                a_reads, b_reads, c_writes = _operand_passes(m, nn, k, arch.rows, arch.cols, arch.dataflow)
                events["sram_read_bytes"][i] = (m * k * a_reads + k * nn * b_reads) * isz
                events["acc_bytes"][i] = m * nn * asz * c_writes
            elif op == "vec":
                rows, cols, isz, osz = vcfg[ins.queue]
                durations[i] = vector_cycles(rows * cols, arch.vector_lanes, lat[ins["func"]])
                b_elems = {"none": rows * cols, "row": rows, "col": cols, "scalar": 1}[ins["bcast"]]
                events["vector_ops"][i] = rows * cols
                reads = [(ins["a"].space, rows * cols * isz)]
                if ins["func"] not in _UNARY:
                    reads.append((ins["b"].space, b_elems * isz))
                for space, nbytes in reads:    # the epilogue reads the accumulator, not SRAM
                    events["acc_bytes" if space == "acc" else "sram_read_bytes"][i] += nbytes
                events["sram_write_bytes"][i] = rows * cols * osz
            elif op == "red":
                rows, cols, isz, osz = vcfg[ins.queue]
                durations[i] = reduce_cycles(rows, cols, arch.vector_lanes, lat[ins["func"]])
                events["vector_ops"][i] = rows * cols
                events["sram_read_bytes"][i] = rows * cols * isz
                events["sram_write_bytes"][i] = rows * osz
            else:
                raise isa.IsaError(f"instruction {i} ({ins.queue} {op}): not executable on a "
                                   "systolic-array machine")
        return Costs(durations, resources, events)

    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        e = self.arch.energy
        return {
            "compute": totals["macs"] * e.mac_pj,
            "sram": totals["sram_read_bytes"] * e.sram_read_pj_per_byte
                    + totals["sram_write_bytes"] * e.sram_write_pj_per_byte
                    + totals["acc_bytes"] * e.acc_pj_per_byte,
            "dram": (totals["dram_read_bytes"] + totals["dram_write_bytes"]) * e.dram_pj_per_byte,
            "vector": totals["vector_ops"] * e.vector_op_pj,
        }


_UNARY = frozenset({"addi", "muli", "exp", "rsqrt", "recip", "gelu", "tanh", "copy"})


def _operand_passes(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> tuple[int, int, int]:
    """How often a GEMM reads A and B from SRAM and writes C to the accumulator.

    The pinned operand is read once; the streamed one once per fold of the other pinned
    dimension; partial outputs go to the accumulator once per fold of the reduction (ws, is)
    or once in all (os keeps them in the PEs).
    """
    row_folds_k, col_folds_n = -(-k // rows), -(-n // cols)
    if dataflow == "ws":                          # B pinned; A streamed per column fold
        return col_folds_n, 1, row_folds_k
    if dataflow == "os":                          # C pinned; A per column fold, B per row fold
        return col_folds_n, -(-m // rows), 1
    return 1, -(-m // cols), row_folds_k          # is: A pinned; B streamed per column fold

