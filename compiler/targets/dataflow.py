"""Lowering to a three-tier dataflow accelerator (SN40L style): sections of fused ops.

The graph is partitioned into sections (compiler/passes/sections.py) and its buffers placed
in PMUs, HBM or DDR (dataflow_place.py). Each call is, on ctl0: `df.section` (configure),
a go token per body queue, `df.run` (stream the tiles; its duration is the section's
pipeline, sim/pipeline.py), then one done token per body queue. The body holds what every
stage computes on its tiles, with the core ISA: agcu0 loads off-chip tiles and streams
PMU-resident values (df.stream) into staging rings, pcu0 runs GEMMs (systolic mode), pcu1
the epilogues and vector ops (SIMD mode, the shared VectorLowering), agcu1 stores (to HBM,
or df.stream into a PMU-resident value), dma0 gathers embedding rows. docs/dataflow.md.
"""
from __future__ import annotations

import math

import isa
from isa import Addr, DType
from isa.fields import A32

from arch.dataflow import DataflowArch
from compiler.ir import Graph, Op, OpKind
from compiler.passes.sections import Call, partition
from compiler.passes.storage import View
from compiler.targets.dataflow_place import ALIGN, place
from compiler.targets.movement import lower_embedding, lower_kv_append
from compiler.targets.data import target_storage
from compiler.targets.emit import (lower_op, CompileError, Emitter, Matrix, Ring, symbol_name, view_batches,
                                   view_matrix)
from compiler.targets.systolic import Lowered
from compiler.targets.tiling import MAX_TILE, GemmTile, gemm_tile
from compiler.targets.vector import VectorLowering

__all__ = ["lower", "BODY_QUEUES", "RING_SHARE"]

BODY_QUEUES = ("dma0", "agcu0", "agcu1", "pcu0", "pcu1")
RING_SHARE = 0.25        # of the SRAM for staging rings; the rest holds section-resident values
RING_MAX_BYTES = 64 << 20  # staging rings beyond this gain nothing (tiles are whole matrices by then)
# On-chip operands are A32: 28-bit byte addresses (docs/isa.md), so a program reaches the
# first 256 MiB of the PMUs; a larger SRAM is used only up to there.
SRAM_REACH_BYTES = 1 << A32.addr_bits
# Shares of the ring area, two slots per ring (B tiles twice A's, as the systolic target; the
# GEMM accumulator is a PMU buffer here); the last 20 % is fp32 scratch for the SIMD stages.
_SHARES = {"mx_a": 0.06, "mx_b": 0.12, "acc": 0.06, "vp_in": 0.06, "vp_out": 0.06,
           "copy": 0.02, "gather": 0.02}
_RINGS = {"mx_a": ("agcu0", "pcu0"), "mx_b": ("agcu0", "pcu0"), "acc": ("pcu0", "pcu1"),
          "vp_in": ("agcu0", "pcu1"), "vp_out": ("pcu1", "agcu1"), "copy": ("agcu0", "agcu1"),
          "gather": ("dma0", "agcu1")}
_TILE_BYTES_MAX = (1 << 24) - 1    # df.stream tile_bytes is a U24


