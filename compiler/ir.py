"""Graph IR: one immutable op node type held in a frozen networkx DiGraph.

Every later stage (passes, lowering, the reference executor, cost reports) reads this
structure, so it is deliberately small: an `Op` names its inputs, carries its result
`TensorType` and a tuple of attributes; the `Graph` adds edges and a stable topological
order. Op semantics (shape inference, FLOPs, bytes) live in `compiler.ops`.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx

from isa import DType

__all__ = ["DType", "TensorType", "OpKind", "Op", "Graph", "GraphError", "freeze_attrs", "subgraph"]


class GraphError(ValueError):
    """A malformed graph or graph input; the message names the op or the place."""


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape and element type of one tensor."""

    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self) -> None:
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise GraphError(f"tensor shape {list(self.shape)} must hold non-negative integers")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def size_bytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.name}[{', '.join(map(str, self.shape))}]"


class OpKind(enum.Enum):
    """Every op the IR knows; `compiler.ops` must give each one a rule."""

    # sources: values from outside the graph
    INPUT = "input"          # fed at run time (token ids, KV cache)
    PARAM = "param"          # weights
    # compute
    EMBEDDING = "embedding"  # table[ids]
    MATMUL = "matmul"        # a @ b (or a @ b^T), batched over leading dims
    LINEAR = "linear"        # x @ w + bias
    ADD = "add"              # broadcasting element-wise
    MUL = "mul"
    LAYERNORM = "layernorm"
    GELU = "gelu"            # tanh approximation (GPT-2's gelu_new)
    SOFTMAX = "softmax"      # softmax(scale * x) over the last axis, optionally causal
    KV_APPEND = "kv_append"  # cache ++ new along the sequence axis (-2)
    RMSNORM = "rmsnorm"      # x / sqrt(mean(x^2) + eps) * gain over the last axis
    ROPE = "rope"            # rotary position embedding of [..., S, head_dim] (rotate_half pairs)
    SILU = "silu"            # x * sigmoid(x)
    DIV = "div"              # broadcasting element-wise a / b
    GATHER = "gather"        # table[ids]: rows of a computed 2-D value (MoE permute/unpermute)
    CONCAT = "concat"        # inputs joined along one axis
    MOE = "moe"              # routed experts (top-k of softmax(router logits)); expanded before lowering
    QUANTIZE = "quantize"    # x read back from a narrow format, scales from its own values (isa.formats)
    # communication: collectives between the devices of a parallel plan (compiler.parallel)
    ALLREDUCE = "allreduce"  # sum of one tensor over `ranks` tensor-parallel devices (ring order)
    ALL_GATHER = "all_gather"  # the ranks' tensors joined along axis 0, rank order
    ALL_TO_ALL = "all_to_all"  # chunk c (axis 0) to rank c; chunk c of the result from rank c
    # layout: metadata only, no data moved
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    SLICE = "slice"

    @property
    def is_source(self) -> bool:
        return self in (OpKind.INPUT, OpKind.PARAM)

    @property
    def is_collective(self) -> bool:
        """Computed with the other ranks of a parallel plan (on the link, sim/multi.py)."""
        return self.coll_kind is not None

    @property
    def coll_kind(self) -> str | None:
        """The link's collective that computes this op (the ISA's `coll` kind), or None."""
        return _COLL_KINDS.get(self.value)

    @property
    def is_routed(self) -> bool:
        """Resolved into ordinary ops by compiler.passes.routing before any lowering."""
        return self is OpKind.MOE

    @property
    def is_layout(self) -> bool:
        return self in (OpKind.RESHAPE, OpKind.TRANSPOSE, OpKind.SLICE)


_COLL_KINDS = {"allreduce": "all_reduce", "all_gather": "all_gather", "all_to_all": "all_to_all"}


def freeze_attrs(attrs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted, hashable attribute tuple (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))


@dataclass(frozen=True, slots=True)
class Op:
    """One node: its name, kind, input names (in order), result type and attributes."""

    name: str
    kind: OpKind
    inputs: tuple[str, ...]
    type: TensorType
    attrs: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def exchanges(self) -> bool:
        """Needs the other ranks' values: a collective, or a mixture of experts whose tokens
        are split over the ranks (`ranks`: expert parallelism by all-to-all)."""
        return self.kind.is_collective or (self.kind is OpKind.MOE and self.attr("ranks") is not None)

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


class Graph:
    """An immutable DAG of ops with named outputs.

    The networkx DiGraph (`.nx`, frozen) has one node per op name with the `Op` under the
    attribute "op", and an edge from each input to its consumer (attribute "index": the
    operand position). `ops` is a topological order that keeps construction order among
    independent ops, so dumps and per-op reports read like the model's source.
    """

    __slots__ = ("name", "nx", "ops", "outputs", "_by_name")

    def __init__(self, name: str, ops: Iterable[Op], outputs: Sequence[str]) -> None:
        ops = tuple(ops)
        g = nx.DiGraph(name=name)
        by_name: dict[str, Op] = {}
        for op in ops:
            if op.name in by_name:
                raise GraphError(f"graph {name}: duplicate op name '{op.name}'")
            by_name[op.name] = op
            g.add_node(op.name, op=op)
        for op in ops:
            for index, src in enumerate(op.inputs):
                if src not in by_name:
                    raise GraphError(f"graph {name}: op '{op.name}' reads unknown value '{src}'")
                g.add_edge(src, op.name, index=index)
        for out in outputs:
            if out not in by_name:
                raise GraphError(f"graph {name}: output '{out}' is not an op")
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            raise GraphError(f"graph {name}: cycle through '{cycle[0][0]}'")
        position = {op.name: i for i, op in enumerate(ops)}
        order = nx.lexicographical_topological_sort(g, key=position.__getitem__)
        self.name = name
        self.nx = nx.freeze(g)
        self.ops: tuple[Op, ...] = tuple(by_name[n] for n in order)
        self.outputs: tuple[str, ...] = tuple(outputs)
        self._by_name = by_name

    def __getitem__(self, name: str) -> Op:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.ops)

    def of_kind(self, *kinds: OpKind) -> tuple[Op, ...]:
        return tuple(op for op in self.ops if op.kind in kinds)

    @property
    def inputs(self) -> tuple[Op, ...]:
        return self.of_kind(OpKind.INPUT)

    @property
    def params(self) -> tuple[Op, ...]:
        return self.of_kind(OpKind.PARAM)

    def consumers(self, name: str) -> tuple[Op, ...]:
        return tuple(self._by_name[n] for n in self.nx.successors(name))

    def input_types(self, op: Op) -> tuple[TensorType, ...]:
        return tuple(self._by_name[n].type for n in op.inputs)


def subgraph(graph: Graph, keep: Callable[[Op], bool], name: str | None = None) -> Graph:
    """The ops of `graph` that `keep`, as a graph of their own: a value they read from outside
    becomes an input of its type (a weight stays a weight), and a kept value read outside or
    an output of `graph` is an output. What a part of a graph costs on its own is this graph's
    cost (the serving step costs by parts, tessel/serve/simulated.py)."""
    kept = [op for op in graph.ops if keep(op)]
    names = {op.name for op in kept}
    ops: list[Op] = []
    for op in kept:
        for src in op.inputs:
            if src not in names:
                outer = graph[src]
                ops.append(outer if outer.kind.is_source else Op(src, OpKind.INPUT, (), outer.type))
                names.add(src)
        ops.append(op)
    outputs = [op.name for op in kept if not op.kind.is_source and (
        op.name in graph.outputs or any(not keep(c) for c in graph.consumers(op.name)))]
    return Graph(name or graph.name, ops, outputs)

