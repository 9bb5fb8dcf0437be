"""Emission for a PIM-DRAM system (PIM-GPT style): GEMVs in the DRAM banks, the rest on the ASIC.

Where things live is decided before (placement.py, layout.py). A GEMV (one input row): dma0
loads the row into abuf and signals every channel; each pim queue fills its global buffer
(pim.wrgb), runs its segments (pim.act_all, pim.mac_all, pim.rdmac_all into abuf,
pim.pre_all) and signals; the ASIC adds the partial sums of the chunks, adds the bias, rounds
to BF16, and dma1 stores the result; the next GEMV's load waits until the ASIC is done with
the buffers. Prefill runs one GEMV per token.

Attention: one GEMV per token row against the K (or V) cache, its input the row of every
query head ([H, Dh] of q, [H, T] of the softmax). Grouped-query attention (q [1, Hkv, G, S,
Dh] against a cache of Hkv heads) is the same GEMV with H = Hkv x G query rows: each KV head
is stored once, and the G query rows of a group share its rows (layout.py).

Long contexts (H x T past what one GEMV's buffers hold: 16,384 fp32 partial sums, a softmax
row of 2 x 16 KiB bf16 input) run each token row's attention GEMV in pieces over positions
(placement decides, layout.py builds them; the split never applies where one GEMV fits). K:
each piece reloads q, refills the gbufs and MACs a block of positions, the ASIC rounds its
[H, block] scores into their columns. V: each piece loads its range of the softmax row; the
ASIC adds each piece's partial sums, in order, into one fp32 accumulator (vector scratch),
rounded once after the last. Pieces alternate the double buffers like any GEMVs, so a
piece's MACs overlap the previous piece's reduction. Cost per extra piece: one input load,
a gbuf fill per pass and channel, one reduction and the rows at its edges opened again.

KV cache (kv.py): a new K position is written whole (pim.act, pim.wr, pim.pre); a new V
position touches one 16-lane burst per (head, bank dimension group) of the column-major
layout, written with masked DMA stores.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping

import numpy as np

import isa
from isa import Addr, DType
from isa.qformats import mode_name

from arch.pim import PimArch
from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.quantised import StoredFormat, quant_assumption
from compiler.passes.storage import StoragePlan, View
from compiler.targets.base import TargetLowering
from compiler.targets.emit import Emitter, Matrix, Ring, RingSpec, Tracked, symbol_name
from compiler.targets.movement import lower_embedding
from compiler.targets.pim import layout as pl
from compiler.targets.pim.kv import KvCacheWrites
from compiler.targets.pim.lowered import ASSUMPTIONS, PimLowered
from compiler.targets.pim.placement import ALIGN, PimPlacement, matrix_value
from compiler.targets.sweep import flat
from compiler.targets.vector import VectorLowering

__all__ = ["PimLowering"]

F32 = DType.fp32


class PimLowering(KvCacheWrites, TargetLowering, Tracked):
    """Emits the program for a planned `PimPlacement`. Tracked (compiler/targets/sweep.py):
    the GEMV double buffers' turn and the releases dma0 still owes shape what comes next."""

    def __init__(self, graph: Graph, arch: PimArch, dtype: DType, plan: StoragePlan,
                 placement: PimPlacement,
                 quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> None:
        self.arch, self.dtype, self.placement = arch, dtype, placement
        self.quantised = quantised
        self._modes = [16] * arch.channels         # each channel's MAC mode (pim.qmode) now
        self.abuf, self.matrices = placement.abuf, placement.matrices
        self.pim_queues = arch.pim_queues
        em = Emitter("pim")
        for symbol in placement.dense:
            em.place(symbol)
        self.symbols = [*placement.dense, *placement.regions]
        self._act_end = placement.act_end

        def ring(name: str, producer: str, consumer: str) -> Ring:
            at, size = self.abuf[name]
            return Ring(em, RingSpec(name, "abuf", at, size // 2, 2, producer, consumer))

        self.vp_in, self.vp_out = ring("vp_in", "dma0", "asic0"), ring("vp_out", "asic0", "dma1")
        self.copy = ring("copy", "dma0", "dma1")
        vector = VectorLowering(em, self.vp_in, self.vp_out, self.abuf["scratch"], dtype, plan.views,
                                self.add_constant)
        super().__init__(graph=graph, plan=plan, em=em, vector=vector)
        # go[c]: dma0 -> pim queue c (its input is staged); done[j]: pim -> ASIC (partial
        # sums in buffer j; one per buffer, so a channel already on the next GEMV cannot stand
        # in for a slower one); free: ASIC -> dma0 (a GEMV's buffers free, in order); staged:
        # pim -> dma0 (KV staging free again). Per-channel `go` so no queue takes another's.
        self.go = [em.semaphore() for _ in self.pim_queues]
        self.done = [em.semaphore() for _ in range(2)]
        self.free, self.staged = (em.semaphore() for _ in range(2))
        self.fence = em.semaphore()               # dma0 -> dma0: its loaded data has landed
        self._gemvs = 0                            # GEMVs so far (buffer = count mod 2)
        self._released = 0                         # GEMV releases dma0 has waited for
        self._stage_pending = False
        self._written: set[str] = set()
        self._pieces: dict[int, tuple[pl.Pass, list]] = {}    # id(pass) -> (it, _row_pieces)
        self._channels: dict[tuple, tuple] = {}   # `_channel`'s words: key -> (passes, words)
        self._constants: dict[str, np.ndarray] = {}    # the lowering's own (vector's beside)
        em.track(self)

    def sweep_key(self) -> object:
        """(`_written` names the KV values already in their PIM layout: a layer's own are
        never among them before it starts, and no other layer reads them, so it is not
        state a sweep over layers or tokens compares.)"""
        return (self._gemvs % 2, self._gemvs - self._released, self._stage_pending,
                len(self._constants), tuple(self._modes))

    def align_layer(self) -> None:
        """The rings, and the GEMV double buffers: after an odd number of GEMVs the ASIC
        releases a buffer nothing used, so that the layer's first GEMV takes buffer 0."""
        super().align_layer()
        if self._gemvs % 2:
            self.em.emit("asic0", "signal", sem=self.free)
            self._gemvs += 1

    def sweep_counts(self) -> tuple[int, int]:
        return self._gemvs, self._released

    def sweep_set(self, counts) -> None:
        self._gemvs, self._released = counts

    def addr(self, region: str, offset: int = 0) -> Addr:
        return Addr("abuf", self.abuf[region][0] + offset)

    def zeros(self) -> Matrix:
        """A DRAM constant of zeros, a burst per bank (fp32 zeros are bf16 zeros twice)."""
        name, n = "pim.zeros", self.arch.banks * self.arch.burst_bytes // 4
        if name not in self._constants:
            self._constants[name] = np.zeros(n, np.float32)
            self.add_constant(name, (n,))
        return Matrix(name, 0, 1, n, n)

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        at = self._act_end
        self.em.addresses[name], self.em.itemsize[name] = at, 4
        self.symbols.append(isa.Symbol(name, "dram", at, shape, F32))
        self._act_end += -(-math.prod(shape) * 4 // ALIGN) * ALIGN
        if self._act_end > self.placement.act_limit:
            raise CompileError(f"constants need {self._act_end:,} bytes of the activation region "
                               f"({self.placement.act_limit:,})")

    # -- program -----------------------------------------------------------------------
    def lower(self) -> PimLowered:
        self.lower_ops("dma0", "dma1")
        program = self.em.program(("dram", "gbuf", "abuf"), tuple(self.symbols), self.arch.queues)
        matrices = {m.symbol: m for blocks in self.matrices.values() for m in blocks}
        note = quant_assumption(self.quantised, "the banks' MACs multiply the codes by the "
                                "inputs (pim.qmode) and the ASIC scales each output's (or "
                                "group's) sum, the scales held as exact fp32 copies", self.graph)
        return PimLowered(program, self.plan, self.dtype, {**self.vector.constants, **self._constants},
                          ASSUMPTIONS + note, self.arch, matrices, quantised=self.quantised)

    # -- GEMV --------------------------------------------------------------------------
    def _gemv(self, layout: pl.GemvLayout, load_input, wide: bool = False,
              piece: pl.Piece | None = None) -> int:
        """One GEMV over `layout` (or over one `piece` of it: the piece's passes): input into this GEMV's xin buffer (load_input(address)
        emits dma0 loads), all pim queues run their passes, the ASIC then owns the partial
        sums; returns their address. Buffers alternate: dma0 waits for the ASIC to release
        the GEMV two back (releases come in order), so a GEMV that does not need the one
        before overlaps its reduction. A `wide` input (an attention row longer than one xin
        buffer: many heads x a long context) takes both xin buffers, after every GEMV before
        it is released."""
        em, j = self.em, self._gemvs % 2
        while self._released < (self._gemvs if wide else self._gemvs - 1):
            em.emit("dma0", "wait", sem=self.free)
            self._released += 1
        self._gemvs += 1
        if wide:
            load_input(self.addr("xin0"))
            xin = "xin0"
        else:
            load_input(self.addr(f"xin{j}"))
            xin = f"xin{j}"
        passes = layout.passes if piece is None else piece.passes
        active = [c for c in range(self.arch.channels)
                  if any(p.fills[c] is not None for p in passes)]
        for c in active:
            em.emit("dma0", "signal", sem=self.go[c])
        psum = self.abuf[f"psum{j}"][0]
        emitted: dict = {}                  # per pass: its first channel's rows (`_segments`)
        for c in active:
            q = self.pim_queues[c]
            em.emit(q, "wait", sem=self.go[c])
            if self._modes[c] != layout.bits:       # the MACs read this layout's elements
                self._modes[c] = layout.bits
                em.emit(q, "pim.qmode", fmt=mode_name(layout.bits))
            self._channel(q, c, layout, passes, xin, psum, emitted)
            em.emit(q, "signal", sem=self.done[j])
        for _ in active:
            em.emit("asic0", "wait", sem=self.done[j])
        return psum

    def _channel(self, q: str, c: int, layout: pl.GemvLayout, passes: tuple[pl.Pass, ...],
                 xin: str, psum: int, emitted: dict) -> None:
        """Channel c's share of a GEMV's passes: each one's gbuf fill, then its rows
        (`_segments`). Its words are a function of these arguments and the queue's
        configuration alone (nothing in them signals, stores, marks an op or takes a ring
        slot, so the sweeps in it find the same loops each time): they are emitted once per
        distinct (passes, channel, buffers, configuration) and copied after that, as a
        prefill's attention GEMVs repeat the same rows token after token in two buffers."""
        em = self.em
        key = (id(layout), id(passes), c, xin, psum, em.queue_config(q))
        found = None if flat() else self._channels.get(key)
        if found is not None and found[0] is passes:
            em.instructions.extend(found[1])
            return
        start, state = len(em.instructions), (em.sweep_key(), em.sweep_counts())
        for p in passes:
            fill = p.fills[c]
            if fill is None:
                continue
            first, count = fill
            nbytes = -(-count * 2 // self.arch.burst_bytes) * self.arch.burst_bytes
            for r in em.sweep(range(p.runs), uniform=True):
                em.emit_fast(q, "pim.wrgb", r * p.gbuf_stride * 2,
                             self.addr(xin, (first + r * p.run_stride) * 2), nbytes)
            self._segments(q, layout, p, c, psum, emitted)
        if not flat() and state == (em.sweep_key(), em.sweep_counts()):
            self._channels[key] = (passes, em.instructions[start:])

    def _segments(self, q: str, layout: pl.GemvLayout, p: pl.Pass, c: int, psum: int,
                  emitted: dict) -> None:
        """One channel's rows of a pass: ACT_ALL, MAC_ALL runs, RDMAC_ALL as each output
        completes, PRE_ALL; swept segment by segment, each item the DRAM rows, columns and
        global-buffer offsets it emits (`_row_pieces`), so a loop moves them (isa.opcodes.
        MOVING_INTS) exactly as the flat program has them.

        Every channel of a pass reads the same rows (`_row_pieces`): its words are the first
        channel's on its own queue, each partial sum `channel_stride` further per channel,
        and the sweep makes the same loops of them (it compares words and moves of words, and
        the emission state, which these words leave as they found it: nothing here signals,
        stores, marks an op or takes a ring slot, so the state is each time what it was). So
        the first channel's words are emitted (`emitted[pass]`) and the others' copied from
        them, queue and partial-sum addresses changed; where the state moved after all, or
        the queue's configuration differs, the channel is emitted as the first was. Flat
        emission (`tessel compile --unroll`, the tests' reference) emits every channel."""
        em = self.em
        emit = em.emit_fast
        shift = layout.channel_stride * 4
        config = em.queue_configs().get(q)
        first = None if flat() else emitted.get(id(p))
        if first is not None and first[0] is p and first[3] == config:
            _, c0, words, _ = first
            move = (c - c0) * shift
            for word in words:
                if word.opcode == "pim.rdmac_all":
                    (_, dst), = word.fields
                    emit(q, "pim.rdmac_all", Addr("abuf", dst.addr + move))
                elif word.queue.unit.name == "pim":
                    emit(q, word.opcode, *(v for _, v in word.fields))
                else:
                    em.instructions.append(word)        # a loop's header or stride
            return
        start, state = len(em.instructions), (em.sweep_key(), em.sweep_counts())
        base = psum + c * shift
        items = self._row_pieces(layout, p)
        for item in em.sweep(items, uniform=True):
            out, opens, closes = item[:3]
            for k in range(3, len(item), 4):
                row, col, ncols, gb = item[k:k + 4]
                if k > 3 or opens:              # a row not open yet: close the last, open it
                    if k > 3 or closes:
                        emit(q, "pim.pre_all")
                    emit(q, "pim.act_all", row)
                emit(q, "pim.mac_all", col, ncols, gb)
            emit(q, "pim.rdmac_all", Addr("abuf", base + out * 4))
        if any(len(item) > 3 for item in items):        # a row is open: close it
            emit(q, "pim.pre_all")
        if first is None and state == (em.sweep_key(), em.sweep_counts()):
            emitted[id(p)] = (p, c, em.instructions[start:], config)

    def _row_pieces(self, layout: pl.GemvLayout, p: pl.Pass) -> list[tuple[int, ...]]:
        """Per segment of a pass, as one tuple of ints (what a sweep reads fastest): its
        output element; whether its first row must be opened (1) and whether a row open
        before it must be closed first (1); then (DRAM row, first column, columns, gbuf
        offset) of each row it reads. The same for every channel of the pass (worked out
        once per pass)."""
        found = self._pieces.get(id(p))
        if found is not None and found[0] is p:
            return found[1]
        per_row, lanes = pl.row_elems(self.arch, layout.bits), pl.mac_lanes(self.arch, layout.bits)
        items, open_row = [], None
        for seg in p.segments:
            at, left, gb = seg.start, seg.length, seg.gb_bytes
            pieces, opens, closes = [], 0, 0
            while left:
                row, within = divmod(at, per_row)
                n = min(left, per_row - within)
                if not pieces:
                    opens = int(row != open_row)
                    closes = int(row != open_row and open_row is not None)
                pieces += (layout.first_row + row, within // lanes, n // lanes, gb)
                open_row = row
                at, left, gb = at + n, left - n, gb + n * 2
            items.append((seg.out, opens, closes, *pieces))
        self._pieces[id(p)] = (p, items)
        return items

    def _finish(self, psum: int, rows: int, cols: int, stride_elems: int, chunk_elems: int,
                chunks: int, bias: Matrix | None, out: Matrix, scales: Matrix | None = None,
                scale_rows: tuple[int, ...] | None = None) -> None:
        """psum [chunks x rows x stride] -> sum chunks (+ bias) -> bf16 -> out (rows x cols);
        the GEMV's buffers are released once the sums are read. A quantised weight's
        `scales` [groups, cols]: one row (per output channel) multiplies each output's sum of
        code x input; with `scale_rows` (group-wise), each chunk's partial sums are
        multiplied by their group's row before they are added."""
        v = self.vector
        if scale_rows is not None:
            for k, row in enumerate(scale_rows):
                self._scale(psum + k * chunk_elems * 4, rows, cols, stride_elems, scales.block(row, 1, 0, cols))
        v.cfg(rows, stride_elems, F32, F32)
        for k in range(1, chunks):
            v.vec("add", Addr("abuf", psum), Addr("abuf", psum), Addr("abuf", psum + k * chunk_elems * 4))
        if scales is not None and scale_rows is None:
            self._scale(psum, rows, cols, stride_elems, scales)
        self._round_store(psum, rows, cols, stride_elems, bias, out, release=True)

    def _scale(self, psum: int, rows: int, cols: int, stride_elems: int, scales: Matrix) -> None:
        """psum[r, c] *= scales[0, c] for c < cols, in column slices a vp_in slot holds."""
        v, em = self.vector, self.em
        width = max(1, self.vp_in.spec.slot_bytes // 4)
        for c0 in range(0, cols, width):
            w = min(width, cols - c0)
            slot = self.vp_in.acquire()
            em.load("dma0", slot, scales.block(0, 1, c0, w))
            self.vp_in.filled()
            self.vp_in.take()
            v.cfg(1, w, F32, F32)
            for r in range(rows):
                at = Addr("abuf", psum + (r * stride_elems + c0) * 4)
                v.vec("mul", at, at, slot)
            self.vp_in.release()

    def _round_store(self, src: int, rows: int, cols: int, stride_elems: int, bias: Matrix | None,
                     out: Matrix, release: bool) -> None:
        """fp32 rows at abuf[src] (+ bias) -> bf16 -> out (rows x cols), through vp_out slots:
        rows a slot holds at a time (a long context's scores [H, 512] are two slots on a
        Llama graph's 16 KiB slots). `release`: signal the GEMV's buffers free after the
        last read of `src`."""
        v, em = self.vector, self.em
        if bias is not None:
            b = self.vp_in.acquire()
            em.load("dma0", b, bias)
            self.vp_in.filled()
            self.vp_in.take()
        per = max(1, self.vp_out.spec.slot_bytes // (stride_elems * 2))
        if bias is not None and per < rows:
            raise CompileError("a biased GEMV output wider than a vp_out slot")
        for r0 in range(0, rows, per):
            n = min(per, rows - r0)
            o = self.vp_out.acquire()
            v.cfg(n, stride_elems, F32, self.dtype)
            if bias is not None:
                v.vec("add", o, Addr("abuf", src), b, "col")
                self.vp_in.release()
            else:
                v.vec("copy", o, Addr("abuf", src + r0 * stride_elems * 4))
            if release and r0 + n == rows:
                em.emit("asic0", "signal", sem=self.free)
            self.vp_out.filled()
            self.vp_out.take()
            part = out if n == rows else out.block(r0, n, 0, cols)
            em.pitch("dma1", stride_elems * 2, part.stride * 2 if part.rows > 1 else 0)
            em.emit("dma1", "store", dst=em.dram(part), src=o, rows=part.rows, row_bytes=cols * 2)
            self.vp_out.release()

    def op_linear(self, op: Op) -> None:
        x = self.matrix(self.plan.views[op.inputs[0]])
        out = self.matrix(self.plan.views[op.name])
        bias = self.matrix(self.plan.views[op.inputs[2]]) if len(op.inputs) == 3 else None
        self._linear(op.inputs[1], x, out, bias)

    def _linear(self, weight: str, x: Matrix, out: Matrix, bias: Matrix | None) -> None:
        for block in self.matrices[weight]:
            n0, nb, lay = block.n0, block.outputs, block.layout
            lanes = self.arch.channels * self.arch.banks
            n_pad = -(-nb // lanes) * lanes
            pieces = lay.psum_elems // n_pad             # partial sums per output: chunks or groups
            scales, rows_of = None, None
            if block.scales is not None:
                fmt = self.quantised[weight]
                scales = Matrix(block.scales, n0, fmt.rows // fmt.group, nb, fmt.cols)
                if fmt.group != fmt.rows:                # each piece's scale row
                    step = fmt.rows // pieces
                    rows_of = tuple(p * step // fmt.group for p in range(pieces))
            for t in self.em.sweep(range(x.rows), uniform=True):       # prefill: token by token
                psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x.block(t, 1, 0, x.cols)))
                self._finish(psum, 1, nb, n_pad, n_pad, pieces,
                             bias.block(0, 1, n0, nb) if bias else None, out.block(t, 1, n0, nb),
                             scales, rows_of)

    def op_matmul(self, op: Op) -> None:
        a_view, b_name = self.plan.views[op.inputs[0]], matrix_value(self.graph, op.inputs[1])
        out_view = self.plan.views[op.name]
        kind = self.matrices[b_name][0].kind
        if kind == "linear":
            self._linear(b_name, self.matrix(a_view), self.matrix(out_view), None)
            return
        self._ensure_written(b_name)
        m = self.matrices[b_name][0]
        lay = m.layout
        rows = a_view.shape[-2]
        for t in range(rows):
            if m.pieces:
                self._attention_pieces(m, a_view, out_view, t)
                continue
            x_rows = self._head_rows(a_view, t, flat=True)
            nbytes, xin_bytes = x_rows.rows * x_rows.cols * 2, self.abuf["xin0"][1]
            if nbytes > 2 * xin_bytes:
                raise CompileError(f"op '{op.name}': a row of every head ({nbytes:,} bytes of bf16) "
                                   f"exceeds the ASIC's two {xin_bytes:,}-byte GEMV input buffers")
            psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x_rows), nbytes > xin_bytes)
            if kind == "kcache":
                scores = self._head_rows(out_view, t, flat=False)
                self._finish(psum, scores.rows, scores.cols, lay.psum_elems // scores.rows, 0, 1,
                             None, scores)
            else:
                context = self._head_rows(out_view, t, flat=True)      # [H x Dh] partial sums per chunk
                heads, width = context.rows, context.rows * context.cols
                self._finish(psum, heads, context.cols, context.cols, width, lay.psum_elems // width,
                             None, context)

    def _attention_pieces(self, m, a_view: View, out_view: View, t: int) -> None:
        """Token row t of a long-context attention GEMV, piece by piece (layout.py). K: the
        q row is loaded for each piece, each piece's scores [H, block] rounded and stored
        into their columns. V: each piece loads its range of the softmax row [H, range]; the
        ASIC adds each piece's blocks, in order, into an fp32 accumulator in its vector
        scratch (first block copied), rounded and stored after the last piece."""
        lay, v = m.layout, self.vector
        if m.kind == "kcache":
            x_rows = self._head_rows(a_view, t, flat=True)
            nbytes = x_rows.rows * x_rows.cols * 2
            scores = self._head_rows(out_view, t, flat=False)
            for piece in m.pieces:
                psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x_rows),
                                  nbytes > self.abuf["xin0"][1], piece)
                self._finish(psum, scores.rows, piece.count, piece.stride, 0, 1, None,
                             scores.block(0, scores.rows, piece.first, piece.count))
            return
        probs = self._head_rows(a_view, t, flat=False)
        context = self._head_rows(out_view, t, flat=True)
        width = context.rows * context.cols
        acc = Addr("abuf", self.abuf["scratch"][0])
        if width * 4 > self.abuf["scratch"][1]:
            raise CompileError(f"attention context of {width:,} fp32 values exceeds the ASIC's "
                               f"{self.abuf['scratch'][1]:,}-byte vector scratch (its accumulator)")
        for k, piece in enumerate(m.pieces):
            x = probs.block(0, probs.rows, piece.first, piece.count)
            psum = self._gemv(lay, lambda xin: self.em.load("dma0", xin, x), False, piece)
            v.cfg(context.rows, context.cols, F32, F32)
            for b in range(piece.blocks):
                at = Addr("abuf", psum + b * width * 4)
                if k == b == 0:
                    v.vec("copy", acc, at)
                else:
                    v.vec("add", acc, acc, at)
            self.em.emit("asic0", "signal", sem=self.free)
        self._round_store(acc.addr, context.rows, context.cols, context.cols, None, context, release=False)

    def _head_rows(self, view: View, t: int, flat: bool) -> Matrix:
        """Row t of every head of a [1, H, S, X] view (or [1, Hkv, G, S, X]: H = Hkv x G query
        heads, query head h * G + g): H rows, or one row when `flat` and the heads are
        contiguous."""
        if len(view.shape) > 4 and view.shape[0] == 1:
            merged = view.reshape((1, math.prod(view.shape[1:-2]), *view.shape[-2:]))
            if merged is None:
                raise CompileError(f"attention value in '{view.buffer}': its query heads are not "
                                   "one strided axis")
            view = merged
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
        if op.name not in self.matrices:
            raise CompileError(f"op '{op.name}': the KV cache is not read by an attention matmul")
        new = self.plan.views[op.inputs[1]]
        total = self.graph[op.name].type.shape[-2]
        self._write_positions(op.name, new, total - new.shape[-2], total, total)

    # -- embedding ---------------------------------------------------------------------
    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.copy, 2, ALIGN)

