"""Storage planning: which buffer holds each value, and at which strided view.

Layout ops (slice, reshape, transpose) move no data: their result is a strided view of
their input's buffer, as in numpy. A KV-cache input lives in place at the front of its
append's result buffer, so an append writes only the new rows. When a reshape cannot view
its input (merging axes a transpose made non-adjacent, as GPT-2's head merge does), the
chain is re-rooted: the reshape's result gets the contiguous buffer and the producing op
writes straight into the matching strided view of it — no copy. Likewise an op whose only use
is a concat writes straight into its slice of the concat's buffer. An all-reduce works in
place: its result is its input's view.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.ir import DType, Graph, GraphError, Op, OpKind

__all__ = ["View", "Buffer", "StoragePlan", "plan_storage"]


@dataclass(frozen=True, slots=True)
class View:
    """Elements [offset + sum(i_k * strides[k])] of a buffer, for every index i < shape."""

    buffer: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    @staticmethod
    def contiguous(buffer: str, shape: tuple[int, ...]) -> View:
        strides, step = [], 1
        for d in reversed(shape):
            strides.append(step)
            step *= d
        return View(buffer, tuple(shape), tuple(reversed(strides)), 0)

    def slice(self, axis: int, start: int, stop: int) -> View:
        shape = list(self.shape)
        shape[axis] = stop - start
        return replace(self, shape=tuple(shape), offset=self.offset + start * self.strides[axis])

    def transpose(self, perm: tuple[int, ...]) -> View:
        return replace(self, shape=tuple(self.shape[p] for p in perm),
                       strides=tuple(self.strides[p] for p in perm))

    def reshape(self, shape: tuple[int, ...]) -> View | None:
        """The same elements under a new shape, or None when that needs a copy (numpy's rule)."""
        old = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        groups = _groups([d for d, _ in old], [d for d in shape if d != 1])
        if groups is None:
            return None
        new_strides: list[int] = []
        i = 0
        for old_count, new_dims in groups:
            block = old[i:i + old_count]
            i += old_count
            if any(s_outer != d_inner * s_inner
                   for (_, s_outer), (d_inner, s_inner) in zip(block, block[1:])):
                return None                      # the block's axes are not adjacent in memory
            step, strides = block[-1][1], []
            for d in reversed(new_dims):
                strides.append(step)
                step *= d
            new_strides.extend(reversed(strides))
        it = iter(new_strides)
        return replace(self, shape=tuple(shape), strides=tuple(next(it) if d != 1 else 0 for d in shape))

    def rows(self) -> tuple[int, int, int] | None:
        """As a 2-D matrix (rows, cols, row stride) with contiguous rows, or None."""
        if len(self.shape) == 0:
            return 1, 1, 1
        cols = self.shape[-1]
        if cols > 1 and self.strides[-1] != 1:
            return None
        lead = self.reshape((math.prod(self.shape[:-1]), cols))
        if lead is None:
            return None
        return lead.shape[0], cols, lead.strides[0] if lead.shape[0] > 1 else cols


def _groups(old: list[int], new: list[int]) -> list[tuple[int, list[int]]] | None:
    """Split both dim lists into consecutive blocks of equal products."""
    out, i, j = [], 0, 0
    while i < len(old) or j < len(new):
        if i >= len(old) or j >= len(new):
            return None
        po, pn, i0, new_block = old[i], new[j], i, [new[j]]
        i, j = i + 1, j + 1
        while po != pn:
            if po < pn:
                if i >= len(old):
                    return None
                po *= old[i]
                i += 1
            else:
                if j >= len(new):
                    return None
                pn *= new[j]
                new_block.append(new[j])
                j += 1
        out.append((i - i0, new_block))
    return out


@dataclass(frozen=True, slots=True)
class Buffer:
    """One contiguous allocation in off-chip memory."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    role: str           # "param", "input", "output" or "temp"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class StoragePlan:
    """Every buffer, and the view of its buffer each graph value is read through."""

    buffers: dict[str, Buffer]
    views: dict[str, View]

    def dump(self) -> str:
        """One line per buffer (shape, type, role), then each value held as a view of another."""
        lines = [f"buffers ({len(self.buffers)}):"]
        lines += [f"  {b.name}: {'x'.join(map(str, b.shape))} {b.dtype.value} {b.role}"
                  for b in self.buffers.values()]
        shared = [(v, view) for v, view in self.views.items() if view.buffer != v]
        lines.append(f"views of other buffers ({len(shared)}):")
        lines += [f"  {v} -> {view.buffer} shape {list(view.shape)} strides {list(view.strides)} "
                  f"offset {view.offset}" for v, view in shared]
        return "\n".join(lines)


def _apply(op: Op, view: View) -> View | None:
    if op.kind is OpKind.SLICE:
        return view.slice(op.attr("axis") % len(view.shape), op.attr("start"), op.attr("stop"))
    if op.kind is OpKind.TRANSPOSE:
        return view.transpose(tuple(op.attr("perm")))
    return view.reshape(tuple(op.attr("shape")))


def _invert(op: Op, view: View, input_shape: tuple[int, ...]) -> View | None:
    """The view of a layout op's input given the view of its output."""
    if op.kind is OpKind.TRANSPOSE:
        perm = tuple(op.attr("perm"))
        return view.transpose(tuple(perm.index(i) for i in range(len(perm))))
    if op.kind is OpKind.RESHAPE:
        return view.reshape(input_shape)
    return None


def plan_storage(graph: Graph, dtype: DType, precise: frozenset[str] = frozenset()) -> StoragePlan:
    """Buffers and a view per value: element type `dtype` for floats, int32 for ids, and fp32
    for the parameters named in `precise` (biases and gains kept at accumulator precision)."""
    buffers: dict[str, Buffer] = {}
    views: dict[str, View] = {}
    outputs = set(graph.outputs)
    rerooted = _reroots(graph)
    joined = _joined(graph, rerooted)
    caches = {op.inputs[0] for op in graph.of_kind(OpKind.KV_APPEND)}

    def allocate(name: str, shape: tuple[int, ...], role: str, kind_dtype: DType) -> View:
        store = kind_dtype if kind_dtype is DType.int32 else DType.fp32 if name in precise else dtype
        buffers[name] = Buffer(name, shape, store, role)
        return View.contiguous(name, shape)

    for op in graph.ops:
        if op.name in views or op.name in caches:     # a cache gets its view at its append
            continue
        role = "output" if op.name in outputs else {OpKind.PARAM: "param", OpKind.INPUT: "input"}.get(op.kind, "temp")
        if op.kind in (OpKind.ALLREDUCE, OpKind.ALL_TO_ALL):   # in place: the ranks' values
            views[op.name] = views[op.inputs[0]]      # are reduced or exchanged where they lie
        elif op.kind.is_layout:
            view = _apply(op, views[op.inputs[0]])
            if view is None:
                raise GraphError(f"op '{op.name}' ({op.kind.value}): its layout is not a view of "
                                 f"'{op.inputs[0]}' and cannot be re-rooted on this target")
            views[op.name] = view
        elif op.name in joined:                       # writes straight into its concat's slice
            cat, axis, start = joined[op.name]
            if cat.name not in views:
                views[cat.name] = allocate(cat.name, cat.type.shape,
                                           "output" if cat.name in outputs else "temp", cat.type.dtype)
            views[op.name] = views[cat.name].slice(axis, start, start + op.type.shape[axis])
        elif op.name in rerooted:
            chain = rerooted[op.name]
            root = chain[-1]
            view = allocate(root.name, root.type.shape, "output" if root.name in outputs else "temp",
                            op.type.dtype)
            for layout_op in reversed(chain):
                views[layout_op.name] = view
                view = _invert(layout_op, view, graph[layout_op.inputs[0]].type.shape)
            views[op.name] = view
        else:
            views[op.name] = allocate(op.name, op.type.shape, role, op.type.dtype)
        if op.kind is OpKind.KV_APPEND:
            cache = graph[op.inputs[0]]
            views[cache.name] = views[op.name].slice(len(op.type.shape) - 2, 0, cache.type.shape[-2])
    return StoragePlan(buffers, views)


def _joined(graph: Graph, rerooted: dict[str, list[Op]]) -> dict[str, tuple[Op, int, int]]:
    """Compute ops whose only use is a concat (MoE expert outputs): each maps to (the concat,
    its axis, where its slice starts), so it writes its part in place and the concat moves
    nothing. A concat that is itself re-rooted keeps its inputs separate. The input of an
    all_gather is its rank's rows of the result, in place, always (the lowering needs it)."""
    out: dict[str, tuple[Op, int, int]] = {}
    for op in graph.of_kind(OpKind.ALL_GATHER):
        src = graph[op.inputs[0]]
        if (src.kind.is_source or src.kind.is_layout or src.name in graph.outputs
                or src.name in rerooted or [c.name for c in graph.consumers(src.name)] != [op.name]):
            raise GraphError(f"op '{op.name}' (all_gather): its input '{src.name}' must be a "
                             "computed value used by it alone, so it is stored in place")
        out[src.name] = (op, 0, op.attr("rank") * src.type.shape[0])
    for cat in graph.of_kind(OpKind.CONCAT):
        if cat.name in rerooted:
            continue
        axis, start = cat.attr("axis") % len(cat.type.shape), 0
        for name in cat.inputs:
            op = graph[name]
            if (not (op.kind.is_source or op.kind.is_layout) and name not in graph.outputs
                    and name not in rerooted and name not in out
                    and [c.name for c in graph.consumers(name)] == [cat.name]):
                out[name] = (cat, axis, start)
            start += op.type.shape[axis]
    return out


def _reroots(graph: Graph) -> dict[str, list[Op]]:
    """Compute ops whose only use is a layout chain ending in a reshape that cannot view them.

    Maps the producer to the chain (first layout op .. the reshape)."""
    out: dict[str, list[Op]] = {}
    for op in graph.ops:
        if op.kind.is_source or op.kind.is_layout or op.name in graph.outputs:
            continue
        chain, current = [], op
        view = View.contiguous(op.name, op.type.shape)
        while True:
            users = graph.consumers(current.name)
            if len(users) != 1 or not users[0].kind.is_layout or current.name in graph.outputs:
                break
            nxt = users[0]
            chain.append(nxt)
            view = _apply(nxt, view) if view is not None else None
            if view is None and nxt.kind is OpKind.RESHAPE:
                out[op.name] = chain
                break
            if view is None:
                break
            current = nxt
    return out
