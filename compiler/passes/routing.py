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

Where a recipe rounds the experts' inputs (the moe op's act_format, act_group, hidden_group:
compiler/passes/quantised_values.py), each expert's rows and gated hidden get a quantize op, as
the reference's moe rounds them.

perm, pick_j and slot_j are int32 graph inputs `<moe op>.perm`, `.pick<j>`, `.slot<j>` whose
values `routing_feeds` gives; each expert's token count is a shape, so an expert no token
chose has no ops and costs nothing. The decision comes from the router itself when numerics
run (the reference executor records it) or from a policy in timing-only runs
(`uniform`, `zipf:S`, `file:PATH`; seeded, so a run is reproducible).

A moe op whose tokens are split over `ranks` (expert parallelism by all-to-all) routes its own
tokens and reaches every rank's experts through two all-to-alls (`_Dispatch`); its choice is
every rank's tokens', rank-major, as the whole model's router made it.
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

__all__ = ["Routing", "moe_ops", "moe_routers", "route_graph", "routing_feeds", "policy_routing",
           "check_policy", "routing_summary", "POLICIES"]

POLICIES = ("router", "uniform", "zipf:S", "file:PATH")


def moe_routers(graph: Graph) -> frozenset[str]:
    """The router linears of `graph`'s mixtures of experts (each moe op's logits). Routing
    replaces a moe op by its experts' linears and keeps the router's linear, so a routed
    graph's routers are its unrouted graph's."""
    return frozenset(op.inputs[1] for op in graph.of_kind(OpKind.MOE))


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
    """The choice of every token the op routes: with its tokens split over ranks, every
    rank's (rank-major), since its experts serve them all."""
    tokens = graph[op.inputs[0]].type.shape[0] * op.attr("ranks", 1)
    k, n_experts = op.attr("top_k"), _experts(graph, op)
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
    order = _by_expert(flat, first, count)
    slot = np.zeros(tokens * k, dtype=np.int64)
    slot[order] = np.arange(len(order))
    return (order // k, slot.reshape(tokens, k),
            np.bincount(flat[order] - first, minlength=count), held.reshape(tokens, k))


def _by_expert(flat: np.ndarray, first: int, count: int) -> np.ndarray:
    """The pairs (index token * k + j of a flattened choice) whose expert is one of experts
    first..first+count-1, sorted by expert, then token."""
    pairs = np.flatnonzero((flat >= first) & (flat < first + count))
    return pairs[np.argsort(flat[pairs], kind="stable")]


def _held(graph: Graph, op: Op) -> tuple[int, int]:
    """(first expert, how many) a moe op holds: all the router's, or an expert-parallel
    shard's (`first_expert`)."""
    return op.attr("first_expert", 0), (len(op.inputs) - 2) // 3


def routing_feeds(graph: Graph, routing: Routing) -> dict[str, np.ndarray]:
    """The index inputs of the routed graph of `graph` (the unrouted one)."""
    feeds = {}
    for op in moe_ops(graph):
        choice = routing.choices[op.name]
        if op.attr("ranks") is not None:
            feeds.update(_Dispatch(graph, op, choice).feeds())
            continue
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
            choice = _check_choice(graph, op, routing.choices[op.name], "routing")
            if op.attr("ranks") is not None:
                _Dispatch(graph, op, choice).expand(g)
            else:
                _expand(g, graph, op, choice)
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
    picked = _router_weights(g, op, logits, tokens, n_experts,
                             [g.input(f"{m}.pick{j}", (tokens,), DType.int32) for j in range(k)])
    xp = g.op(OpKind.GATHER, f"{m}.permute",
              [x, g.input(f"{m}.perm", (int(counts.sum()),), DType.int32)])   # the held pairs
    outs, at = [], 0
    if count < n_experts:         # a shard: the other shards' experts weigh 0 here
        picked = [g.op(OpKind.MUL, f"{m}.held_weight{j}",
                       [picked[j], g.input(f"{m}.held{j}", (tokens, 1), DType.fp32)])
                  for j in range(k)]
    for e in np.nonzero(counts)[0]:
        e, n = int(e), int(counts[e])
        q = f"{m}.expert{first + e}"
        rows = g.op(OpKind.SLICE, f"{q}.tokens", [xp], axis=0, start=at, stop=at + n)
        outs.append(_expert(g, op, q, rows, *weights[3 * e: 3 * e + 3]))
        at += n
    ys = outs[0] if len(outs) == 1 else g.op(OpKind.CONCAT, f"{m}.experts", outs, axis=0)
    _combine(g, m, k, [g.op(OpKind.GATHER, f"{m}.unpermute{j}",
                            [ys, g.input(f"{m}.slot{j}", (tokens,), DType.int32)])
                       for j in range(k)], picked)