class _TierEmitter(Emitter):
    """Emitter whose symbols live in several spaces; windows of PMU-resident values move
    with df.stream (one per row when the rows are not contiguous)."""

    def __init__(self) -> None:
        super().__init__("dataflow")
        self.space: dict[str, str] = {}

    def dram(self, m: Matrix) -> Addr:
        return Addr(self.space[m.symbol], self.addresses[m.symbol] + m.offset * self.itemsize[m.symbol])

    def _stream(self, queue: str, dst: Addr, src: Addr, rows: int, row_bytes: int,
                dst_pitch: int, src_pitch: int) -> None:
        if row_bytes > _TILE_BYTES_MAX:
            raise CompileError(f"a PMU stream row of {row_bytes} bytes exceeds df.stream's {_TILE_BYTES_MAX}")
        if rows == 1 or (dst_pitch == row_bytes and src_pitch == row_bytes):
            self.emit(queue, "df.stream", dst=dst, src=src, tiles=rows, tile_bytes=row_bytes)
            return
        for r in range(rows):
            self.emit(queue, "df.stream", dst=dst + r * dst_pitch, src=src + r * src_pitch,
                      tiles=1, tile_bytes=row_bytes)

    def load(self, queue: str, dst: Addr, m: Matrix) -> None:
        if self.space[m.symbol] != "sram":
            return super().load(queue, dst, m)
        size = self.itemsize[m.symbol]
        self._stream(queue, dst, self.dram(m), m.rows, m.cols * size, m.cols * size, m.stride * size)

    def store(self, queue: str, m: Matrix, src: Addr) -> None:
        if self.space[m.symbol] != "sram":
            return super().store(queue, m, src)
        size = self.itemsize[m.symbol]
        self._stream(queue, self.dram(m), src, m.rows, m.cols * size, m.stride * size, m.cols * size)


