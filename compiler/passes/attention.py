"""Attention chains: the scores -> softmax -> context pattern a target may lower as one kernel.

A chain is `scores = q @ k^T` (a transpose_b matmul), `probs = softmax(scores)` over the
last axis and `context = probs @ v`, where scores and probs have no other use and are not
graph outputs: a fused lowering never writes them. q [..., S, D], k and v [..., T, D] (k
and v may broadcast over the axes where q has a group of heads, grouped-query attention's
[B, Hkv, G, S, D] x [B, Hkv, 1, T, D]). The IR keeps its three ops; this analysis only names
the chains, so every target without a fused kernel lowers them as before (docs/systolic.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph, Op, OpKind

__all__ = ["AttentionChain", "find_attention"]


@dataclass(frozen=True, slots=True)
class AttentionChain:
    """One attention: its three ops, the softmax's attributes and the shapes it works on."""

    scores: str
    probs: str
    context: str
    q: str
    k: str
    v: str
    scale: float
    causal: bool
    window: int | None
    batch: tuple[int, ...]       # q's leading axes
    s: int                       # queries per matrix
    t: int                       # keys
    d: int                       # head dimension

    @property
    def name(self) -> str:
        """The op mark of the fused kernel: the scores op's prefix + 'attention'."""
        return self.scores.rsplit(".", 1)[0] + ".attention"

    @property
    def instances(self) -> int:
        """(batch, query head) pairs: one S x T attention each."""
        n = 1
        for b in self.batch:
            n *= b
        return n


def _only_use(graph: Graph, name: str, consumer: Op) -> bool:
    users = graph.consumers(name)
    return (name not in graph.outputs and len(users) == 1 and users[0].name == consumer.name
            and consumer.inputs.count(name) == 1)


def _chain(graph: Graph, scores: Op) -> AttentionChain | None:
    if scores.kind is not OpKind.MATMUL or not scores.attr("transpose_b", False) or len(scores.inputs) != 2:
        return None
    users = graph.consumers(scores.name)
    if len(users) != 1 or users[0].kind is not OpKind.SOFTMAX:
        return None
    probs = users[0]
    users = graph.consumers(probs.name)
    if len(users) != 1 or users[0].kind is not OpKind.MATMUL or users[0].inputs[0] != probs.name:
        return None
    context = users[0]
    if (context.attr("transpose_b", False) or not _only_use(graph, scores.name, probs)
            or not _only_use(graph, probs.name, context)):
        return None
    q, k = (graph[n].type.shape for n in scores.inputs)
    v = graph[context.inputs[1]].type.shape
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q) or k[-2] != v[-2] or v[-1] != q[-1]:
        return None
    return AttentionChain(scores.name, probs.name, context.name, *scores.inputs, context.inputs[1],
                          float(probs.attr("scale", 1.0)), bool(probs.attr("causal", False)),
                          probs.attr("window"), tuple(q[:-2]), q[-2], k[-2], q[-1])


def find_attention(graph: Graph) -> tuple[AttentionChain, ...]:
    """Every scores -> softmax -> context chain of `graph`, in program order."""
    chains = (_chain(graph, op) for op in graph.of_kind(OpKind.MATMUL))
    return tuple(c for c in chains if c is not None)
