"""The geometry of fused attention (compiler/targets/attention.py): which keys a block of
queries sees or hides, the attention matrices of a chain, and the block sizes that fit the
on-chip memory (closed forms: docs/systolic.md, Fused attention)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping

from compiler.passes.attention import AttentionChain
from compiler.passes.storage import View
from compiler.targets.emit import Matrix, view_matrix
from compiler.targets.tiling import MAX_TILE

__all__ = ["AttentionBlocks", "Instance", "plan_blocks", "instances", "iota_name", "hides", "sees",
           "needs_mask"]

_ALIGN = 64
_BC_MAX = 512               # key rows per block at most (fewer steps; the array is <= 256 wide)
_FIXED_SHARE = 8            # streamed K/V slots take at most 1/8 of the SRAM (then bc halves)
_CHUNK_MIN = 64             # query rows per chunk at least (chunks are bc rows: causal skips)
_ROW_BYTES_MAX = 65535      # a load's row_bytes is U16: position rows of at most 16383 fp32

def _up(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def iota_name(n: int) -> str:
    """The fp32 [1, n] row 0, 1, ..., n - 1 the masks take positions from."""
    return f"const.iota.{n}"


@dataclass(frozen=True, slots=True)
class AttentionBlocks:
    """Query rows per block (br), key rows per block (bc), query rows per accumulator chunk
    (brc), and whether any block needs a mask (position vectors and mask temporaries)."""

    br: int
    bc: int
    brc: int
    masked: bool

    def describe(self) -> str:
        return f"query block {self.br}, key block {self.bc}, chunk {self.brc}"


def hides(chain: AttentionChain, p0: int, p1: int, k0: int, k1: int, window: bool) -> bool:
    """Whether queries at positions p0..p1 hide any key of k0..k1-1 (causally, or by the window)."""
    if not chain.causal:
        return False
    if window:
        return chain.window is not None and p1 - k0 >= chain.window
    return k1 - 1 > p0


def sees(chain: AttentionChain, p0: int, p1: int, k0: int, k1: int) -> bool:
    """Whether some query of p0..p1 sees some key of k0..k1-1."""
    if not chain.causal:
        return True
    return k0 <= p1 and (chain.window is None or p0 - (k1 - 1) < chain.window)


def needs_mask(chain: AttentionChain) -> bool:
    """Whether any query hides any key."""
    off = chain.t - chain.s
    return any(hides(chain, off, chain.t - 1, 0, chain.t, w) for w in (False, True))


def plan_blocks(rows: int, t: int, d: int, itemsize: int, sram_bytes: int, acc_bytes: int,
                masked: bool, window: bool, key_block_max: int = _BC_MAX) -> AttentionBlocks | None:
    """The largest query block for the on-chip memory, or None when not even one row fits.

    SRAM: Q (br x d), fp32 O (br x d), m and l (br); K and V slots (2 x 2 x bc x d); P slots
    (2 x brc x bc); per-chunk vectors; masks: query positions (br), key positions (2 x bc),
    one or two fp32 brc x bc temporaries. Accumulator: 2 slots of brc x max(bc, d) fp32.
    bc starts at min(T, 512) and halves until the K/V slots take at most 1/8 of the SRAM;
    chunks are square (brc = bc, at least 64 rows) as far as the accumulator and 1/8 of the
    SRAM allow, so a causal chunk skips the key blocks after it and masks one; the query
    block gets the rest, in whole chunks (docs/systolic.md). `key_block_max` caps bc when
    there are several query rows."""
    isz = itemsize
    acc_slot = acc_bytes // 2 // _ALIGN * _ALIGN
    per_row = d * isz + d * 4 + 8 + (4 if masked else 0)
    row_cap = min(rows, MAX_TILE, _ROW_BYTES_MAX // 4)
    # With several query rows, causal chunks skip the key blocks they do not see, and a key
    # block wider than the matrix unit buys no speed for the hidden scores it computes: a
    # target caps it at its array (so a larger memory never picks a slower, wider block)
    bc = min(t, key_block_max if rows > 1 else _BC_MAX)
    while bc >= 1:
        fixed = 4 * _up(bc * d * isz) + (2 * _up(bc * 4) + 2 * _ALIGN if masked else 0) + 16 * _ALIGN
        chunk_row = 2 * bc * isz + 16 + (bc * 4 * (2 if window else 1) if masked else 0)
        smallest = bc == 1 or bc <= min(t, 8)
        if fixed * _FIXED_SHARE <= sram_bytes or smallest:
            brc = min(row_cap, max(bc, _CHUNK_MIN), acc_slot // (max(bc, d) * 4),
                      max(1, sram_bytes // _FIXED_SHARE // chunk_row))
            br = min(row_cap, (sram_bytes - fixed - brc * chunk_row) // per_row) if brc >= 1 else 0
            if br >= 1 and brc >= 1:
                brc = 1 << (min(brc, br).bit_length() - 1)     # chunks at power-of-two rows
                # a chunk narrower than the key block cannot skip what it does not see: take
                # the square pair a size down instead (so more memory never gives a worse one)
                if brc >= bc or br < bc or smallest:
                    return AttentionBlocks(br if br == rows else br // brc * brc, bc, brc, masked)
        if smallest:
            return None
        bc = max(1, bc // 2)
    return None


@dataclass(frozen=True, slots=True)
class Instance:
    """One attention matrix: Q (rows x d), K and V (T x d), the output; `one_position`: every
    query row sits at the last position (decode with a group of heads merged into rows)."""

    q: Matrix
    k: Matrix
    v: Matrix
    out: Matrix
    one_position: bool


def _at(view: View, index: tuple[int, ...]) -> View:
    """The sub-view at leading `index` (an axis of size 1 broadcasts: index 0)."""
    offset = view.offset + sum((i if d > 1 else 0) * s for i, d, s in zip(index, view.shape, view.strides))
    n = len(index)
    return View(view.buffer, view.shape[n:], view.strides[n:], offset)


def instances(chain: AttentionChain, views: Mapping[str, View]) -> list[Instance]:
    """The chain's attention matrices; a decode's query heads that share one K/V head are one
    instance of G rows (K and V read once for the group)."""
    qv, kv, vv, ov = (views[n] for n in (chain.q, chain.k, chain.v, chain.context))
    batch = chain.batch
    inner = 0
    while inner < len(batch) and kv.shape[-3 - inner] == 1 < batch[-1 - inner]:
        inner += 1
    outer = len(batch) - inner
    out = []
    if chain.s == 1 and inner:
        for idx in itertools.product(*map(range, batch[:outer])):
            q, o = _at(qv, idx), _at(ov, idx)
            if q.rows() is None or o.rows() is None:
                break
            k, v = _at(kv, idx + (0,) * inner), _at(vv, idx + (0,) * inner)
            out.append(Instance(view_matrix(q), view_matrix(k), view_matrix(v), view_matrix(o), True))
        else:
            return out
        out = []
    for idx in itertools.product(*map(range, batch)):
        out.append(Instance(*(view_matrix(_at(x, idx)) for x in (qv, kv, vv, ov)), chain.s == 1))
    return out


