"""The dataflow target's emitter: symbols live in several tiers (PMUs, HBM, DDR), and windows
of PMU-resident values move with df.stream instead of DMA loads and stores."""
from __future__ import annotations

import isa
from isa import Addr

from compiler.errors import CompileError
from compiler.targets.emit import Emitter, Matrix

__all__ = ["TierEmitter"]

_TILE_BYTES_MAX = (1 << 24) - 1    # df.stream tile_bytes is a U24


class TierEmitter(Emitter):
    """Emitter whose symbols live in several spaces; windows of PMU-resident values move
    with df.stream (one per row when the rows are not contiguous)."""

    def __init__(self) -> None:
        super().__init__("dataflow")
        self.space: dict[str, str] = {}

    def place(self, symbol: isa.Symbol) -> None:
        super().place(symbol)
        self.space[symbol.name] = symbol.space

    def space_of(self, symbol: str) -> str:
        return self.space[symbol]

    def _stream(self, queue: str, dst: Addr, src: Addr, rows: int, row_bytes: int,
                dst_pitch: int, src_pitch: int) -> None:
        if row_bytes > _TILE_BYTES_MAX:
            raise CompileError(f"a PMU stream row of {row_bytes} bytes exceeds df.stream's {_TILE_BYTES_MAX}")
        if rows == 1 or (dst_pitch == row_bytes and src_pitch == row_bytes):
            self.emit(queue, "df.stream", dst=dst, src=src, tiles=rows, tile_bytes=row_bytes)
            return
        self.emit_repeated(rows, {"dst": dst_pitch, "src": src_pitch}, queue, "df.stream",
                           dst=dst, src=src, tiles=1, tile_bytes=row_bytes)

    def load(self, queue: str, dst: Addr, m: Matrix) -> None:
        if self.space[m.symbol] != "sram":
            return super().load(queue, dst, m)
        size = self.itemsize[m.symbol]
        self._stream(queue, dst, self.dram(m), m.rows, m.cols * size, m.cols * size, m.stride * size)

    def store(self, queue: str, m: Matrix, src: Addr) -> None:
        if self.space[m.symbol] != "sram":
            return super().store(queue, m, src)
        size = self.itemsize[m.symbol]
        self._stream(queue, self.dram(m), src, m.rows, m.cols * size, m.stride * size, m.cols * size)
