"""Systolic memory planning: DRAM addresses of every buffer, and the on-chip ring layout.

DRAM: one buffer per value (the tables gathers read first), 64-byte aligned, in the storage
plan's order; constants the lowering adds later go after them.

SRAM (shares of sram_bytes, two slots per ring): mx_a 8 % (GEMM A tiles), mx_b 16 % (GEMM B
tiles), vp_in 7 % (vector inputs, biases), vp_out 7 % (results to store), copy 2 % (KV
appends, embedding gathers); the last 20 % is fp32 scratch for the vector unit. The
accumulator holds two output tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import isa
from isa import DType

from arch.systolic import SystolicArch
from compiler.errors import CompileError
from compiler.ir import Graph
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import RingSpec, ring_specs, symbol_name
from compiler.targets.movement import check_gather_reach, gather_tables

__all__ = ["DramLayout", "SramLayout", "plan_dram", "plan_sram", "dram_symbol", "ALIGN"]

ALIGN = 64
_SHARES = {"mx_a": 0.08, "mx_b": 0.16, "vp_in": 0.07, "vp_out": 0.07, "copy": 0.02}
_RINGS = {"mx_a": ("dma0", "mxu0"), "mx_b": ("dma0", "mxu0"), "vp_in": ("dma0", "vpu0"),
          "vp_out": ("vpu0", "dma1"), "copy": ("dma0", "dma1")}


@dataclass(frozen=True)
class DramLayout:
    """The program's DRAM symbols, in address order, and the first free byte after them."""

    symbols: tuple[isa.Symbol, ...]
    end: int

    def dump(self) -> str:
        lines = [f"dram: {len(self.symbols)} buffers, {self.end:,} bytes"]
        lines += [f"  {s.name}: dram[{s.addr:#x}] {'x'.join(map(str, s.shape))} {s.dtype.value}"
                  for s in self.symbols]
        return "\n".join(lines)


@dataclass(frozen=True)
class SramLayout:
    """The SRAM rings (in build order), the vector unit's scratch area and the accumulator ring."""

    rings: tuple[RingSpec, ...]
    scratch: tuple[int, int]            # (byte address, bytes)
    acc: RingSpec

    def dump(self) -> str:
        base, size = self.scratch
        return "\n".join([*(r.dump() for r in self.rings),
                          f"scratch: sram[{base:#x}] {size:,} bytes", self.acc.dump()])


def dram_symbol(name: str, addr: int, shape: tuple[int, ...], dtype: DType, arch: SystolicArch
                ) -> tuple[isa.Symbol, int]:
    """A DRAM buffer at `addr` and the aligned address after it; CompileError when DRAM is full."""
    end = addr + -(-math.prod(shape) * dtype.itemsize // ALIGN) * ALIGN
    if end > arch.dram_bytes:
        raise CompileError(f"the model needs more than {end:,} bytes of DRAM; "
                           f"{arch.name} has {arch.dram_bytes:,}")
    return isa.Symbol(name, "dram", addr, shape, dtype), end


def plan_dram(graph: Graph, plan: StoragePlan, arch: SystolicArch,
              elided: frozenset[str] = frozenset()) -> DramLayout:
    """Every buffer of the storage plan at its DRAM address: the tables gathers read first
    (smallest first, within a gather's reach), then the rest in plan order; none for the
    buffers in `elided` (a fused attention's scores and probabilities, never written)."""
    symbols, end = [], 0
    tables = gather_tables(graph, plan)
    rest = [b for b in plan.buffers if b not in set(tables) and b not in elided]
    for name in [*tables, *rest]:
        b = plan.buffers[name]
        if name in tables:
            check_gather_reach(name, "dram", end)
        symbol, end = dram_symbol(symbol_name(b.name), end, b.shape, b.dtype, arch)
        symbols.append(symbol)
    return DramLayout(tuple(symbols), end)


def plan_sram(arch: SystolicArch) -> SramLayout:
    """The rings by their shares of the SRAM, the scratch after them, two accumulator tiles."""
    rings, end = ring_specs("sram", arch.sram_bytes, _SHARES, _RINGS, ALIGN)
    acc_slot = arch.acc_bytes // 2 // ALIGN * ALIGN
    return SramLayout(rings, (end, arch.sram_bytes - end),
                      RingSpec("acc", "acc", 0, acc_slot, 2, "mxu0", "vpu0"))
