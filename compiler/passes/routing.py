"""Routing: which experts each token uses, decided before lowering, and the graph it yields.

A `moe` op's experts are data-dependent, so targets never see one: `route_graph` replaces it,
given a `Routing`, by the permute / grouped-experts / unpermute pattern of MoE kernels, in
ordinary ops:

    probs   = softmax(router logits)                  [T, E]
    p_j     = gather(probs as [T*E, 1], pick_j)       [T, 1]   the j-th choice's probability
    w_j     = p_j / (p_0 + ... + p_{k-1})             (norm_topk_prob; else w_j = p_j)
    xp      = gather(x, perm)                         [N, D]   tokens sorted by expert, N = T*k
    y_e     = down(silu(gate(xp[rows of e])) * up(...))  for each expert that got tokens
    Y       = concat(y_e ...)                         [N, D]
    out     = sum_j gather(Y, slot_j) * w_j           [T, D]

perm, pick_j and slot_j are int32 graph inputs `<moe op>.perm`, `.pick<j>`, `.slot<j>` whose
values `routing_feeds` gives; each expert's token count is a shape, so an expert no token
chose has no ops and costs nothing. The decision comes from the router itself when numerics
run (the reference executor records it) or from a policy in timing-only runs
(`uniform`, `zipf:S`, `file:PATH`; seeded, so a run is reproducible).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from compiler.builder import GraphBuilder
from compiler.ir import DType, Graph, GraphError, Op, OpKind

__all__ = ["Routing", "moe_ops", "route_graph", "routing_feeds", "policy_routing",
           "check_policy", "routing_summary", "POLICIES"]

POLICIES = ("router", "uniform", "zipf:S", "file:PATH")


@dataclass(frozen=True)
class Routing:
    """Each moe op's choice: expert ids [tokens, top_k] (distinct per token), and where the
    decision came from (shown in reports)."""

    choices: Mapping[str, np.ndarray]
    provenance: str


def moe_ops(graph: Graph) -> tuple[Op, ...]:
    return graph.of_kind(OpKind.MOE)


def _experts(graph: Graph, op: Op) -> int:
    return graph[op.inputs[1]].type.shape[1]


def _check_choice(graph: Graph, op: Op, choice: np.ndarray, where: str) -> np.ndarray:
    tokens, k, n_experts = graph[op.inputs[0]].type.shape[0], op.attr("top_k"), _experts(graph, op)
    choice = np.asarray(choice)
    if choice.shape != (tokens, k):
        raise GraphError(f"{where}: '{op.name}' needs [{tokens} tokens, {k} experts], got "
                         f"{list(choice.shape)}")
    if not np.issubdtype(choice.dtype, np.integer) or choice.min() < 0 or choice.max() >= n_experts:
        raise GraphError(f"{where}: '{op.name}' names an expert outside 0..{n_experts - 1}")
    ordered = np.sort(choice, axis=1)
    repeats = np.nonzero(ordered[:, 1:] == ordered[:, :-1])
    if repeats[0].size:
        t, j = int(repeats[0][0]), int(repeats[1][0])
        raise GraphError(f"{where}: '{op.name}' token {t} chooses expert {int(ordered[t, j])} twice")
    return choice.astype(np.int64)


def _layout(choice: np.ndarray, first: int, count: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(perm [N], slot [T, k], counts [count], held [T, k]): the pairs (token, j) whose expert
    is one of experts first..first+count-1 (all of them, but on an expert-parallel shard),
    sorted by expert then token; a pair of another expert (held False) gets slot 0."""
    tokens, k = choice.shape
    flat = choice.reshape(-1)
    held = (flat >= first) & (flat < first + count)
    pairs = np.flatnonzero(held)
    order = pairs[np.argsort(flat[pairs], kind="stable")]   # pair index t*k + j, by expert
    slot = np.zeros(tokens * k, dtype=np.int64)
    slot[order] = np.arange(len(order))
    return (order // k, slot.reshape(tokens, k),
            np.bincount(flat[pairs] - first, minlength=count), held.reshape(tokens, k))


def _held(graph: Graph, op: Op) -> tuple[int, int]:
    """(first expert, how many) a moe op holds: all the router's, or an expert-parallel
    shard's (`first_expert`)."""
    return op.attr("first_expert", 0), (len(op.inputs) - 2) // 3


