"""Closed-form cycle counts of the timing-critical blocks.

These are the simulator's timing model and, unchanged, the oracle the RTL testbenches and
the SCALE-Sim validation compare against. Derivations and a worked example: docs/systolic.md.
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["gemm_folds", "gemm_cycles", "dma_cycles", "vector_cycles", "reduce_cycles",
           "quantise_cycles", "STREAMED"]

# dataflow -> which GEMM dimension streams through the array (the others are pinned:
# ws pins K on rows and N on columns, os pins M and N, is pins K and M)
STREAMED = {"ws": "m", "os": "k", "is": "n"}
_PINNED = {"ws": ("k", "n"), "os": ("m", "n"), "is": ("k", "m")}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def gemm_folds(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """How many times the array is re-mapped: ceil(pinned_1 / rows) * ceil(pinned_2 / cols)."""
    dims = {"m": m, "n": n, "k": k}
    on_rows, on_cols = _PINNED[dataflow]
    return _ceil(dims[on_rows], rows) * _ceil(dims[on_cols], cols)


def gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
                overlap_preload: bool = False, stream: bool = False, preloaded: bool = False,
                pack: int = 1) -> int:
    """Matrix-unit cycles of one GEMM tile C[m,n] (+)= A[m,k] B[k,n].

    Each fold: preload P (rows for ws and is, whose pinned operand must be shifted in; 0 for
    os), then the streamed dimension T enters skewed and drains: P + rows + cols + T - 2.
    Without overlap folds run back to back (SCALE-Sim's arithmetic, which reports this total
    minus one). With overlapped preload (double-buffered weights, as in TPUs) the next
    fold's preload hides behind the current stream: the first fold costs the full amount and
    every later fold max(T, rows).

    The first fold of a tile may continue earlier work: `stream`, it continues the previous
    tile's fold (same stationary operand, pipeline still full), so it costs T and a stream
    cut into pieces costs what it would cost whole; `preloaded` (overlapped preload only), it
    is the next fold, its operand shifted in behind the previous tile's stream: max(T, rows).

    `pack`: K values a PE lane carries and multiplies a cycle (int4 packs two into each 8-bit
    lane: rtl_models/systolic_array.v's int4 mode), so the array sees ceil(k / pack).
    """
    k = -(-k // pack)
    dims = {"m": m, "n": n, "k": k}
    t = dims[STREAMED[dataflow]]
    folds = gemm_folds(m, n, k, rows, cols, dataflow)
    per_fold = (0 if dataflow == "os" else rows) + rows + cols + t - 2
    later = max(t, rows) if overlap_preload else per_fold
    first = t if stream else later if preloaded else per_fold
    return first + (folds - 1) * later


def dma_cycles(nbytes: int, latency_cycles: int, clock_hz: int, bw_bytes_per_s: int) -> int:
    """latency + ceil(bytes / bytes-per-cycle), in exact integer arithmetic."""
    if nbytes == 0:
        return 0
    return latency_cycles + _ceil(nbytes * clock_hz, bw_bytes_per_s)


def vector_cycles(elements: int, lanes: int, latency_cycles: int) -> int:
    """Element-wise op: one lane-wide group per cycle through a pipeline of fixed depth
    (nothing to do, no cycles: the same convention as an empty DMA)."""
    if elements == 0:
        return 0
    return _ceil(elements, lanes) + latency_cycles


def reduce_cycles(rows: int, cols: int, lanes: int, latency_cycles: int) -> int:
    """Row reduction: each row takes ceil(cols / lanes) cycles into the adder tree."""
    if rows * cols == 0:
        return 0
    return rows * _ceil(cols, lanes) + latency_cycles


def quantise_cycles(rows: int, cols: int, lanes: int, latency: Mapping[str, int]) -> int:
    """A vquant: two passes over the tile, the group maxima (a row reduction at the "max"
    function's depth) then the elements (divide, round, multiply: at the "mul" depth)."""
    return (reduce_cycles(rows, cols, lanes, latency["max"])
            + vector_cycles(rows * cols, lanes, latency["mul"]))

