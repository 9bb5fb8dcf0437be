"""Lowering to a systolic-array accelerator: GEMMs on the matrix unit, the rest on the vector unit.

Every tensor lives in DRAM (one buffer per value, layout ops as strided views). Each op
streams tiles DRAM -> SRAM (dma0), computes (mxu0 into the accumulator, vpu0 for epilogues
and non-GEMM ops), and streams results back (dma1). On-chip slots come in double-buffered
rings with one producer and one consumer queue, so loads, compute and stores overlap;
a store token orders every DRAM read after the store that produced it.

SRAM layout (shares of sram_bytes, two slots per ring): mx_a 8 % (GEMM A tiles), mx_b 16 %
(GEMM B tiles), vp_in 7 % (vector inputs, biases), vp_out 7 % (results to store), copy 2 %
(KV appends, embedding gathers); the last 20 % is fp32 scratch for the vector unit.
The accumulator holds two output tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import isa
from isa import DType

from arch.systolic import SystolicArch
from compiler.ir import Graph, Op
from compiler.passes.storage import StoragePlan
from compiler.targets.data import program_data, target_storage
from compiler.targets.movement import lower_embedding, lower_kv_append
from compiler.targets.emit import (lower_op, CompileError, Emitter, Matrix, Ring, symbol_name,
                                   view_batches, view_matrix)
from compiler.targets.tiling import MAX_TILE, GemmTile, gemm_tile
from compiler.targets.vector import VectorLowering

__all__ = ["lower", "Lowered", "QUEUES"]

QUEUES = ("dma0", "dma1", "mxu0", "vpu0")
_SHARES = {"mx_a": 0.08, "mx_b": 0.16, "vp_in": 0.07, "vp_out": 0.07, "copy": 0.02}
_ALIGN = 64


@dataclass(frozen=True)
class Lowered:
    """A compiled program and how the graph's values map onto its DRAM symbols."""

    program: isa.Program
    plan: StoragePlan
    dtype: DType
    constants: dict          # constant symbol -> fp32 array (causal masks)
    assumptions: tuple[str, ...] = ("every tensor round-trips DRAM between ops (no cross-op fusion)",)

    def initial_data(self, graph: Graph, weights, feeds) -> dict:
        """Symbol -> initial contents (parameters, inputs, constants, the KV cache so far)."""
        return program_data(graph, self.plan, self.constants, weights, feeds)


class _Lowering:
    def __init__(self, graph: Graph, arch: SystolicArch, dtype: DType) -> None:
        self.graph, self.arch, self.dtype = graph, arch, dtype
        self.plan = target_storage(graph, dtype)
        self.em = Emitter("systolic")
        self._place_buffers()
        sram, base = arch.sram_bytes, 0
        rings = {}
        for ring, (producer, consumer) in {"mx_a": ("dma0", "mxu0"), "mx_b": ("dma0", "mxu0"),
                                           "vp_in": ("dma0", "vpu0"), "vp_out": ("vpu0", "dma1"),
                                           "copy": ("dma0", "dma1")}.items():
            slot = int(sram * _SHARES[ring]) // _ALIGN * _ALIGN
            rings[ring] = Ring(self.em, "sram", base, slot, 2, producer, consumer)
            base += 2 * slot
        self.rings = rings
        self.scratch = (base, sram - base)
        acc_slot = arch.acc_bytes // 2 // _ALIGN * _ALIGN
        self.acc = Ring(self.em, "acc", 0, acc_slot, 2, "mxu0", "vpu0")
        self.vector = VectorLowering(self.em, rings["vp_in"], rings["vp_out"], self.scratch, dtype)
        self._mcfg: tuple | None = None

    # -- memory ------------------------------------------------------------------------
    def _place_buffers(self) -> None:
        buffers = sorted(self.plan.buffers.values(), key=lambda b: b.name != "wte.weight")
        self.symbols: list[isa.Symbol] = []
        self._dram_end = 0
        for b in buffers:
            self._allocate(symbol_name(b.name), b.shape, b.dtype)

    def _allocate(self, name: str, shape: tuple[int, ...], dtype: DType) -> None:
        addr = self._dram_end
        self.em.addresses[name] = addr
        self.em.itemsize[name] = dtype.itemsize
        self._dram_end += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
        if self._dram_end > self.arch.dram_bytes:
            raise CompileError(f"the model needs more than {self._dram_end:,} bytes of DRAM; "
                               f"{self.arch.name} has {self.arch.dram_bytes:,}")
        self.symbols.append(isa.Symbol(name, "dram", addr, shape, dtype))

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        """A read-only fp32 tensor the program needs (its values travel in the data blob)."""
        self._allocate(name, shape, DType.fp32)

    matrix = staticmethod(view_matrix)
    batches = staticmethod(view_batches)

    # -- ops ---------------------------------------------------------------------------
    def lower(self) -> Lowered:
        for op in self.graph.ops:
            if op.kind.is_source or op.kind.is_layout:
                continue
            lower_op(self, op, "dma0", "dma1")
        program = self.em.program(("dram", "sram", "acc"), tuple(self.symbols), QUEUES)
        return Lowered(program, self.plan, self.dtype, dict(self.vector.constants))

    def op_linear(self, op: Op) -> None:
        a = self.matrix(self.plan.views[op.inputs[0]])
        b = self.matrix(self.plan.views[op.inputs[1]])
        bias = self.matrix(self.plan.views[op.inputs[2]]) if len(op.inputs) == 3 else None
        self.gemm(op, a, b, self.matrix(self.plan.views[op.name]), False, bias)

    def op_matmul(self, op: Op) -> None:
        av, bv, ov = (self.plan.views[n] for n in (*op.inputs, op.name))
        tb = bool(op.attr("transpose_b", False))
        if len(bv.shape) == 2:
            self.gemm(op, self.matrix(av), self.matrix(bv), self.matrix(ov), tb, None)
            return
        for a, b, o in zip(self.batches(av, 2), self.batches(bv, 2), self.batches(ov, 2)):
            self.gemm(op, self.matrix(a), self.matrix(b), self.matrix(o), tb, None)

    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """C = A @ B (+ bias) tile by tile: A, B on dma0 -> mxu0 -> vpu0 epilogue -> dma1."""
        m, k = a.rows, a.cols
        n = b.rows if transpose_b else b.cols
        isz, arch = self.dtype.itemsize, self.arch
        ra, rb, rin, rout = (self.rings[r] for r in ("mx_a", "mx_b", "vp_in", "vp_out"))

        def fits(t: GemmTile) -> bool:
            b_row = (t.k if transpose_b else t.n) * isz
            return (t.m * t.k * isz <= ra.slot_bytes and t.k * t.n * isz <= rb.slot_bytes
                    and t.m * t.n * 4 <= self.acc.slot_bytes and t.m * t.n * isz <= rout.slot_bytes
                    and t.n * 4 <= rin.slot_bytes and max(t.k * isz, b_row, t.n * 4) <= MAX_TILE)

        t = gemm_tile(op.name, m, n, k, arch.rows, arch.cols, arch.dataflow, fits)
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
        lower_embedding(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize, _ALIGN)

    def op_kv_append(self, op: Op) -> None:
        lower_kv_append(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize)

def lower(graph: Graph, arch: SystolicArch, dtype: DType | None = None) -> Lowered:
    """Compile `graph` for `arch`; dtype overrides the array's operand type (e.g. fp32)."""
    return _Lowering(graph, arch, dtype or DType(arch.dtype)).lower()