def routing_feeds(graph: Graph, routing: Routing) -> dict[str, np.ndarray]:
    """The index inputs of the routed graph of `graph` (the unrouted one)."""
    feeds = {}
    for op in moe_ops(graph):
        choice = routing.choices[op.name]
        n_experts = _experts(graph, op)
        first, count = _held(graph, op)
        perm, slot, counts, held = _layout(choice, first, count)
        if not counts.any():                 # a shard none of whose experts was chosen
            feeds[f"{op.name}.none"] = np.zeros((choice.shape[0], 1), np.float32)
            continue
        feeds[f"{op.name}.perm"] = perm.astype(np.int32)
        for j in range(choice.shape[1]):
            feeds[f"{op.name}.pick{j}"] = (np.arange(choice.shape[0]) * n_experts + choice[:, j]).astype(np.int32)
            feeds[f"{op.name}.slot{j}"] = slot[:, j].astype(np.int32)
            if count < n_experts:
                feeds[f"{op.name}.held{j}"] = held[:, j:j + 1].astype(np.float32)
    return feeds


def route_graph(graph: Graph, routing: Routing) -> Graph:
    """`graph` with every moe op expanded for `routing` (the same graph when it has none)."""
    if not moe_ops(graph):
        return graph
    g = GraphBuilder(graph.name)
    for op in graph.ops:
        if op.kind.is_source:
            g.source(op.kind, op.name, op.type.shape, op.type.dtype)
        elif op.kind is OpKind.MOE:
            _expand(g, graph, op, _check_choice(graph, op, routing.choices[op.name], "routing"))
        else:
            g.op(op.kind, op.name, op.inputs, **dict(op.attrs))
    return g.build(graph.outputs)


def _expand(g: GraphBuilder, graph: Graph, op: Op, choice: np.ndarray) -> None:
    m, (x, logits, *weights) = op.name, op.inputs
    tokens, k = choice.shape
    n_experts, (first, count) = _experts(graph, op), _held(graph, op)
    _, _, counts, _ = _layout(choice, first, count)
    if not counts.any():          # an expert-parallel shard no token chose: its share is 0
        g.op(OpKind.MUL, m, [x, g.input(f"{m}.none", (tokens, 1), DType.fp32)])
        return
    probs = g.op(OpKind.SOFTMAX, f"{m}.probs", [logits])
    flat = g.op(OpKind.RESHAPE, f"{m}.probs.flat", [probs], shape=(tokens * n_experts, 1))
    renormalise = op.attr("norm_topk_prob", False)
    picked = [g.op(OpKind.GATHER, f"{m}.{'prob' if renormalise else 'weight'}{j}",
                   [flat, g.input(f"{m}.pick{j}", (tokens,), DType.int32)]) for j in range(k)]
    if renormalise:
        total = picked[0]
        for j in range(1, k):
            total = g.op(OpKind.ADD, f"{m}.prob_sum{j}", [total, picked[j]])
        picked = [g.op(OpKind.DIV, f"{m}.weight{j}", [picked[j], total]) for j in range(k)]
    xp = g.op(OpKind.GATHER, f"{m}.permute",
              [x, g.input(f"{m}.perm", (int(counts.sum()),), DType.int32)])   # the held pairs
    outs, at = [], 0
    if count < n_experts:         # a shard: the other shards' experts weigh 0 here
        picked = [g.op(OpKind.MUL, f"{m}.held_weight{j}",
                       [picked[j], g.input(f"{m}.held{j}", (tokens, 1), DType.fp32)])
                  for j in range(k)]
    for e in np.nonzero(counts)[0]:
        e, n = int(e), int(counts[e])
        gate, up, down = weights[3 * e: 3 * e + 3]
        q = f"{m}.expert{first + e}"
        rows = g.op(OpKind.SLICE, f"{q}.tokens", [xp], axis=0, start=at, stop=at + n)
        act = g.op(OpKind.SILU, f"{q}.act", [g.op(OpKind.LINEAR, f"{q}.gate", [rows, gate])])
        gated = g.op(OpKind.MUL, f"{q}.gated", [act, g.op(OpKind.LINEAR, f"{q}.up", [rows, up])])
        outs.append(g.op(OpKind.LINEAR, f"{q}.down", [gated, down]))
        at += n
    ys = outs[0] if len(outs) == 1 else g.op(OpKind.CONCAT, f"{m}.experts", outs, axis=0)
    total = None
    for j in range(k):
        back = g.op(OpKind.GATHER, f"{m}.unpermute{j}", [ys, g.input(f"{m}.slot{j}", (tokens,), DType.int32)])
        last = j == k - 1
        part = g.op(OpKind.MUL, m if last and k == 1 else f"{m}.scaled{j}", [back, picked[j]])
        total = part if total is None else g.op(OpKind.ADD, m if last else f"{m}.sum{j}", [total, part])


