"""KV-cache writes of the PIM lowering: new K and V positions into their bank layouts.

A K position is written whole (pim.act, pim.wr, pim.pre per bank row piece) from a staging
buffer dma0 fills. Prefill's V is written column by column (strided DMA gathers of each
dimension, then pim.wr per bank). A decode step's V position is one lane of one burst per
(head, bank dimension group) of the column-major layout: dma0 writes it with masked writes,
one strided store per group.

The caches hold the KV heads only (grouped-query attention stores each KV head once): the
writes of a position are those of its Hkv heads, whatever the number of query heads.
"""
from __future__ import annotations

from isa import Addr

from compiler.errors import CompileError
from compiler.passes.storage import View
from compiler.targets.emit import Matrix, symbol_name
from compiler.targets.pim import layout as pl

__all__ = ["KvCacheWrites"]


class KvCacheWrites:
    """Mixed into the PIM lowering, whose em, arch, matrices, pim_queues,
    semaphores (go, staged, fence), abuf regions (kstage, vstage) and zeros() (a DRAM
    constant of zeros, one burst per bank) it uses."""

    def _write_positions(self, value: str, src: View, p0: int, p1: int, positions: int) -> None:
        kind, lay = self.matrices[value][0].kind, self.matrices[value][0].layout
        heads, hd = src.shape[1], src.shape[3]
        if kind == "kcache":
            for p in range(p0, p1):
                self._write_k(lay, src, p - p0, p, hd)
        elif p0 == 0 and p1 == positions:                 # every position: a prefill's
            self._write_v(lay, src, heads, positions, hd)
        else:                                   # appended positions (a decode, a prefill chunk)
            for p in range(p0, p1):
                self._patch_v(lay, src, p, heads, positions, hd)

    def _wr(self, q: str, bank: int, lay: pl.GemvLayout, at: int, elems: int, src: Addr) -> None:
        """pim.wr of stream elements [at, at + elems) of one bank, row by row."""
        per_row, lanes = self.arch.row_bytes // 2, self.arch.macs_per_bank_per_access
        while elems:
            row, col = lay.cell(self.arch, at)
            n = min(elems, per_row - at % per_row)
            self.em.emit_fast(q, "pim.act", bank, row)
            self.em.emit_fast(q, "pim.wr", bank, row, col, -(-n // lanes), src)
            self.em.emit_fast(q, "pim.pre", bank)
            at, elems, src = at + n, elems - n, src + n * 2

    def _stage(self, pim_releases: bool = True) -> None:
        """dma0 may reuse the KV staging buffers once the last KV write is done with them;
        `pim_releases`: this write's pim queue signals `staged` when it is (else dma0 itself
        is the last user, done in order)."""
        if self._stage_pending:
            self.em.emit("dma0", "wait", sem=self.staged)
        self._stage_pending = pim_releases

    def _hand(self, c: int) -> str:
        """dma0 -> pim queue c: its staged data is ready; returns the queue."""
        q = self.pim_queues[c]
        self.em.emit("dma0", "signal", sem=self.go[c])
        self.em.emit(q, "wait", sem=self.go[c])
        return q

    def _write_k(self, lay: pl.GemvLayout, src: View, index: int, position: int, hd: int) -> None:
        """The position's K of each head group, staged whole (one DMA row when the heads are
        contiguous, else one row per head), then written into its bank's rows."""
        em = self.em
        if src.strides[3] != 1:
            raise CompileError(f"K rows in '{src.buffer}' are not contiguous")
        for c, b, start, width, h0 in pl.kcache_cells(self.arch, lay, hd, position):
            head = src.offset + h0 * src.strides[1] + index * src.strides[2]
            rows = Matrix(symbol_name(src.buffer), head, 1, width, width)
            if width > hd and src.strides[1] != hd:
                rows = Matrix(symbol_name(src.buffer), head, width // hd, hd, src.strides[1])
            self._stage()
            em.load("dma0", self.addr("kstage"), rows)
            q = self._hand(c)
            self._wr(q, b, lay, start, width, self.addr("kstage"))
            em.emit(q, "signal", sem=self.staged)

    def _write_v(self, lay: pl.GemvLayout, src: View, heads: int, positions: int, hd: int) -> None:
        """All positions: per (head, dimension group, chunk), every bank's column by strided DMA."""
        em, a = self.em, self.arch
        c_n, b_n = a.channels, a.banks
        chunks = len(lay.passes) // -(-heads // c_n)
        for pi, p in enumerate(lay.passes):
            pp, q = divmod(pi, chunks)
            q0 = q * pl.vcache_chunk(a, lay, positions, hd)
            count = min(p.segments[0].length, positions - q0)
            for c in range(c_n):
                h = pp * c_n + c
                if h >= heads:
                    continue
                for i, seg in enumerate(p.segments[::lay.queries]):
                    banks = min(b_n, hd - i * b_n)
                    self._stage()
                    em.pitch("dma0", src.strides[2] * 2, 0)
                    for b in range(banks):
                        first = src.offset + h * src.strides[1] + q0 * src.strides[2] + i * b_n + b
                        em.emit("dma0", "load", dst=self.addr("vstage", b * seg.length * 2),
                                src=em.dram(Matrix(symbol_name(src.buffer), first, 1, 1, 1)),
                                rows=count, row_bytes=2)
                    if count < seg.length:
                        self._zero_tail(banks, count, seg.length)
                    qn = self._hand(c)
                    for b in range(banks):
                        self._wr(qn, b, lay, seg.start, seg.length, self.addr("vstage", b * seg.length * 2))
                    em.emit(qn, "signal", sem=self.staged)

    def _zero_tail(self, banks: int, count: int, length: int) -> None:
        """Zeros into the staged columns' last burst past the context (positions count ..
        length - 1 of each bank's column): the GEMV's gbuf holds whatever follows the softmax
        row there, so the V cache's padding must be zero, not what the staging held before."""
        em, zeros = self.em, self.zeros()
        assert 0 < length - count < self.arch.macs_per_bank_per_access, "a V chunk ends in its last burst"
        em.pitch("dma0", 0, length * 2)
        em.emit("dma0", "load", dst=self.addr("vstage", count * 2), src=em.dram(zeros),
                rows=banks, row_bytes=(length - count) * 2)

    def _patch_v(self, lay: pl.GemvLayout, src: View, position: int, heads: int,
                 positions: int, hd: int) -> None:
        """One new position: V[h, position, d] is lane `lane` of one burst per (head, bank
        dimension group) in each of the group's banks. dma0 stages the position's V (one load,
        then a fence until it lands) and writes each group with one strided store of a 2-byte
        row per bank, one bank apart: GDDR6 masked writes (WDM), so nothing is read first."""
        em, a = self.em, self.arch
        if src.strides[3] != 1:
            raise CompileError(f"V rows in '{src.buffer}' are not contiguous")
        if heads * hd * 2 > self.abuf["vstage"][1]:
            raise CompileError(f"a position's V ({heads} x {hd} bf16) exceeds the ASIC's V "
                               f"staging buffer ({self.abuf['vstage'][1]} bytes)")
        index = position - (positions - src.shape[2])
        self._stage(pim_releases=False)
        first = src.offset + index * src.strides[2]
        em.load("dma0", self.addr("vstage"), Matrix(symbol_name(src.buffer), first, heads, hd,
                                                    src.strides[1]))
        em.emit("dma0", "signal", sem=self.fence)
        em.emit("dma0", "wait", sem=self.fence)
        em.pitch("dma0", 2, a.row_bytes)          # one lane per bank: banks are a row apart
        for c, start, lane, h, d0 in pl.vcache_cells(a, lay, heads, positions, hd, position):
            row, col = lay.cell(a, start)
            em.emit("dma0", "store",
                    dst=Addr("dram", a.dram_address(c, 0, row, col * a.burst_bytes + lane * 2)),
                    src=self.addr("vstage", (h * hd + d0) * 2), rows=min(a.banks, hd - d0),
                    row_bytes=2)
