"""The numpy reference run of a whole parallel plan: the oracle for partitioned models.

A stage's tensor-parallel ranks run together, op by op (compiler.reference.evaluate pauses each
at its collectives: all-reduce, and the all-to-all and all-gather of expert dispatch); the
all-reduce sums the ranks' partial tensors in the order of NCCL's ring
(`ring_allreduce`), in the executor's dtype, and every rank gets the same result. Stages run in
order; rank r of stage s+1 reads `hidden` from rank r of stage s (the ranks' hidden states are
identical after the all-reduce). Each device keeps its own KV cache: its KV heads of its layers.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from compiler.driver import check_tokens, kv_feeds, token_feeds
from compiler.frontend import Model
from compiler.ir import Graph, GraphError, Op, OpKind
from compiler.ops import ring_chunks
from compiler.parallel.partition import device_graphs
from compiler.parallel.plan import ParallelPlan
from compiler.parallel.shard import ShardGraph
from compiler.phase import decode, prefill
from compiler.reference import evaluate, moe, top_k_experts

__all__ = ["ring_allreduce", "exchange", "execute_plan", "prefill_logits", "decode_logits", "decode_feeds",
           "prefill_feeds"]

Arrays = dict[str, np.ndarray]


def ring_allreduce(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of the ranks' tensors as NCCL's ring all-reduce adds it: the flattened tensor is
    cut into one chunk per rank (compiler.ops.ring_chunks); chunk c starts as rank c+1's piece,
    each next rank around the ring adds its own, and rank c adds last (reduce-scatter); the
    all-gather only copies, so every rank holds this same array."""
    n, flat = len(parts), [np.asarray(p).reshape(-1) for p in parts]
    bounds = np.cumsum([0, *ring_chunks(flat[0].size, n)])
    total = np.empty_like(flat[0])
    for c in range(n):
        lo, hi = bounds[c], bounds[c + 1]
        acc = flat[(c + 1) % n][lo:hi].copy()
        for step in range(2, n + 1):
            acc += flat[(c + step) % n][lo:hi]
        total[lo:hi] = acc
    return total.reshape(np.shape(parts[0]))


