"""The systolic-array machine: exact cycles per instruction and energy events.

dma0 and dma1 share the DRAM port (resource 0). Cycle formulas are in sim/timing.py;
energy events follow docs/systolic.md: a GEMM reads its A tile from SRAM once per column
fold and its B tile once, and read-modify-writes its fp32/int32 output once per row fold.
A quantised load (`loadq`) moves its fp16 scale row and its packed rows as one transfer on the
DRAM port (one access latency, like a `load`; its `qcfg` only sets registers and takes no
time); we assume the dequantiser in the load path keeps pace with the port (one multiply an
element, counted as `dequant_ops` and priced at the preset's `dequant_pj` in the "vector"
energy entry). A bit-nested load (`loadp`) is timed as a `loadq` of the code bytes it
reads, rows x planes x ceil(cols / 8) (planes/W of a `loadq`'s when cols is a multiple of 8),
plus the same scale rows. A quantised store (`storeq`) is a `loadq`'s transfer out: its packed
rows and its scale rows (one scale a row group) in one DMA on the port, the quantiser in the
store path keeping pace with it (one multiply an element by the scale's reciprocal, counted as
`dequant_ops` at `dequant_pj` like the dequantiser's: the same multiplier). A `vquant` is two
vector passes over its tile: the group maxima (a row reduction), then the elements (divide,
round, multiply). After an `mfmt` naming a narrow format, a gemm's PEs each make the preset's
`mac_formats` products a cycle (K packed: `gemm_cycles(pack=...)`) at its
`energy.mac_format_pj` each; its products count in `macs` and in `macs_<format>`, and the
array's peak is its PEs times its most products a cycle.
"""
from __future__ import annotations

from typing import Mapping

import isa
from arch.systolic import SystolicArch
from isa.footprint import (loadp_rows, loadq_row_bytes, scale_bytes, scale_rows,
                           storeq_scale_bytes)
from sim.machines.base import Costs, Machine, MachineRun
from sim.machines.decode import ONE_OPERAND_FUNCS, CostSheet, CostTable, decode
from sim.machines.macs import MAC_EVENTS, gemm_pack, mac_energy_pj, program_peak
from sim.timing import dma_cycles, gemm_cycles, quantise_cycles, reduce_cycles, vector_cycles

__all__ = ["SystolicMachine", "EVENTS"]

EVENTS = ("macs", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes", "sram_write_bytes",
          "acc_bytes", "vector_ops", "dequant_ops", *MAC_EVENTS)
DRAM_PORT = 0
_BCAST_ELEMS = {"none": lambda rows, cols: rows * cols, "row": lambda rows, cols: rows,
                "col": lambda rows, cols: cols, "scalar": lambda rows, cols: 1}


