"""PIM placement: the ASIC buffer's regions, the dense DRAM buffers and every PIM matrix.

- DRAM rows [0, A): the activation region, one dense buffer per graph value that is not a
  PIM matrix (activations, inputs, biases and gains in fp32, the embedding tables, causal
  masks), moved to and from the ASIC buffer by dma0 (loads) and dma1 (stores).
- DRAM rows [A, ...): PIM matrices, one region each (layout.py): linear weights (and the tied
  LM head), split into output blocks whose partial sums fit the ASIC's buffer, and per layer
  the K cache (row-major) and V cache (column-major).
- ASIC buffer (abuf): vector rings and scratch (compiler/targets/vector.py), the GEMV input
  vector, the partial sums, staging for KV-cache writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import isa
from isa import DType

from arch.pim import PimArch
from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import symbol_name
from compiler.targets.pim import layout as pl

__all__ = ["PimMatrix", "PimPlacement", "place", "ALIGN", "ABUF_KIB"]

ALIGN = 64
# abuf regions in KiB (the preset's buffer must hold them; arch/configs/pim-gpt.toml)
# The GEMV input (xin) and partial sums (psum) are double-buffered: a GEMV's MACs may run
# while the ASIC still reduces the one before (when it does not depend on it).
ABUF_KIB = {"vp_in": 48, "vp_out": 48, "copy": 16, "scratch": 48, "xin0": 16, "xin1": 16,
            "psum0": 64, "psum1": 64, "kstage": 4, "vstage": 32}
# DRAM rows left after the activation region for the constants the lowering adds
_CONSTANT_ROWS = 64


@dataclass(frozen=True, slots=True)
class PimMatrix:
    """One PIM matrix region: a block of a weight's output columns, or a whole K or V cache."""

    kind: str                # "linear", "kcache" or "vcache"
    value: str               # the graph value it holds
    n0: int                  # first output column of the block (0 for caches)
    outputs: int             # output columns of the block (0 for caches)
    layout: pl.GemvLayout
    transposed: bool         # a linear weight read as W^T (the tied LM head)

    @property
    def symbol(self) -> str:
        return symbol_name(f"pim.{self.layout.name}")


@dataclass(frozen=True)
class PimPlacement:
    """Where everything of a PIM program lives (module docstring)."""

    abuf: dict[str, tuple[int, int]]     # region -> (byte address, bytes)
    dense: tuple[isa.Symbol, ...]        # the activation region's buffers
    regions: tuple[isa.Symbol, ...]      # one symbol per PIM matrix, in `matrices` order
    act_end: int                         # first free byte of the activation region
    act_limit: int                       # bytes the activation region may grow to (constants)
    matrices: dict[str, tuple[PimMatrix, ...]]   # graph value -> its PIM matrices

    def dump(self) -> str:
        lines = ["abuf regions:"]
        lines += [f"  {name}: abuf[{at:#x}] {size:,} bytes" for name, (at, size) in self.abuf.items()]
        lines.append(f"activation region: {len(self.dense)} dense buffers, {self.act_end:,} of "
                     f"{self.act_limit:,} bytes")
        lines += [f"  {s.name}: dram[{s.addr:#x}] {'x'.join(map(str, s.shape))} {s.dtype.value}"
                  for s in self.dense]
        lines.append(f"PIM matrices ({len(self.regions)}):")
        for blocks in self.matrices.values():
            for m in blocks:
                lay = m.layout
                cols = f" columns {m.n0}..{m.n0 + m.outputs - 1}" if m.kind == "linear" else ""
                lines.append(f"  {m.symbol}: {m.kind} of {m.value}{cols}{' (transposed)' if m.transposed else ''}, "
                             f"rows {lay.first_row}..{lay.first_row + lay.rows - 1}, {len(lay.passes)} passes, "
                             f"{lay.psum_elems:,} partial sums")
        return "\n".join(lines)


def abuf_regions(arch: PimArch) -> dict[str, tuple[int, int]]:
    """The ASIC buffer's regions packed from address 0; CompileError when the buffer is smaller."""
    need = sum(ABUF_KIB.values()) * 1024
    if arch.asic.buffer_bytes < need:
        raise CompileError(f"the PIM lowering needs {need:,} bytes of ASIC buffer "
                           f"(asic.buffer_bytes is {arch.asic.buffer_bytes:,})")
    at, out = 0, {}
    for name, kib in ABUF_KIB.items():
        out[name] = (at, kib * 1024)
        at += kib * 1024
    return out


