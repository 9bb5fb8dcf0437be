"""Emission for a systolic-array accelerator: GEMMs on the matrix unit, the rest on the vector unit.

Every tensor lives in DRAM (one buffer per value, layout ops as strided views; memory.py
places them). Each op streams tiles DRAM -> SRAM (dma0), computes (mxu0 into the
accumulator, vpu0 for epilogues and non-GEMM ops), and streams results back (dma1). On-chip
slots come in double-buffered rings with one producer and one consumer queue, so loads,
compute and stores overlap; a store token orders every DRAM read after the store that
produced it.
"""
from __future__ import annotations

from isa import DType

from arch.systolic import SystolicArch
from compiler.ir import Graph, Op
from compiler.passes.storage import StoragePlan
from compiler.targets.attention import FusedAttention, KernelQueues
from compiler.targets.attention_plan import AttentionPlan
from compiler.targets.base import GemmLowering, Lowered
from compiler.targets.emit import Emitter, Matrix, Ring, symbol_name
from compiler.targets.movement import lower_embedding, lower_kv_append
from compiler.targets.systolic.memory import ALIGN, DramLayout, SramLayout, dram_symbol
from compiler.targets.tiling import GemmSlots, gemm_tile
from compiler.targets.vector import VectorLowering

__all__ = ["SystolicLowering", "ASSUMPTIONS"]

ASSUMPTIONS = ("every tensor round-trips DRAM between ops (no cross-op fusion but attention's)",)


class SystolicLowering(GemmLowering):
    """Emits the program for planned DRAM and SRAM layouts."""

    def __init__(self, graph: Graph, arch: SystolicArch, dtype: DType, plan: StoragePlan,
                 dram: DramLayout, sram: SramLayout, attention: AttentionPlan) -> None:
        self.arch, self.dtype = arch, dtype
        em = Emitter("systolic")
        for symbol in dram.symbols:
            em.place(symbol)
        self.symbols, self._dram_end = list(dram.symbols), dram.end
        self.rings = {spec.name: Ring(em, spec) for spec in sram.rings}
        self.acc = Ring(em, sram.acc)
        vector = VectorLowering(em, self.rings["vp_in"], self.rings["vp_out"], sram.scratch, dtype,
                                plan.views, self.add_constant)
        super().__init__(graph=graph, plan=plan, em=em, vector=vector)
        self._mcfg: tuple | None = None
        self.attention = attention
        self.kernel = FusedAttention(em, vector, KernelQueues("dma0", "mxu0", "vpu0", "dma1"), dtype,
                                     self.add_constant)

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        symbol, self._dram_end = dram_symbol(name, self._dram_end, shape, DType.fp32, self.arch)
        self.em.place(symbol)
        self.symbols.append(symbol)

    def lower(self) -> Lowered:
        self.lower_ops("dma0", "dma1", self.attention.fused)
        program = self.em.program(("dram", "sram", "acc"), tuple(self.symbols), self.arch.queues)
        note = self.attention.assumption()
        return Lowered(program, self.plan, self.dtype, dict(self.vector.constants),
                       ASSUMPTIONS + ((note,) if note else ()), attention=self.attention.sites)

    def lower_attention(self, chain, blocks, reader: str, writer: str) -> None:
        """The fused kernel, fenced: every queue meets before and after it, since it lays out
        the whole SRAM and accumulator its own way."""
        em = self.em
        em.begin_op(chain.name)
        for name in (chain.q, chain.k, chain.v):
            em.before_read(reader, symbol_name(self.plan.views[name].buffer))
        em.barrier(self.arch.queues)
        self.kernel.lower(chain, self.plan.views, blocks, ("sram", 0, self.arch.sram_bytes),
                          ("acc", 0, self.arch.acc_bytes))
        em.barrier(self.arch.queues)
        self._mcfg = None
        em.stored(writer, symbol_name(self.plan.views[chain.context].buffer))

    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """C = A @ B (+ bias) tile by tile: A, B on dma0 -> mxu0 -> vpu0 epilogue -> dma1."""
        m, k = a.rows, a.cols
        n = b.rows if transpose_b else b.cols
        arch = self.arch
        ra, rb, rin, rout = (self.rings[r] for r in ("mx_a", "mx_b", "vp_in", "vp_out"))
        slots = GemmSlots(ra.slot_bytes, rb.slot_bytes, self.acc.slot_bytes, rin.slot_bytes,
                          rout.slot_bytes, self.dtype.itemsize, transpose_b)
        t = gemm_tile(op.name, m, n, k, arch.rows, arch.cols, arch.dataflow, slots.fits)
        acc_type = DType.int32 if self.dtype is DType.int8 else DType.fp32
        k_steps = range(0, k, t.k)
        for m0 in range(0, m, t.m):
            tm = min(t.m, m - m0)
            a_slot = None
            for n0 in range(0, n, t.n):
                tn = min(t.n, n - n0)
                c_slot = None
                for k0 in k_steps:
                    tk = min(t.k, k - k0)
                    if a_slot is None or len(k_steps) > 1:
                        a_slot = ra.acquire()
                        self.em.load("dma0", a_slot, a.block(m0, tm, k0, tk))
                        ra.filled()
                        ra.take()
                    b_slot = rb.acquire()
                    tile = b.block(n0, tn, k0, tk) if transpose_b else b.block(k0, tk, n0, tn)
                    self.em.load("dma0", b_slot, tile)
                    rb.filled()
                    rb.take()
                    if c_slot is None:
                        c_slot = self.acc.acquire()
                    if self._mcfg != (tm, tn, tk):
                        self._mcfg = (tm, tn, tk)
                        self.em.emit("mxu0", "mcfg", m=tm, n=tn, k=tk, dtype=self.dtype, acc=acc_type)
                    self.em.emit("mxu0", "gemm", c=c_slot, a=a_slot, b=b_slot,
                                 accumulate=int(k0 > 0), transpose_b=int(transpose_b))
                    rb.release()
                    if len(k_steps) > 1 or n0 + t.n >= n:
                        ra.release()
                self.acc.filled()
                self.vector.epilogue(c_slot, acc_type, tm, tn,
                                     bias.block(0, 1, n0, tn) if bias else None, out.block(m0, tm, n0, tn),
                                     self.acc)

    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize, ALIGN)

    def op_kv_append(self, op: Op) -> None:
        lower_kv_append(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize)