# -- policies --------------------------------------------------------------------------
def check_policy(spec: str) -> str:
    """A routing policy as given to --routing, refused in one line when malformed."""
    kind, _, arg = spec.partition(":")
    if kind in ("router", "uniform") and not arg:
        return spec
    if kind == "zipf":
        try:
            s = float(arg)
        except ValueError:
            s = math.nan
        if math.isfinite(s) and s > 0:
            return spec
        raise GraphError(f"--routing {spec}: zipf needs a positive finite exponent, e.g. zipf:1.2")
    if kind == "file" and arg:
        return spec
    raise GraphError(f"--routing {spec!r}: expected one of {', '.join(POLICIES)}")


def policy_routing(graph: Graph, spec: str, seed: int = 0) -> Routing:
    """A timing-only decision for every moe op of `graph` from policy `spec`:
    uniform  - each token's top_k distinct experts drawn uniformly;
    zipf:S   - expert popularity 1/rank^S (a seeded rank order per layer), top_k distinct
               experts per token drawn by popularity (Gumbel top-k);
    file:P   - JSON {"experts": [per moe layer in graph order: [per token: [top_k ids]]]}."""
    kind, _, arg = check_policy(spec).partition(":")
    if kind == "router":
        raise GraphError("--routing router needs numerics (the router's choice is computed)")
    if kind == "file":
        return _from_file(graph, Path(arg))
    choices = {}
    for op in moe_ops(graph):
        tokens, k, n_experts = graph[op.inputs[0]].type.shape[0], op.attr("top_k"), _experts(graph, op)
        rng = np.random.default_rng([seed, zlib.crc32(op.name.encode())])
        if kind == "uniform":
            keys = rng.random((tokens, n_experts))
        else:
            popularity = 1.0 / (1.0 + rng.permutation(n_experts)) ** float(arg)
            keys = np.log(popularity)[None, :] + rng.gumbel(size=(tokens, n_experts))
        choices[op.name] = np.argsort(-keys, axis=1, kind="stable")[:, :k]
    return Routing(choices, f"{spec} (seed {seed})")


def _from_file(graph: Graph, path: Path) -> Routing:
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise GraphError(f"{path}: cannot read routing file ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphError(f"{path}: not a JSON routing file ({e})") from None
    ops = moe_ops(graph)
    layers = raw.get("experts") if isinstance(raw, dict) else None
    if not isinstance(layers, list) or len(layers) != len(ops):
        got = len(layers) if isinstance(layers, list) else type(layers).__name__
        raise GraphError(f"{path}: field 'experts' must list {len(ops)} moe layers, got {got}")
    choices = {}
    for i, (op, layer) in enumerate(zip(ops, layers)):
        try:
            arr = np.asarray(layer)
        except ValueError:
            arr = np.asarray([])
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer) and arr.size:
            raise GraphError(f"{path}: field 'experts[{i}]' must hold integer expert ids")
        choices[op.name] = _check_choice(graph, op, arr, f"{path}: field 'experts[{i}]'")
    return Routing(choices, f"file:{path}")


def routing_summary(graph: Graph, routing: Routing, itemsize: int) -> dict:
    """What the report shows: the decision's source, tokens per expert (summed over the moe
    layers), experts touched per layer, and the expert weight bytes a pass reads (each touched
    expert's three matrices once, at `itemsize` bytes per weight)."""
    ops = moe_ops(graph)
    if not ops:
        return {}
    per_expert = np.zeros(max(_experts(graph, op) for op in ops), dtype=np.int64)
    touched, weight_bytes = [], 0
    for op in ops:
        counts = np.bincount(routing.choices[op.name].reshape(-1), minlength=_experts(graph, op))
        per_expert[:len(counts)] += counts
        touched.append(int(np.count_nonzero(counts)))
        per_expert_elems = sum(graph[w].type.numel for w in op.inputs[2:5])
        weight_bytes += touched[-1] * per_expert_elems * itemsize
    return {"routing": routing.provenance, "tokens_per_expert": per_expert.tolist(),
            "experts_touched": touched, "expert_weight_bytes": weight_bytes}