def _router_weights(g: GraphBuilder, op: Op, logits: str, tokens: int, n_experts: int,
                    picks: list[str]) -> list[str]:
    """The weight [T, 1] of each token's j-th choice: its router probability (renormalised
    over the chosen with norm_topk_prob), gathered by `picks[j]` (token * E + expert)."""
    m = op.name
    probs = g.op(OpKind.SOFTMAX, f"{m}.probs", [logits])
    flat = g.op(OpKind.RESHAPE, f"{m}.probs.flat", [probs], shape=(tokens * n_experts, 1))
    renormalise = op.attr("norm_topk_prob", False)
    picked = [g.op(OpKind.GATHER, f"{m}.{'prob' if renormalise else 'weight'}{j}", [flat, pick])
              for j, pick in enumerate(picks)]
    if renormalise:
        total = picked[0]
        for j in range(1, len(picked)):
            total = g.op(OpKind.ADD, f"{m}.prob_sum{j}", [total, picked[j]])
        picked = [g.op(OpKind.DIV, f"{m}.weight{j}", [p, total]) for j, p in enumerate(picked)]
    return picked


def _expert(g: GraphBuilder, op: Op, q: str, rows: str, gate: str, up: str, down: str) -> str:
    """One expert's gated MLP on its rows: down(silu(rows gate) * (rows up)); where the moe op
    rounds its experts' inputs (act_format), a quantize op on the rows and one on the gated
    hidden, each expert's a tensor of its own as the reference's moe rounds them."""
    rows = _rounded(g, op, rows, "act_group")
    act = g.op(OpKind.SILU, f"{q}.act", [g.op(OpKind.LINEAR, f"{q}.gate", [rows, gate])])
    gated = g.op(OpKind.MUL, f"{q}.gated", [act, g.op(OpKind.LINEAR, f"{q}.up", [rows, up])])
    return g.op(OpKind.LINEAR, f"{q}.down", [_rounded(g, op, gated, "hidden_group"), down])


def _rounded(g: GraphBuilder, op: Op, value: str, group: str) -> str:
    fmt = op.attr("act_format")
    if fmt is None:
        return value
    size = op.attr(group)
    return g.op(OpKind.QUANTIZE, f"{value}.{fmt}" + (f".g{size}" if size else ""), [value],
                format=fmt, group=size)


def _combine(g: GraphBuilder, m: str, k: int, results: list[str], weights: list[str]) -> None:
    """The moe op's value, named `m`: sum over j of each token's j-th result times its weight."""
    total = None
    for j in range(k):
        last = j == k - 1
        part = g.op(OpKind.MUL, m if last and k == 1 else f"{m}.scaled{j}", [results[j], weights[j]])
        total = part if total is None else g.op(OpKind.ADD, m if last else f"{m}.sum{j}", [total, part])


