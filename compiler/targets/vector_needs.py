"""What a vector op needs of each on-chip buffer, per block of rows: one function per op kind.

A block of `rows` rows of an op takes `rows * per_row + fixed` bytes of each buffer it uses:
the vp_in slot (inputs, gains, masks, [cos | sin] rows), the vp_out slot (results) and the
fp32 scratch area (temporaries). The vector lowering (vector.py, `row_blocks`) cuts an op's
rows by these needs; the systolic SRAM planner (`vector_floors`) takes one row of the
widest op in the graph as each buffer's floor, so a plan that holds its floors lowers every
vector op. A row too wide for the buffers is cut into column blocks: element-wise ops and
copies compute each block on its own; layer norm, RMS norm and softmax keep per-row
statistics in the scratch area across the blocks (`*_column_needs`) and read the row again
for each pass; rotary embedding takes the same column block of both halves. So one column is
all any of them needs, and the floors stop growing with the model's width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from isa import DType

from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.storage import View
from compiler.targets.constants import mask_name
from compiler.targets.emit import Matrix, matrix_pairs, padded_view, view_batches, view_matrix

__all__ = ["Need", "Needs", "Floor", "VP_IN", "VP_OUT", "SCRATCH", "LABELS", "elementwise_needs",
           "copy_needs", "layernorm_needs", "rmsnorm_needs", "rope_needs", "softmax_needs",
           "layernorm_column_needs", "rmsnorm_column_needs", "softmax_column_needs",
           "elementwise_jobs", "concat_copies", "concat_dtype", "vector_floors"]

ALIGN = 64
VP_IN, VP_OUT, SCRATCH = "vp_in", "vp_out", "scratch"
LABELS = {VP_IN: "the vp_in slot", VP_OUT: "the vp_out slot", SCRATCH: "vector scratch"}
ELEMENTWISE = (OpKind.ADD, OpKind.MUL, OpKind.DIV, OpKind.GELU, OpKind.SILU)


def up(n: int) -> int:
    """`n` bytes rounded up to the 64-byte alignment of every on-chip block."""
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True, slots=True)
class Need:
    """One block's bytes of one buffer: `per_row` for each of its rows, plus `fixed`."""

    per_row: int
    fixed: int = 0

    @property
    def one_row(self) -> int:
        return self.fixed + self.per_row


Needs = Mapping[str, Need]      # buffer (VP_IN, VP_OUT, SCRATCH) -> its need


@dataclass(frozen=True, slots=True)
class Floor:
    """The least bytes a buffer must hold, and what sets it (for the planner's messages)."""

    bytes: int
    cause: str = ""


# -- one function per op kind: the needs of a block of rows `cols` (d, t, 2h) wide ----------
def elementwise_needs(kind: OpKind, cols: int, isz: int, bcast: str | None) -> Needs:
    """add, mul, div, gelu, silu; `bcast` is None without a second operand, else how that
    operand broadcasts: "none" (a full row each), "row" (one value a row), "col" (one row
    for all, held once)."""
    b_per_row = {"none": cols * isz, "row": isz}.get(bcast, 0)
    b_fixed = up(cols * isz) if bcast == "col" else 0
    needs = {VP_IN: Need(cols * isz + b_per_row, b_fixed + 2 * ALIGN), VP_OUT: Need(cols * isz)}
    if kind is OpKind.SILU:
        needs[SCRATCH] = Need(2 * cols * 4, 2 * ALIGN)
    return needs


def copy_needs(row_bytes: int) -> Needs:
    """A concat's copy of rows through the vector unit."""
    return {VP_IN: Need(row_bytes), VP_OUT: Need(row_bytes)}


def layernorm_needs(d: int, isz: int) -> Needs:
    """Rows of x, with gain and bias in fp32 beside them; x and its squares in fp32 scratch."""
    return {VP_IN: Need(d * isz, 2 * up(d * 4) + ALIGN), VP_OUT: Need(d * isz),
            SCRATCH: Need(2 * d * 4 + 8, 4 * ALIGN)}


def rmsnorm_needs(d: int, isz: int, gain_isz: int) -> Needs:
    """Rows of x, the gain at its stored type beside them; scratch also holds an fp32 gain."""
    return {VP_IN: Need(d * isz, up(d * gain_isz) + ALIGN), VP_OUT: Need(d * isz),
            SCRATCH: Need(2 * d * 4 + 4, up(d * 4) + 3 * ALIGN)}


