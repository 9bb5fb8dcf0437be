"""PIM placement: the ASIC buffer's regions, the dense DRAM buffers and every PIM matrix.

- DRAM rows [0, A): the activation region, one dense buffer per graph value that is not a
  PIM matrix (activations, inputs, biases and gains in fp32, the embedding tables, causal
  masks), moved to and from the ASIC buffer by dma0 (loads) and dma1 (stores).
- DRAM rows [A, ...): PIM matrices, one region each (layout.py): linear weights (and the tied
  LM head), split into output blocks whose partial sums fit the ASIC's buffer, and per layer
  the K cache (row-major) and V cache (column-major), one per KV head: a grouped-query
  matmul's b ([B, Hkv, 1, T, Dh], a unit-axis reshape of the cache) places the cache it
  views, and its G query rows per KV head run against it (layout.py).
- Weights no op reads in this pass (the experts of a routed MoE layer that no token chose)
  are still resident: placed like any linear weight, but no GEMV reads them.
- A model that does not fit is refused with its bytes: weights, KV cache, activations.
- ASIC buffer (abuf): vector rings and scratch (compiler/targets/vector.py), the GEMV input
  vector, the partial sums, staging for KV-cache writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import isa
from isa import DType

from arch.pim import PimArch
from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.quantised import SCALES_SUFFIX, StoredFormat
from compiler.passes.storage import StoragePlan
from compiler.targets.constants import constant_shapes
from compiler.targets.emit import symbol_name
from compiler.targets.movement import check_gather_reach, gather_tables
from compiler.targets.pim import layout as pl

__all__ = ["PimMatrix", "PimPlacement", "place", "matrix_value", "ALIGN", "ABUF_KIB"]

ALIGN = 64
# abuf regions in KiB (the preset's buffer must hold them; arch/configs/pim-gpt.toml)
# The GEMV input (xin) and partial sums (psum) are double-buffered: a GEMV's MACs may run
# while the ASIC still reduces the one before (when it does not depend on it). xin1 follows
# xin0: an attention row longer than one (heads x a long context) takes both (lowering.py).
ABUF_KIB = {"vp_in": 48, "vp_out": 48, "copy": 16, "scratch": 48, "xin0": 16, "xin1": 16,
            "psum0": 64, "psum1": 64, "kstage": 4, "vstage": 32}
# DRAM rows left after the activation region for the constants the lowering adds (at least;
# more when the graph's masks and rope tables need them)
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
    pieces: tuple[pl.Piece, ...] = ()   # a long-context K or V cache: its GEMV in pieces (layout.py)
    scales: str | None = None   # a quantised weight: the dense fp32 symbol of its output scales

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
                             f"{lay.psum_elems:,} partial sums"
                             + (f" in {len(m.pieces)} pieces of at most {max(p.psum_elems for p in m.pieces):,}"
                                if m.pieces else ""))
        return "\n".join(lines)


# Ops whose vector lowering keeps whole rows of fp32 temporaries in the scratch (SiLU: two
# rows of the MLP width; RMSNorm: two of the hidden width) and whose element-wise rows carry
# two operands per vp_in slot (the gated MLP's mul): the Llama families' MLP rows (8,192 wide
# in llama-3.2-1b: 32 KiB per vp_in slot, 64 KiB of scratch) outgrow GPT-2's layout.
_WIDE_ROW_OPS = frozenset({OpKind.SILU, OpKind.RMSNORM})
_WIDE_VP_OUT = 32      # KiB: the vp_out ring of a wide layout (a slot holds a 8,192-wide bf16 row)
_WIDE_COPY = 48       # KiB: the copy ring of a wide layout (gathers of rows up to 8,192 BF16 values)


def abuf_regions(arch: PimArch, wide_rows: bool = False) -> dict[str, tuple[int, int]]:
    """The ASIC buffer's regions packed from address 0; CompileError when the buffer is smaller.
    `wide_rows` (a Llama graph): vp_out is 32 KiB, the copy ring 48 KiB (an embedding row of
    up to 8,192 BF16 values and its id per slot: Llama 3.1 70B), and the vp_in ring and the scratch share
    every byte the regions leave (GPT-2's graphs keep the fixed layout their pinned programs
    were made with)."""
    sizes = {name: kib * 1024 for name, kib in ABUF_KIB.items()}
    need = sum(sizes.values())
    if arch.asic.buffer_bytes < need:
        raise CompileError(f"the PIM lowering needs {need:,} bytes of ASIC buffer "
                           f"(asic.buffer_bytes is {arch.asic.buffer_bytes:,})")
    if wide_rows:
        sizes["vp_out"] = _WIDE_VP_OUT * 1024
        sizes["copy"] = _WIDE_COPY * 1024
        half = (arch.asic.buffer_bytes - sum(sizes.values())) // 2 // (2 * ALIGN) * (2 * ALIGN)
        sizes["vp_in"] += half
        sizes["scratch"] += half
    at, out = 0, {}
    for name, size in sizes.items():
        out[name] = (at, size)
        at += size
    return out


def matrix_value(graph: Graph, name: str) -> str:
    """The value whose PIM matrix a GEMV operand reads: `name`, or for a reshape that only
    adds or drops unit axes (grouped-query attention's [B, Hkv, 1, T, Dh] view of a cache),
    the value it views."""
    op = graph[name]
    while op.kind is OpKind.RESHAPE and _squeezed(op.type.shape) == _squeezed(graph[op.inputs[0]].type.shape):
        op = graph[op.inputs[0]]
    return op.name


def _squeezed(shape: tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1]


def pim_operands(graph: Graph) -> dict[str, tuple[str, Op | None]]:
    """Values stored as PIM matrices: name -> (kind, consuming or producing op); resident
    weights no op reads (2-D params without consumers) have no op."""
    out: dict[str, tuple[str, Op | None]] = {}
    for op in graph.ops:
        if op.kind is OpKind.LINEAR:
            out[op.inputs[1]] = ("linear", op)
        elif op.kind is OpKind.MATMUL:
            b = matrix_value(graph, op.inputs[1])
            if graph[b].kind is OpKind.PARAM:
                out[b] = ("linear", op)
            else:
                out[b] = ("kcache" if op.attr("transpose_b", False) else "vcache", op)
    read = {name for op in graph.ops for name in op.inputs}
    for op in graph.ops:
        if op.kind is OpKind.PARAM and op.name not in read and len(op.type.shape) == 2:
            out[op.name] = ("linear", None)
    return out


def place(graph: Graph, plan: StoragePlan, arch: PimArch,
          quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> PimPlacement:
    """Dense buffers first (the tables gathers read first, smallest first, within a gather's
    reach), then each PIM matrix on fresh rows. A weight in `quantised` is stored as its
    N-bit codes in the banks (layout.py) and its scales as dense fp32 rows `<weight>.qscales`
    (one per scale group), which the ASIC multiplies into the GEMV's sums (check_quantised)."""
    abuf = abuf_regions(arch, any(op.kind in _WIDE_ROW_OPS for op in graph.ops))
    operands = pim_operands(graph)
    tables = gather_tables(graph, plan)          # also read densely, by gathers
    skip = {plan.views[v].buffer for v in operands
            if graph[v].kind is OpKind.PARAM and plan.views[v].buffer not in tables}
    skip |= {plan.views[v].buffer for v in operands if graph[v].kind is OpKind.KV_APPEND}
    dense, at, param_bytes = [], 0, 0
    for name in [*tables, *(n for n in plan.buffers if n not in set(tables))]:
        b = plan.buffers[name]
        if name in skip:
            continue
        if name in tables:
            check_gather_reach(name, "dram", at)
        dense.append(isa.Symbol(symbol_name(b.name), "dram", at, b.shape, b.dtype))
        size = -(-math.prod(b.shape) * b.dtype.itemsize // ALIGN) * ALIGN
        at += size
        param_bytes += size if b.role == "param" else 0
    for name, fmt in quantised.items():           # each weight's scales, a row per group
        check_quantised(arch, name, fmt)
        groups = fmt.rows // fmt.group
        dense.append(isa.Symbol(symbol_name(name) + SCALES_SUFFIX, "dram", at, (groups, fmt.cols),
                                DType.fp32))
        at += -(-groups * fmt.cols * 4 // ALIGN) * ALIGN
    constants = sum(-(-math.prod(shape) * 4 // ALIGN) * ALIGN for shape in constant_shapes(graph).values())
    next_row = -(-at // arch.row_block_bytes) + max(_CONSTANT_ROWS, -(-constants // arch.row_block_bytes) + 1)
    act_limit = next_row * arch.row_block_bytes
    matrices, regions, rows = {}, [], {"linear": 0, "kcache": 0, "vcache": 0}
    for value, (kind, op) in operands.items():
        blocks = _blocks(graph, arch, abuf, value, kind, op, next_row, quantised.get(value))
        for m in blocks:
            shape = (m.layout.rows, arch.channels, arch.banks, arch.row_bytes // 2)
            regions.append(isa.Symbol(m.symbol, "dram", arch.dram_address(0, 0, m.layout.first_row),
                                      shape, DType.bf16))
            next_row += m.layout.rows
            rows[kind] += m.layout.rows
        matrices[value] = blocks
    if next_row > arch.rows:
        block = arch.row_block_bytes
        weights = rows["linear"] * block + param_bytes
        kv = (rows["kcache"] + rows["vcache"]) * block
        raise CompileError(f"{graph.name} needs {next_row * block:,} bytes of PIM DRAM ({next_row:,} rows "
                           f"per bank): weights {weights:,} (as placed), KV cache {kv:,}, "
                           f"activations and constants {act_limit - param_bytes:,}; {arch.name} has "
                           f"{arch.dram_bytes:,} ({arch.rows:,} rows per bank)")
    return PimPlacement(abuf, tuple(dense), tuple(regions), at, act_limit, matrices)


def _queries(graph: Graph, op: Op, heads: int) -> int:
    """Query rows per stored KV head of an attention matmul: G for grouped-query attention
    (a [B, Hkv, G, S, Dh] against a cache of Hkv heads), 1 otherwise."""
    a = graph[op.inputs[0]].type.shape
    rows = math.prod(a[1:-2])
    if len(a) < 4 or a[0] != 1 or rows % heads:
        raise CompileError(f"op '{op.name}': attention input {list(a)} is not [1, heads, seq, x] "
                           f"or [1, {heads}, group, seq, x]")
    return rows // heads


def check_quantised(arch: PimArch, name: str, fmt: StoredFormat) -> None:
    """What the PIM target runs of a quantised weight: codes a MAC lane splits into (2, 4 or 8
    bits, pim.qmode), and scale groups the MAC columns and the global-buffer fills tile:
    the ASIC applies a scale per output channel to each output's sum, and group-wise scales
    to each group's partial sum (one per group and output) before it adds them."""
    if not fmt.code.integer or fmt.bits not in (2, 4, 8):
        raise CompileError(f"weight '{name}' in {fmt.format}: the PIM MAC lanes take 2-, 4- or "
                           "8-bit integer codes")
    if fmt.layout == "planes":
        raise CompileError(f"weight '{name}' in {fmt.describe()}: bit-nested weights are not "
                           "built on the PIM target (its MAC lanes read whole codes)")
    lanes, chunk = pl.mac_lanes(arch, fmt.bits), pl.gbuf_elems(arch)
    if fmt.rows % lanes:
        raise CompileError(f"weight '{name}': reduction length {fmt.rows} is not a multiple of "
                           f"the {lanes} {fmt.format} codes a MAC column reads")
    if fmt.group != fmt.rows and (fmt.group % lanes or (chunk % fmt.group and fmt.group % chunk)):
        raise CompileError(f"weight '{name}' in {fmt.describe()}: on the PIM target a scale group "
                           f"holds whole MAC columns ({lanes} codes) and divides, or is a multiple "
                           f"of, the {chunk} inputs of a global-buffer fill")


def _blocks(graph: Graph, arch: PimArch, abuf: dict[str, tuple[int, int]], value: str, kind: str,
            op: Op | None, first_row: int, fmt: StoredFormat | None = None) -> tuple[PimMatrix, ...]:
    """A value's PIM matrices from `first_row` on: a linear weight in blocks of output columns
    whose partial sums fit the ASIC buffer (`fmt`: stored as its codes), a K or V cache whole."""
    shape = graph[value].type.shape
    psum_bytes = abuf["psum0"][1]
    who = f"op '{op.name}'" if op is not None else f"weight '{value}'"
    if kind == "linear":
        transpose = op is not None and op.kind is OpKind.MATMUL and op.attr("transpose_b", False)
        k, n = (shape[1], shape[0]) if transpose else shape
        if k % arch.macs_per_bank_per_access:
            raise CompileError(f"{who}: reduction length {k} is not a multiple of "
                               f"the {arch.macs_per_bank_per_access} MAC lanes")
        lanes = arch.channels * arch.banks
        chunks = -(-k // pl.gbuf_elems(arch))       # partial sums per output: chunks or groups
        if fmt is not None and fmt.group < min(k, pl.gbuf_elems(arch)):
            chunks = k // fmt.group
        block = min(psum_bytes // (4 * chunks), abuf["vp_out"][1] // 2 // 2,
                    abuf["vp_in"][1] // 2 // 4) // lanes * lanes
        if block < lanes:
            raise CompileError(f"{who}: {chunks} chunks of partial sums do not fit "
                               "the ASIC buffer")
        out, row = [], first_row
        bits = 16 if fmt is None else fmt.bits
        scales = None if fmt is None else symbol_name(value) + SCALES_SUFFIX
        for n0 in range(0, n, block):
            nb = min(block, n - n0)
            lay = pl.linear_layout(f"{value}.{n0}", arch, row, k, nb, bits,
                                   None if fmt is None or fmt.group == k else fmt.group)
            out.append(PimMatrix(kind, value, n0, nb, lay, bool(transpose), scales=scales))
            row += lay.rows
        return tuple(out)
    heads, positions, hd = shape[-3], shape[-2], shape[-1]
    queries = _queries(graph, op, heads)
    if kind == "kcache" and hd % arch.macs_per_bank_per_access:
        raise CompileError(f"{who}: head dimension {hd} (the reduction of q . K) is not "
                           f"a multiple of the {arch.macs_per_bank_per_access} MAC lanes")
    if kind == "kcache" and queries * hd > pl.gbuf_elems(arch):
        raise CompileError(f"{who}: the {queries} query rows of a KV head ({queries} x {hd} "
                           f"bf16) exceed the {arch.gbuf_bytes}-byte global buffer")
    build = pl.kcache_layout if kind == "kcache" else pl.vcache_layout
    lay = build(value, arch, first_row, heads, positions, hd, queries)
    rows = heads * queries
    xin_bytes = abuf["xin0"][1]
    x_bytes = rows * (hd if kind == "kcache" else positions) * 2
    if lay.psum_elems * 4 <= psum_bytes and x_bytes <= 2 * xin_bytes:
        return (PimMatrix(kind, value, 0, 0, lay, False),)
    return (PimMatrix(kind, value, 0, 0, lay, False,
                      _pieces(arch, who, kind, lay, heads, positions, hd, psum_bytes, xin_bytes)),)


def _pieces(arch: PimArch, who: str, kind: str, lay: pl.GemvLayout, heads: int, positions: int,
            hd: int, psum_bytes: int, xin_bytes: int) -> tuple[pl.Piece, ...]:
    """A long context's attention GEMV in pieces over positions (layout.py): K in blocks of
    lane groups whose partial sums fill at most one partial-sum buffer, V in ranges of the
    softmax row that fit one GEMV input buffer; refused when one lane group (K) or a 16-wide
    range (V) is already too much."""
    rows = heads * lay.queries
    lanes = arch.macs_per_bank_per_access
    if kind == "kcache":
        groups = psum_bytes // (4 * rows * arch.channels * arch.banks)
        if groups < 1:
            raise CompileError(f"{who}: {rows} query rows x {arch.channels * arch.banks} positions "
                               f"of partial sums exceed the ASIC buffer's {psum_bytes:,}-byte "
                               "partial-sum area")
        return pl.kcache_pieces(arch, lay, positions, groups)
    width = xin_bytes // (2 * rows) // lanes * lanes
    chunk = pl.vcache_chunk(arch, lay, positions, hd)
    if width >= chunk:
        width = max(1, min(width // chunk, psum_bytes // (4 * rows * hd))) * chunk
    if width < lanes:
        raise CompileError(f"{who}: {rows} query rows x {lanes} positions of softmax input exceed "
                           f"the ASIC's {xin_bytes:,}-byte GEMV input buffer")
    pieces = pl.vcache_pieces(arch, lay, heads, positions, hd, width)
    worst = max(p.psum_elems for p in pieces)
    if worst * 4 > psum_bytes:
        raise CompileError(f"{who}: {worst:,} partial sums of a {width}-position piece exceed the "
                           f"ASIC buffer's {psum_bytes:,}-byte partial-sum area")
    return pieces