class _Lowering:
    def __init__(self, graph: Graph, arch: DataflowArch, dtype: DType) -> None:
        self.graph, self.arch, self.dtype = graph, arch, dtype
        self.plan = target_storage(graph, dtype)
        sram = min(arch.sram_bytes, SRAM_REACH_BYTES)
        ring_bytes = min(int(sram * RING_SHARE), RING_MAX_BYTES) // ALIGN * ALIGN
        self.ring_bytes = ring_bytes
        self.calls = partition(graph, self.plan, arch.kernel_granularity, arch.pcus, sram - ring_bytes)
        self.placement = place(graph, self.plan, self.calls, arch, ring_bytes, sram, _mask_bytes(graph))
        self.em = _TierEmitter()
        self.symbols: list[isa.Symbol] = []
        for name, (space, addr) in self.placement.where.items():
            buf = self.plan.buffers[name]
            self._symbol(symbol_name(name), space, addr, buf.shape, buf.dtype)
        self._hbm_end = self.placement.hbm_end
        self.rings, base = {}, 0
        for ring, (producer, consumer) in _RINGS.items():
            slot = int(ring_bytes * _SHARES[ring]) // ALIGN * ALIGN
            self.rings[ring] = Ring(self.em, "sram", base, slot, 2, producer, consumer)
            base += 2 * slot
        self.vector = VectorLowering(self.em, self.rings["vp_in"], self.rings["vp_out"],
                                     (base, ring_bytes - base), dtype)
        self._mcfg: tuple | None = None
        self._go = {q: self.em.semaphore() for q in BODY_QUEUES}
        self._done = self.em.semaphore()
        self._configs: dict[str, int] = {}

    # -- memory ------------------------------------------------------------------------
    def _symbol(self, name: str, space: str, addr: int, shape: tuple[int, ...], dtype: DType) -> None:
        """Off-chip buffers become program symbols; a PMU-resident value is only an address
        (sections run one at a time and reuse the same PMU space, so such values overlap)."""
        self.em.addresses[name], self.em.itemsize[name], self.em.space[name] = addr, dtype.itemsize, space
        if space != "sram":
            self.symbols.append(isa.Symbol(name, space, addr, shape, dtype))

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        """A read-only fp32 tensor in HBM (its values travel in the data blob)."""
        self._symbol(name, "hbm", self._hbm_end, shape, DType.fp32)
        self._hbm_end += -(-math.prod(shape) * 4 // ALIGN) * ALIGN

    def matrix(self, view: View) -> Matrix:
        return view_matrix(view)

    def batches(self, view: View, keep: int) -> list[View]:
        return view_batches(view, keep)

    # -- calls -------------------------------------------------------------------------
    def lower(self) -> Lowered:
        for call in self.calls:
            self.call(call)
        spaces = ("sram", "hbm", "ddr")
        program = self.em.program(spaces, tuple(self.symbols), ("ctl0",) + BODY_QUEUES)
        granularity = self.arch.kernel_granularity
        return Lowered(program, self.plan, self.dtype, dict(self.vector.constants),
                       (f"kernel granularity '{granularity}': a value used only inside one section "
                        "stays in the PMUs, the rest goes through HBM; weights in HBM, then DDR",))

    def call(self, call: Call) -> None:
        em, first = self.em, call.sections[0]
        config = self._configs.setdefault(first.config, len(self._configs))
        stages = len(first.ops)
        resident = max(self.placement.internal_peak_bytes.get(self.placement.section_of[s.ops[0]], 0)
                       for s in call.sections)
        pmus = min(self.arch.pmus, -(-(self.ring_bytes + resident) // self.arch.pmu_bytes))
        em.emit("ctl0", "df.section", id=config, stages=stages, pcus=self.arch.pcus, pmus=pmus)
        for q in BODY_QUEUES:
            em.emit("ctl0", "signal", sem=self._go[q])
        em.emit("ctl0", "df.run", id=config, tiles=self._tiles(first), loops=call.loops)
        for q in BODY_QUEUES:
            em.emit(q, "wait", sem=self._go[q])
        for section in call.sections:
            for name in section.ops:
                self.op(self.graph[name])
        for q in BODY_QUEUES:
            em.emit(q, "signal", sem=self._done)
        for _ in BODY_QUEUES:
            em.emit("ctl0", "wait", sem=self._done)

    def _tiles(self, section) -> int:
        """Pipeline steps of one iteration: the largest operand streamed, in PMU-sized tiles."""
        largest = max(_streamed_bytes(self.graph, self.graph[name]) for name in section.ops)
        return max(1, min(-(-largest // self.arch.pmu_bytes), (1 << 32) - 1))

    def op(self, op: Op) -> None:
        lower_op(self, op, "agcu0", "agcu1")

    # -- ops ---------------------------------------------------------------------------
    def op_linear(self, op: Op) -> None:
        a, b = (self.matrix(self.plan.views[n]) for n in op.inputs[:2])
        bias = self.matrix(self.plan.views[op.inputs[2]]) if len(op.inputs) == 3 else None
        self.gemm(op, a, b, self.matrix(self.plan.views[op.name]), False, bias)

    def op_matmul(self, op: Op) -> None:
        av, bv, ov = (self.plan.views[n] for n in (*op.inputs, op.name))
        tb = bool(op.attr("transpose_b", False))
        pairs = ([(av, bv, ov)] if len(bv.shape) == 2
                 else zip(self.batches(av, 2), self.batches(bv, 2), self.batches(ov, 2)))
        for a, b, o in pairs:
            self.gemm(op, self.matrix(a), self.matrix(b), self.matrix(o), tb, None)

    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """C = A @ B (+ bias): A, B tiles agcu0 -> pcu0 (into a PMU accumulator) -> pcu1 -> agcu1."""
        m, k = a.rows, a.cols
        n = b.rows if transpose_b else b.cols
        isz = self.dtype.itemsize
        ra, rb, acc, rin, rout = (self.rings[r] for r in ("mx_a", "mx_b", "acc", "vp_in", "vp_out"))

        def fits(t: GemmTile) -> bool:
            b_row = (t.k if transpose_b else t.n) * isz
            return (t.m * t.k * isz <= ra.slot_bytes and t.k * t.n * isz <= rb.slot_bytes
                    and t.m * t.n * 4 <= acc.slot_bytes and t.m * t.n * isz <= rout.slot_bytes
                    and t.n * 4 <= rin.slot_bytes and max(t.k * isz, b_row, t.n * 4) <= MAX_TILE)

        t = self._resident_tile(m, n, k, transpose_b, self.em.space[a.symbol] == "sram",
                                self.em.space[out.symbol] == "sram")
        if t is None or not fits(t):
            t = gemm_tile(op.name, m, n, k, self.arch.pcu_rows, self.arch.pcu_cols, "ws", fits)
        for m0 in range(0, m, t.m):
            tm = min(t.m, m - m0)
            for n0 in range(0, n, t.n):
                tn = min(t.n, n - n0)
                c = acc.acquire()
                for k0 in range(0, k, t.k):
                    tk = min(t.k, k - k0)
                    a_slot, b_slot = ra.acquire(), rb.acquire()
                    self.em.load("agcu0", a_slot, a.block(m0, tm, k0, tk))
                    ra.filled()
                    self.em.load("agcu0", b_slot, b.block(n0, tn, k0, tk) if transpose_b else b.block(k0, tk, n0, tn))
                    rb.filled()
                    ra.take()
                    rb.take()
                    if self._mcfg != (tm, tn, tk):
                        self._mcfg = (tm, tn, tk)
                        self.em.emit("pcu0", "mcfg", m=tm, n=tn, k=tk, dtype=self.dtype, acc=DType.fp32)
                    self.em.emit("pcu0", "gemm", c=c, a=a_slot, b=b_slot, accumulate=int(k0 > 0),
                                 transpose_b=int(transpose_b))
                    ra.release()
                    rb.release()
                acc.filled()
                self.vector.epilogue(c, DType.fp32, tm, tn, bias.block(0, 1, n0, tn) if bias else None,
                                     out.block(m0, tm, n0, tn), acc)

    def _resident_tile(self, m: int, n: int, k: int, transpose_b: bool, a_resident: bool,
                       c_resident: bool) -> GemmTile | None:
        """A tile that keeps PMU-resident windows contiguous where it can: whole K for a
        resident A, whole N for a resident C (these split last), then as many rows as the A,
        accumulator and output slots take. None when nothing is resident or nothing fits."""
        if not (a_resident or c_resident):
            return None
        isz, r = self.dtype.itemsize, self.rings
        unit = {"n": self.arch.pcu_cols, "k": self.arch.pcu_rows}
        dims = {"n": min(n, MAX_TILE), "k": min(k, MAX_TILE)}
        kept = {"n": c_resident, "k": a_resident}

        def b_fits() -> bool:
            tn, tk = dims["n"], dims["k"]
            b_row = (tk if transpose_b else tn) * isz
            return (tk * tn * isz <= r["mx_b"].slot_bytes and tn * 4 <= r["vp_in"].slot_bytes
                    and max(tk * isz, b_row, tn * 4) <= MAX_TILE)

        for d in sorted(("n", "k"), key=kept.get):
            while not b_fits() and dims[d] > unit[d]:
                dims[d] = max(unit[d], -(-(-(-dims[d] // 2)) // unit[d]) * unit[d])
        tn, tk = dims["n"], dims["k"]
        tm = min(m, MAX_TILE, r["mx_a"].slot_bytes // (tk * isz), r["acc"].slot_bytes // (tn * 4),
                 r["vp_out"].slot_bytes // (tn * isz))
        return GemmTile(tm, tn, tk) if b_fits() and tm >= 1 else None

    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.rings["gather"], self.dtype.itemsize, ALIGN)

    def op_kv_append(self, op: Op) -> None:
        lower_kv_append(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize)

def _streamed_bytes(graph: Graph, op: Op) -> int:
    """The largest operand an op streams; a gather reads only the rows it picks."""
    if op.kind is OpKind.EMBEDDING:
        return op.type.size_bytes
    return max(graph[name].type.size_bytes for name in op.inputs)


def _mask_bytes(graph: Graph) -> int:
    """HBM bytes of the causal-mask constants the vector lowering will add (fp32, one per shape)."""
    shapes = {op.type.shape[-2:] for op in graph.of_kind(OpKind.SOFTMAX)
              if op.attr("causal", False) and op.type.shape[-2] > 1}
    return sum(-(-s * t * 4 // ALIGN) * ALIGN for s, t in shapes)


def lower(graph: Graph, arch: DataflowArch, dtype: DType | None = None) -> Lowered:
    """Compile `graph` into sections for `arch`; dtype overrides the PCU operand type (e.g. fp32)."""
    return _Lowering(graph, arch, dtype or DType(arch.dtype)).lower()