def layernorm_column_needs(w: int, isz: int) -> Needs:
    """A w-wide column block of layer norm rows: x, with that block of gain and bias in fp32;
    scratch holds the block and its squares in fp32 and three row statistics (mean, variance,
    the block's partial sum) that live across the blocks."""
    return {VP_IN: Need(w * isz, 2 * up(w * 4) + ALIGN), VP_OUT: Need(w * isz),
            SCRATCH: Need(2 * w * 4 + 12, 4 * ALIGN)}


def rmsnorm_column_needs(w: int, isz: int, gain_isz: int) -> Needs:
    """A w-wide column block of RMS norm rows: x and its block of the gain; scratch holds the
    block and its squares in fp32, two row statistics (mean square, partial sum) and the
    gain block in fp32."""
    return {VP_IN: Need(w * isz, up(w * gain_isz) + ALIGN), VP_OUT: Need(w * isz),
            SCRATCH: Need(2 * w * 4 + 8, up(w * 4) + 4 * ALIGN)}


def rope_needs(half: int, isz: int, table_rows: bool) -> Needs:
    """Both halves of each row; [cos | sin] fp32 rows beside them (`table_rows`, one a row)
    or one table row for the whole block (decode)."""
    per_table_row = 2 * half * 4 if table_rows else 0
    table_fixed = 0 if table_rows else 2 * up(half * 4)
    return {VP_IN: Need(2 * half * isz + per_table_row, 4 * ALIGN + table_fixed),
            VP_OUT: Need(2 * half * isz, ALIGN), SCRATCH: Need(4 * half * 4, 4 * ALIGN)}


def softmax_needs(t: int, isz: int, masked: bool) -> Needs:
    """Rows of scores, with their fp32 mask rows beside them when `masked`."""
    return {VP_IN: Need(t * isz + (t * 4 if masked else 0), 2 * ALIGN), VP_OUT: Need(t * isz),
            SCRATCH: Need(t * 4 + 8, 3 * ALIGN)}


def softmax_column_needs(w: int, isz: int, masked: bool) -> Needs:
    """A w-wide column block of softmax rows (online softmax): scores and their mask block;
    scratch holds the block in fp32 and four row statistics (running max, running sum, the
    block's max and the rescaling factor) that live across the blocks."""
    return {VP_IN: Need(w * isz + (w * 4 if masked else 0), 2 * ALIGN), VP_OUT: Need(w * isz),
            SCRATCH: Need(w * 4 + 16, 4 * ALIGN)}