class _Dispatch:
    """A mixture of experts whose tokens are split over `ranks` (expert parallelism by
    all-to-all, Megatron's token dispatcher): this rank routes its own tokens, sends each
    (token, choice) pair to the rank holding its expert, runs its experts on the pairs every
    rank sent it, returns the results, and combines its tokens' weighted results.

        send  = gather(x, send)           [n*C, D]  chunk q: the pairs for rank q's experts
        recv  = all_to_all(send)          [n*C, D]  chunk s: rank s's pairs for my experts
        y_e   = expert e (gather(recv, rows_e))     each of my experts that got pairs
        ret   = gather(concat(y_e), ret)  [n*C, D]  each received pair's result, in place
        back  = all_to_all(ret)           [n*C, D]  chunk q: my pairs' results from rank q
        out   = sum_j gather(back, back_j) * w_j    [T/n, D]

    C, the capacity, is the most pairs one rank sends another: the exchanges are dense (NCCL's
    all-to-all moves equal chunks), short chunks padded with row 0, whose results nobody
    reads. The layout is a function of every rank's choice, so every rank derives the same C.
    Pairs go to a rank sorted by expert, then token."""

    def __init__(self, graph: Graph, op: Op, choice: np.ndarray) -> None:
        self.op, self.graph = op, graph
        n, r = op.attr("ranks"), op.attr("rank")
        t, k = graph[op.inputs[0]].type.shape[0], op.attr("top_k")
        self.n_experts, per = _experts(graph, op), _experts(graph, op) // n
        self.t, self.k, self.first = t, k, op.attr("first_expert")
        flat = [choice[s * t:(s + 1) * t].reshape(-1) for s in range(n)]   # rank s's tokens
        pairs = [[_by_expert(f, q * per, per) for q in range(n)] for f in flat]
        self.capacity = c = max(len(p) for row in pairs for p in row)
        self.send = np.zeros(n * c, np.int64)
        self.back = np.zeros((k, t), np.int64)
        for q, p in enumerate(pairs[r]):
            self.send[q * c:q * c + len(p)] = p // k
            self.back[p % k, p // k] = q * c + np.arange(len(p))
        received = [(s, i, int(flat[s][pair])) for s in range(n) for i, pair in enumerate(pairs[s][r])]
        self.rows = {e: np.array([s * c + i for s, i, x in received if x == e], np.int64)
                     for e in range(self.first, self.first + per)}
        self.rows = {e: ids for e, ids in self.rows.items() if len(ids)}
        at, self.ret = 0, np.zeros(n * c, np.int64)
        for e, ids in self.rows.items():
            self.ret[ids] = at + np.arange(len(ids))
            at += len(ids)
        self.pick = np.arange(t)[None, :] * self.n_experts + choice[r * t:(r + 1) * t].T

    def feeds(self) -> dict[str, np.ndarray]:
        m = self.op.name
        out = {f"{m}.send": self.send, f"{m}.return": self.ret}
        out.update({f"{m}.rows{e}": ids for e, ids in self.rows.items()})
        for j in range(self.k):
            out[f"{m}.pick{j}"], out[f"{m}.back{j}"] = self.pick[j], self.back[j]
        if not self.rows:
            out[f"{m}.idle"] = np.zeros((len(self.send), 1), np.float32)
        return {name: v.astype(np.float32 if name.endswith(".idle") else np.int32)
                for name, v in out.items()}

    def expand(self, g: GraphBuilder) -> None:
        op, m, k, t = self.op, self.op.name, self.k, self.t
        x, logits, *weights = op.inputs
        n, r = op.attr("ranks"), op.attr("rank")
        i32 = DType.int32
        weight = _router_weights(g, op, logits, t, self.n_experts,
                                 [g.input(f"{m}.pick{j}", (t,), i32) for j in range(k)])
        send = g.op(OpKind.GATHER, f"{m}.dispatch", [x, g.input(f"{m}.send", (len(self.send),), i32)])
        recv = g.op(OpKind.ALL_TO_ALL, f"{m}.received", [send], ranks=n, rank=r)
        outs = []
        for e, ids in self.rows.items():
            gate, up, down = weights[3 * (e - self.first): 3 * (e - self.first) + 3]
            q = f"{m}.expert{e}"
            rows = g.op(OpKind.GATHER, f"{q}.tokens", [recv, g.input(f"{m}.rows{e}", (len(ids),), i32)])
            outs.append(_expert(g, op, q, rows, gate, up, down))
        if not outs:                  # no pair for my experts: return zeros
            ret = g.op(OpKind.MUL, f"{m}.returned", [recv, g.input(f"{m}.idle", (len(self.send), 1), DType.fp32)])
        else:
            ys = outs[0] if len(outs) == 1 else g.op(OpKind.CONCAT, f"{m}.experts", outs, axis=0)
            ret = g.op(OpKind.GATHER, f"{m}.returned", [ys, g.input(f"{m}.return", (len(self.ret),), i32)])
        back = g.op(OpKind.ALL_TO_ALL, f"{m}.results", [ret], ranks=n, rank=r)
        _combine(g, m, k, [g.op(OpKind.GATHER, f"{m}.unpermute{j}",
                                [back, g.input(f"{m}.back{j}", (t,), i32)]) for j in range(k)], weight)


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
