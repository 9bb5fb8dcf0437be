"""Vector-unit lowering: GEMM epilogues, element-wise ops (add, mul, div, gelu, silu),
concat, layer and RMS norm, rotary embedding, softmax, and a recipe's quantize (vquant).

Each op runs over blocks of rows: the vp_in ring's producer queue (dma0 on the systolic
target) loads the block into a vp_in slot, its consumer (vpu0; asic0 on PIM) computes (fp32
temporaries in the scratch area, one rounding to the storage type at the end) into a vp_out
slot, and the vp_out ring's consumer (dma1) stores it. Every op uses only the ISA's vec and
red instructions (see docs/isa.md); attention masks (causal, sliding window) and rotary
[cos | sin] tables are fp32 constants (compiler/targets/constants.py). What a block of rows
needs of each buffer comes from vector_needs.py, which the systolic SRAM planner reads too.
A row too wide for the buffers goes by column blocks: element-wise ops, copies and rotary
embedding block by block, layer norm, RMS norm and softmax in passes over the blocks with
per-row statistics in scratch (layer norm three, RMS norm two, softmax two: online softmax).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Callable, Mapping

import numpy as np

from isa import Addr, DType

from compiler.errors import CompileError
from compiler.ir import GraphError, Op, OpKind
from compiler.passes.storage import View
from compiler.targets.constants import mask_name, mask_values, rope_name, rope_values
from compiler.targets.emit import Emitter, Matrix, Ring, Tracked, matrix_pairs, view_batches, view_matrix
from compiler.targets.tiling import MAX_TILE, row_block
from compiler.targets.vector_needs import (LABELS, SCRATCH, VP_IN, VP_OUT, Needs, concat_copies,
                                           concat_dtype, copy_needs, elementwise_jobs,
                                           elementwise_needs, layernorm_column_needs,
                                           layernorm_needs, rmsnorm_column_needs, rmsnorm_needs,
                                           rope_needs, softmax_column_needs, softmax_needs, up)

__all__ = ["VectorLowering"]

F32 = DType.fp32
_BINARY_FUNCS = {OpKind.ADD: "add", OpKind.MUL: "mul", OpKind.DIV: "div", OpKind.GELU: "gelu"}
LOWEST = float(np.finfo(np.float32).min)    # online softmax's starting running maximum


def _spans(cols: int, width: int) -> list[tuple[int, int]]:
    """(first column, columns) of the w-wide blocks of a row of `cols`."""
    return [(c0, min(width, cols - c0)) for c0 in range(0, cols, width)]


class VectorLowering(Tracked):
    """The vector unit's ops over the graph's storage views; `add_constant(name, shape)` asks
    the target to place a constant tensor (a causal mask) the first time one is needed."""

    def __init__(self, em: Emitter, vp_in: Ring, vp_out: Ring, scratch: tuple[int, int],
                 dtype: DType, views: Mapping[str, View],
                 add_constant: Callable[[str, tuple[int, ...]], None], *,
                 block_bytes: int | None = None) -> None:
        self.em, self.vp_in, self.vp_out, self.dtype = em, vp_in, vp_out, dtype
        self.block_bytes = block_bytes
        self.views, self.add_constant = views, add_constant
        self.scratch_base, self.scratch_bytes = scratch
        self.loader, self.unit, self.storer = vp_in.producer, vp_in.consumer, vp_out.consumer
        self._vcfg: tuple | None = None
        self.constants: dict[str, np.ndarray] = {}
        em.track(self)

    def sweep_key(self) -> object:
        return self._vcfg, len(self.constants)

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
            at += up(size)
        return out

    def capacity(self, buffer: str) -> int:
        """Bytes of one vp_in slot, one vp_out slot or the scratch area."""
        return {VP_IN: self.vp_in.slot_bytes, VP_OUT: self.vp_out.slot_bytes,
                SCRATCH: self.scratch_bytes}[buffer]

    def fits(self, needs: Needs) -> bool:
        """Whether one row of `needs` fits every buffer."""
        return all(need.one_row <= self.capacity(buf) for buf, need in needs.items())

    def column_width(self, cols: int, needs_of: Callable[[int], Needs]) -> int:
        """The width of the column blocks a row of `cols` is cut into: `cols` when one row
        fits every buffer, else halved until it does (one column always does: the SRAM
        planner's floors are one column of each op)."""
        width = cols
        while width > 1 and not self.fits(needs_of(width)):
            width = max(1, width // 2)
        return width

    def row_blocks(self, op: Op, rows: int, needs: Needs) -> Iterator[tuple[int, int]]:
        """(first row, rows) blocks of an op with these needs (vector_needs.py), swept: blocks
        that repeat become a loop (compiler/targets/sweep.py)."""
        return self.em.sweep(self._row_blocks(op, rows, needs))

    def _row_blocks(self, op: Op, rows: int, needs: Needs) -> list[tuple[int, int]]:
        """(first row, rows) blocks of an op with these needs (vector_needs.py).
        Without `block_bytes` every block is as large as the buffers allow. With it (the
        systolic target) no block holds more than `block_bytes` of any buffer, and the rows
        are split evenly among as few blocks as that allows: above the size where the cap
        binds, a larger buffer leaves the blocks unchanged, below it the blocks only grow
        with the buffer."""
        most = min(rows, MAX_TILE)
        for buf, need in needs.items():
            per_row, fixed, capacity, what = need.per_row, need.fixed, self.capacity(buf), LABELS[buf]
            if need.one_row > capacity:
                raise CompileError(f"op '{op.name}' ({op.kind.value}): one row needs "
                                   f"{need.one_row} bytes of {what} ({fixed} of them fixed), "
                                   f"which holds {capacity} bytes")
            room = capacity - fixed if self.block_bytes is None else min(capacity - fixed, self.block_bytes)
            most = min(most, row_block(op.name, op.kind.value, rows, per_row, max(room, per_row), what))
        if self.block_bytes is None:
            return [(r0, min(most, rows - r0)) for r0 in range(0, rows, most)]
        count = -(-rows // most)
        bounds = [rows * i // count for i in range(count + 1)]
        return [(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]

    def _store(self, out: Matrix, slot: Addr) -> None:
        self.vp_out.filled()
        self.vp_out.take()
        self.em.store(self.storer, out, slot)
        self.vp_out.release()

    # -- GEMM epilogue -----------------------------------------------------------------
    def epilogue(self, c: Addr, acc_type: DType, rows: int, cols: int, bias: Matrix | None,
                 out: Matrix, acc: Ring, prior: Matrix | None = None,
                 out_type: DType | None = None) -> None:
        """Accumulator tile + bias row, or + `prior` (earlier folds' fp32 partial sums, a tile
        from DRAM; the bias then went in with the first fold) -> `out_type` (the storage type
        unless given) -> DRAM."""
        acc.take()
        addend, bcast = (prior, "none") if prior is not None else (bias, "col")
        if prior is not None and bias is not None:
            raise ValueError("epilogue: the bias goes in with the first fold's partial sums")
        if addend is not None:
            b = self.vp_in.acquire()
            self.em.load(self.loader, b, addend)
            self.vp_in.filled()
            self.vp_in.take()
        o = self.vp_out.acquire()
        self.cfg(rows, cols, acc_type, out_type or self.dtype)
        if addend is not None:
            self.vec("add", o, c, b, bcast)
            self.vp_in.release()
        else:
            self.vec("copy", o, c)
        acc.release()
        self._store(out, o)

    # -- element-wise ------------------------------------------------------------------
    def elementwise(self, op: Op) -> None:
        """add, mul, div, gelu, silu over the jobs of vector_needs.elementwise_jobs."""
        for a, b, out, bcast in elementwise_jobs(op, self.views):
            self._elementwise_rows(op, a, b, out, bcast)

    def _elementwise_rows(self, op: Op, a: Matrix, b: Matrix | None, out: Matrix, bcast: str) -> None:
        """Blocks of whole rows; a row too wide for the buffers (an MLP's 14,336 columns on a
        small ASIC buffer) is cut into column blocks first, each element-wise on its own."""
        cols, isz = a.cols, self.dtype.itemsize
        mode = None if b is None else bcast
        width = self.column_width(cols, lambda w: elementwise_needs(op.kind, w, isz, mode))
        if width < cols:
            for c0 in range(0, cols, width):
                w = min(width, cols - c0)
                b_part = None if b is None else (b if bcast == "row" else
                                                 b.block(0, b.rows, c0, w))
                self._elementwise_rows(op, a.block(0, a.rows, c0, w), b_part,
                                       out.block(0, out.rows, c0, w), bcast)
            return
        for r0, rows in self.row_blocks(op, a.rows, elementwise_needs(op.kind, cols, isz, mode)):
            slot = self.vp_in.acquire()
            self.em.load(self.loader, slot, a.block(r0, rows, 0, cols))
            b_at = None
            if b is not None:
                b_at = slot + up(rows * cols * isz)
                self.em.load(self.loader, b_at, b if bcast == "col" else b.block(r0, rows, 0, b.cols))
            self.vp_in.filled()
            self.vp_in.take()
            o = self.vp_out.acquire()
            if op.kind is OpKind.SILU:
                self._silu(o, slot, rows, cols)
            else:
                self.cfg(rows, cols, self.dtype, self.dtype)
                self.vec(_BINARY_FUNCS[op.kind], o, slot, b_at, bcast)
            self.vp_in.release()
            self._store(out.block(r0, rows, 0, cols), o)

    def _silu(self, o: Addr, x: Addr, rows: int, cols: int) -> None:
        """silu(x) = x / (1 + exp(-x)) in fp32, from the ISA's exp and div (no silu function:
        one would need a pipeline depth in every architecture file, and GPT-2's pinned
        reports echo those); five vector passes, each timed as the machine times it."""
        xf, t = self.scratch(rows * cols * 4, rows * cols * 4)
        self.cfg(rows, cols, self.dtype, F32)
        self.vec("copy", xf, x)
        self.cfg(rows, cols, F32, F32, -1.0)
        self.vec("muli", t, xf)
        self.cfg(rows, cols, F32, F32)
        self.vec("exp", t, t)
        self.cfg(rows, cols, F32, F32, 1.0)
        self.vec("addi", t, t)
        self.cfg(rows, cols, F32, self.dtype)
        self.vec("div", o, xf, t)

    # -- concatenation -----------------------------------------------------------------
    def concat(self, op: Op) -> None:
        """Each input copied into its slice of the output along `axis`; an input the storage
        plan already placed in that slice (a producer that wrote it there) costs nothing."""
        dtype = concat_dtype(op, self.dtype)
        for s_m, d_m in concat_copies(op, self.views):
            self._copy_rows(op, s_m, d_m, dtype)

    def _copy_rows(self, op: Op, src: Matrix, dst: Matrix, dtype: DType) -> None:
        """Blocks of whole rows, or of column blocks when a row is too wide for the slots."""
        width = self.column_width(src.cols, lambda w: copy_needs(w * dtype.itemsize))
        if width < src.cols:
            for c0 in range(0, src.cols, width):
                w = min(width, src.cols - c0)
                self._copy_rows(op, src.block(0, src.rows, c0, w), dst.block(0, dst.rows, c0, w), dtype)
            return
        for r0, rows in self.row_blocks(op, src.rows, copy_needs(src.cols * dtype.itemsize)):
            slot = self.vp_in.acquire()
            self.em.load(self.loader, slot, src.block(r0, rows, 0, src.cols))
            self.vp_in.filled()
            self.vp_in.take()
            o = self.vp_out.acquire()
            self.cfg(rows, src.cols, dtype, dtype)
            self.vec("copy", o, slot)
            self.vp_in.release()
            self._store(dst.block(r0, rows, 0, dst.cols), o)

    # -- quantisation -----------------------------------------------------------------
    def quantize(self, op: Op) -> None:
        """A recipe's dynamic rounding of a value (docs/formats.md, steps 2 and 3): `vquant`
        over blocks of whole rows, a row too wide for the buffers cut at scale-group
        boundaries. One scale for the whole value (group 0) needs the value in one block."""
        fmt, group = op.attr("format"), op.attr("group")
        pairs = matrix_pairs(self.views[op.inputs[0]], self.views[op.name])
        for src, dst in pairs:
            if group == 0:
                self._quantize_whole(op, src, dst, fmt, len(pairs))
            else:
                self._quantize_rows(op, src, dst, fmt, group)

    def _quantize_rows(self, op: Op, src: Matrix, dst: Matrix, fmt: str, group: int) -> None:
        isz = self.dtype.itemsize
        width = self.column_width(src.cols, lambda w: copy_needs(w * isz))
        if width < src.cols:
            width -= width % group
            if width == 0:
                raise CompileError(f"op '{op.name}': a {fmt} scale group of {group} columns does "
                                   "not fit this target's vector buffers")
            for c0 in range(0, src.cols, width):
                w = min(width, src.cols - c0)
                self._quantize_rows(op, src.block(0, src.rows, c0, w), dst.block(0, dst.rows, c0, w),
                                    fmt, group)
            return
        for r0, rows in self.row_blocks(op, src.rows, copy_needs(src.cols * isz)):
            self._vquant(src.block(r0, rows, 0, src.cols), dst.block(r0, rows, 0, dst.cols), fmt, group)

    def _quantize_whole(self, op: Op, src: Matrix, dst: Matrix, fmt: str, matrices: int) -> None:
        isz = self.dtype.itemsize
        blocks = self._row_blocks(op, src.rows, copy_needs(src.cols * isz)) \
            if self.fits(copy_needs(src.cols * isz)) else []
        if matrices != 1 or len(blocks) != 1:
            raise CompileError(f"op '{op.name}': one {fmt} scale for the whole value "
                               f"({src.rows * matrices} rows of {src.cols}) needs it in one block "
                               "of this target's vector buffers; a scale per token or per group "
                               "runs (one scale over several blocks is not built)")
        self._vquant(src, dst, fmt, 0)

    def _vquant(self, src: Matrix, dst: Matrix, fmt: str, group: int) -> None:
        slot = self.vp_in.acquire()
        self.em.load(self.loader, slot, src)
        self.vp_in.filled()
        self.vp_in.take()
        o = self.vp_out.acquire()
        self.cfg(src.rows, src.cols, self.dtype, self.dtype)
        self.em.emit(self.unit, "vquant", fmt=fmt, group=group, dst=o, src=slot)
        self.vp_in.release()
        self._store(dst, o)

    # -- layer norm --------------------------------------------------------------------
    def layernorm(self, op: Op) -> None:
        """(x - mean) / sqrt(var + eps) * gain + bias over the last axis, in fp32. Whole rows
        take one pass; rows too wide for the buffers go by w-wide column blocks in three: the
        row sums (-> mean), the sums of centred squares (-> 1/sqrt(var + eps)), then
        normalise, scale, shift and store. The statistics stay in scratch; x is read three
        times (the price of a buffer narrower than a row)."""
        x, gain, bias = (view_matrix(self.views[n]) for n in op.inputs)
        out = view_matrix(self.views[op.name])
        isz, d = self.dtype.itemsize, x.cols
        eps = float(op.attr("eps", 1e-5))
        whole = self.fits(layernorm_needs(d, isz))
        width = d if whole else self.column_width(d, lambda w: layernorm_column_needs(w, isz))
        needs = layernorm_needs(d, isz) if whole else layernorm_column_needs(width, isz)
        spans = _spans(d, width)
        for r0, rows in self.row_blocks(op, x.rows, needs):
            xf, t, mean, var, part = self.scratch(*(rows * width * 4,) * 2, *(rows * 4,) * 3)
            block = x.block(r0, rows, 0, d)
            if not whole:
                for k, (c0, w) in enumerate(spans):             # pass 1: the mean
                    self._to_fp32(xf, block.block(0, rows, c0, w))
                    self._sum_into(mean, part, k, xf, rows, w)
                self.cfg(rows, 1, F32, F32, 1.0 / d)
                self.vec("muli", mean, mean)
                for k, (c0, w) in enumerate(spans):             # pass 2: the variance
                    self._to_fp32(xf, block.block(0, rows, c0, w))
                    self.cfg(rows, w, F32, F32)
                    self.vec("sub", xf, xf, mean, "row")
                    self.vec("mul", t, xf, xf)
                    self._sum_into(var, part, k, t, rows, w)
                self._inverse_rms(var, rows, d, eps)
            for c0, w in spans:                                 # normalise (whole: all of it)
                slot = self.vp_in.acquire()
                g_at = slot + up(rows * w * isz)
                b_at = g_at + up(w * 4)
                self.em.load(self.loader, slot, block.block(0, rows, c0, w))
                self.em.load(self.loader, g_at, gain.block(0, 1, c0, w))
                self.em.load(self.loader, b_at, bias.block(0, 1, c0, w))
                self.vp_in.filled()
                self.vp_in.take()
                o = self.vp_out.acquire()
                self.cfg(rows, w, self.dtype, F32)
                self.vec("copy", xf, slot)
                self.cfg(rows, w, F32, F32)
                if whole:
                    self.red("sum", mean, xf)
                    self.cfg(rows, 1, F32, F32, 1.0 / d)
                    self.vec("muli", mean, mean)
                    self.cfg(rows, d, F32, F32)
                self.vec("sub", xf, xf, mean, "row")
                if whole:
                    self.vec("mul", t, xf, xf)
                    self.red("sum", var, t)
                    self._inverse_rms(var, rows, d, eps)
                    self.cfg(rows, d, F32, F32)
                self.vec("mul", xf, xf, var, "row")
                self.vec("mul", xf, xf, g_at, "col")
                self.cfg(rows, w, F32, self.dtype)
                self.vec("add", o, xf, b_at, "col")
                self.vp_in.release()
                self._store(out.block(r0, rows, c0, w), o)

    def _to_fp32(self, dst: Addr, m: Matrix) -> None:
        """Load a tile of the storage type through a vp_in slot into fp32 scratch, freeing the
        slot at once (so the next block's load overlaps this block's arithmetic)."""
        slot = self.vp_in.acquire()
        self.em.load(self.loader, slot, m)
        self.vp_in.filled()
        self.vp_in.take()
        self.cfg(m.rows, m.cols, self.dtype, F32)
        self.vec("copy", dst, slot)
        self.vp_in.release()

    def _sum_into(self, total: Addr, part: Addr, k: int, src: Addr, rows: int, w: int) -> None:
        """total[r] (+)= sum of src's row r: the first column block writes, later ones add."""
        self.cfg(rows, w, F32, F32)
        self.red("sum", total if k == 0 else part, src)
        if k:
            self.cfg(rows, 1, F32, F32)
            self.vec("add", total, total, part)

    def _inverse_rms(self, out: Addr, rows: int, d: int, eps: float) -> None:
        """out[r] = 1 / sqrt(out[r] / d + eps), out holding row sums of squares; layer norm (of
        centred rows) and RMS norm share it, whole rows or column blocks. Leaves the unit
        configured for [rows, 1]."""
        self.cfg(rows, 1, F32, F32, 1.0 / d)
        self.vec("muli", out, out)
        self.cfg(rows, 1, F32, F32, eps)
        self.vec("addi", out, out)
        self.vec("rsqrt", out, out)

    # -- RMS norm ----------------------------------------------------------------------
    def rmsnorm(self, op: Op) -> None:
        """x / sqrt(mean(x^2) + eps) * gain over the last axis, in fp32 (Hugging Face's order:
        normalise, then scale by the gain); rows too wide for the buffers go by column blocks,
        two passes (the mean square, then normalise and scale)."""
        x, out = (view_matrix(self.views[n]) for n in (op.inputs[0], op.name))
        gain = view_matrix(self.views[op.inputs[1]])
        g_isz = self.em.itemsize[gain.symbol]
        isz, d = self.dtype.itemsize, x.cols
        eps = float(op.attr("eps", 1e-6))
        whole = self.fits(rmsnorm_needs(d, isz, g_isz))
        width = d if whole else self.column_width(d, lambda w: rmsnorm_column_needs(w, isz, g_isz))
        needs = rmsnorm_needs(d, isz, g_isz) if whole else rmsnorm_column_needs(width, isz, g_isz)
        spans = _spans(d, width)
        for r0, rows in self.row_blocks(op, x.rows, needs):
            xf, t, ms, g32, part = self.scratch(*(rows * width * 4,) * 2, rows * 4, width * 4, rows * 4)
            block = x.block(r0, rows, 0, d)
            if not whole:                                       # pass 1: the mean square
                for k, (c0, w) in enumerate(spans):
                    self._to_fp32(xf, block.block(0, rows, c0, w))
                    self.cfg(rows, w, F32, F32)
                    self.vec("mul", t, xf, xf)
                    self._sum_into(ms, part, k, t, rows, w)
                self._inverse_rms(ms, rows, d, eps)
            for c0, w in spans:                                 # normalise and scale
                slot = self.vp_in.acquire()
                g_at = slot + up(rows * w * isz)
                self.em.load(self.loader, slot, block.block(0, rows, c0, w))
                self.em.load(self.loader, g_at, gain.block(0, 1, c0, w))
                self.vp_in.filled()
                self.vp_in.take()
                if g_isz != 4:                  # a computed gain, stored at the operand type
                    self.cfg(1, w, self.dtype, F32)
                    self.vec("copy", g32, g_at)
                    g_at = g32
                o = self.vp_out.acquire()
                self.cfg(rows, w, self.dtype, F32)
                self.vec("copy", xf, slot)
                if whole:
                    self.cfg(rows, d, F32, F32)
                    self.vec("mul", t, xf, xf)
                    self.red("sum", ms, t)
                    self._inverse_rms(ms, rows, d, eps)
                self.cfg(rows, w, F32, F32)
                self.vec("mul", xf, xf, ms, "row")
                self.cfg(rows, w, F32, self.dtype)
                self.vec("mul", o, xf, g_at, "col")
                self.vp_in.release()
                self._store(out.block(r0, rows, c0, w), o)

    # -- rotary position embedding -----------------------------------------------------
    def rope(self, op: Op) -> None:
        """out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin on the halves of the last axis, with
        cos and sin from an fp32 [positions, head_dim] constant ([cos | sin] per row). The
        input is usually the heads view [B, H, S, Dh] of a projection: each head's [S, Dh] is
        one matrix whose rows are positions; a single position (decode) takes every head's
        row at once against one table row."""
        view, out = self.views[op.inputs[0]], self.views[op.name]
        s, d = view.shape[-2:]
        name = rope_name(op, s, d)
        if name not in self.constants:
            self.constants[name] = rope_values(op, s, d)
            self.add_constant(name, (s, d))
        table = Matrix(name, 0, s, d, d)
        if s == 1:
            for x, o in matrix_pairs(view, out):
                self._rope_rows(op, x, o, table, "col")
            return
        for part, o_part in zip(view_batches(view, 2), view_batches(out, 2)):
            self._rope_rows(op, view_matrix(part), view_matrix(o_part), table, "none")

    def _rope_rows(self, op: Op, x: Matrix, out: Matrix, table: Matrix, bcast: str) -> None:
        """Blocks of rows; halves too wide for the buffers go by column blocks, each block
        of the first half with the same columns of the second (rotation pairs column c with
        column h + c)."""
        isz, h = self.dtype.itemsize, x.cols // 2
        width = self.column_width(h, lambda w: rope_needs(w, isz, bcast == "none"))
        for c0, w in _spans(h, width):
            for r0, rows in self.row_blocks(op, x.rows, rope_needs(w, isz, bcast == "none")):
                self._rope_block(x, out, table, bcast, r0, rows, c0, w)

    def _rope_block(self, x: Matrix, out: Matrix, table: Matrix, bcast: str,
                    r0: int, rows: int, c0: int, w: int) -> None:
        isz, h = self.dtype.itemsize, x.cols // 2
        t_rows = rows if bcast == "none" else 1
        half = up(rows * w * isz)
        slot = self.vp_in.acquire()
        x2_at = slot + half
        cos_at = x2_at + half
        sin_at = cos_at + up(t_rows * w * 4)
        self.em.load(self.loader, slot, x.block(r0, rows, c0, w))
        self.em.load(self.loader, x2_at, x.block(r0, rows, h + c0, w))
        t0 = r0 if bcast == "none" else 0
        self.em.load(self.loader, cos_at, table.block(t0, t_rows, c0, w))
        self.em.load(self.loader, sin_at, table.block(t0, t_rows, h + c0, w))
        self.vp_in.filled()
        self.vp_in.take()
        x1f, x2f, p, q = self.scratch(*(rows * w * 4,) * 4)
        o = self.vp_out.acquire()
        o2 = o + half
        self.cfg(rows, w, self.dtype, F32)
        self.vec("copy", x1f, slot)
        self.vec("copy", x2f, x2_at)
        self.cfg(rows, w, F32, F32)
        self.vec("mul", p, x1f, cos_at, bcast)
        self.vec("mul", q, x2f, sin_at, bcast)
        self.cfg(rows, w, F32, self.dtype)
        self.vec("sub", o, p, q)
        self.cfg(rows, w, F32, F32)
        self.vec("mul", p, x2f, cos_at, bcast)
        self.vec("mul", q, x1f, sin_at, bcast)
        self.cfg(rows, w, F32, self.dtype)
        self.vec("add", o2, p, q)
        self.vp_in.release()
        self.vp_out.filled()
        self.vp_out.take()
        self.em.store(self.storer, out.block(r0, rows, c0, w), o)
        self.em.store(self.storer, out.block(r0, rows, h + c0, w), o2)
        self.vp_out.release()

    # -- softmax -----------------------------------------------------------------------
    def softmax(self, op: Op) -> None:
        view, out = self.views[op.inputs[0]], self.views[op.name]
        if len(view.shape) < 2:
            raise GraphError(f"op '{op.name}' (softmax): needs at least 2-D input on this target")
        s, t = view.shape[-2:]
        mask = self._mask(op, s, t)
        for part, o_part in zip(view_batches(view, 2), view_batches(out, 2)):
            self._softmax_rows(op, view_matrix(part), view_matrix(o_part), mask)

    def _mask(self, op: Op, s: int, t: int) -> Matrix | None:
        """The op's -inf/0 mask constant (causal, sliding window), placed on first use."""
        name = mask_name(op, s, t)
        if name is None:
            return None
        if name not in self.constants:
            self.constants[name] = mask_values(op, s, t)
            self.add_constant(name, (s, t))
        return Matrix(name, 0, s, t, t)

    def _softmax_rows(self, op: Op, x: Matrix, out: Matrix, mask: Matrix | None) -> None:
        isz, t = self.dtype.itemsize, x.cols
        scale = float(op.attr("scale", 1.0))
        if not self.fits(softmax_needs(t, isz, mask is not None)):
            width = self.column_width(t, lambda w: softmax_column_needs(w, isz, mask is not None))
            self._softmax_columns(op, x, out, mask, scale, width)
            return
        for r0, rows in self.row_blocks(op, x.rows, softmax_needs(t, isz, mask is not None)):
            slot = self.vp_in.acquire()
            self.em.load(self.loader, slot, x.block(r0, rows, 0, t))
            m_at = slot + up(rows * t * isz)
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

    def _softmax_columns(self, op: Op, x: Matrix, out: Matrix, mask: Matrix | None, scale: float,
                         width: int) -> None:
        """Softmax of rows wider than the buffers: online softmax over w-wide column blocks
        (Milakov and Gimelshein 2018). Pass 1 keeps each row's running maximum m and running
        sum l of exp(z - m), rescaling l by exp(m_old - m_new) when a block raises m; pass 2
        reads the scores again and writes exp(z - m) / l. m starts at fp32's lowest finite
        value, not -inf, so a row whose first blocks are all masked (a sliding window) adds
        exp(-inf) = 0 instead of exp(-inf - -inf) = NaN; every row sees at least one key, so
        its final m is a real score."""
        isz, t = self.dtype.itemsize, x.cols
        spans = _spans(t, width)
        for r0, rows in self.row_blocks(op, x.rows, softmax_column_needs(width, isz, mask is not None)):
            z, m, total, peak, factor = self.scratch(rows * width * 4, *(rows * 4,) * 4)
            for k, (c0, w) in enumerate(spans):                 # pass 1: running max and sum
                self._scores(z, x, mask, r0, rows, c0, w, scale, start=m if k == 0 else None)
                self.red("max", peak, z)
                self.cfg(rows, 1, F32, F32)
                self.vec("max", peak, peak, m)
                if k:
                    self.vec("sub", factor, m, peak)
                    self.vec("exp", factor, factor)
                    self.vec("mul", total, total, factor)
                self.cfg(rows, w, F32, F32)
                self.vec("sub", z, z, peak, "row")
                self.vec("exp", z, z)
                self._sum_into(total, factor, k, z, rows, w)
                m, peak = peak, m
            self.cfg(rows, 1, F32, F32)
            self.vec("recip", total, total)
            for c0, w in spans:                                 # pass 2: normalise
                self._scores(z, x, mask, r0, rows, c0, w, scale)
                self.vec("sub", z, z, m, "row")
                self.vec("exp", z, z)
                o = self.vp_out.acquire()
                self.cfg(rows, w, F32, self.dtype)
                self.vec("mul", o, z, total, "row")
                self._store(out.block(r0, rows, c0, w), o)

    def _scores(self, z: Addr, x: Matrix, mask: Matrix | None, r0: int, rows: int, c0: int, w: int,
                scale: float, start: Addr | None = None) -> None:
        """z = scale * x (+ mask) for one block, in fp32, the vp_in slot freed after; with
        `start`, also start[r] = fp32's lowest finite value (made from the unmasked scores'
        row maximum, finite, times zero: the unit has no move-immediate). Leaves the unit
        configured for [rows, w] in fp32."""
        slot = self.vp_in.acquire()
        self.em.load(self.loader, slot, x.block(r0, rows, c0, w))
        m_at = slot + up(rows * w * self.dtype.itemsize)
        if mask is not None:
            self.em.load(self.loader, m_at, mask.block(r0, rows, c0, w))
        self.vp_in.filled()
        self.vp_in.take()
        self.cfg(rows, w, self.dtype, F32, scale)
        self.vec("muli", z, slot)
        self.cfg(rows, w, F32, F32)
        if start is not None:
            self.red("max", start, z)
            self.cfg(rows, 1, F32, F32, 0.0)
            self.vec("muli", start, start)
            self.cfg(rows, 1, F32, F32, LOWEST)
            self.vec("addi", start, start)
            self.cfg(rows, w, F32, F32)
        if mask is not None:
            self.vec("add", z, z, m_at)
        self.vp_in.release()