# -- how an op's views become row jobs (shared by the lowering and the floors) --------------
def _row_broadcast(b: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether b is out with its last axis 1 (left-padded with 1s): one value per row."""
    padded = (1,) * (len(out) - len(b)) + tuple(b)
    return len(out) >= 2 and padded[-1] == 1 < out[-1] and padded[:-1] == tuple(out[:-1])


def elementwise_jobs(op: Op, views: Mapping[str, View]
                     ) -> Iterator[tuple[Matrix, Matrix | None, Matrix, str]]:
    """(a, b, out, broadcast) matrices of an element-wise op: b broadcasts along rows (b
    [..., 1, D] or a suffix of a's shape: "col"), along columns (b [..., T, 1] against
    [..., T, D]: "row"), or not at all; add and mul swap their operands so that b is the
    one that broadcasts."""
    operands = [views[n] for n in op.inputs]
    out = views[op.name]
    if len(operands) == 2 and operands[0].shape != out.shape and op.kind in (OpKind.ADD, OpKind.MUL):
        operands.reverse()                           # only b may broadcast
    a_view, b_view = operands[0], (operands[1] if len(operands) == 2 else None)
    if a_view.shape != out.shape:
        raise CompileError(f"op '{op.name}' ({op.kind.value}): broadcasting its first operand "
                           f"{list(a_view.shape)} to {list(out.shape)} is not supported on this target")
    if b_view is not None and _row_broadcast(b_view.shape, out.shape):
        b_full = padded_view(b_view, len(out.shape))
        for parts in zip(view_batches(a_view, 2), view_batches(b_full, 2), view_batches(out, 2)):
            a_m, b_m, o_m = map(view_matrix, parts)
            yield a_m, b_m, o_m, "row"
        return
    yield from _suffix_jobs(op, a_view, b_view, out)


def _suffix_jobs(op: Op, a_view: View, b_view: View | None, out: View
                 ) -> Iterator[tuple[Matrix, Matrix | None, Matrix, str]]:
    """Element-wise jobs where b is absent, a's shape, or a suffix of it (broadcast as "col")."""
    keep = len(b_view.shape) if b_view is not None and b_view.shape != out.shape else len(out.shape)
    keep = max(keep, 1)
    if b_view is not None and b_view.shape != out.shape[len(out.shape) - len(b_view.shape):]:
        raise CompileError(f"op '{op.name}' ({op.kind.value}): operand shape "
                           f"{list(b_view.shape)} broadcasts in a way this target does not support")
    for a_part, o_part in zip(view_batches(a_view, keep), view_batches(out, keep)):
        a_m, o_m = view_matrix(a_part), view_matrix(o_part)
        b_m = view_matrix(b_view) if b_view is not None else None
        bcast = "none" if b_m is None or b_m.rows == a_m.rows else "col"
        if b_m is not None and bcast == "col" and b_m.rows != 1:
            raise CompileError(f"op '{op.name}': cannot broadcast {b_m.rows} rows over {a_m.rows}")
        yield a_m, b_m, o_m, bcast


def concat_copies(op: Op, views: Mapping[str, View]) -> list[tuple[Matrix, Matrix]]:
    """(source, destination) matrices a concat copies: each input into its slice of the
    output along `axis`, except an input the storage plan already placed there."""
    out = views[op.name]
    axis = op.attr("axis") % len(out.shape)
    pairs, at = [], 0
    for name in op.inputs:
        src = views[name]
        dst = out.slice(axis, at, at + src.shape[axis])
        at += src.shape[axis]
        if src != dst:
            pairs += matrix_pairs(src, dst)
    return pairs


def concat_dtype(op: Op, dtype: DType) -> DType:
    """What a concat copies: int32 ids as they are, everything else at the operand type."""
    return DType.int32 if op.type.dtype is DType.int32 else dtype


# -- the graph's floors: one row of its widest op, per buffer ------------------------------
ItemsizeOf = Callable[[View], int]      # a view's stored element size in bytes
_Rows = list[tuple[Needs, str]]         # an op's distinct row jobs: their needs, how wide


def _elementwise_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    modes = {None if b is None else bcast for _, b, _, bcast in elementwise_jobs(op, views)}
    return [(elementwise_needs(op.kind, 1, dtype.itemsize, m), "one column") for m in modes]


def _concat_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    return [(copy_needs(concat_dtype(op, dtype).itemsize), "one column")] if concat_copies(op, views) else []


def _layernorm_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    return [(layernorm_column_needs(1, dtype.itemsize), "one column")]


def _rmsnorm_rows(op: Op, views: Mapping[str, View], dtype: DType, itemsize_of: ItemsizeOf) -> _Rows:
    return [(rmsnorm_column_needs(1, dtype.itemsize, itemsize_of(views[op.inputs[1]])), "one column")]


def _rope_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    s = views[op.inputs[0]].shape[-2]
    return [(rope_needs(1, dtype.itemsize, s != 1), "one column of each half")]


def _softmax_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    s, t = views[op.inputs[0]].shape[-2:]
    return [(softmax_column_needs(1, dtype.itemsize, mask_name(op, s, t) is not None), "one column")]


def _quantize_rows(op: Op, views: Mapping[str, View], dtype: DType, _: ItemsizeOf) -> _Rows:
    group = op.attr("group") or views[op.inputs[0]].shape[-1]
    return [(copy_needs(group * dtype.itemsize), f"one scale group ({group} columns)")]


_ROWS: dict[OpKind, Callable[..., _Rows]] = {
    **{kind: _elementwise_rows for kind in ELEMENTWISE},
    OpKind.CONCAT: _concat_rows, OpKind.LAYERNORM: _layernorm_rows, OpKind.RMSNORM: _rmsnorm_rows,
    OpKind.ROPE: _rope_rows, OpKind.SOFTMAX: _softmax_rows, OpKind.QUANTIZE: _quantize_rows}


def vector_floors(graph: Graph, views: Mapping[str, View], dtype: DType, itemsize_of: ItemsizeOf,
                  skip: frozenset[str] = frozenset()) -> dict[str, Floor]:
    """Per buffer (VP_IN, VP_OUT, SCRATCH): one row of the graph's most demanding vector op
    and which op that is; the ops in `skip` (lowered elsewhere: a fused attention's softmax)
    do not count."""
    floors = {buf: Floor(0) for buf in LABELS}
    for op in graph.ops:
        if op.kind not in _ROWS or op.name in skip:
            continue
        for needs, wide in _ROWS[op.kind](op, views, dtype, itemsize_of):
            for buf, need in needs.items():
                if need.one_row > floors[buf].bytes:
                    floors[buf] = Floor(need.one_row, f"{op.kind.value} '{op.name}' ({wide})")
    return floors