def pim_operands(graph: Graph) -> dict[str, tuple[str, Op]]:
    """Values stored as PIM matrices: name -> (kind, consuming or producing op)."""
    out = {}
    for op in graph.ops:
        if op.kind is OpKind.LINEAR:
            out[op.inputs[1]] = ("linear", op)
        elif op.kind is OpKind.MATMUL:
            b = op.inputs[1]
            if graph[b].kind is OpKind.PARAM:
                out[b] = ("linear", op)
            else:
                out[b] = ("kcache" if op.attr("transpose_b", False) else "vcache", op)
    return out


def place(graph: Graph, plan: StoragePlan, arch: PimArch) -> PimPlacement:
    """Dense buffers first (the embedding table first), then each PIM matrix on fresh rows."""
    abuf = abuf_regions(arch)
    operands = pim_operands(graph)
    tables = {op.inputs[0] for op in graph.ops if op.kind is OpKind.EMBEDDING}   # also read densely
    skip = {plan.views[v].buffer for v in operands
            if graph[v].kind is OpKind.PARAM and v not in tables}
    skip |= {plan.views[v].buffer for v in operands if graph[v].kind is OpKind.KV_APPEND}
    dense, at = [], 0
    for b in sorted(plan.buffers.values(), key=lambda b: b.name != "wte.weight"):
        if b.name in skip:
            continue
        dense.append(isa.Symbol(symbol_name(b.name), "dram", at, b.shape, b.dtype))
        at += -(-math.prod(b.shape) * b.dtype.itemsize // ALIGN) * ALIGN
    next_row = -(-at // arch.row_block_bytes) + _CONSTANT_ROWS
    act_limit = next_row * arch.row_block_bytes
    matrices, regions = {}, []
    for value, (kind, op) in operands.items():
        blocks = _blocks(graph, arch, abuf, value, kind, op, next_row)
        for m in blocks:
            shape = (m.layout.rows, arch.channels, arch.banks, arch.row_bytes // 2)
            regions.append(isa.Symbol(m.symbol, "dram", arch.dram_address(0, 0, m.layout.first_row),
                                      shape, DType.bf16))
            next_row += m.layout.rows
        matrices[value] = blocks
    if next_row > arch.rows:
        need = next_row * arch.row_block_bytes
        raise CompileError(f"the model needs {need:,} bytes of PIM DRAM ({next_row:,} rows "
                           f"per bank: weights, KV cache, activations); {arch.name} has "
                           f"{arch.dram_bytes:,} ({arch.rows:,} rows)")
    return PimPlacement(abuf, tuple(dense), tuple(regions), at, act_limit, matrices)


def _blocks(graph: Graph, arch: PimArch, abuf: dict[str, tuple[int, int]], value: str, kind: str,
            op: Op, first_row: int) -> tuple[PimMatrix, ...]:
    """A value's PIM matrices from `first_row` on: a linear weight in blocks of output columns
    whose partial sums fit the ASIC buffer, a K or V cache whole."""
    shape = graph[value].type.shape
    psum_bytes = abuf["psum0"][1]
    if kind == "linear":
        transpose = op.kind is OpKind.MATMUL and op.attr("transpose_b", False)
        k, n = (shape[1], shape[0]) if transpose else shape
        if k % arch.macs_per_bank_per_access:
            raise CompileError(f"op '{op.name}': reduction length {k} is not a multiple of "
                               f"the {arch.macs_per_bank_per_access} MAC lanes")
        lanes = arch.channels * arch.banks
        chunks = -(-k // pl.gbuf_elems(arch))
        block = min(psum_bytes // (4 * chunks), abuf["vp_out"][1] // 2 // 2,
                    abuf["vp_in"][1] // 2 // 4) // lanes * lanes
        if block < lanes:
            raise CompileError(f"op '{op.name}': {chunks} chunks of partial sums do not fit "
                               "the ASIC buffer")
        out, row = [], first_row
        for n0 in range(0, n, block):
            nb = min(block, n - n0)
            lay = pl.linear_layout(f"{value}.{n0}", arch, row, k, nb)
            out.append(PimMatrix(kind, value, n0, nb, lay, bool(transpose)))
            row += lay.rows
        return tuple(out)
    heads, positions, hd = shape[-3], shape[-2], shape[-1]
    if kind == "kcache" and hd % arch.macs_per_bank_per_access:
        raise CompileError(f"op '{op.name}': head dimension {hd} (the reduction of q . K) is not "
                           f"a multiple of the {arch.macs_per_bank_per_access} MAC lanes")
    build = pl.kcache_layout if kind == "kcache" else pl.vcache_layout
    lay = build(value, arch, first_row, heads, positions, hd)
    if lay.psum_elems * 4 > psum_bytes:
        raise CompileError(f"op '{op.name}': {lay.psum_elems:,} partial sums exceed the ASIC "
                           f"buffer's {psum_bytes:,}-byte partial-sum area")
    return (PimMatrix(kind, value, 0, 0, lay, False),)
