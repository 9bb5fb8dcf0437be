"""Emission for a systolic-array accelerator: GEMMs on the matrix unit, the rest on the vector unit.

Every tensor lives in DRAM (one buffer per value, layout ops as strided views; memory.py
places them). Each op streams tiles DRAM -> SRAM (dma0), computes (mxu0 into the
accumulator, vpu0 for epilogues and non-GEMM ops), and streams results back (dma1). On-chip
slots come in double-buffered rings with one producer and one consumer queue, so loads,
compute and stores overlap; a store token orders every DRAM read after the store that
produced it.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from isa import DType

from arch.systolic import SystolicArch
from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.quantised import SCALES_SUFFIX, StoredFormat, quant_assumption
from compiler.passes.quantised_values import mac_format
from compiler.passes.storage import StoragePlan
from compiler.targets.attention import FusedAttention, KernelQueues
from compiler.targets.attention_plan import AttentionPlan
from compiler.targets.base import GemmLowering, Lowered
from compiler.targets.emit import Emitter, Matrix, Ring, symbol_name
from compiler.targets.movement import lower_embedding, lower_kv_append
from compiler.targets.systolic.memory import ALIGN, DramLayout, SramLayout, dram_symbol
from compiler.targets.systolic.folds import FoldGemm, Limits, Packer, PartialSums
from compiler.targets.vector import VectorLowering

__all__ = ["SystolicLowering", "ASSUMPTIONS"]

# At most this many bytes of each buffer per vector block: fixed, so that a larger SRAM never
# makes a vector op load more before it starts. 64 KiB: the fastest of 32, 64 and 128 KiB among
# the caps under which gpt2 prefill-128 on systolic-128 never slows with more SRAM (measured).
VECTOR_BLOCK_BYTES = 65536

ASSUMPTIONS = ("every tensor round-trips DRAM between ops (no cross-op fusion but attention's)",)


class SystolicLowering(GemmLowering):
    """Emits the program for planned DRAM and SRAM layouts."""

    def __init__(self, graph: Graph, arch: SystolicArch, dtype: DType, plan: StoragePlan,
                 dram: DramLayout, sram: SramLayout, attention: AttentionPlan,
                 quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> None:
        self.arch, self.dtype, self.quantised = arch, dtype, quantised
        em = Emitter("systolic")
        named = {s.name: s for s in dram.symbols}
        for symbol in dram.symbols:
            em.place(symbol)
        for param, fmt in quantised.items():       # loads of them dequantise (loadq)
            codes = named[symbol_name(param)]
            em.place_quantised(codes, named[codes.name + SCALES_SUFFIX], fmt, dtype)
        self.symbols, self._dram_end = list(dram.symbols), dram.end
        self.rings = {spec.name: Ring(em, spec) for spec in sram.rings}
        self.acc = Ring(em, sram.acc)
        vector = VectorLowering(em, self.rings["vp_in"], self.rings["vp_out"], sram.scratch, dtype,
                                plan.views, self.add_constant, block_bytes=VECTOR_BLOCK_BYTES)
        super().__init__(graph=graph, plan=plan, em=em, vector=vector)
        self.attention = attention
        self.kernel = FusedAttention(em, vector, KernelQueues("dma0", "mxu0", "vpu0", "dma1"), dtype,
                                     self.add_constant)
        ra, rb, rin, rout = (self.rings[r] for r in ("mx_a", "mx_b", "vp_in", "vp_out"))
        limits = Limits(ra.slot_bytes, rb.slot_bytes, self.acc.slot_bytes, rin.slot_bytes,
                        rout.slot_bytes)
        self._folds = FoldGemm(em, arch.rows, arch.cols, arch.dataflow, arch.weight_preload_overlap,
                               dtype, Packer(em, ra, "dma0"), Packer(em, rb, "dma0"), self.acc,
                               vector.epilogue, limits,
                               PartialSums(em, self.place_fp32, "dma0", "dma1"))

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        self.place_fp32(name, shape)

    def place_fp32(self, name: str, shape: tuple[int, ...]) -> None:
        """An fp32 DRAM buffer after the planned ones: a constant, or scratch (partial sums)."""
        symbol, self._dram_end = dram_symbol(name, self._dram_end, shape, DType.fp32, self.arch)
        self.em.place(symbol)
        self.symbols.append(symbol)

    def lower(self) -> Lowered:
        self.lower_ops("dma0", "dma1", self.attention.fused)
        program = self.em.program(("dram", "sram", "acc"), tuple(self.symbols), self.arch.queues)
        note = self.attention.assumption()
        return Lowered(program, self.plan, self.dtype, dict(self.vector.constants),
                       ASSUMPTIONS + ((note,) if note else ())
                       + quant_assumption(self.quantised, f"dequantised to {self.dtype.value} in the "
                                          "DMA load path at the DRAM port's rate (loadq)", self.graph,
                                          narrow_macs=True),
                       attention=self.attention.sites, quantised=self.quantised)

    def lower_attention(self, chain, blocks, reader: str, writer: str) -> None:
        """The fused kernel, fenced: every queue meets before and after it, since it lays out
        the whole SRAM and accumulator its own way."""
        em = self.em
        em.begin_op(chain.name)
        for name in (chain.q, chain.k, chain.v):
            em.before_read(reader, symbol_name(self.plan.views[name].buffer))
        self._folds.mac("none")                 # attention multiplies at the operand type
        em.barrier(self.arch.queues)
        self.kernel.lower(chain, self.plan.views, blocks, ("sram", 0, self.arch.sram_bytes),
                          ("acc", 0, self.arch.acc_bytes))
        em.barrier(self.arch.queues)
        self._folds.forget_config()
        em.stored(writer, symbol_name(self.plan.views[chain.context].buffer))

    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """C = A @ B (+ bias) fold by fold (folds.py): dma0 -> mxu0 -> vpu0 epilogue -> dma1;
        on the array's narrow MACs (mfmt) when the recipe rounds its input and stores its
        weight quantised in a format the array lists (arch field mac_formats)."""
        fmt = self._mac_format(op)
        self._folds.mac(fmt, self.arch.mac_formats.get(fmt, 1))
        self._folds.lower(op.name, a, b, out, transpose_b, bias)

    def _mac_format(self, op: Op) -> str:
        return mac_format(self.graph, op, self.quantised, self.arch)

    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize, ALIGN)

    def op_kv_append(self, op: Op) -> None:
        lower_kv_append(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize)
