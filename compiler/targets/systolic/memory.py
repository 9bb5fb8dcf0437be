"""Systolic memory planning: DRAM addresses of every buffer, and the on-chip ring layout.

DRAM: one buffer per value (the tables gathers read first), 64-byte aligned, in the storage
plan's order; constants the lowering adds later go after them.

SRAM (shares of sram_bytes, two slots per ring): mx_a 8 % (GEMM A tiles), mx_b 16 % (GEMM B
tiles), vp_in 7 % (vector inputs, biases), vp_out 7 % (results to store), copy 2 % (KV
appends, embedding gathers); the rest (20 %, at least 10 % where a ring's one-fold floor
exceeds its share) is fp32 scratch for the vector unit. The
accumulator holds two output tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import isa
from isa import DType

from arch.systolic import SystolicArch
from compiler.errors import CompileError
from compiler.ir import Graph, OpKind
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import RingSpec, ring_specs, symbol_name
from compiler.targets.movement import check_gather_reach, gather_tables
from compiler.targets.systolic.folds import min_slots

__all__ = ["DramLayout", "SramLayout", "plan_dram", "plan_sram", "min_sram_bytes", "dram_symbol",
           "copy_row_bytes", "ALIGN"]

ALIGN = 64
_SHARES = {"mx_a": 0.08, "mx_b": 0.16, "vp_in": 0.07, "vp_out": 0.07, "copy": 0.02}
_SCRATCH_MIN = 0.10     # what the rings' floors may leave of the nominal 20 % scratch
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


def copy_row_bytes(graph: Graph, dtype: DType) -> int:
    """The copy ring's smallest slot: one gathered row and its id, or one appended K/V row."""
    return max([op.type.shape[-1] * dtype.itemsize + 4
                for op in graph.of_kind(OpKind.EMBEDDING, OpKind.KV_APPEND)], default=0)


def _slot_floors(arch: SystolicArch, dtype: DType, copy_bytes: int) -> dict[str, int]:
    """Each ring's smallest slot: what one fold of the array needs (folds.min_slots), and
    one row of the graph's largest gather or KV append."""
    need = min_slots(arch.rows, arch.cols, arch.dataflow, dtype.itemsize)
    return {"mx_a": need.a, "mx_b": need.b, "vp_in": need.bias, "vp_out": need.out, "copy": copy_bytes}


def _ring_bytes(sram_bytes: int, floors: dict[str, int]) -> int:
    """Bytes the rings take (two slots each) at `sram_bytes`, plus the least scratch."""
    slots = sum(max(int(sram_bytes * _SHARES[r]) // ALIGN * ALIGN, -(-floors[r] // ALIGN) * ALIGN)
                for r in _SHARES)
    return 2 * slots + int(sram_bytes * _SCRATCH_MIN)


def min_sram_bytes(arch: SystolicArch, dtype: DType, copy_bytes: int = 0) -> int:
    """The smallest sram_bytes whose rings hold one fold (found by bisection: the rings'
    bytes grow more slowly than the SRAM once every ring is above its floor)."""
    floors = _slot_floors(arch, dtype, copy_bytes)
    lo, hi = 1, 1 << 40
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _ring_bytes(mid, floors) <= mid else (mid + 1, hi)
    return lo


def plan_sram(arch: SystolicArch, dtype: DType, copy_bytes: int = 0) -> SramLayout:
    """The rings by their shares of the SRAM, each at least one fold's worth (folds.min_slots),
    the scratch after them, two accumulator tiles. Too small a buffer is a CompileError that
    states the minimum."""
    floors = _slot_floors(arch, dtype, copy_bytes)
    if _ring_bytes(arch.sram_bytes, floors) > arch.sram_bytes:
        raise CompileError(f"{arch.name}: sram_bytes = {arch.sram_bytes:,} cannot hold one fold of the "
                           f"{arch.rows}x{arch.cols} {arch.dataflow} array in {dtype.value} "
                           f"(double-buffered); the minimum is {min_sram_bytes(arch, dtype, copy_bytes):,} bytes")
    acc_floor = min_slots(arch.rows, arch.cols, arch.dataflow, dtype.itemsize).acc
    acc_slot = arch.acc_bytes // 2 // ALIGN * ALIGN
    if acc_slot < acc_floor:
        raise CompileError(f"{arch.name}: acc_bytes = {arch.acc_bytes:,} cannot hold one fold's partial "
                           f"sums (double-buffered); the minimum is {2 * -(-acc_floor // ALIGN) * ALIGN:,} bytes")
    shares = {r: max(_SHARES[r], (-(-floors[r] // ALIGN) * ALIGN + 0.5) / arch.sram_bytes) for r in _SHARES}
    rings, end = ring_specs("sram", arch.sram_bytes, shares, _RINGS, ALIGN)
    return SramLayout(rings, (end, arch.sram_bytes - end),
                      RingSpec("acc", "acc", 0, acc_slot, 2, "mxu0", "vpu0"))
