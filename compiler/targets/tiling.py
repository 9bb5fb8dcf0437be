"""Tile sizes for GEMMs on a systolic array and row blocks for the vector unit.

GEMM tiles split the two dimensions pinned in the array (by its dataflow) in whole
multiples of the array's rows and columns, and the streamed dimension only when nothing
else fits. The sum of the tiles' folds is then the whole GEMM's fold count, so the matrix
unit's cycles equal SCALE-Sim's for the same shape whenever the streamed dimension fits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from compiler.errors import CompileError

__all__ = ["GemmTile", "GemmSlots", "gemm_tile", "PINNED", "MAX_TILE", "row_block"]

# Field limits of the ISA (16-bit counts) with headroom: rows, columns, bytes per row.
MAX_TILE = 32768

# dataflow -> (dimension on the array rows, dimension on the array columns, streamed one)
PINNED = {"ws": ("k", "n", "m"), "os": ("m", "n", "k"), "is": ("k", "m", "n")}


@dataclass(frozen=True, slots=True)
class GemmTile:
    m: int
    n: int
    k: int


@dataclass(frozen=True, slots=True)
class GemmSlots:
    """Bytes per slot of the buffers a GEMM tile passes through: A and B operand tiles, the
    fp32 accumulator, the fp32 bias row and the output tile; operands of `itemsize` bytes."""

    a: int
    b: int
    acc: int
    bias: int
    out: int
    itemsize: int
    transpose_b: bool

    def b_fits(self, n: int, k: int) -> bool:
        """Whether a k x n B tile (and its bias row) fits, every row within the ISA's limits."""
        isz = self.itemsize
        b_row = (k if self.transpose_b else n) * isz
        return k * n * isz <= self.b and n * 4 <= self.bias and max(k * isz, b_row, n * 4) <= MAX_TILE

    def fits(self, t: GemmTile) -> bool:
        """Whether the whole tile fits: A, B, accumulator, bias and output slots."""
        isz = self.itemsize
        return (t.m * t.k * isz <= self.a and self.b_fits(t.n, t.k) and t.m * t.n * 4 <= self.acc
                and t.m * t.n * isz <= self.out)


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def gemm_tile(name: str, m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
              fits: Callable[[GemmTile], bool]) -> GemmTile:
    """The largest tile (halving pinned dims first, in array multiples) that `fits`."""
    on_rows, on_cols, streamed = PINNED[dataflow]
    unit = {on_rows: rows, on_cols: cols, streamed: 1}
    tile = {"m": min(m, MAX_TILE), "n": min(n, MAX_TILE), "k": min(k, MAX_TILE)}
    while not fits(GemmTile(**tile)):
        pinned = [d for d in (on_rows, on_cols) if tile[d] > unit[d]]
        if pinned:
            d = max(pinned, key=lambda d: tile[d] / unit[d])
            tile[d] = max(unit[d], _round_up(-(-tile[d] // 2), unit[d]))
        elif tile[streamed] > 1:
            tile[streamed] = -(-tile[streamed] // 2)
        else:
            t = GemmTile(**tile)
            raise CompileError(f"op '{name}' (matmul): even a {t.m}x{t.n}x{t.k} tile (m x n x k) "
                               "does not fit the on-chip buffers")
    return GemmTile(**tile)


def row_block(name: str, kind: str, rows: int, bytes_per_row: int, capacity: int,
              what: str) -> int:
    """How many rows of `bytes_per_row` fit `capacity`; CompileError when not even one."""
    if bytes_per_row > capacity:
        raise CompileError(f"op '{name}' ({kind}): one row needs {bytes_per_row} bytes of {what}, "
                           f"which holds {capacity} bytes")
    return max(1, min(rows, capacity // bytes_per_row, MAX_TILE))
