"""Lowering to a PIM-DRAM system (PIM-GPT style): GEMVs in the DRAM banks, the rest on the ASIC.

Placement (compiler/passes/pim_layout.py for the PIM matrices):
- DRAM rows [0, A): the activation region, one dense buffer per graph value that is not a
  PIM matrix (activations, inputs, biases and gains in fp32, the embedding tables, causal
  masks), moved to and from the ASIC buffer by dma0 (loads) and dma1 (stores).
- DRAM rows [A, ...): PIM matrices, one region each: linear weights (and the tied LM head),
  split into output blocks whose partial sums fit the ASIC's buffer, and per layer the K
  cache (row-major) and V cache (column-major).
- ASIC buffer (abuf): vector rings and scratch (compiler/targets/vector.py), the GEMV input
  vector, the partial sums, staging for KV-cache writes.

A GEMV (one input row): dma0 loads the row into abuf and signals every channel; each pim
queue fills its global buffer (pim.wrgb), runs its segments (pim.act_all, pim.mac_all,
pim.rdmac_all into abuf, pim.pre_all) and signals; the ASIC adds the partial sums of the
chunks, adds the bias, rounds to BF16, and dma1 stores the result; the next GEMV's load
waits until the ASIC is done with the buffers. Prefill runs one GEMV per token.

KV cache: a new K position is written whole (pim.act, pim.wr, pim.pre); a new V position
touches one 16-lane burst per (head, bank dimension group) of the column-major layout,
so it is read, patched by a strided DMA and written back (pim.rd, load, pim.wr).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import isa
from isa import Addr, DType
from isa.numerics import to_storage

from arch.pim import PimArch
from compiler.ir import Graph, Op, OpKind
from compiler.passes import pim_layout as pl
from compiler.passes.storage import StoragePlan, View
from compiler.targets.data import program_data, target_storage
from compiler.targets.movement import lower_embedding
from compiler.targets.emit import (lower_op, CompileError, Emitter, Matrix, Ring, symbol_name,
                                   view_batches, view_matrix)
from compiler.targets.pim_kv import KvCacheWrites
from compiler.targets.vector import VectorLowering

__all__ = ["lower", "PimLowered"]

_ALIGN = 64
F32 = DType.fp32
# abuf regions in KiB (the preset's buffer must hold them; arch/configs/pim-gpt.toml)
# The GEMV input (xin) and partial sums (psum) are double-buffered: a GEMV's MACs may run
# while the ASIC still reduces the one before (when it does not depend on it).
_ABUF_KIB = {"vp_in": 48, "vp_out": 48, "copy": 16, "scratch": 48, "xin0": 16, "xin1": 16,
             "psum0": 64, "psum1": 64, "kstage": 4, "vstage": 32}


@dataclass(frozen=True)
class PimLowered:
    """A compiled program and how graph values map onto its symbols (as targets.Lowered)."""

    program: isa.Program
    plan: StoragePlan
    dtype: DType
    constants: dict
    arch: PimArch
    matrices: dict            # symbol -> (layout kind, GemvLayout, graph value, first output, transposed)
    assumptions: tuple[str, ...] = (
        "GEMVs in the DRAM banks (one per token in prefill), everything else on the host ASIC",
        "activations round-trip the DRAM's activation region between ops (ASIC DMA)")

    def initial_data(self, graph: Graph, weights, feeds) -> dict[str, np.ndarray]:
        """Symbol -> initial contents: dense values as targets.data does, PIM matrices
        scattered into their bank layout (weights, and a decode pass's KV cache so far)."""
        symbols = {s.name for s in self.program.symbols}
        data = {k: v for k, v in program_data(graph, self.plan, self.constants, weights, feeds).items()
                if k in symbols}
        arch = self.arch
        for name, (kind, lay, value, n0, transposed) in self.matrices.items():
            if kind == "linear":
                w = np.asarray(weights[value], np.float64)
                w = w.T if transposed else w
                n = lay.psum_elems // len(lay.passes)
                rows = pl.scatter_linear(arch, lay, w[:, n0:n0 + min(n, w.shape[1] - n0)])
            elif graph[value].kind is OpKind.KV_APPEND:
                cache = np.asarray(feeds[graph[value].inputs[0]], np.float64)[0]
                positions = graph[value].type.shape[-2]
                rows = (pl.scatter_kcache(arch, lay, cache) if kind == "kcache"
                        else pl.scatter_vcache(arch, lay, cache, positions))
            else:
                continue                                  # written by the program itself
            data[name] = to_storage(rows, DType.bf16)
        return data


class _PimLowering(KvCacheWrites):
    def __init__(self, graph: Graph, arch: PimArch, dtype: DType) -> None:
        if dtype is not DType.bf16:
            raise CompileError(f"the PIM target computes in bf16 (the MAC units' type), not {dtype.value}")
        self.graph, self.arch, self.dtype = graph, arch, dtype
        self.plan = target_storage(graph, dtype)
        self.em = Emitter("pim")
        self.pim_queues = tuple(f"pim{c}" for c in range(arch.channels))
        self._abuf()
        self.matrices: dict[str, tuple] = {}
        self._place()
        # go[c]: dma0 -> pim queue c (its input is staged); done[j]: pim -> ASIC (partial
        # sums in buffer j; one per buffer, so a channel already on the next GEMV cannot stand
        # in for a slower one); free: ASIC -> dma0 (a GEMV's buffers free, in order); staged:
        # pim -> dma0 (KV staging free again). Per-channel `go` so no queue takes another's.
        self.go = [self.em.semaphore() for _ in self.pim_queues]
        self.done = [self.em.semaphore() for _ in range(2)]
        self.free, self.staged = (self.em.semaphore() for _ in range(2))
        self.fence = self.em.semaphore()          # dma0 -> dma0: its loaded data has landed
        self._gemvs = 0                            # GEMVs so far (buffer = count mod 2)
        self._stage_pending = False
        self._written: set[str] = set()

    # -- memory ------------------------------------------------------------------------
    def _abuf(self) -> None:
        need = sum(_ABUF_KIB.values()) * 1024
        if self.arch.asic.buffer_bytes < need:
            raise CompileError(f"the PIM lowering needs {need:,} bytes of ASIC buffer "
                               f"(asic.buffer_bytes is {self.arch.asic.buffer_bytes:,})")
        at, self.abuf = 0, {}
        for name, kib in _ABUF_KIB.items():
            self.abuf[name] = (at, kib * 1024)
            at += kib * 1024
        ring = lambda name, p, c: Ring(self.em, "abuf", self.abuf[name][0], self.abuf[name][1] // 2, 2, p, c)
        self.vp_in, self.vp_out = ring("vp_in", "dma0", "asic0"), ring("vp_out", "asic0", "dma1")
        self.copy = ring("copy", "dma0", "dma1")
        self.vector = VectorLowering(self.em, self.vp_in, self.vp_out, self.abuf["scratch"], self.dtype)

    def addr(self, region: str, offset: int = 0) -> Addr:
        return Addr("abuf", self.abuf[region][0] + offset)

    def _pim_operands(self) -> dict[str, tuple[str, Op]]:
        """Values stored as PIM matrices: name -> (kind, consuming or producing op)."""
        out = {}
        for op in self.graph.ops:
            if op.kind is OpKind.LINEAR:
                out[op.inputs[1]] = ("linear", op)
            elif op.kind is OpKind.MATMUL:
                b = op.inputs[1]
                if self.graph[b].kind is OpKind.PARAM:
                    out[b] = ("linear", op)
                else:
                    out[b] = ("kcache" if op.attr("transpose_b", False) else "vcache", op)
        return out

    def _place(self) -> None:
        a, plan = self.arch, self.plan
        self.pim_values = self._pim_operands()
        tables = self._also_dense()
        skip = {plan.views[v].buffer for v, (kind, _) in self.pim_values.items()
                if self.graph[v].kind is OpKind.PARAM and v not in tables}
        skip |= {plan.views[v].buffer for v, (kind, _) in self.pim_values.items()
                 if self.graph[v].kind is OpKind.KV_APPEND}
        self.symbols: list[isa.Symbol] = []
        at = 0
        buffers = sorted(plan.buffers.values(), key=lambda b: b.name != "wte.weight")
        for b in buffers:
            if b.name in skip:
                continue
            name = symbol_name(b.name)
            self.em.addresses[name], self.em.itemsize[name] = at, b.dtype.itemsize
            self.symbols.append(isa.Symbol(name, "dram", at, b.shape, b.dtype))
            at += -(-math.prod(b.shape) * b.dtype.itemsize // _ALIGN) * _ALIGN
        self._act_end = at
        self.next_row = -(-at // a.row_block_bytes) + 64         # room for constants
        self._act_limit = self.next_row * a.row_block_bytes
        self.layouts: dict[str, list] = {}
        for value, (kind, op) in self.pim_values.items():
            self.layouts[value] = self._layouts(value, kind, op)
        if self.next_row > a.rows:
            need = self.next_row * a.row_block_bytes
            raise CompileError(f"the model needs {need:,} bytes of PIM DRAM ({self.next_row:,} rows "
                               f"per bank: weights, KV cache, activations); {a.name} has "
                               f"{a.dram_bytes:,} ({a.rows:,} rows)")

    def _also_dense(self) -> set[str]:
        """Parameters also read densely (the tied embedding table)."""
        return {op.inputs[0] for op in self.graph.ops if op.kind is OpKind.EMBEDDING}

    def _region(self, layout: pl.GemvLayout, tag: str) -> None:
        a = self.arch
        name = symbol_name(f"pim.{tag}")
        shape = (layout.rows, a.channels, a.banks, a.row_bytes // 2)
        self.symbols.append(isa.Symbol(name, "dram", a.dram_address(0, 0, layout.first_row), shape,
                                       DType.bf16))
        self.next_row += layout.rows

    def _layouts(self, value: str, kind: str, op: Op) -> list:
        a = self.arch
        shape = self.graph[value].type.shape
        if kind == "linear":
            transpose = op.kind is OpKind.MATMUL and op.attr("transpose_b", False)
            k, n = (shape[1], shape[0]) if transpose else shape
            if k % a.macs_per_bank_per_access:
                raise CompileError(f"op '{op.name}': reduction length {k} is not a multiple of "
                                   f"the {a.macs_per_bank_per_access} MAC lanes")
            lanes = a.channels * a.banks
            chunks = -(-k // pl.gbuf_elems(a))
            block = min(self.abuf["psum0"][1] // (4 * chunks), self.vp_out.slot_bytes // 2,
                        self.vp_in.slot_bytes // 4) // lanes * lanes
            if block < lanes:
                raise CompileError(f"op '{op.name}': {chunks} chunks of partial sums do not fit "
                                   "the ASIC buffer")
            out = []
            for n0 in range(0, n, block):
                nb = min(block, n - n0)
                lay = pl.linear_layout(f"{value}.{n0}", a, self.next_row, k, nb)
                self._region(lay, f"{value}.{n0}")
                out.append((n0, nb, lay, transpose))
            return out
        heads, positions, hd = shape[-3], shape[-2], shape[-1]
        build = pl.kcache_layout if kind == "kcache" else pl.vcache_layout
        lay = build(value, a, self.next_row, heads, positions, hd)
        if lay.psum_elems * 4 > self.abuf["psum0"][1]:
            raise CompileError(f"op '{op.name}': {lay.psum_elems:,} partial sums exceed the ASIC "
                               f"buffer's {self.abuf['psum0'][1]:,}-byte partial-sum area")
        self._region(lay, value)
        return [(0, 0, lay, False)]

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        at = self._act_end
        self.em.addresses[name], self.em.itemsize[name] = at, 4
        self.symbols.append(isa.Symbol(name, "dram", at, shape, F32))
        self._act_end += -(-math.prod(shape) * 4 // _ALIGN) * _ALIGN
        if self._act_end > self._act_limit:
            raise CompileError(f"constants need {self._act_end:,} bytes of the activation region "
                               f"({self._act_limit:,})")

    # -- shared with the vector lowering (the systolic _Lowering's interface) -----------
    matrix = staticmethod(view_matrix)
    batches = staticmethod(view_batches)

    # -- program -----------------------------------------------------------------------
    def lower(self) -> PimLowered:
        for op in self.graph.ops:
            if op.kind.is_source or op.kind.is_layout:
                continue
            lower_op(self, op, "dma0", "dma1")
        queues = ("dma0", "dma1", "asic0") + self.pim_queues
        program = self.em.program(("dram", "gbuf", "abuf"), tuple(self.symbols), queues)
        matrices = {symbol_name(f"pim.{lay.name}"): (self.pim_values[v][0], lay, v, n0, transpose)
                    for v, ls in self.layouts.items() for n0, _, lay, transpose in ls}
        return PimLowered(program, self.plan, self.dtype, dict(self.vector.constants), self.arch,
                          matrices)

    # -- GEMV --------------------------------------------------------------------------
    def _gemv(self, layout: pl.GemvLayout, load_input) -> int:
        """One GEMV over `layout`: input into this GEMV's xin buffer (load_input(address)
        emits dma0 loads), all pim queues run their passes, the ASIC then owns the partial
        sums; returns their address. Buffers alternate: dma0 waits for the ASIC to release
        the GEMV two back (releases come in order), so a GEMV that does not need the one
        before overlaps its reduction."""
        em, j = self.em, self._gemvs % 2
        if self._gemvs >= 2:
            em.emit("dma0", "wait", sem=self.free)
        self._gemvs += 1
        load_input(self.addr(f"xin{j}"))
        active = [c for c in range(self.arch.channels)
                  if any(p.fills[c] is not None for p in layout.passes)]
        for c in active:
            em.emit("dma0", "signal", sem=self.go[c])
        psum = self.abuf[f"psum{j}"][0]
        for c in active:
            q = self.pim_queues[c]
            em.emit(q, "wait", sem=self.go[c])
            for p in layout.passes:
                fill = p.fills[c]
                if fill is None:
                    continue
                first, count = fill
                nbytes = -(-count * 2 // self.arch.burst_bytes) * self.arch.burst_bytes
                em.emit_fast(q, "pim.wrgb", 0, self.addr(f"xin{j}", first * 2), nbytes)
                self._segments(q, layout, p, c, psum)
            em.emit(q, "signal", sem=self.done[j])
        for _ in active:
            em.emit("asic0", "wait", sem=self.done[j])
        return psum

    def _segments(self, q: str, layout: pl.GemvLayout, p: pl.Pass, c: int, psum: int) -> None:
        """One channel's rows of a pass: ACT_ALL, MAC_ALL runs, RDMAC_ALL as each output
        completes, PRE_ALL. (The hot loop of the lowering: `layout.cell` inlined.)"""
        em = self.em
        emit, per_row = em.emit_fast, self.arch.row_bytes // 2
        lanes, first_row = self.arch.macs_per_bank_per_access, layout.first_row
        base = psum + c * layout.channel_stride * 4
        open_row = None
        for seg in p.segments:
            at, left, gb = seg.start, seg.length, seg.gb_bytes
            while left:
                row, within = divmod(at, per_row)
                n = min(left, per_row - within)
                if row != open_row:
                    if open_row is not None:
                        emit(q, "pim.pre_all")
                    emit(q, "pim.act_all", first_row + row)
                    open_row = row
                emit(q, "pim.mac_all", within // lanes, n // lanes, gb)
                at, left, gb = at + n, left - n, gb + n * 2
            emit(q, "pim.rdmac_all", Addr("abuf", base + seg.out * 4))
        if open_row is not None:
            emit(q, "pim.pre_all")

    def _finish(self, psum: int, rows: int, cols: int, stride_elems: int, chunk_elems: int,
                chunks: int, bias: Matrix | None, out: Matrix) -> None:
        """psum [chunks x rows x stride] -> sum chunks (+ bias) -> bf16 -> out (rows x cols);
        the GEMV's buffers are released once the sums are read."""
        v, em = self.vector, self.em
        v.cfg(rows, stride_elems, F32, F32)
        for k in range(1, chunks):
            v.vec("add", Addr("abuf", psum), Addr("abuf", psum), Addr("abuf", psum + k * chunk_elems * 4))
        if bias is not None:
            b = self.vp_in.acquire()
            em.load("dma0", b, bias)
            self.vp_in.filled()
            self.vp_in.take()
        o = self.vp_out.acquire()
        v.cfg(rows, stride_elems, F32, self.dtype)
        if bias is not None:
            v.vec("add", o, Addr("abuf", psum), b, "col")
            self.vp_in.release()
        else:
            v.vec("copy", o, Addr("abuf", psum))
        em.emit("asic0", "signal", sem=self.free)
        self.vp_out.filled()
        self.vp_out.take()
        em.pitch("dma1", stride_elems * 2, out.stride * 2 if out.rows > 1 else 0)
        em.emit("dma1", "store", dst=em.dram(out), src=o, rows=out.rows, row_bytes=cols * 2)
        self.vp_out.release()

    def op_linear(self, op: Op) -> None:
        x = self.matrix(self.plan.views[op.inputs[0]])
        out = self.matrix(self.plan.views[op.name])
        bias = self.matrix(self.plan.views[op.inputs[2]]) if len(op.inputs) == 3 else None
        self._linear(op.inputs[1], x, out, bias)

    def _linear(self, weight: str, x: Matrix, out: Matrix, bias: Matrix | None) -> None:
        for n0, nb, lay, _ in self.layouts[weight]:
            chunks = len(lay.passes)
            n_pad = lay.psum_elems // chunks
            for t in range(x.rows):
                psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x.block(t, 1, 0, x.cols)))
                self._finish(psum, 1, nb, n_pad, n_pad, chunks,
                             bias.block(0, 1, n0, nb) if bias else None, out.block(t, 1, n0, nb))

    def op_matmul(self, op: Op) -> None:
        a_view, b_name = self.plan.views[op.inputs[0]], op.inputs[1]
        out_view = self.plan.views[op.name]
        kind = self.pim_values[b_name][0]
        if kind == "linear":
            self._linear(b_name, self.matrix(a_view), self.matrix(out_view), None)
            return
        self._ensure_written(b_name)
        lay = self.layouts[b_name][0][2]
        heads, rows = a_view.shape[-3], a_view.shape[-2]
        for t in range(rows):
            x_rows = self._head_rows(a_view, t, flat=True)
            psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x_rows))
            if kind == "kcache":
                scores = self._head_rows(out_view, t, flat=False)
                self._finish(psum, heads, scores.cols, lay.psum_elems // heads, 0, 1, None, scores)
            else:
                context = self._head_rows(out_view, t, flat=True)
                if context.rows != 1:
                    raise CompileError(f"op '{op.name}': the heads of a context row are not contiguous")
                width = context.cols
                self._finish(psum, 1, width, width, width, lay.psum_elems // width, None, context)

    def _head_rows(self, view: View, t: int, flat: bool) -> Matrix:
        """Row t of every head of a [1, H, S, X] view: H rows, or one row when `flat` and the
        heads are contiguous."""
        if len(view.shape) != 4 or view.shape[0] != 1:
            raise CompileError(f"attention value in '{view.buffer}' is not [1, heads, seq, x]")
        heads, _, cols = view.shape[1:]
        if view.strides[3] != 1:
            raise CompileError(f"attention value in '{view.buffer}' has strided rows")
        offset = view.offset + t * view.strides[2]
        if flat and (heads == 1 or view.strides[1] == cols):
            return Matrix(symbol_name(view.buffer), offset, 1, heads * cols, heads * cols)
        return Matrix(symbol_name(view.buffer), offset, heads, cols, view.strides[1])

    # -- KV cache ------------------------------------------------------------------------
    def _ensure_written(self, value: str) -> None:
        """Prefill: K or V computed in this pass goes into its PIM layout before use."""
        if self.graph[value].kind is OpKind.KV_APPEND or value in self._written:
            return
        self._written.add(value)
        view = self.plan.views[value]
        self._write_positions(value, view, 0, view.shape[-2], view.shape[-2])

    def op_kv_append(self, op: Op) -> None:
        if op.name not in self.pim_values:
            raise CompileError(f"op '{op.name}': the KV cache is not read by an attention matmul")
        new = self.plan.views[op.inputs[1]]
        total = self.graph[op.name].type.shape[-2]
        self._write_positions(op.name, new, total - new.shape[-2], total, total)

    # -- embedding ---------------------------------------------------------------------
    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.copy, 2, _ALIGN)


def lower(graph: Graph, arch: PimArch, dtype: DType | None = None) -> PimLowered:
    """Compile `graph` for the PIM system `arch` (bf16 only)."""
    return _PimLowering(graph, arch, dtype or DType(arch.dtype)).lower()