def exchange(op: Op, args: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Each rank's result of `op` given each rank's inputs: the ring sum (allreduce); the
    tensors joined along axis 0 (all_gather); chunk r (axis 0) of every rank, in rank order,
    to rank r (all_to_all); a mixture of experts over every rank's tokens with every rank's
    experts, each rank getting its own tokens' rows (expert parallelism by all-to-all)."""
    n, parts = len(args), [a[0] for a in args]
    if op.kind is OpKind.ALLREDUCE:
        return [ring_allreduce(parts)] * n
    if op.kind is OpKind.ALL_GATHER:
        return [np.concatenate(parts, axis=0)] * n
    if op.kind is OpKind.ALL_TO_ALL:
        chunks = [np.split(np.asarray(p), n, axis=0) for p in parts]
        return [np.concatenate([chunks[c][r] for c in range(n)], axis=0) for r in range(n)]
    x = np.concatenate(parts, axis=0)
    logits = np.concatenate([a[1] for a in args], axis=0)
    experts = [w for a in args for w in a[2:]]          # rank r holds experts r*E/n onwards
    whole = replace(op, attrs=tuple((k, v) for k, v in op.attrs
                                    if k not in ("ranks", "rank", "first_expert")))
    out = moe(whole, [x, logits, *experts], top_k_experts(logits, op.attr("top_k")))
    return np.split(out, n, axis=0)


def _run_together(graphs: Sequence[Graph], weights: Sequence[Mapping[str, np.ndarray]],
                  feeds: Sequence[Mapping[str, np.ndarray]], dtype: type) -> list[Arrays]:
    """Run the tensor-parallel ranks' graphs in lockstep, meeting at every collective."""
    runs = [evaluate(g, w, f, dtype) for g, w, f in zip(graphs, weights, feeds)]
    sent: list[np.ndarray | None] = [None] * len(runs)
    while True:
        paused, done = [], []
        for run, value in zip(runs, sent):
            try:
                paused.append(run.send(value))
            except StopIteration as finished:
                done.append(finished.value)
        if len(done) == len(runs):
            return done
        names = {op.name for op, _ in paused}
        if done or len(names) != 1 or any(op.attr("ranks") != len(runs) or op.attr("rank") != r
                                          for r, (op, _) in enumerate(paused)):
            raise GraphError(f"the {len(runs)} ranks of {graphs[0].name} do not meet at one "
                             f"collective of their ranks (at {sorted(names)})")
        sent = exchange(paused[0][0], [x for _, x in paused])


def execute_plan(plan: ParallelPlan, parts: Sequence[ShardGraph], weights: Mapping[str, np.ndarray],
                 feeds: Sequence[Mapping[str, np.ndarray]], dtype: type = np.float64) -> list[Arrays]:
    """Every device's outputs, by device. `parts[d]` is device d's graph, `weights` the full
    model's (each device reads its slices), `feeds[d]` device d's inputs but `hidden`, which
    the stage before supplies."""
    outputs: list[Arrays] = [{} for _ in parts]
    for stage in range(plan.pp):
        devices = [plan.device(stage, r) for r in range(plan.tp)]
        stage_feeds = [dict(feeds[d]) for d in devices]
        if stage:
            for r, f in enumerate(stage_feeds):
                before = plan.device(stage - 1, r)
                f["hidden"] = outputs[before][parts[before].graph.outputs[0]]
        results = _run_together([parts[d].graph for d in devices],
                                [parts[d].weights(weights) for d in devices], stage_feeds, dtype)
        for d, result in zip(devices, results):
            outputs[d] = result
    return outputs


def _first_stage_feeds(plan: ParallelPlan, ids: np.ndarray) -> list[Arrays]:
    return [token_feeds(ids) if d < plan.tp else {} for d in range(plan.devices)]


def _logits(plan: ParallelPlan, parts: Sequence[ShardGraph], outputs: list[Arrays]) -> np.ndarray:
    """The LM head's logits of the last stage's rank 0 (every rank computes the same)."""
    last = plan.device(plan.pp - 1, 0)
    return outputs[last][parts[last].graph.outputs[0]][0]


def prefill_logits(model: Model, plan: ParallelPlan, tokens: Sequence[int],
                   dtype: type = np.float64) -> np.ndarray:
    """Logits [len(tokens), vocab] of one prefill pass run under `plan`."""
    ids = check_tokens(model, tokens)
    parts = device_graphs(model.config, plan, prefill(len(ids)))
    return _logits(plan, parts, execute_plan(plan, parts, model.weights,
                                             _first_stage_feeds(plan, ids), dtype))


def decode_logits(model: Model, plan: ParallelPlan, tokens: Sequence[int],
                  dtype: type = np.float64) -> np.ndarray:
    """Logits [1, vocab] of the decode step of tokens[-1] against the caches that a prefill of
    tokens[:-1] under `plan` left on each device."""
    feeds = decode_feeds(model, plan, tokens, dtype)
    step = device_graphs(model.config, plan, decode(len(tokens) - 1))
    return _logits(plan, step, execute_plan(plan, step, model.weights, feeds, dtype))


def decode_feeds(model: Model, plan: ParallelPlan, tokens: Sequence[int],
                 dtype: type = np.float64) -> list[Arrays]:
    """Each device's inputs of the decode step of tokens[-1]: the KV caches a prefill of
    tokens[:-1] under `plan` left it (its KV heads of its layers) and, on the first stage, the
    new token (what a compiled device program starts from, too)."""
    ids = check_tokens(model, tokens)
    if len(ids) < 2:
        raise GraphError("decode needs at least 2 tokens: a cache and the new token")
    first = device_graphs(model.config, plan, prefill(len(ids) - 1))
    step = device_graphs(model.config, plan, decode(len(ids) - 1))
    filled = execute_plan(plan, first, model.weights, _first_stage_feeds(plan, ids[:-1]), dtype)
    return [{**kv_feeds(a.graph, out, b.graph), **new}
            for a, b, out, new in zip(first, step, filled, _first_stage_feeds(plan, ids[-1:]))]


def prefill_feeds(plan: ParallelPlan, tokens: np.ndarray) -> list[Arrays]:
    """Each device's inputs of a prefill: the token ids on the first stage."""
    return _first_stage_feeds(plan, tokens)
