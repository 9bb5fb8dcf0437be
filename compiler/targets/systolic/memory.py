"""Systolic memory planning: DRAM addresses of every buffer, and the on-chip ring layout.

DRAM: one buffer per value (the tables gathers read first), 64-byte aligned, in the storage
plan's order; constants the lowering adds later go after them.

SRAM (two slots per ring, each a share of an effective size x <= sram_bytes): mx_a 8 % (GEMM
A tiles), mx_b 16 % (GEMM B tiles), vp_in 7 % (vector inputs, biases), vp_out 7 % (results to
store), copy 2 % (KV appends, embedding gathers), each slot at least its floor (`SramFloors`:
one fold of the array, one row of the graph's most demanding vector op, one gathered or
appended row); the rest, at least max(its floor, 10 % of x), is fp32 scratch for the vector
unit. x = sram_bytes wherever that fits (the nominal shares, scratch 20 %); below, x is the
largest size that fits, so every slot is non-decreasing in sram_bytes. The accumulator
holds two output tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import isa
from isa import A40, DType

from arch.systolic import SystolicArch
from compiler.errors import CompileError
from compiler.ir import Graph, OpKind
from compiler.passes.quantised import SCALES_SUFFIX, StoredFormat
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import RingSpec, symbol_name
from compiler.targets.movement import GATHER_SLICE_BYTES, check_gather_reach, gather_tables
from compiler.targets.systolic.folds import min_slots
from compiler.targets.vector_needs import SCRATCH, VP_IN, VP_OUT, Floor, up, vector_floors

__all__ = ["DramLayout", "SramLayout", "SramFloors", "plan_dram", "plan_sram", "sram_floors",
           "effective_bytes", "dram_symbol", "ALIGN"]

ALIGN = 64
_SHARES = {"mx_a": 0.08, "mx_b": 0.16, "vp_in": 0.07, "vp_out": 0.07, "copy": 0.02}
_SCRATCH_MIN = 0.10     # the least scratch, as a share of the effective size (nominal: 20 %)
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
    effective_bytes: int                # the size the shares are taken of (module docstring)

    def dump(self) -> str:
        base, size = self.scratch
        return "\n".join([*(r.dump() for r in self.rings), f"scratch: sram[{base:#x}] {size:,} bytes",
                          self.acc.dump(), f"ring shares of {self.effective_bytes:,} bytes"])


def dram_symbol(name: str, addr: int, shape: tuple[int, ...], dtype: DType, arch: SystolicArch
                ) -> tuple[isa.Symbol, int]:
    """A DRAM buffer at `addr` and the aligned address after it; CompileError when DRAM is full
    or the buffer ends beyond what an off-chip (A40) operand addresses."""
    end = addr + -(-math.prod(shape) * dtype.itemsize // ALIGN) * ALIGN
    if end > arch.dram_bytes:
        raise CompileError(f"the model needs more than {end:,} bytes of DRAM; "
                           f"{arch.name} has {arch.dram_bytes:,}")
    if end > A40.reach:
        raise CompileError(f"the model needs more than {end:,} bytes of DRAM, but off-chip "
                           f"operands are A40 and reach {A40.reach:,} bytes (docs/isa.md)")
    return isa.Symbol(name, "dram", addr, shape, dtype), end


def plan_dram(graph: Graph, plan: StoragePlan, arch: SystolicArch,
              elided: frozenset[str] = frozenset(),
              quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> DramLayout:
    """Every buffer of the storage plan at its DRAM address: the tables gathers read first
    (smallest first, within a gather's reach), then the rest in plan order; none for the
    buffers in `elided` (a fused attention's scores and probabilities, never written). A
    weight in `quantised` is two symbols: its packed codes (bytes) and, after them, its fp16
    scales (compiler/passes/quantised.py)."""
    symbols, end = [], 0
    tables = gather_tables(graph, plan)
    rest = [b for b in plan.buffers if b not in set(tables) and b not in elided]
    for name in [*tables, *rest]:
        b = plan.buffers[name]
        if name in tables:
            check_gather_reach(name, "dram", end)
        fmt = quantised.get(name)
        if fmt is None:
            symbol, end = dram_symbol(symbol_name(b.name), end, b.shape, b.dtype, arch)
            symbols.append(symbol)
            continue
        codes, end = dram_symbol(symbol_name(b.name), end, fmt.code_shape, DType.int8, arch)
        scales, end = dram_symbol(codes.name + SCALES_SUFFIX, end, fmt.scale_shape, fmt.scale_dtype,
                                  arch)
        symbols += [codes, scales]
    return DramLayout(tuple(symbols), end)


@dataclass(frozen=True)
class SramFloors:
    """Each ring's smallest slot and the scratch area's smallest size, with what sets each:
    the most of one fold of the array (folds.min_slots), one row of the graph's most
    demanding vector op (vector_needs.py) and one gathered or appended row."""

    rings: tuple[tuple[str, Floor], ...]        # in _RINGS order
    scratch: Floor

    def slot(self, ring: str) -> int:
        """The ring's floor, aligned."""
        return up(dict(self.rings)[ring].bytes)

    def minimum_bytes(self) -> int:
        """The smallest sram_bytes: every ring at its floor (two slots), the scratch at its own."""
        return 2 * sum(self.slot(r) for r, _ in self.rings) + up(self.scratch.bytes)

    def causes(self) -> str:
        """What sets the minimum, the largest share first ("a, b and c")."""
        share: dict[str, int] = {}
        for floor, times in [*((f, 2) for _, f in self.rings), (self.scratch, 1)]:
            if floor.bytes:
                share[floor.cause] = share.get(floor.cause, 0) + times * up(floor.bytes)
        names = sorted(share, key=lambda c: -share[c])
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    def dump(self) -> str:
        lines = [f"sram floors: {self.minimum_bytes():,} bytes at least"]
        lines += [f"  {name}: {f.bytes:,} bytes a slot, set by {f.cause}" for name, f in self.rings]
        return "\n".join(lines + [f"  scratch: {self.scratch.bytes:,} bytes, set by {self.scratch.cause}"])


_FOLD_PARTS = {"a": "streamed row", "b": "stationary block", "bias": "bias row", "out": "output row"}
_OS_PARTS = {"a": "streamed row", "b": "streamed column", "bias": "bias row", "out": "output fold"}


def _fold_floors(arch: SystolicArch, dtype: DType) -> dict[str, Floor]:
    """The SRAM slots one fold of the array needs, named by its largest part."""
    need = min_slots(arch.rows, arch.cols, arch.dataflow, dtype.itemsize)
    sizes = {"a": need.a, "b": need.b, "bias": need.bias, "out": need.out}
    part = max(sizes, key=sizes.__getitem__)
    label = (_OS_PARTS if arch.dataflow == "os" else _FOLD_PARTS)[part]
    cause = f"one fold of the {arch.rows}x{arch.cols} {arch.dataflow} array ({sizes[part]:,}-byte {label})"
    return {"mx_a": Floor(need.a, cause), "mx_b": Floor(need.b, cause),
            VP_IN: Floor(need.bias, cause), VP_OUT: Floor(need.out, cause)}


def copy_floor(graph: Graph, dtype: DType) -> Floor:
    """The copy ring's smallest slot (movement.py): one 64-byte column slice of a gathered row
    (or the row, when narrower) beside its id padded to the alignment, or one column of an
    appended K/V row; wider rows go by column slices."""
    floor = Floor(0)
    for op in graph.of_kind(OpKind.EMBEDDING, OpKind.GATHER, OpKind.KV_APPEND):
        row = op.type.shape[-1] * dtype.itemsize
        need = (dtype.itemsize if op.kind is OpKind.KV_APPEND else
                ALIGN + min(row, max(GATHER_SLICE_BYTES, dtype.itemsize)))
        if need > floor.bytes:
            floor = Floor(need, f"{op.kind.value} '{op.name}' (one {'column' if need < row else 'row'})")
    return floor


def sram_floors(graph: Graph, plan: StoragePlan, arch: SystolicArch, dtype: DType,
                skip: frozenset[str] = frozenset()) -> SramFloors:
    """The floors of `graph` on `arch`; the ops in `skip` (a fused attention chain's, which
    lays out the SRAM its own way) set none."""
    fold = _fold_floors(arch, dtype)
    vector = vector_floors(graph, plan.views, dtype, lambda v: plan.buffers[v.buffer].dtype.itemsize, skip)
    widest = {r: max(fold[r], vector[r], key=lambda f: f.bytes) for r in (VP_IN, VP_OUT)}
    floors = {**fold, **widest, "copy": copy_floor(graph, dtype)}
    return SramFloors(tuple((r, floors[r]) for r in _RINGS), vector[SCRATCH])


def _slots(x: int, floors: SramFloors) -> dict[str, int]:
    return {r: max(floors.slot(r), int(x * _SHARES[r]) // ALIGN * ALIGN) for r in _RINGS}


def _layout_bytes(x: int, floors: SramFloors) -> int:
    """The rings' bytes at effective size x (two slots each), plus the least scratch."""
    return 2 * sum(_slots(x, floors).values()) + max(up(floors.scratch.bytes), int(x * _SCRATCH_MIN))


def effective_bytes(sram_bytes: int, floors: SramFloors) -> int:
    """The largest x <= sram_bytes whose layout fits sram_bytes: sram_bytes itself wherever
    the shares leave room for the floors. `_layout_bytes` grows with x, so bisection finds
    it, and x (hence every slot) is non-decreasing in sram_bytes."""
    lo, hi = 0, sram_bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _layout_bytes(mid, floors) <= sram_bytes else (lo, mid - 1)
    return lo


def _acc_ring(arch: SystolicArch, dtype: DType) -> RingSpec:
    """Two accumulator slots, each at least one fold's partial sums."""
    acc_floor = min_slots(arch.rows, arch.cols, arch.dataflow, dtype.itemsize).acc
    acc_slot = arch.acc_bytes // 2 // ALIGN * ALIGN
    if acc_slot < acc_floor:
        raise CompileError(f"{arch.name}: acc_bytes = {arch.acc_bytes:,} cannot hold one fold's partial "
                           f"sums (double-buffered); the minimum is {2 * up(acc_floor):,} bytes")
    return RingSpec("acc", "acc", 0, acc_slot, 2, "mxu0", "vpu0")


def plan_sram(arch: SystolicArch, dtype: DType, floors: SramFloors) -> SramLayout:
    """The rings by their shares of the effective size, each at least its floor, the scratch
    after them, two accumulator tiles. Too small a buffer is a CompileError that states the
    minimum and what sets it."""
    minimum = floors.minimum_bytes()
    if arch.sram_bytes < minimum:
        raise CompileError(f"{arch.name}: sram_bytes = {arch.sram_bytes:,} cannot hold one fold of the "
                           f"{arch.rows}x{arch.cols} {arch.dataflow} array in {dtype.value} "
                           f"(double-buffered) beside one column of every other op; the minimum is "
                           f"{minimum:,} bytes, set by {floors.causes()}")
    acc = _acc_ring(arch, dtype)
    x = effective_bytes(arch.sram_bytes, floors)
    rings, base = [], 0
    for name, slot in _slots(x, floors).items():
        rings.append(RingSpec(name, "sram", base, slot, 2, *_RINGS[name]))
        base += 2 * slot
    return SramLayout(tuple(rings), (base, arch.sram_bytes - base), acc, x)
