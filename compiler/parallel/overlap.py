"""TokenWeave's split (arXiv 2505.11329): a tensor-parallel device's batch in two halves whose
compute and all-reduces interleave, so one half's all-reduce runs on the link while the other
half computes (`--set overlap=split`, docs/parallel.md).

`split_batch` rewrites a device's finished graph rather than each frontend building halves:
every value that depends on an input has the batch (or batch x tokens) as its leading axis, so
one rule splits every family. The halves share the parameters, so each reads every weight
again: the price of the overlap, which the simulation shows (a memory-bound decode step may
get slower).

The graph's inputs and outputs keep their names and shapes, so feeds, weights, the stage
hand-off and the logits check are those of the unsplit graph:
- a half reads its rows of an input through a slice (a view, no data moved);
- each decode KV append stays one op over the whole batch (the cache is appended in place),
  its new rows the two halves' joined; each half's attention reads its rows of the result;
- every graph output is the two halves joined along the batch (each half writes its rows in
  place where the storage plan can, compiler/passes/storage.py).

The order is the interleave: half 0's ops up to and including its all-reduce, then half 1's
up to its own, and so on, so the lowering emits them in that order on every queue.
"""
from __future__ import annotations

import dataclasses

from compiler.builder import GraphBuilder
from compiler.ir import Graph, GraphError, Op, OpKind
from compiler.parallel.shard import ShardGraph

__all__ = ["HALVES", "split_batch", "split_part"]

HALVES = 2


def split_part(part: ShardGraph) -> ShardGraph:
    """`part` with its graph split (its parameters and their slices unchanged)."""
    return dataclasses.replace(part, graph=split_batch(part.graph))


def split_batch(graph: Graph) -> Graph:
    """The graph computing the same outputs from the same inputs in two interleaved halves of
    its batch. Refuses (GraphError, one line) a graph it cannot split exactly."""
    inputs = [op for op in graph.ops if op.kind is OpKind.INPUT]
    batch = {op.type.shape[0] for op in inputs if op.type.shape}
    if len(batch) != 1:
        raise GraphError(f"--set overlap=split: the inputs of {graph.name} do not share one batch "
                         f"axis ({sorted(batch)})")
    (full,) = batch
    if full % HALVES:
        raise GraphError(f"--set overlap=split: a batch of {full} does not split into {HALVES} "
                         "halves (--batch must be even)")
    return _Splitter(graph, full // HALVES).run()


class _Splitter:
    def __init__(self, graph: Graph, rows: int) -> None:
        self.graph, self.rows = graph, rows
        self.b = GraphBuilder(f"{graph.name}.split")
        self.batched: set[str] = set()               # values that depend on an input
        self.local: dict[tuple[str, int], str] = {}  # (value, half) -> the half's value
        self.pending: tuple[list[Op], ...] = tuple([] for _ in range(HALVES))

    def run(self) -> Graph:
        outputs = set(self.graph.outputs)
        for op in self.graph.ops:
            if op.kind.is_source:
                self.b.source(op.kind, op.name, op.type.shape, op.type.dtype)
                if op.kind is OpKind.INPUT:
                    self.batched.add(op.name)
                continue
            if not any(src in self.batched for src in op.inputs):
                self._add(op)                        # parameters only: computed once
                continue
            self.batched.add(op.name)
            self._refuse(op)
            if op.kind is OpKind.KV_APPEND:
                self._append(op)
            elif op.name in outputs:
                for h in range(HALVES):
                    self.pending[h].append(self._half(op, h))
                self._join(op)
            else:
                for h in range(HALVES):
                    self.pending[h].append(self._half(op, h))
                    if op.kind is OpKind.ALLREDUCE:  # this half up to its all-reduce
                        self._flush(h)
        for h in range(HALVES):
            self._flush(h)
        return self.b.build(self.graph.outputs)

    def _refuse(self, op: Op) -> None:
        """Ops whose split is not the same op on half the rows."""
        if op.kind is OpKind.MOE:
            raise GraphError(f"--set overlap=split: op '{op.name}' routes experts over the whole "
                             "batch; splitting a mixture of experts is not built")
        shape = op.type.shape
        moves_rows = (op.kind is OpKind.TRANSPOSE and op.attr("perm")[0] != 0
                      or op.kind in (OpKind.SLICE, OpKind.CONCAT)
                      and op.attr("axis") % len(shape) == 0)
        if moves_rows or not shape or shape[0] % HALVES:
            raise GraphError(f"--set overlap=split: op '{op.name}' ({op.kind.value}) does not keep "
                             f"the batch on its leading axis {list(shape)}")

    def _half(self, op: Op, h: int) -> Op:
        """Half h's copy of `op`, reading half h's values (its own rows of a shared one)."""
        attrs = dict(op.attrs)
        if op.kind is OpKind.RESHAPE:
            attrs["shape"] = (op.attr("shape")[0] // HALVES, *op.attr("shape")[1:])
        inputs = tuple(self._rows(src, h) if src in self.batched else src for src in op.inputs)
        name = f"{op.name}.h{h}"
        self.local[op.name, h] = name
        return dataclasses.replace(op, name=name, inputs=inputs, attrs=tuple(attrs.items()))

    def _rows(self, name: str, h: int) -> str:
        """Half h's value of `name`: its own copy, or its rows of the shared whole."""
        if (name, h) not in self.local:
            self.local[name, h] = self.b.op(OpKind.SLICE, f"{name}.rows{h}", [name], axis=0,
                                            start=h * self.rows, stop=(h + 1) * self.rows)
        return self.local[name, h]

    def _join(self, op: Op) -> None:
        """`op` as the two halves' results joined along the batch, under its own name; each
        half reads its rows of it from here on."""
        for h in range(HALVES):
            self._flush(h)
        parts = [self.local.pop((op.name, h)) for h in range(HALVES)]
        self.b.op(OpKind.CONCAT, op.name, parts, axis=0)

    def _append(self, op: Op) -> None:
        """One append over the whole batch: the cache in place, the halves' new rows joined."""
        cache, new = op.inputs
        for h in range(HALVES):
            self._flush(h)
        rows = [self._rows(new, h) for h in range(HALVES)]
        joined = self.b.op(OpKind.CONCAT, f"{new}.joined", rows, axis=0)
        self.b.op(OpKind.KV_APPEND, op.name, [cache, joined], **dict(op.attrs))

    def _flush(self, h: int) -> None:
        for op in self.pending[h]:
            self._add(op)
        self.pending[h].clear()

    def _add(self, op: Op) -> None:
        self.b.op(op.kind, op.name, op.inputs, **dict(op.attrs))
