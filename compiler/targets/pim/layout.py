"""PIM mapping: where each GEMV matrix sits in the DRAM banks and how its MACs are grouped.

Every bank of every channel holds a *stream* of BF16 elements over consecutive DRAM rows;
all banks run the same MAC schedule at once (pim.mac_all), each on its own data, against
its channel's global buffer (gbuf, one row's worth of inputs). A matrix is cut into:

- passes: one gbuf fill per channel (a slice of the input vector; channels may take
  different slices, e.g. different attention heads) followed by
- segments: runs of the stream, each one output's share of the dot product, packed back to
  back so open rows are used whole (a segment may straddle a row boundary: the bank's
  accumulator carries over). After a segment, pim.rdmac_all returns one fp32 partial sum
  per bank; the ASIC adds the partials of an output's segments (one per pass of its
  chunk) and finishes the op.

Three layouts (PIM-GPT's mapping, reference/pim.md):
- linear W[K, N]: output n -> bank lane n mod (channels x banks); K is cut into chunks of
  one gbuf (1024 BF16 on pim-gpt), one pass per chunk.
- K cache [H, P, hd], row-major with heads concatenated: position p -> lane p mod lanes;
  each position holds every head of its head group, so one q fill serves all heads and a
  row holds 16 positions' worth (no row wasted on a 64-wide head). Head groups (passes)
  follow each other without starting a fresh row.
- V cache, column-major: head h -> channel h mod C, its hd dimensions spread over the
  channel's banks; each (h, d) is a segment over positions with the head's softmax row as
  input.

Grouped-query attention (`queries` G > 1 query rows per KV head): each KV head is stored
ONCE (the cache layouts above over the KV heads), and one GEMV serves all G query rows of a
token. The gbuf holds the G query rows of each KV head in the pass (K: [heads of the pass,
G, hd], one contiguous fill; V: G runs of a softmax chunk, each `gbuf / G` positions long),
and each stored segment is MACed G times back to back, once per query row at its gbuf
offset, while its row is open. A bank's MAC unit has one accumulator and reads one column
per MAC, so the MAC column reads stay one per query row (as for G separate heads), but the
rows activated, the region and the KV-append writes are those of the KV heads only.
Partial sums come out as for H = Hkv x G heads (query head h * G + g).

Long contexts: pieces. A whole attention GEMV keeps one fp32 partial sum per (query row,
position) for K ([H, T]) and takes the whole softmax row ([H, T] bf16) as input for V; both
outgrow the ASIC's buffers (64 KiB of partial sums: H x T <= 16,384). Such a GEMV is run as
*pieces* over position ranges, the stored layout unchanged (the KV writes and scatters do
not see them): a K piece is the segments of a block of position lane groups (the same q fill,
its own partial sums [H, block]); a V piece is the chunks' position sub-ranges inside a
range of the softmax row (its input [H, range], its own partial sums, added by the ASIC into
one fp32 accumulator across pieces). Each piece is a GEMV of its own: the input is loaded
and the gbufs filled again per piece, and rows a piece shares with the next (a boundary row)
are opened again.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Segment", "Pass", "GemvLayout", "Piece", "kcache_pieces", "vcache_pieces", "linear_layout", "kcache_layout", "vcache_layout", "vcache_chunk",
           "mac_lanes", "row_elems",
           "scatter_linear", "scatter_kcache", "scatter_vcache", "kcache_cells", "vcache_cells"]


@dataclass(frozen=True, slots=True)
class Segment:
    start: int          # element offset in every bank's stream (from the layout's first row)
    length: int         # elements, a multiple of the MAC lanes
    gb_bytes: int       # gbuf byte offset of its first input
    out: int            # partial-sum element written by channel 0, bank 0 (bank b: + b)


@dataclass(frozen=True, slots=True)
class Pass:
    """A gbuf fill per channel, then the segments. A fill is `runs` pieces of `elements`:
    piece r from input element `first + r * run_stride` to gbuf element `r * gbuf_stride`."""

    fills: tuple[tuple[int, int] | None, ...]   # per channel: (first input element, elements) or idle
    segments: tuple[Segment, ...]
    runs: int = 1
    run_stride: int = 0
    gbuf_stride: int = 0


@dataclass(frozen=True, slots=True)
class GemvLayout:
    name: str
    first_row: int
    rows: int
    passes: tuple[Pass, ...]
    channel_stride: int     # partial-sum elements between channel c and c + 1
    psum_elems: int         # fp32 partial sums the passes write
    queries: int = 1        # query rows per stored head (grouped-query attention's G)
    bits: int = 16          # bits of a stream element: 16 (BF16), or N-bit weight codes

    def cell(self, arch, stream_elem: int) -> tuple[int, int]:
        """(DRAM row, column burst) of a stream element."""
        per_row, lanes = row_elems(arch, self.bits), mac_lanes(arch, self.bits)
        return self.first_row + stream_elem // per_row, (stream_elem % per_row) // lanes


@dataclass(frozen=True, slots=True)
class Piece:
    """One GEMV of a split attention matrix: its passes (partial sums numbered from 0 within
    the piece), the partial sums they write (`blocks` blocks of [query rows x ...] that the
    ASIC adds: V's position sub-ranges), and the positions [first, first + count) it covers
    (K: output columns, stride `stride`; V: input columns)."""

    passes: tuple[Pass, ...]
    psum_elems: int
    first: int
    count: int
    stride: int = 0
    blocks: int = 1


def kcache_pieces(arch, layout: GemvLayout, positions: int, groups: int) -> tuple[Piece, ...]:
    """K pieces of `groups` lane groups (groups x channels x banks positions) each: the
    segments of those positions, partial sums [query rows, block] (row-major)."""
    lanes_total = arch.channels * arch.banks
    n = -(-positions // lanes_total)
    p_pad = n * lanes_total
    rows = layout.psum_elems // p_pad
    out = []
    for i0 in range(0, n, groups):
        i1 = min(n, i0 + groups)
        lo, hi, blk = i0 * lanes_total, i1 * lanes_total, (i1 - i0) * lanes_total
        passes = []
        for p in layout.passes:
            segs = []
            for s in p.segments:
                row, col = divmod(s.out, p_pad)
                if lo <= col < hi:
                    segs.append(Segment(s.start, s.length, s.gb_bytes, row * blk + col - lo))
            passes.append(replace(p, segments=tuple(segs)))
        out.append(Piece(tuple(passes), rows * blk, lo, min(positions, hi) - lo, blk))
    return tuple(out)


def vcache_pieces(arch, layout: GemvLayout, heads: int, positions: int, hd: int,
                  width: int) -> tuple[Piece, ...]:
    """V pieces over ranges of `width` softmax positions (a multiple of the MAC lanes): per
    range, each chunk's sub-range inside it is a pass (fills of the [query rows, range] input
    the piece loads), its partial sums a block [query rows x hd] of its own."""
    c_n, lanes, g_n = arch.channels, _lanes(arch), layout.queries
    assert width % lanes == 0
    padded, _, g = _vcache_shape(arch, positions, hd, g_n)
    chunks = -(-padded // g)
    block = heads * g_n * hd
    out = []
    for qs in range(0, padded, width):
        qe, cols = min(qs + width, padded), min(qs + width, positions) - qs
        subs = [(max(qs, q * g), min(qe, q * g + g), q) for q in range(chunks)
                if q * g < qe and q * g + g > qs]
        passes = []
        for pp in range(-(-heads // c_n)):
            for k, (a, b, q) in enumerate(subs):
                p, n = layout.passes[pp * chunks + q], b - a
                fills = tuple(None if f is None else
                              ((pp * c_n + c) * g_n * cols + a - qs, min(n, positions - a))
                              for c, f in enumerate(p.fills))
                segs = tuple(Segment(s.start + a - q * g, n, (j % g_n) * n * 2, s.out + (k - q) * block)
                             for j, s in enumerate(p.segments))
                passes.append(Pass(fills, segs, g_n, cols, n))
        out.append(Piece(tuple(passes), len(subs) * block, qs, cols, 0, len(subs)))
    return tuple(out)


def _lanes(arch) -> int:
    return arch.macs_per_bank_per_access


def mac_lanes(arch, bits: int = 16) -> int:
    """Stream elements one MAC column reads: the BF16 lanes, or a burst of N-bit codes."""
    return _lanes(arch) if bits == 16 else arch.burst_bytes * 8 // bits


def row_elems(arch, bits: int = 16) -> int:
    """Stream elements of `bits` bits one DRAM row holds."""
    return arch.row_bytes * 8 // bits


def _rows_for(arch, elems: int, bits: int = 16) -> int:
    return -(-elems // row_elems(arch, bits))


def _row_start(arch, elems: int, bits: int = 16) -> int:
    """First element of the row after `elems` (regions start on a fresh row)."""
    return _rows_for(arch, elems, bits) * row_elems(arch, bits)


def gbuf_elems(arch) -> int:
    return arch.gbuf_bytes // 2


def linear_layout(name: str, arch, first_row: int, k: int, n: int, bits: int = 16,
                  group: int | None = None) -> GemvLayout:
    """W[k, n] of y = x @ W: outputs over all bank lanes, k in gbuf-sized chunks; `bits` < 16:
    the stream holds the weight's N-bit codes (a row holds 16 / N times as many, and a MAC
    column reads a burst of them), the inputs stay BF16. `group`: the codes' scale group
    along k, shorter than a chunk: each output's share of a chunk is then one segment per
    group (one partial sum each, which the ASIC scales before it adds them; `linear_pieces`)."""
    lanes_total, g = arch.channels * arch.banks, gbuf_elems(arch)
    per = -(-n // lanes_total)
    n_pad = per * lanes_total
    step = min(group or g, g)                     # elements per partial sum of an output
    passes, at = [], 0
    for k0 in range(0, k, g):
        length = min(g, k - k0)
        segs = tuple(Segment(at + i * length + j, min(step, length - j), j * 2,
                             ((k0 + j) // step) * n_pad + i * lanes_total)
                     for i in range(per) for j in range(0, length, step))
        passes.append(Pass(((k0, length),) * arch.channels, segs))
        at = _row_start(arch, at + per * length, bits)
    return GemvLayout(name, first_row, _rows_for(arch, at, bits), tuple(passes), arch.banks,
                      -(-k // step) * n_pad, bits=bits)


def _head_groups(arch, heads: int, hd: int, queries: int) -> list[range]:
    per = max(1, gbuf_elems(arch) // (hd * queries))
    return [range(h, min(heads, h + per)) for h in range(0, heads, per)]


def kcache_layout(name: str, arch, first_row: int, heads: int, positions: int, hd: int,
                  queries: int = 1) -> GemvLayout:
    """scores[h*G + g, p] = q[h, g] . K[h, p]: positions over bank lanes, the KV heads of a
    group in a row; the gbuf holds the group's G query rows per KV head."""
    lanes_total = arch.channels * arch.banks
    per = -(-positions // lanes_total)
    p_pad = per * lanes_total
    passes, at = [], 0
    for group in _head_groups(arch, heads, hd, queries):
        width = len(group) * hd
        segs = tuple(Segment(at + i * width + j * hd, hd, (j * queries + g) * hd * 2,
                             (h * queries + g) * p_pad + i * lanes_total)
                     for i in range(per) for j, h in enumerate(group) for g in range(queries))
        passes.append(Pass(((group[0] * queries * hd, width * queries),) * arch.channels, segs))
        at += per * width             # passes back to back: a G > 1 pass fills 1/G of a row
    return GemvLayout(name, first_row, _rows_for(arch, at), tuple(passes), arch.banks,
                      heads * queries * p_pad, queries)


def _vcache_shape(arch, positions: int, hd: int, queries: int = 1) -> tuple[int, int, int]:
    """(positions padded to the lanes, dimensions per bank, positions per chunk: one gbuf,
    shared by the G query rows' softmax chunks)."""
    lanes = _lanes(arch)
    padded = -(-positions // lanes) * lanes
    return padded, -(-hd // arch.banks), min(gbuf_elems(arch) // queries // lanes * lanes, padded)


def vcache_chunk(arch, layout: GemvLayout, positions: int, hd: int) -> int:
    """Positions per pass of a V cache layout."""
    return _vcache_shape(arch, positions, hd, layout.queries)[2]


def vcache_layout(name: str, arch, first_row: int, heads: int, positions: int, hd: int,
                  queries: int = 1) -> GemvLayout:
    """context[h*G + g, d] = probs[h, g] . V[h, :, d]: KV head h on channel h mod C, d on bank
    d mod B; a pass's gbuf holds the G query rows' softmax chunks of the channel's head (the
    input row is [heads, G, positions])."""
    c_n, b_n = arch.channels, arch.banks
    padded, dims_per_bank, g = _vcache_shape(arch, positions, hd, queries)
    passes, at = [], 0
    for pp in range(-(-heads // c_n)):
        for q0 in range(0, padded, g):
            length = min(g, padded - q0)
            chunk = q0 // g
            fills = tuple((h * queries * positions + q0, min(length, positions - q0)) if h < heads else None
                          for h in (pp * c_n + c for c in range(c_n)))
            segs = tuple(Segment(at + i * length, length, r * length * 2,
                                 (chunk * heads + pp * c_n) * queries * hd + r * hd + i * b_n)
                         for i in range(dims_per_bank) for r in range(queries))
            passes.append(Pass(fills, segs, queries, positions, length))
            at = _row_start(arch, at + dims_per_bank * length)
    chunks = -(-padded // g)
    return GemvLayout(name, first_row, _rows_for(arch, at), tuple(passes), queries * hd,
                      chunks * heads * queries * hd, queries)


# ---- initial DRAM contents of a layout: array [rows, channels, banks, row elements] ---------

def _stream(arch, layout: GemvLayout) -> np.ndarray:
    return np.zeros((arch.channels, arch.banks, layout.rows * row_elems(arch, layout.bits)), np.float64)


def _as_rows(arch, layout: GemvLayout, stream: np.ndarray) -> np.ndarray:
    per_row = row_elems(arch, layout.bits)
    return stream.reshape(arch.channels, arch.banks, layout.rows, per_row).transpose(2, 0, 1, 3)


def scatter_linear(arch, layout: GemvLayout, w: np.ndarray) -> np.ndarray:
    """W[k, n] in the layout's rows [rows, channels, banks, elements a row]: BF16 values, or
    for an N-bit layout the weight's integer codes (packed by the caller)."""
    k, n = w.shape
    lanes_total = arch.channels * arch.banks
    per = -(-n // lanes_total)
    n_pad = per * lanes_total
    wt = np.zeros((n_pad, k))
    wt[:n] = np.asarray(w, np.float64).T
    stream = _stream(arch, layout)
    for p in layout.passes:
        k0, _ = p.fills[0]
        for seg in p.segments:                   # lane group i, from k0 + its gbuf offset
            i, kk, length = seg.out % n_pad // lanes_total, k0 + seg.gb_bytes // 2, seg.length
            block = wt[i * lanes_total:(i + 1) * lanes_total, kk:kk + length]
            stream[:, :, seg.start:seg.start + length] = block.reshape(arch.channels, arch.banks, length)
    return _as_rows(arch, layout, stream)


def kcache_cells(arch, layout: GemvLayout, hd: int, position: int):
    """(channel, bank, stream element, elements, first head) runs holding K[:, position]."""
    lanes_total = arch.channels * arch.banks
    i, lane = divmod(position, lanes_total)
    c, b = divmod(lane, arch.banks)
    out = []
    for p in layout.passes:
        first, fill = p.fills[0]
        out.append((c, b, p.segments[i * (fill // hd)].start, fill // layout.queries,
                    first // (hd * layout.queries)))
    return out


def scatter_kcache(arch, layout: GemvLayout, k: np.ndarray) -> np.ndarray:
    """k: [heads, positions given, hd] (the cache so far; later positions stay zero)."""
    heads, given, hd = k.shape
    stream = _stream(arch, layout)
    for p in range(given):
        for c, b, start, width, h0 in kcache_cells(arch, layout, hd, p):
            stream[c, b, start:start + width] = k[h0:h0 + width // hd, p, :].reshape(-1)
    return _as_rows(arch, layout, stream)


def vcache_cells(arch, layout: GemvLayout, heads: int, positions: int, hd: int, position: int):
    """(channel, first stream element of the 16-lane burst, lane, head, first dimension) of
    every burst holding V[h, position, d] (bank b of the channel holds dimension d0 + b)."""
    c_n, b_n, lanes = arch.channels, arch.banks, _lanes(arch)
    padded, dims_per_bank, g = _vcache_shape(arch, positions, hd, layout.queries)
    chunks = -(-padded // g)
    q, offset = divmod(position, g)
    out = []
    for pp in range(-(-heads // c_n)):
        p = layout.passes[pp * chunks + q]
        for c in range(c_n):
            h = pp * c_n + c
            if h >= heads:
                continue
            for i, seg in enumerate(p.segments[::layout.queries]):
                burst = seg.start + offset // lanes * lanes
                out.append((c, burst, offset % lanes, h, i * b_n))
    return out


def scatter_vcache(arch, layout: GemvLayout, v: np.ndarray, positions: int) -> np.ndarray:
    """v: [heads, positions given, hd]; stored transposed (column-major) per the layout."""
    heads, given, hd = v.shape
    c_n, b_n = arch.channels, arch.banks
    padded, dims_per_bank, g = _vcache_shape(arch, positions, hd, layout.queries)
    vt = np.zeros((heads, dims_per_bank * b_n, padded))
    vt[:, :hd, :given] = np.transpose(v, (0, 2, 1))
    stream = _stream(arch, layout)
    chunks = -(-padded // g)
    for pp in range(-(-heads // c_n)):
        for q in range(chunks):
            p = layout.passes[pp * chunks + q]
            q0 = q * g
            for c in range(c_n):
                h = pp * c_n + c
                if h >= heads:
                    continue
                for i, seg in enumerate(p.segments[::layout.queries]):
                    rows = vt[h, i * b_n:(i + 1) * b_n, q0:q0 + seg.length]
                    stream[c, :, seg.start:seg.start + seg.length] = rows
    return _as_rows(arch, layout, stream)