class SystolicMachine(Machine[SystolicArch]):
    units = ("dma", "mxu", "vpu")

    def __init__(self, arch: SystolicArch) -> None:
        self.arch = arch
        self.clock_hz = arch.clock_hz
        self._clock = int(round(arch.clock_hz))
        self._bw = int(round(arch.dram_bw_gbps * 1e9))
        self._latency = arch.dram_latency_cycles
        # the latency a transfer holds the DRAM port for: all of it, or (dma_overlap: requests
        # in flight) none, its data then landing that long after it (a signal's delay)
        self._held = 0 if arch.dma_overlap else self._latency
        self._peak = 1                      # products a PE a cycle in the program's formats
        self._table = CostTable("a systolic-array machine", {
            "halt": None, "signal": self._signal if arch.dma_overlap else None, "wait": None,
            "dmacfg": None, "mcfg": None, "vcfg": None, "mfmt": None,
            "load": self._transfer, "store": self._transfer, "gather": self._gather,
            "gatherw": self._gather, "qcfg": None, "loadq": self._loadq, "loadp": self._loadp,
            "storeq": self._storeq,
            "gemm": self._gemm, "vec": self._vec, "red": self._red, "vquant": self._vquant})

    def mac_units(self) -> int:
        """Peak MACs a cycle: the PEs times the most products a PE makes in the formats the
        program's mfmt set (one, at the operand type, for a program that sets none)."""
        return self.arch.pes * self._peak

    def static_w(self) -> float:
        return self.arch.energy.static_w

    def dma(self, nbytes: int) -> int:
        """Cycles a transfer of `nbytes` holds the DRAM port: its beats, after the access
        latency unless the engine overlaps requests (dma_overlap)."""
        return dma_cycles(nbytes, self._held, self._clock, self._bw)

    def _signal(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """dma_overlap: a DMA queue's signal tells its readers the data has landed, the access
        latency after the transfers before it left the port."""
        if ins.queue.unit.name == "dma":
            s.delays[i] = self._latency

    def start(self, program: isa.Program, repeats=None) -> MachineRun:
        sheet = decode(self._table, CostSheet.empty(len(program.instructions), EVENTS),
                       program.instructions)
        self._peak = program_peak(program, self.arch.mac_formats)
        return MachineRun(self, program, Costs(sheet.durations, sheet.resources,
                                               sheet.events.freeze(),
                                               delays=sheet.delays if self.arch.dma_overlap else None))

    # -- cost functions: fn(sheet, index, instruction, its queue's configuration) ----------
    def _transfer(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        nbytes = ins["rows"] * ins["row_bytes"]
        load = ins.opcode == "load"
        s.durations[i] = self.dma(nbytes)
        s.resources[i] = DRAM_PORT
        if load:
            s.events.set(i, dram_read_bytes=nbytes, sram_write_bytes=nbytes)
        else:
            s.events.set(i, dram_write_bytes=nbytes, sram_read_bytes=nbytes)

    def _gather(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        row, n = isa.gather_row_bytes(cfg), ins["n"]
        s.durations[i] = self._held + n * (self.dma(row) - self._held)
        s.resources[i] = DRAM_PORT
        s.events.set(i, dram_read_bytes=n * row, sram_write_bytes=n * row, sram_read_bytes=n * 4)

    def _loadq(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """Its scale rows and its packed rows in one transfer (one access latency)."""
        packed, written = loadq_row_bytes(ins, cfg)
        rows = ins["rows"]
        nbytes = rows * packed + scale_rows(cfg.qcfg, rows) * scale_bytes(cfg.qcfg)
        s.durations[i] = self.dma(nbytes)
        s.resources[i] = DRAM_PORT
        s.events.set(i, dram_read_bytes=nbytes, sram_write_bytes=rows * written,
                     dequant_ops=rows * cfg.qcfg["cols"])

    def _loadp(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """As a loadq whose rows are the planes it reads: its scale rows and those code bytes
        in one transfer (one access latency), the dequantiser keeping pace."""
        found, rows = loadp_rows(ins, cfg), ins["rows"]
        nbytes = rows * found.read + scale_rows(cfg.qcfg, rows) * scale_bytes(cfg.qcfg)
        s.durations[i] = self.dma(nbytes)
        s.resources[i] = DRAM_PORT
        s.events.set(i, dram_read_bytes=nbytes, sram_write_bytes=rows * found.written,
                     dequant_ops=rows * cfg.qcfg["cols"])

    def _storeq(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """Its packed rows and its scale rows in one transfer out (one access latency); the
        quantiser's multiplies (one an element) count as `dequant_ops`, priced as loadq's."""
        packed, read = loadq_row_bytes(ins, cfg)
        rows = ins["rows"]
        nbytes = rows * packed + storeq_scale_bytes(cfg.qcfg, rows)
        s.durations[i] = self.dma(nbytes)
        s.resources[i] = DRAM_PORT
        s.events.set(i, dram_write_bytes=nbytes, sram_read_bytes=rows * read,
                     dequant_ops=rows * cfg.qcfg["cols"])

    def _gemm(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        arch, mcfg = self.arch, cfg.mcfg
        m, n, k = mcfg["m"], mcfg["n"], mcfg["k"]
        if ins["preloaded"] and not arch.weight_preload_overlap:
            raise isa.IsaError(f"instruction {i} ({ins.queue} gemm): preloaded=1 needs double-buffered "
                               f"weights, and {arch.name} has weight_preload_overlap = false")
        fmt, pack = gemm_pack(i, ins, cfg, arch.mac_formats, arch.name)
        s.durations[i] = gemm_cycles(m, n, k, arch.rows, arch.cols, arch.dataflow,
                                     arch.weight_preload_overlap, bool(ins["stream"]),
                                     bool(ins["preloaded"]), pack)
        a_reads, b_reads, c_writes = _operand_passes(m, n, -(-k // pack), arch.rows, arch.cols,
                                                     arch.dataflow)
        narrow = {} if fmt == "none" else {f"macs_{fmt}": m * n * k}
        s.events.set(i, macs=m * n * k, **narrow,
                     sram_read_bytes=(m * k * a_reads + k * n * b_reads) * mcfg["dtype"].itemsize,
                     acc_bytes=m * n * mcfg["acc"].itemsize * c_writes)

    def _vec(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        vcfg, func = cfg.vcfg, ins["func"]
        rows, cols, isz = vcfg["rows"], vcfg["cols"], vcfg["dtype"].itemsize
        s.durations[i] = vector_cycles(rows * cols, self.arch.vector_lanes,
                                       self.arch.vector_latency_cycles[func])
        reads = [(ins["a"].space, rows * cols * isz)]
        if func not in ONE_OPERAND_FUNCS:
            reads.append((ins["b"].space, _BCAST_ELEMS[ins["bcast"]](rows, cols) * isz))
        read = {"acc_bytes": 0, "sram_read_bytes": 0}
        for space, nbytes in reads:    # the epilogue reads the accumulator, not SRAM
            read["acc_bytes" if space == "acc" else "sram_read_bytes"] += nbytes
        s.events.set(i, vector_ops=rows * cols, **read,
                     sram_write_bytes=rows * cols * vcfg["out"].itemsize)

    def _red(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        vcfg = cfg.vcfg
        rows, cols = vcfg["rows"], vcfg["cols"]
        s.durations[i] = reduce_cycles(rows, cols, self.arch.vector_lanes,
                                       self.arch.vector_latency_cycles[ins["func"]])
        s.events.set(i, vector_ops=rows * cols, sram_read_bytes=rows * cols * vcfg["dtype"].itemsize,
                     sram_write_bytes=rows * vcfg["out"].itemsize)

    def _vquant(self, s: CostSheet, i: int, ins: isa.Instr, cfg: isa.QueueConfig) -> None:
        """Two passes over the tile at the vector unit's rates: the group maxima (a row
        reduction) then the elements (divide, round, multiply); the tile is read in each."""
        vcfg, arch = cfg.vcfg, self.arch
        rows, cols = vcfg["rows"], vcfg["cols"]
        s.durations[i] = quantise_cycles(rows, cols, arch.vector_lanes, arch.vector_latency_cycles)
        read = 2 * rows * cols * vcfg["dtype"].itemsize   # the epilogue reads the accumulator
        s.events.set(i, vector_ops=2 * rows * cols,
                     **{"acc_bytes" if ins["src"].space == "acc" else "sram_read_bytes": read},
                     sram_write_bytes=rows * cols * vcfg["out"].itemsize)

    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        e = self.arch.energy
        return {
            "compute": mac_energy_pj(totals, e.mac_pj, e.mac_format_pj),
            "sram": totals["sram_read_bytes"] * e.sram_read_pj_per_byte
                    + totals["sram_write_bytes"] * e.sram_write_pj_per_byte
                    + totals["acc_bytes"] * e.acc_pj_per_byte,
            "dram": (totals["dram_read_bytes"] + totals["dram_write_bytes"]) * e.dram_pj_per_byte,
            "vector": totals["vector_ops"] * e.vector_op_pj + totals["dequant_ops"] * e.dequant_pj,
        }


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
