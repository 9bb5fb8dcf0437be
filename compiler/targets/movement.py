"""Data movement lowered the same way on every target with dense tensors: embedding lookups
(gather table rows) and KV-cache appends (copy the new rows into place), each through one
ring's slots from its producer queue to its consumer queue."""
from __future__ import annotations

from isa.fields import A32, A32_64B

from compiler.errors import CompileError
from compiler.ir import Graph, OpKind
from compiler.passes.storage import StoragePlan
from compiler.targets.emit import Emitter, Matrix, Ring, view_batches, view_matrix
from compiler.targets.tiling import row_block

__all__ = ["lower_embedding", "lower_kv_append", "gather_block_rows", "gather_slice_cols", "gather_tables",
           "check_gather_reach", "GATHER_SLICE_BYTES",
           "GATHER_REACH_BYTES", "FAR_GATHER_REACH_BYTES", "gather_opcode"]

# A gather's table operand is A32 (docs/isa.md): it reaches the first 256 MiB of its space;
# gatherw's counts 64-byte units and reaches 16 GiB (a table must then be 64-byte aligned).
GATHER_REACH_BYTES = A32.reach
FAR_GATHER_REACH_BYTES = A32_64B.reach
GATHER_SLICE_BYTES = A32_64B.granule     # column slices of a gathered row come in these units


def gather_tables(graph: Graph, plan: StoragePlan) -> list[str]:
    """The buffers some embedding or gather reads rows of, smallest first: targets place them
    at the start of their memory, where a gather's table address reaches (a model's embedding
    table is usually the largest, so the computed tables of MoE permutes go before it)."""
    names = {plan.views[op.inputs[0]].buffer for op in graph.of_kind(OpKind.EMBEDDING, OpKind.GATHER)}
    return sorted(names, key=lambda n: (plan.buffers[n].numel * plan.buffers[n].dtype.itemsize, n))


def check_gather_reach(table: str, space: str, addr: int) -> None:
    """CompileError when a gather table would start beyond every gather's reach."""
    if addr >= FAR_GATHER_REACH_BYTES:
        raise CompileError(f"gather table '{table}' would start at {space} byte {addr:,}; gatherw "
                           f"reaches the first {FAR_GATHER_REACH_BYTES:,} bytes (its table operand "
                           f"is {A32_64B.label}), and the smaller tables placed before it fill that")


def gather_opcode(table: str, addr: int) -> str:
    """gather for a table in its first 256 MiB, gatherw (64-byte units) for one beyond."""
    if addr < GATHER_REACH_BYTES:
        return "gather"
    if addr % A32_64B.granule or addr >= FAR_GATHER_REACH_BYTES:
        raise CompileError(f"gather table '{table}' at byte {addr:,} is beyond a gather's 256 MiB "
                           f"and not a 64-byte aligned address below {FAR_GATHER_REACH_BYTES:,} "
                           "for gatherw")
    return "gatherw"


def gather_block_rows(name: str, rows: int, row_bytes: int, slot_bytes: int, align: int) -> int:
    """How many rows one gather block moves: its int32 ids (padded to `align`) and its rows must
    fit one slot together, and `gather` moves at most 255 rows; CompileError when not one."""
    per = min(255, rows, slot_bytes // (row_bytes + 4))
    while per > 0 and -(-per * 4 // align) * align + per * row_bytes > slot_bytes:
        per -= 1
    if per == 0:
        raise CompileError(f"op '{name}' (embedding): one row needs {align + row_bytes} bytes of "
                           f"the gather slot (its id padded to {align}), which holds {slot_bytes} bytes")
    return per


def gather_slice_cols(cols: int, itemsize: int, slot_bytes: int, align: int) -> int:
    """The columns of each slice a gather takes of its table rows: the whole row when one row
    and its id fit a slot, else the most that do, in whole 64-byte units where one fits (a
    far table's gatherw needs 64-byte aligned slice addresses, and DMA likes them)."""
    room = (slot_bytes - align) // itemsize
    if room >= cols or room <= 0:          # (not one column: gather_block_rows says so)
        return cols
    unit = max(1, GATHER_SLICE_BYTES // itemsize)
    return room // unit * unit or room


def lower_embedding(em: Emitter, op, views, ring: Ring, itemsize: int, align: int = 64) -> None:
    """An embedding lookup, or a gather of a computed value's rows: the ring's producer loads
    blocks of ids and gathers their table rows into a slot (`gather` moves at most 255 rows),
    its consumer stores them. Rows wider than a slot go by column slices (dmacfg dst_stride is
    the slice's bytes; the table operand points at its first column)."""
    table, ids, out = (view_matrix(views[name]) for name in (*op.inputs[:2], op.name))
    flat = Matrix(ids.symbol, ids.offset, 1, ids.rows * ids.cols, ids.rows * ids.cols)
    width = gather_slice_cols(table.cols, itemsize, ring.slot_bytes, align)
    for c0 in range(0, table.cols, width):
        w = min(width, table.cols - c0)
        row_bytes = w * itemsize
        per = gather_block_rows(op.name, flat.cols, row_bytes, ring.slot_bytes, align)
        for r0 in range(0, flat.cols, per):
            n = min(per, flat.cols - r0)
            slot = ring.acquire()
            em.load(ring.producer, slot, flat.block(0, 1, r0, n))
            rows_at = slot + (-(-n * 4 // align) * align)
            em.pitch(ring.producer, table.cols * itemsize, 0 if w == table.cols else row_bytes)
            at = em.dram(table.block(0, 1, c0, w))
            em.emit(ring.producer, gather_opcode(table.symbol, at.addr), dst=rows_at, table=at, idx=slot, n=n)
            ring.filled()
            ring.take()
            em.store(ring.consumer, out.block(r0, n, c0, w), rows_at)
            ring.release()


def lower_kv_append(em: Emitter, op, views, ring: Ring, itemsize: int) -> None:
    """Copy the new K or V rows into the tail of the cache buffer (the cache is in place), in
    column blocks when a row is wider than a slot."""
    new, whole = views[op.inputs[1]], views[op.name]
    axis = len(whole.shape) - 2
    target = whole.slice(axis, whole.shape[axis] - new.shape[axis], whole.shape[axis])
    for src, dst in zip(view_batches(new, 2), view_batches(target, 2)):
        sm, dm = view_matrix(src), view_matrix(dst)
        width = max(1, min(sm.cols, ring.slot_bytes // itemsize))
        narrow = em.quantised.get(dm.symbol)        # a cache of codes: whole scale groups
        if narrow is not None and width < sm.cols:
            width = max(narrow[0].group, width - width % narrow[0].group)
        for c0 in range(0, sm.cols, width):
            w = min(width, sm.cols - c0)
            per = row_block(op.name, "kv_append", sm.rows, w * itemsize, ring.slot_bytes, "copy slot")
            for r0 in range(0, sm.rows, per):
                rows = min(per, sm.rows - r0)
                slot = ring.acquire()
                em.load(ring.producer, slot, sm.block(r0, rows, c0, w))
                ring.filled()
                ring.take()
                em.store(ring.consumer, dm.block(r0, rows, c0, w), slot)
                ring.release()
