"""Vector-unit lowering: GEMM epilogues, element-wise ops, layer norm and softmax.

Each op runs over blocks of rows: the vp_in ring's producer queue (dma0 on the systolic
target) loads the block into a vp_in slot, its consumer (vpu0; asic0 on PIM) computes (fp32
temporaries in the scratch area, one rounding to the storage type at the end) into a vp_out
slot, and the vp_out ring's consumer (dma1) stores it. Layer norm and softmax use only the ISA's vec and red
instructions (see docs/isa.md); a causal mask is a constant -inf/0 tensor added to the
scaled scores.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from isa import Addr, DType

from compiler.errors import CompileError
from compiler.ir import GraphError, Op, OpKind
from compiler.passes.storage import View
from compiler.targets.emit import Emitter, Matrix, Ring, view_batches, view_matrix
from compiler.targets.tiling import MAX_TILE, row_block

__all__ = ["VectorLowering"]

_ALIGN = 64
F32 = DType.fp32


def _up(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class VectorLowering:
    """The vector unit's ops over the graph's storage views; `add_constant(name, shape)` asks
    the target to place a constant tensor (a causal mask) the first time one is needed."""

    def __init__(self, em: Emitter, vp_in: Ring, vp_out: Ring, scratch: tuple[int, int],
                 dtype: DType, views: Mapping[str, View],
                 add_constant: Callable[[str, tuple[int, ...]], None]) -> None:
        self.em, self.vp_in, self.vp_out, self.dtype = em, vp_in, vp_out, dtype
        self.views, self.add_constant = views, add_constant
        self.scratch_base, self.scratch_bytes = scratch
        self.loader, self.unit, self.storer = vp_in.producer, vp_in.consumer, vp_out.consumer
        self._vcfg: tuple | None = None
        self.constants: dict[str, np.ndarray] = {}

    # -- emission helpers --------------------------------------------------------------
    def cfg(self, rows: int, cols: int, dtype: DType, out: DType, imm: float = 0.0) -> None:
        key = (rows, cols, dtype, out, float(np.float32(imm)))
        if key != self._vcfg:
            self._vcfg = key
            self.em.emit(self.unit, "vcfg", rows=rows, cols=cols, dtype=dtype, out=out, imm=key[4])

    def vec(self, func: str, dst: Addr, a: Addr, b: Addr | None = None, bcast: str = "none") -> None:
        self.em.emit(self.unit, "vec", func=func, bcast=bcast, dst=dst, a=a, b=b or a)

    def red(self, func: str, dst: Addr, src: Addr) -> None:
        self.em.emit(self.unit, "red", func=func, dst=dst, src=src)

    def scratch(self, *sizes: int) -> list[Addr]:
        out, at = [], self.scratch_base
        for size in sizes:
            out.append(Addr(self.vp_in.space, at))
            at += _up(size)
        return out

    def block_rows(self, op: Op, rows: int, needs: dict[str, tuple[int, int, int]]) -> int:
        """Rows per block: for each buffer (bytes per row, fixed bytes, capacity)."""
        best = min(rows, MAX_TILE)
        for what, (per_row, fixed, capacity) in needs.items():
            if fixed + per_row > capacity:
                raise CompileError(f"op '{op.name}' ({op.kind.value}): one row needs "
                                   f"{fixed + per_row} bytes of {what} ({fixed} of them fixed), "
                                   f"which holds {capacity} bytes")
            best = min(best, row_block(op.name, op.kind.value, rows, per_row, capacity - fixed, what))
        return best

    def _store(self, out: Matrix, slot: Addr) -> None:
        self.vp_out.filled()
        self.vp_out.take()
        self.em.store(self.storer, out, slot)
        self.vp_out.release()

    # -- GEMM epilogue -----------------------------------------------------------------
    def epilogue(self, c: Addr, acc_type: DType, rows: int, cols: int, bias: Matrix | None,
                 out: Matrix, acc: Ring) -> None:
        """Accumulator tile (+ bias) -> storage type -> DRAM."""
        acc.take()
        if bias is not None:
            b = self.vp_in.acquire()
            self.em.load(self.loader, b, bias)
            self.vp_in.filled()
            self.vp_in.take()
        o = self.vp_out.acquire()
        self.cfg(rows, cols, acc_type, self.dtype)
        if bias is not None:
            self.vec("add", o, c, b, "col")
            self.vp_in.release()
        else:
            self.vec("copy", o, c)
        acc.release()
        self._store(out, o)

    # -- element-wise ------------------------------------------------------------------
    def elementwise(self, op: Op) -> None:
        views = [self.views[n] for n in op.inputs]
        out = self.views[op.name]
        if len(views) == 2 and views[0].shape != out.shape and op.kind in (OpKind.ADD, OpKind.MUL):
            views.reverse()                           # only b may broadcast
        a_view = views[0]
        if a_view.shape != out.shape:
            raise CompileError(f"op '{op.name}' ({op.kind.value}): broadcasting of both operands "
                               "is not supported on this target")
        b_view = views[1] if len(views) == 2 else None
        keep = len(b_view.shape) if b_view is not None and b_view.shape != out.shape else len(out.shape)
        keep = max(keep, 1)
        if b_view is not None and b_view.shape != out.shape[len(out.shape) - len(b_view.shape):]:
            raise CompileError(f"op '{op.name}' ({op.kind.value}): operand shape "
                               f"{list(b_view.shape)} broadcasts in a way this target does not support")
        for a_part, o_part in zip(view_batches(a_view, keep), view_batches(out, keep)):
            a_m, o_m = view_matrix(a_part), view_matrix(o_part)
            b_m = view_matrix(b_view) if b_view is not None else None
            bcast = "none" if b_m is None or b_m.rows == a_m.rows else "col"
            if b_m is not None and bcast == "col" and b_m.rows != 1:
                raise CompileError(f"op '{op.name}': cannot broadcast {b_m.rows} rows over {a_m.rows}")
            self._elementwise_rows(op, a_m, b_m, o_m, bcast)

    def _elementwise_rows(self, op: Op, a: Matrix, b: Matrix | None, out: Matrix, bcast: str) -> None:
        isz, cols = self.dtype.itemsize, a.cols
        b_per_row = cols * isz if b is not None and bcast == "none" else 0
        b_fixed = _up(cols * isz) if b is not None and bcast == "col" else 0
        tr = self.block_rows(op, a.rows, {"the vp_in slot": (cols * isz + b_per_row, b_fixed + 2 * _ALIGN,
                                                             self.vp_in.slot_bytes),
                                          "the vp_out slot": (cols * isz, 0, self.vp_out.slot_bytes)})
        func = {OpKind.ADD: "add", OpKind.MUL: "mul", OpKind.GELU: "gelu"}[op.kind]
        for r0 in range(0, a.rows, tr):
            rows = min(tr, a.rows - r0)
            slot = self.vp_in.acquire()
            self.em.load(self.loader, slot, a.block(r0, rows, 0, cols))
            b_at = None
            if b is not None:
                b_at = slot + _up(rows * cols * isz)
                self.em.load(self.loader, b_at, b.block(r0, rows, 0, cols) if bcast == "none" else b)
            self.vp_in.filled()
            self.vp_in.take()
            o = self.vp_out.acquire()
            self.cfg(rows, cols, self.dtype, self.dtype)
            self.vec(func, o, slot, b_at, bcast)
            self.vp_in.release()
            self._store(out.block(r0, rows, 0, cols), o)

    # -- layer norm --------------------------------------------------------------------
    def layernorm(self, op: Op) -> None:
        x, gain, bias = (view_matrix(self.views[n]) for n in op.inputs)
        out = view_matrix(self.views[op.name])
        isz, d = self.dtype.itemsize, x.cols
        eps = float(op.attr("eps", 1e-5))
        tr = self.block_rows(op, x.rows, {
            "the vp_in slot": (d * isz, 2 * _up(d * 4) + _ALIGN, self.vp_in.slot_bytes),
            "the vp_out slot": (d * isz, 0, self.vp_out.slot_bytes),
            "vector scratch": (2 * d * 4 + 8, 4 * _ALIGN, self.scratch_bytes)})
        for r0 in range(0, x.rows, tr):
            rows = min(tr, x.rows - r0)
            slot = self.vp_in.acquire()
            g_at = slot + _up(rows * d * isz)
            b_at = g_at + _up(d * 4)
            self.em.load(self.loader, slot, x.block(r0, rows, 0, d))
            self.em.load(self.loader, g_at, gain)
            self.em.load(self.loader, b_at, bias)
            self.vp_in.filled()
            self.vp_in.take()
            xf, t, mean, var = self.scratch(rows * d * 4, rows * d * 4, rows * 4, rows * 4)
            o = self.vp_out.acquire()
            self.cfg(rows, d, self.dtype, F32)
            self.vec("copy", xf, slot)
            self.cfg(rows, d, F32, F32)
            self.red("sum", mean, xf)
            self.cfg(rows, 1, F32, F32, 1.0 / d)
            self.vec("muli", mean, mean)
            self.cfg(rows, d, F32, F32)
            self.vec("sub", xf, xf, mean, "row")
            self.vec("mul", t, xf, xf)
            self.red("sum", var, t)
            self.cfg(rows, 1, F32, F32, 1.0 / d)
            self.vec("muli", var, var)
            self.cfg(rows, 1, F32, F32, eps)
            self.vec("addi", var, var)
            self.vec("rsqrt", var, var)
            self.cfg(rows, d, F32, F32)
            self.vec("mul", xf, xf, var, "row")
            self.vec("mul", xf, xf, g_at, "col")
            self.cfg(rows, d, F32, self.dtype)
            self.vec("add", o, xf, b_at, "col")
            self.vp_in.release()
            self._store(out.block(r0, rows, 0, d), o)

    # -- softmax -----------------------------------------------------------------------
    def softmax(self, op: Op) -> None:
        view, out = self.views[op.inputs[0]], self.views[op.name]
        if len(view.shape) < 2:
            raise GraphError(f"op '{op.name}' (softmax): needs at least 2-D input on this target")
        s, t = view.shape[-2:]
        causal = bool(op.attr("causal", False)) and s > 1
        mask = self._mask(s, t) if causal else None
        for part, o_part in zip(view_batches(view, 2), view_batches(out, 2)):
            self._softmax_rows(op, view_matrix(part), view_matrix(o_part), mask)

    def _mask(self, s: int, t: int) -> Matrix:
        name = f"const.causal_mask.{s}x{t}"
        if name not in self.constants:
            visible = np.arange(t)[None, :] <= np.arange(s)[:, None] + (t - s)
            self.constants[name] = np.where(visible, 0.0, -np.inf).astype(np.float32)
            self.add_constant(name, (s, t))
        return Matrix(name, 0, s, t, t)

    def _softmax_rows(self, op: Op, x: Matrix, out: Matrix, mask: Matrix | None) -> None:
        isz, t = self.dtype.itemsize, x.cols
        scale = float(op.attr("scale", 1.0))
        tr = self.block_rows(op, x.rows, {
            "the vp_in slot": (t * isz + (t * 4 if mask else 0), 2 * _ALIGN, self.vp_in.slot_bytes),
            "the vp_out slot": (t * isz, 0, self.vp_out.slot_bytes),
            "vector scratch": (t * 4 + 8, 3 * _ALIGN, self.scratch_bytes)})
        for r0 in range(0, x.rows, tr):
            rows = min(tr, x.rows - r0)
            slot = self.vp_in.acquire()
            self.em.load(self.loader, slot, x.block(r0, rows, 0, t))
            m_at = slot + _up(rows * t * isz)
            if mask is not None:
                self.em.load(self.loader, m_at, mask.block(r0, rows, 0, t))
            self.vp_in.filled()
            self.vp_in.take()
            z, peak, total = self.scratch(rows * t * 4, rows * 4, rows * 4)
            o = self.vp_out.acquire()
            self.cfg(rows, t, self.dtype, F32, scale)
            self.vec("muli", z, slot)
            self.cfg(rows, t, F32, F32)
            if mask is not None:
                self.vec("add", z, z, m_at)
            self.red("max", peak, z)
            self.vec("sub", z, z, peak, "row")
            self.vec("exp", z, z)
            self.red("sum", total, z)
            self.cfg(rows, 1, F32, F32)
            self.vec("recip", total, total)
            self.cfg(rows, t, F32, self.dtype)
            self.vec("mul", o, z, total, "row")
            self.vp_in.release()
            self._store(out.block(r0, rows, 0, t), o)
