"""Attention-only graphs for the PIM tests: q [1, H, S, Dh] (grouped as [1, Hkv, G, S, Dh]
when G > 1, as the decoder builds it) against a K/V cache of Hkv heads, with unit-scale
inputs so that a query row matched with the wrong key or softmax row moves the output by
its own size (whole models with small random weights hide that: near-uniform attention)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from arch import load_arch
from compiler.builder import GraphBuilder
from compiler.ir import Graph, OpKind
from compiler.reference import execute
from compiler.targets.data import read_value
from tessel.targets import TARGETS


def attention_graph(kv_heads: int, group: int, seq: int, cached: int, head_dim: int) -> Graph:
    """Decode (cached > 0: kv_append onto caches of `cached` positions) or prefill."""
    g = GraphBuilder(f"attention-{kv_heads}x{group}")
    heads, total = kv_heads * group, cached + seq
    q = g.op(OpKind.ADD, "q", [g.input("q_in", (1, heads, seq, head_dim)),
                               g.input("q_zero", (1, heads, seq, head_dim))])
    kv = []
    for which in ("k", "v"):
        new = g.op(OpKind.ADD, which, [g.input(f"{which}_in", (1, kv_heads, seq, head_dim)),
                                       g.input(f"{which}_zero", (1, kv_heads, seq, head_dim))])
        if cached:
            new = g.op(OpKind.KV_APPEND, f"{which}_all",
                       [g.input(f"{which}_cache", (1, kv_heads, cached, head_dim)), new])
        kv.append(new)
    k, v = kv
    if group > 1:
        q = g.op(OpKind.RESHAPE, "q.groups", [q], shape=(1, kv_heads, group, seq, head_dim))
        k = g.op(OpKind.RESHAPE, "k.groups", [k], shape=(1, kv_heads, 1, total, head_dim))
        v = g.op(OpKind.RESHAPE, "v.groups", [v], shape=(1, kv_heads, 1, total, head_dim))
    scores = g.op(OpKind.MATMUL, "scores", [q, k], transpose_b=True)
    probs = g.op(OpKind.SOFTMAX, "probs", [scores], scale=1 / np.sqrt(head_dim), causal=True)
    context = g.op(OpKind.MATMUL, "context", [probs, v])
    return g.build([context, *kv])


def attention_error(graph: Graph, seed: int = 0) -> float:
    """max |simulated - reference| / max |reference| of the context, inputs ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    feeds = {op.name: np.zeros(op.type.shape) if op.name.endswith("_zero") else rng.normal(size=op.type.shape)
             for op in graph.ops if op.kind is OpKind.INPUT}
    expected = execute(graph, {}, feeds)[graph.outputs[0]]
    arch, pim = load_arch("pim-gpt"), TARGETS["pim"]
    lowered = pim.compile(graph, arch)
    program = replace(lowered.program, data=lowered.initial_data(graph, {}, feeds))
    sim = pim.simulate(program, arch, functional=True)
    got = read_value(lambda s: sim.memory.read_symbol(program, s), lowered.plan, graph.outputs[0])
    return float(np.abs(got - expected).max() / np.abs(expected).max())
