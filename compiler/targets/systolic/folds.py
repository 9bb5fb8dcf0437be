"""A GEMM on a systolic array, fold by fold: each `gemm` instruction is one fold of the array
(one rows x cols block of the pinned dimensions) over one piece of the streamed dimension.

Loads, compute and stores therefore pipeline at fold granularity: the array starts as soon as
its first fold's operands have arrived. Pieces of one fold's stream follow each other with
`stream=1` (the stationary operand stays, the pipeline stays full), so the matrix unit's
cycles are SCALE-Sim's fold arithmetic whatever the buffer sizes. When one column of folds'
partial sums over the whole stream does not fit an accumulator slot (input-stationary GEMMs
stream N, the LM head's 50,257 columns), each fold streams on through the accumulator chunk
by chunk and the vector unit adds each chunk to the partial sums of the earlier folds, kept
in fp32 in DRAM (`PartialSums`): traffic instead of refilling the array (docs/systolic.md).

Roles, by dataflow (p: fold along the array rows, q: along its columns, t: stream piece):
    ws, is: stationary W(p, q), streamed X(p, t), output Y(q, t); reduction over p
    os:     output Y(p, q) stays in the PEs; streamed X(p, t) = A rows, Z(q, t) = B columns
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from isa import Addr, DType

from compiler.errors import CompileError
from compiler.targets.emit import Emitter, Matrix, Ring, Tracked

__all__ = ["FoldGemm", "Packer", "PartialSums", "min_slots", "PIECE_MAX"]

ALIGN = 64
T = TypeVar("T")
PIECE_MAX = 8192       # stream rows per piece: keeps every DMA row and ISA count in its field


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


class Packer(Tracked):
    """Operand blocks through one ring, packed into its slots in order of use.

    `scope(total)`: blocks used from here on share one slot when they all fit it (each is
    loaded at its first use and kept until `end`); otherwise every use loads its block into
    the current slot, moving to the next slot (after releasing the last) when it is full.
    """

    def __init__(self, em: Emitter, ring: Ring, loader: str) -> None:
        self.em, self.ring, self.loader = em, ring, loader
        self.resident = False
        self.slot: Addr | None = None
        self.used = 0
        self.held: dict[object, Addr] = {}
        em.track(self)

    def sweep_key(self) -> object:
        """Blocks are only ever added to `held` until `end_slot` empties it, so its size tells
        its contents apart within a sweep. The fill level is a counter: blocks land at
        slot + used, until one does not fit."""
        return self.resident, self.slot, len(self.held)

    def sweep_counts(self) -> tuple[int]:
        return (self.used,)

    def sweep_set(self, counts) -> None:
        (self.used,) = counts

    def sweep_room(self, per_period) -> int | None:
        """Periods whose blocks all still fit the slot (each period's last ends at used + d)."""
        (d,) = per_period
        return (self.ring.slot_bytes - self.used) // d if d > 0 else None

    def scope(self, total_bytes: int) -> None:
        self.end()
        self.resident = total_bytes <= self.ring.slot_bytes

    def use(self, key: object, nbytes: int, block: Matrix) -> Addr:
        """The on-chip address of `block` (DMA'd in first when it is not held)."""
        if key in self.held:
            return self.held[key]
        size = _aligned(nbytes)
        if self.slot is None or self.used + size > self.ring.slot_bytes:
            self.end_slot()
            self.slot = self.ring.acquire()
        addr = Addr(self.slot.space, self.slot.addr + self.used)
        self.used += size
        self.em.load(self.loader, addr, block)
        self.ring.filled()
        self.ring.take()
        if self.resident:
            self.held[key] = addr
        return addr

    def slot_fills(self, groups: list[T], group_bytes: int) -> list[tuple[T, ...]]:
        """`groups` cut where a streamed (not resident) operand moves to its next slot, each
        group loading `group_bytes` (`groups` whole when resident, or when a slot holds them
        all): a sweep over these chunks repeats with the ring's slots, where one over the
        groups would find a period of a slot's groups times the ring's slots."""
        per_slot = len(groups) if self.resident else max(1, self.ring.slot_bytes // group_bytes)
        return [tuple(groups[i:i + per_slot]) for i in range(0, len(groups), per_slot)]

    def new_column(self) -> None:
        """A streamed (not resident) operand's blocks for the next column of folds start in a
        fresh slot: every column then fills its slots alike, so a sweep over columns repeats
        with a period of one or two columns (the ring's slots alternate) instead of the least
        common multiple of a slot's and a column's blocks."""
        if not self.resident:
            self.end_slot()

    def end_slot(self) -> None:
        if self.slot is not None:
            self.ring.release()
        self.slot, self.used, self.held = None, 0, {}

    def end(self) -> None:
        self.end_slot()


class _AccPiece:
    """One piece of an accumulator slot, as the vector epilogue sees a ring: it waits for
    the piece and frees the slot only after the last piece."""

    def __init__(self, ring: Ring, last: bool) -> None:
        self.ring, self.last = ring, last

    def take(self) -> None:
        self.ring.take()

    def release(self) -> None:
        if self.last:
            self.ring.release()


class PartialSums(Tracked):
    """fp32 partial sums in DRAM, for GEMMs whose stream outgrows the accumulator: one buffer,
    grown when a GEMM needs more, reused GEMM after GEMM. A counting semaphore orders each
    chunk's reload (on the loader queue) after the store of the fold before (on the storer);
    both run in the same chunk order, so the i-th reload waits for the i-th store."""

    def __init__(self, em: Emitter, place: Callable[[str, tuple[int, ...]], None],
                 loader: str, storer: str) -> None:
        self.em, self.place, self.loader, self.storer = em, place, loader, storer
        self._buffers = 0                  # psum_0, psum_1, ...: each larger than the last
        self._elements = 0
        self._sem: int | None = None
        em.track(self)

    def sweep_key(self) -> object:
        return self._buffers, self._elements, self._sem

    def matrix(self, rows: int, cols: int) -> Matrix:
        """A dense fp32 rows x cols window of the buffer."""
        if self._elements < rows * cols:
            self.place(f"psum_{self._buffers}", (rows, cols))
            self._buffers, self._elements = self._buffers + 1, rows * cols
        return Matrix(f"psum_{self._buffers - 1}", 0, rows, cols, cols)

    def _semaphore(self) -> int:
        if self._sem is None:
            self._sem = self.em.semaphore()
        return self._sem

    def before_reload(self) -> None:
        self.em.emit(self.loader, "wait", sem=self._semaphore())

    def after_store(self) -> None:
        self.em.emit(self.storer, "signal", sem=self._semaphore())


@dataclass(frozen=True, slots=True)
class Limits:
    """Slot bytes a GEMM's blocks must fit: streamed (a), stationary (b), accumulator, the
    epilogue's bias row and output tile."""

    a: int
    b: int
    acc: int
    bias: int
    out: int


def min_slots(rows: int, cols: int, dataflow: str, isz: int) -> Limits:
    """The smallest slots that hold one fold: its stationary operand, one streamed row and
    that row's partial sums, in fp32 also in the vector slots when they spill to DRAM (and,
    for os, the whole output fold held in the PEs)."""
    if dataflow == "os":
        return Limits(a=_aligned(rows * isz), b=_aligned(cols * isz), acc=rows * cols * 4,
                      bias=cols * 4, out=rows * cols * isz)
    return Limits(a=_aligned(rows * isz), b=_aligned(rows * cols * isz), acc=cols * 4,
                  bias=cols * 4, out=cols * 4)


def _blocks(total: int, unit: int) -> list[tuple[int, int]]:
    return [(s, min(unit, total - s)) for s in range(0, total, unit)]


def _even(total: int, most: int) -> int:
    """The piece length that cuts `total` into as few pieces of at most `most` as possible,
    all of (nearly) one length: a larger buffer then never leaves a longer first piece
    beside a short last one."""
    return -(-total // -(-total // most))


class FoldGemm(Tracked):
    """Emits C = A @ B (+ bias) fold by fold (module docstring)."""

    def __init__(self, em: Emitter, rows: int, cols: int, dataflow: str, overlap: bool,
                 dtype: DType, streamed: Packer, stationary: Packer, acc: Ring,
                 epilogue: Callable[..., None], limits: Limits, partials: PartialSums) -> None:
        self.em, self.rows, self.cols, self.dataflow = em, rows, cols, dataflow
        self.overlap, self.dtype = overlap, dtype
        self.x, self.w, self.acc, self.epilogue, self.limits = streamed, stationary, acc, epilogue, limits
        self.partials = partials
        self.acc_type = DType.int32 if dtype is DType.int8 else DType.fp32
        self._mcfg: tuple | None = None
        self._mac = "none"          # the matrix unit's mfmt: reset state
        self._k_rows = rows         # K a ws/is fold reduces: rows, x the narrow MACs' packing
        em.track(self)

    def sweep_key(self) -> object:
        return self._mcfg, self._mac, self._k_rows

    def forget_config(self) -> None:
        """Another emitter (the fused attention kernel) configured the matrix unit since."""
        self._mcfg = None

    def mac(self, fmt: str, pack: int = 1) -> None:
        """Later GEMMs multiply codes of `fmt` (isa mfmt; "none": the operand type), `pack` of
        them a PE a cycle: a ws or is fold then reduces `pack` x rows of K (the K values share
        a PE's lane, as rtl_models/systolic_array.v's int4 mode packs two), when the slots
        hold such a fold's tiles (else rows of K, as without packing)."""
        if fmt != self._mac:
            self._mac = fmt
            self.em.emit("mxu0", "mfmt", fmt=fmt)
        while pack > 1 and not self._holds(self.rows * pack):
            pack //= 2
        self._k_rows = self.rows * pack

    def _holds(self, k_rows: int) -> bool:
        need = min_slots(k_rows, self.cols, self.dataflow, self.dtype.itemsize)
        return all(getattr(self.limits, f) >= getattr(need, f) for f in ("a", "b", "acc", "bias", "out"))

    def _gemm(self, m: int, n: int, k: int, c: Addr, a: Addr, b: Addr, accumulate: bool,
              transpose_b: bool, continues: bool, first_fold: bool, t_total: int) -> None:
        """One fold's piece: it `continues` its fold's stream (stream=1), or starts a fold.
        With double-buffered weights a fold after the GEMM's first had its operand shifted in
        behind the previous fold's stream of t_total: fully hidden when t_total >= rows (the
        array streams on: stream=1), else it waits for the rest (preloaded=1, max(T, rows))."""
        if self._mcfg != (m, n, k):
            self._mcfg = (m, n, k)
            self.em.emit("mxu0", "mcfg", m=m, n=n, k=k, dtype=self.dtype, acc=self.acc_type)
        hidden = not continues and self.overlap and not first_fold
        stream = continues or (hidden and t_total >= self.rows)
        preloaded = hidden and t_total < self.rows
        self.em.emit_fast("mxu0", "gemm", c, a, b, int(accumulate), int(transpose_b), int(stream),
                          int(preloaded))

    def _check(self, name: str) -> None:
        need = min_slots(self.rows, self.cols, self.dataflow, self.dtype.itemsize)
        have = self.limits
        for field in ("a", "b", "acc", "bias", "out"):
            if getattr(have, field) < getattr(need, field):
                raise CompileError(f"op '{name}' (matmul): one fold of the {self.rows}x{self.cols} "
                                   f"{self.dataflow} array needs a {field} slot of "
                                   f"{getattr(need, field):,} bytes; this buffer plan gives "
                                   f"{getattr(have, field):,}")

    def lower(self, name: str, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
              bias: Matrix | None) -> None:
        self._check(name)
        if self.dataflow == "os":
            self._output_stationary(a, b, out, transpose_b, bias)
        else:
            self._reduce_on_rows(a, b, out, transpose_b, bias)

    # -- ws and is: stationary W(p, q), streamed X(p, t), output Y(q, t) -------------------
    def _stationary(self, a: Matrix, b: Matrix, tb: bool, p0: int, plen: int, q0: int, qlen: int) -> Matrix:
        if self.dataflow == "ws":
            return b.block(q0, qlen, p0, plen) if tb else b.block(p0, plen, q0, qlen)
        return a.block(q0, qlen, p0, plen)

    def _streamed(self, a: Matrix, b: Matrix, tb: bool, p0: int, plen: int, t0: int, tl: int) -> Matrix:
        if self.dataflow == "ws":
            return a.block(t0, tl, p0, plen)
        return b.block(t0, tl, p0, plen) if tb else b.block(p0, plen, t0, tl)

    def _tile(self, m: Matrix, q0: int, qlen: int, t0: int, tl: int) -> Matrix:
        """The (q, t) output tile of `m` (C itself, or its fp32 partial sums): rows t for ws."""
        return m.block(t0, tl, q0, qlen) if self.dataflow == "ws" else m.block(q0, qlen, t0, tl)

    def _bias_row(self, bias: Matrix | None, q0: int, qlen: int, t0: int, tl: int) -> Matrix | None:
        if bias is None:
            return None
        return bias.block(0, 1, q0, qlen) if self.dataflow == "ws" else bias.block(0, 1, t0, tl)

    def _fold_piece(self, tl: int, qlen: int, plen: int, c: Addr, x: Addr, w: Addr, accumulate: bool,
                    tb: bool, continues: bool, first_fold: bool, t_total: int) -> None:
        """`_gemm` for one (p, q) fold over stream piece t, in the dataflow's orientation."""
        if self.dataflow == "ws":
            self._gemm(tl, qlen, plen, c, x, w, accumulate, tb, continues, first_fold, t_total)
        else:
            self._gemm(qlen, tl, plen, c, w, x, accumulate, tb, continues, first_fold, t_total)

    def _reduce_on_rows(self, a: Matrix, b: Matrix, out: Matrix, tb: bool, bias: Matrix | None) -> None:
        ws, isz, lim = self.dataflow == "ws", self.dtype.itemsize, self.limits
        m, k = a.rows, a.cols
        n = b.rows if tb else b.cols
        total_t, across = (m, n) if ws else (n, m)
        r_unit, c_unit = self._k_rows, min(self.cols, across)
        # pieces: what one streamed block, output tile and bias row may hold; all of them
        # together must hold one column of folds' partial sums in one accumulator slot
        x_row = _aligned(r_unit * isz) if ws else r_unit * isz
        piece = max(1, min(total_t, PIECE_MAX, lim.a // x_row, lim.out // (c_unit * isz),
                           lim.acc // (c_unit * 4), PIECE_MAX if ws else lim.bias // 4))
        piece = _even(total_t, piece)
        if max(1, lim.acc // _aligned(piece * c_unit * 4)) * piece < total_t:
            self._reduce_spilled(a, b, out, tb, bias, total_t, across)
            return
        # one fold per gemm: grouping folds into larger transfers lengthens every pipeline's
        # fill by more than it saves in DMA latencies, and would tie the grouping to the buffers
        groups, pieces = _blocks(k, r_unit), _blocks(total_t, piece)
        self.x.scope(sum(_aligned(r * tl * isz) for _, r in groups for _, tl in pieces))
        chunks = self.x.slot_fills(groups, sum(_aligned(r_unit * tl * isz) for _, tl in pieces))
        sweep = self.em.sweep
        for q0, qlen in sweep(_blocks(across, c_unit), uniform=True):
            self.x.new_column()
            self.w.new_column()
            slot = self.acc.acquire()
            offsets = [i * _aligned(piece * qlen * 4) for i in range(len(pieces))]
            for chunk in sweep(chunks, uniform=True):
                for p0, plen in sweep(chunk, uniform=True):
                    w = self.w.use(("w", p0, q0), plen * qlen * isz, self._stationary(a, b, tb, p0, plen, q0, qlen))
                    for i, (t0, tl) in enumerate(pieces):
                        x = self.x.use(("x", p0, t0), plen * tl * isz, self._streamed(a, b, tb, p0, plen, t0, tl))
                        self._fold_piece(tl, qlen, plen, slot + offsets[i], x, w, p0 > 0, tb, i > 0,
                                         p0 == 0 and q0 == 0, total_t)
            for _ in pieces:
                self.acc.filled()
            for i, (t0, tl) in enumerate(pieces):
                rows, cols = (tl, qlen) if ws else (qlen, tl)
                self.epilogue(slot + offsets[i], self.acc_type, rows, cols, self._bias_row(bias, q0, qlen, t0, tl),
                              self._tile(out, q0, qlen, t0, tl), _AccPiece(self.acc, i == len(pieces) - 1))
        self.x.end()
        self.w.end()

    def _reduce_spilled(self, a: Matrix, b: Matrix, out: Matrix, tb: bool, bias: Matrix | None,
                        total_t: int, across: int) -> None:
        """ws and is when one column of folds' partial sums over the whole stream outgrows an
        accumulator slot: each fold streams all of T, chunk by chunk through the accumulator;
        the vector unit adds each chunk to the earlier folds' fp32 partial sums in DRAM (the
        bias goes in with the first fold) and the last fold's sum becomes the output."""
        ws, isz, lim = self.dataflow == "ws", self.dtype.itemsize, self.limits
        k = a.cols
        r_unit, c_unit = self._k_rows, min(self.cols, across)
        x_row = _aligned(r_unit * isz) if ws else r_unit * isz
        tile_row = c_unit * 4                  # one stream position's fp32 partial sums
        piece = max(1, min(total_t, PIECE_MAX, lim.a // x_row, lim.out // tile_row,
                           lim.acc // tile_row, lim.bias // tile_row))
        piece = _even(total_t, piece)
        chunk = max(1, lim.acc // _aligned(piece * c_unit * 4)) * piece
        groups, chunks = _blocks(k, r_unit), _blocks(total_t, chunk)
        self.x.scope(sum(_aligned(r * tl * isz) for _, r in groups
                         for c0, cl in chunks for _, tl in _blocks(cl, piece)))
        sweep = self.em.sweep
        for q0, qlen in sweep(_blocks(across, c_unit), uniform=True):
            self.x.new_column()
            self.w.new_column()
            sums = self.partials.matrix(total_t, qlen) if ws else self.partials.matrix(qlen, total_t)
            for g, (p0, plen) in sweep(tuple(enumerate(groups))):
                w = self.w.use(("w", p0, q0), plen * qlen * isz, self._stationary(a, b, tb, p0, plen, q0, qlen))
                first, last = g == 0, g == len(groups) - 1
                for c0, clen in chunks:
                    pieces = [(c0 + t0, tl) for t0, tl in _blocks(clen, piece)]
                    slot = self.acc.acquire()
                    offsets = [i * _aligned(piece * qlen * 4) for i in range(len(pieces))]
                    for i, (t0, tl) in enumerate(pieces):
                        x = self.x.use(("x", p0, t0), plen * tl * isz, self._streamed(a, b, tb, p0, plen, t0, tl))
                        self._fold_piece(tl, qlen, plen, slot + offsets[i], x, w, False, tb, t0 > 0,
                                         p0 == 0 and q0 == 0, total_t)
                    for _ in pieces:
                        self.acc.filled()
                    for i, (t0, tl) in enumerate(pieces):
                        rows, cols = (tl, qlen) if ws else (qlen, tl)
                        partial = self._tile(sums, 0, qlen, t0, tl)
                        if not first:
                            self.partials.before_reload()
                        self.epilogue(slot + offsets[i], self.acc_type, rows, cols,
                                      self._bias_row(bias, q0, qlen, t0, tl) if first else None,
                                      self._tile(out, q0, qlen, t0, tl) if last else partial,
                                      _AccPiece(self.acc, i == len(pieces) - 1),
                                      prior=None if first else partial, out_type=None if last else DType.fp32)
                        if not last:
                            self.partials.after_store()
        self.x.end()
        self.w.end()

    # -- os: output Y(p, q) in the PEs, streamed X(p, t) (A rows) and Z(q, t) (B columns) ----
    def _output_stationary(self, a: Matrix, b: Matrix, out: Matrix, tb: bool, bias: Matrix | None) -> None:
        isz, lim = self.dtype.itemsize, self.limits
        m, k = a.rows, a.cols
        n = b.rows if tb else b.cols
        r_unit, c_unit = self.rows, self.cols
        piece = max(1, min(k, PIECE_MAX, lim.a // (r_unit * isz), lim.b // (c_unit * isz)))
        piece = _even(k, piece)
        pieces = _blocks(k, piece)
        self.w.scope(sum(_aligned(ql * tl * isz) for _, ql in _blocks(n, c_unit) for _, tl in pieces))
        sweep = self.em.sweep
        for p0, plen in sweep(_blocks(m, r_unit), uniform=True):
            self.x.scope(sum(_aligned(plen * tl * isz) for _, tl in pieces))
            for q0, qlen in sweep(_blocks(n, c_unit), uniform=True):
                self.w.new_column()
                slot = self.acc.acquire()
                for i, (t0, tl) in enumerate(pieces):
                    x = self.x.use(("x", p0, t0), plen * tl * isz, a.block(p0, plen, t0, tl))
                    zblk = b.block(q0, qlen, t0, tl) if tb else b.block(t0, tl, q0, qlen)
                    z = self.w.use(("z", q0, t0), qlen * tl * isz, zblk)
                    self._gemm(plen, qlen, tl, slot, x, z, i > 0, tb, i > 0, p0 == 0 and q0 == 0, k)
                self.acc.filled()
                self.epilogue(slot, self.acc_type, plen, qlen, bias.block(0, 1, q0, qlen) if bias else None,
                              out.block(p0, plen, q0, qlen), _AccPiece(self.acc, True))
        self.x.end()
        self.w.end()
