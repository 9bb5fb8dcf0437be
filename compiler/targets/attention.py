"""Fused attention (FlashAttention-style) on any target with a matrix unit, a vector unit and
DMA: scores -> softmax -> context of one chain (compiler/passes/attention.py) as one kernel.

A block of `br` query rows stays on chip; key/value blocks of `bc` rows stream through once
per query block. For each (key block, chunk of `brc` query rows) the matrix unit computes
S = Q K^T into an accumulator slot, the vector unit scales and masks it in place, keeps the
running row max m and row sum l (online softmax: alpha = exp(m_old - m_new) rescales l and the
fp32 context O), writes P = exp(S - m) at the operand type, and the matrix unit computes P V
into the accumulator, which the vector unit adds into O. At the end of a query block
O / l is stored. Neither scores nor probabilities ever go off chip: off-chip traffic is Q and
O once, K and V once per query block (causal and window blocks that hide every key are
skipped), and a few key positions per masked block.

Masks are made on chip: t = key - query from position vectors (an fp32 `const.iota` row in
DRAM), then S += -BIG * max(t, 0) (causal) and S += -BIG * max(-t - window + 1, 0): hidden
scores become finite and very negative, so a row that sees nothing in its first block never
makes exp(-inf + inf); its m is replaced when a visible key arrives (alpha = 0).

The kernel owns the on-chip regions it is given while it runs (the systolic target's whole
SRAM and accumulator): the target fences it with barriers of every queue (docs/systolic.md:
layout and closed forms; block sizes and visibility: attention_blocks.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from isa import Addr, DType

from compiler.errors import CompileError
from compiler.passes.attention import AttentionChain
from compiler.passes.storage import View
from compiler.targets.attention_blocks import (AttentionBlocks, Instance, hides, instances, iota_name,
                                               sees)
from compiler.targets.emit import Emitter, Matrix, Ring, RingSpec, Tracked
from compiler.targets.vector import VectorLowering

__all__ = ["FusedAttention", "KernelQueues", "Region", "BIG"]

_ALIGN = 64
F32 = DType.fp32
BIG = 1e30                  # a hidden score becomes s - BIG * distance: finite, exp() = 0


def _up(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


Region = tuple[str, int, int]      # (space, byte address, bytes)


@dataclass(frozen=True, slots=True)
class _Step:
    """One (key block, query chunk) pair: keys k0..k0+n, chunk rows r0..r0+rows; `first`: the
    chunk's first key block; `mask`: what its additive mask depends on (None: no key hidden);
    `compute`: the mask must be made (the cached one is for another key)."""

    k0: int
    n: int
    r0: int
    rows: int
    first: bool
    mask: tuple | None
    compute: bool


@dataclass(frozen=True, slots=True)
class _StepItem:
    """What step i of a query block emits besides the kernel's state: the step, where it
    stands among the query block's steps and its key block's, and the step before (whose
    context it emits)."""

    step: _Step
    first: bool                 # the query block's first step
    last: bool                  # ... its last
    block_first: bool           # the first step of its key block: K and V are loaded
    block_last: bool            # ... the last: their slot is freed
    block_positions: bool       # its key block makes a mask: key positions are loaded
    before: tuple | None        # (step, first, block_last) of step i - 1

    @staticmethod
    def of(steps: Sequence[_Step], i: int) -> _StepItem:
        def edge(j: int, towards: int) -> bool:
            return not 0 <= j + towards < len(steps) or steps[j + towards].k0 != steps[j].k0
        st, block_first = steps[i], edge(i, -1)
        return _StepItem(st, i == 0, i == len(steps) - 1, block_first, edge(i, 1),
                         block_first and any(x.compute for x in steps[i:] if x.k0 == st.k0),
                         None if i == 0 else (steps[i - 1], i == 1, edge(i - 1, 1)))


@dataclass(frozen=True, slots=True)
class KernelQueues:
    """The queues the kernel uses: loads, the matrix unit, the vector unit, stores."""

    loader: str
    mxu: str
    vpu: str
    storer: str


def _kv_groups(found: list[Instance]) -> list[tuple[Instance, ...]]:
    """The instances in runs that share one K and V (grouped-query attention's query heads of
    one KV head), so that a sweep over the runs and one over the heads of a run each move
    their addresses by one constant."""
    groups: list[list[Instance]] = []
    for inst in found:
        if groups and (groups[-1][0].k, groups[-1][0].v) == (inst.k, inst.v):
            groups[-1].append(inst)
        else:
            groups.append([inst])
    return [tuple(g) for g in groups]


class FusedAttention(Tracked):
    """Emits fused attention kernels into `em` over a whole on-chip SRAM and accumulator."""

    def __init__(self, em: Emitter, vector: VectorLowering, queues: KernelQueues, dtype: DType,
                 add_constant: Callable[[str, tuple[int, ...]], None]) -> None:
        self.em, self.vector, self.qs, self.dtype = em, vector, queues, dtype
        self.add_constant = add_constant
        self._mcfg: tuple | None = None
        self._made_rings: dict[RingSpec, Ring] = {}

    # -- emission ------------------------------------------------------------------------
    def lower(self, chain: AttentionChain, views: Mapping[str, View], blocks: AttentionBlocks,
              sram: Region, acc: Region) -> None:
        """Every instance of the chain, query block by query block, in the on-chip regions
        `sram` (operand tiles, O, vectors) and `acc` (the S and PV tiles), which it owns."""
        self.sram_space, self.sram_base, self.sram_bytes = sram
        em = self.em
        self._layout(chain, blocks, acc)
        self._mask_key: tuple | None = None
        self.qi = self.o = self._q_slot = self._kv = self._kj = self._pending = None
        self._alpha_turn = 0
        em.track(self)
        for group in em.sweep(_kv_groups(instances(chain, views)), uniform=True):
            for inst in em.sweep(group, uniform=True):
                for q0 in em.sweep(range(0, inst.q.rows, blocks.br), uniform=True):
                    self._query_block(chain, inst, q0, min(blocks.br, inst.q.rows - q0), blocks)
        self._mcfg = None
        em.untrack(self)

    def sweep_key(self) -> object:
        return (self._mcfg, self._mask_key, self.qi, self.o, self._q_slot, self._kv, self._kj,
                self._alpha_turn, self._pending)

    def _layout(self, chain: AttentionChain, b: AttentionBlocks, acc: Region) -> None:
        d, isz, em, qs = chain.d, self.dtype.itemsize, self.em, self.qs
        at = [self.sram_base]

        def take(nbytes: int) -> int:
            start = at[0]
            at[0] += _up(nbytes)
            return start

        self._rings: list[Ring] = []

        def ring(name: str, slot: int, slots: int, producer: str, consumer: str) -> Ring:
            base = take(slot * slots)
            return self._ring(RingSpec(name, self.sram_space, base, _up(slot), slots, producer, consumer))

        self.q_ring = ring("att_q", _up(b.br * d * isz), 1, qs.loader, qs.mxu)
        self.kv_ring = ring("att_kv", 2 * _up(b.bc * d * isz), 2, qs.loader, qs.mxu)
        self.p_ring = ring("att_p", _up(b.brc * b.bc * isz), 2, qs.vpu, qs.mxu)
        self.out_ring = ring("att_o", _up(b.br * d * 4), 1, qs.vpu, qs.storer)
        self.m, self.l = take(b.br * 4), take(b.br * 4)
        self.alpha = (take(b.brc * 4), take(b.brc * 4))
        self.mb, self.rs = take(b.brc * 4), take(b.brc * 4)
        if b.masked:
            self.qi_ring = ring("att_qi", _up(b.br * 4), 1, qs.loader, qs.vpu)
            self.kj_ring = ring("att_kj", _up(b.bc * 4), 2, qs.loader, qs.vpu)
            self.zero = take(4)
            self.t = take(b.brc * b.bc * 4)
            self.u = take(b.brc * b.bc * 4) if chain.window is not None else None
            name = iota_name(chain.t)
            if name not in self.vector.constants:
                self.vector.constants[name] = np.arange(chain.t, dtype=np.float32)[None, :]
                self.add_constant(name, (1, chain.t))
            self.iota = Matrix(name, 0, 1, chain.t, chain.t)
        if at[0] > self.sram_base + self.sram_bytes:
            raise CompileError(f"attention '{chain.name}': {b.describe()} needs {at[0] - self.sram_base:,} "
                               f"on-chip bytes, {self.sram_bytes:,} are free")
        slot = _up(b.brc * max(b.bc, d) * 4)
        self.acc = self._ring(RingSpec("att_acc", acc[0], acc[1], slot, 2, qs.mxu, qs.vpu))

    def _ring(self, spec: RingSpec) -> Ring:
        """The kernel's ring laid out as `spec`: the one an earlier kernel laid out so (every
        layer's attention of a model), its slots and semaphores going on where that kernel
        left them, as one ring through both, so that layer after layer emits alike."""
        made = self._made_rings.get(spec)
        if made is None:            # tracked from here on: its turn shapes the next kernel
            made = self._made_rings[spec] = Ring(self.em, spec)
        self._rings.append(made)
        return made

    def _sram(self, offset: int) -> Addr:
        return Addr(self.sram_space, offset)

    def _gemm(self, c: Addr, a: Addr, b: Addr, m: int, n: int, k: int, transpose_b: bool) -> None:
        if self._mcfg != (m, n, k):
            self._mcfg = (m, n, k)
            self.em.emit(self.qs.mxu, "mcfg", m=m, n=n, k=k, dtype=self.dtype, acc=F32)
        self.em.emit(self.qs.mxu, "gemm", c=c, a=a, b=b, accumulate=0, transpose_b=int(transpose_b),
                     stream=0, preloaded=0)

    def _plan(self, chain: AttentionChain, inst: Instance, q0: int, nb: int,
              b: AttentionBlocks) -> list[_Step]:
        """The (key block, chunk) pairs of a query block in order, skipping pairs whose
        queries see none of the keys, with their mask keys and which need key positions."""
        off = chain.t - chain.s
        steps: list[_Step] = []
        seen: set[int] = set()
        for k0 in range(0, chain.t, b.bc):
            n = min(b.bc, chain.t - k0)
            for r0 in range(0, nb, b.brc):
                rows = min(b.brc, nb - r0)
                p0 = off if inst.one_position else off + q0 + r0
                p1 = p0 if inst.one_position else p0 + rows - 1
                if not sees(chain, p0, p1, k0, k0 + n):
                    continue
                causal, window = (hides(chain, p0, p1, k0, k0 + n, w) for w in (False, True))
                mask = (p0 - k0, rows, n, inst.one_position, causal, window) if causal or window else None
                compute = mask is not None and mask != self._mask_key
                if mask is not None:
                    self._mask_key = mask
                steps.append(_Step(k0, n, r0, rows, r0 not in seen, mask, compute))
                seen.add(r0)
        return steps

    def _query_block(self, chain: AttentionChain, inst: Instance, q0: int, nb: int,
                     b: AttentionBlocks) -> None:
        em, qs, d = self.em, self.qs, chain.d
        steps = self._plan(chain, inst, q0, nb, b)
        q_slot = self._q_slot = self.q_ring.acquire()
        self._alpha_turn = 0
        em.load(qs.loader, q_slot, inst.q.block(q0, nb, 0, d))
        self.q_ring.filled()
        self.q_ring.take()
        positions = any(st.compute for st in steps)
        if positions:
            p0 = chain.t - chain.s + (0 if inst.one_position else q0)
            self.qi = self.qi_ring.acquire()
            em.load(qs.loader, self.qi, self.iota.block(0, 1, p0, 1 if inst.one_position else nb))
            self.qi_ring.filled()
            self.qi_ring.take()
            self.vector.cfg(1, 1, F32, F32, 0.0)
            self.vector.vec("muli", self._sram(self.zero), self.qi)
        self._kv = self._kj = self._pending = None
        items = [_StepItem.of(steps, i) for i in range(len(steps))]
        for i in em.sweep(range(len(steps)), items):
            self._step(chain, inst, items[i], d)
        last = items[-1]
        self._context(*self._pending, last.first, last.step, d, last.block_last)
        self._finish(inst, q0, nb, d, positions)

    def _step(self, chain: AttentionChain, inst: Instance, it: _StepItem, d: int) -> None:
        """Step i's scores and softmax, then step i - 1's context (so that the matrix unit
        computes the next scores while the vector unit still works on the last softmax).
        What a step emits is a function of its item and of the kernel's state (`sweep_key`:
        the slots its operands sit in, the parity of the step's alpha), so that a query block's
        steps over one key block repeat and are swept as a loop."""
        st = it.step
        if it.block_first:
            self._kv, self._kj = self._load_keys(chain, inst, st.k0, st.n, it.block_positions)
        c = self._scores(self._q_slot, self._kv, st, d, it.last)
        p = self._softmax(chain, c, st, self._kj, it.block_last)
        if it.before is not None:           # the step before: its step from the item, the
            before, first, block_last = it.before       # slots it used from the state
            self._context(*self._pending, first, before, d, block_last)
        self._pending = (p, self._kv, self._alpha_turn)
        self._alpha_turn ^= 1

    def _load_keys(self, chain: AttentionChain, inst: Instance, k0: int, n: int,
                   positions: bool) -> tuple[Addr, Addr | None]:
        """K and V of one key block into a K/V slot (and its key positions when a mask is made)."""
        em, qs, d = self.em, self.qs, chain.d
        slot = self.kv_ring.acquire()
        em.load(qs.loader, slot, inst.k.block(k0, n, 0, d))
        em.load(qs.loader, slot + self.kv_ring.slot_bytes // 2, inst.v.block(k0, n, 0, d))
        self.kv_ring.filled()
        self.kv_ring.take()
        kj = None
        if positions:
            kj = self.kj_ring.acquire()
            em.load(qs.loader, kj, self.iota.block(0, 1, k0, n))
            self.kj_ring.filled()
            self.kj_ring.take()
        return slot, kj

    def _scores(self, q_slot: Addr, kv: Addr, st: _Step, d: int, last: bool) -> Addr:
        c = self.acc.acquire()
        self._gemm(c, q_slot + st.r0 * d * self.dtype.itemsize, kv, st.rows, st.n, d, True)
        self.acc.filled()
        if last:
            self.q_ring.release()
        return c

    def _softmax(self, chain: AttentionChain, c: Addr, st: _Step, kj: Addr | None,
                 block_last: bool) -> Addr:
        """Scale and mask S in place, update m and l, write P; returns P's slot."""
        vec, red, cfg = self.vector.vec, self.vector.red, self.vector.cfg
        rows, n = st.rows, st.n
        m, l = self._sram(self.m + st.r0 * 4), self._sram(self.l + st.r0 * 4)
        alpha = self._sram(self.alpha[self._alpha_turn])
        self.acc.take()
        cfg(rows, n, F32, F32, chain.scale)
        vec("muli", c, c)
        if st.mask is not None:
            t = self._sram(self.t)
            if st.compute:
                self._make_mask(chain, c, kj, st)
            cfg(rows, n, F32, F32)
            vec("add", c, c, t)
        if kj is not None and block_last:
            self.kj_ring.release()
        if st.first:
            red("max", m, c)
            vec("sub", c, c, m, "row")
            vec("exp", c, c)
            red("sum", l, c)
        else:
            mb, rs = self._sram(self.mb), self._sram(self.rs)
            red("max", mb, c)
            cfg(rows, 1, F32, F32)
            vec("max", mb, mb, m)
            vec("sub", alpha, m, mb)
            vec("exp", alpha, alpha)
            vec("copy", m, mb)
            cfg(rows, n, F32, F32)
            vec("sub", c, c, m, "row")
            vec("exp", c, c)
            red("sum", rs, c)
            cfg(rows, 1, F32, F32)
            vec("mul", l, l, alpha)
            vec("add", l, l, rs)
        p = self.p_ring.acquire()
        cfg(rows, n, F32, self.dtype)
        vec("copy", p, c)
        self.acc.release()
        self.p_ring.filled()
        return p

    def _make_mask(self, chain: AttentionChain, c: Addr, kj: Addr, st: _Step) -> None:
        """t = -BIG * max(key - query, 0) (causal) - BIG * max(query - key - window + 1, 0),
        for the step's rows and keys (kept while the next masked steps share its key)."""
        vec, cfg = self.vector.vec, self.vector.cfg
        rows, n = st.rows, st.n
        _, _, _, one_position, causal, window = st.mask
        t, zero = self._sram(self.t), self._sram(self.zero)
        qi = self.qi if one_position else self.qi + st.r0 * 4
        cfg(rows, n, F32, F32, 0.0)
        vec("muli", t, c)
        cfg(rows, n, F32, F32)
        vec("add", t, t, kj, "col")
        vec("sub", t, t, qi, "scalar" if one_position else "row")       # t = key - query
        if window:
            u = self._sram(self.u)
            cfg(rows, n, F32, F32, -1.0)
            vec("muli", u, t)
            cfg(rows, n, F32, F32, 1.0 - chain.window)
            vec("addi", u, u)
            cfg(rows, n, F32, F32)
            vec("max", u, u, zero, "scalar")
        cfg(rows, n, F32, F32)
        if causal:
            vec("max", t, t, zero, "scalar")
        if causal and window:
            vec("add", t, t, u)
        elif window:
            vec("copy", t, u)
        cfg(rows, n, F32, F32, -BIG)
        vec("muli", t, t)

    def _context(self, p: Addr, kv: Addr, turn: int, first: bool, st: _Step, d: int,
                 block_last: bool) -> None:
        """PV into the accumulator, then O = O * alpha + PV (O = PV on a chunk's first block)."""
        self.p_ring.take()
        c = self.acc.acquire()
        self._gemm(c, p, kv + self.kv_ring.slot_bytes // 2, st.rows, d, st.n, False)
        self.p_ring.release()
        self.acc.filled()
        if block_last:
            self.kv_ring.release()
        if first:
            self.o = self.out_ring.acquire()
        o = self.o + st.r0 * d * 4
        self.acc.take()
        self.vector.cfg(st.rows, d, F32, F32)
        if st.first:
            self.vector.vec("copy", o, c)
        else:
            self.vector.vec("mul", o, o, self._sram(self.alpha[turn]), "row")
            self.vector.vec("add", o, o, c)
        self.acc.release()

    def _finish(self, inst: Instance, q0: int, nb: int, d: int, positions: bool) -> None:
        """out = O / l at the operand type (in place over O), stored."""
        l = self._sram(self.l)
        self.vector.cfg(nb, 1, F32, F32)
        self.vector.vec("recip", l, l)
        self.vector.cfg(nb, d, F32, self.dtype)
        self.vector.vec("mul", self.o, self.o, l, "row")
        if positions:
            self.qi_ring.release()
        self.out_ring.filled()
        self.out_ring.take()
        self.em.store(self.qs.storer, inst.out.block(q0, nb, 0, d), self.o)
        self.out_ring.release()
