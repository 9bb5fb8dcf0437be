"""Embedding lookups, the same on every target: gather table rows through one ring's slots."""
from __future__ import annotations

from compiler.targets.emit import Emitter, Matrix, Ring, view_matrix
from compiler.targets.tiling import row_block

__all__ = ["lower_embedding"]


def lower_embedding(em: Emitter, op, views, ring: Ring, itemsize: int, align: int = 64) -> None:
    """An embedding lookup: the ring's producer loads blocks of token ids and gathers their
    table rows into a slot (`gather` moves at most 255 rows), its consumer stores them."""
    table, ids, out = (view_matrix(views[name]) for name in (*op.inputs[:2], op.name))
    flat = Matrix(ids.symbol, ids.offset, 1, ids.rows * ids.cols, ids.rows * ids.cols)
    row_bytes = table.cols * itemsize
    per = min(255, row_block(op.name, "embedding", flat.cols, row_bytes + 4, ring.slot_bytes,
                             "gather slot"))
    for r0 in range(0, flat.cols, per):
        n = min(per, flat.cols - r0)
        slot = ring.acquire()
        em.load(ring.producer, slot, flat.block(0, 1, r0, n))
        rows_at = slot + (-(-n * 4 // align) * align)
        em.pitch(ring.producer, row_bytes, 0)
        em.emit(ring.producer, "gather", dst=rows_at, table=em.dram(table), idx=slot, n=n)
        ring.filled()
        ring.take()
        em.store(ring.consumer, out.block(r0, n, 0, out.cols), rows_at)
        ring.release()
