"""Run GPT-2-architecture models on token sequences with the reference executor.

Prefill computes logits for every position; decode computes the last token's logits
against a KV cache filled by a prefill of the earlier tokens. Token ids and lengths are
checked here, at the boundary, with messages that name the offending token. A `Variant`
(compiler.quant.QuantisedModel) runs the same passes on its own weights and numerics.
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np

from compiler.frontend import Model
from compiler.ir import Graph, GraphError
from compiler.phase import Segment, Step, decode, groups, prefill
from compiler.reference import Numerics, execute

__all__ = ["Variant", "check_tokens", "token_feeds", "kv_feeds", "prefill_logits", "decode_logits",
           "step_feeds", "step_logits"]


class Variant(Protocol):
    """Weights and per-graph numerics that replace a model's own in a run."""

    @property
    def weights(self) -> Mapping[str, np.ndarray]: ...

    def numerics(self, graph: Graph) -> Numerics: ...


def _run(model: Model, variant: Variant | None, graph: Graph, feeds: dict[str, np.ndarray],
         dtype: type) -> dict[str, np.ndarray]:
    if variant is None:
        return execute(graph, model.weights, feeds, dtype)
    return execute(graph, variant.weights, feeds, dtype, numerics=variant.numerics(graph))


def check_tokens(model: Model, tokens: Sequence[int]) -> np.ndarray:
    if model.config is None:
        raise GraphError(f"model '{model.name}' is a .graph file: token runs need a GPT-2 model")
    if not tokens:
        raise GraphError("no tokens given")
    ids = np.asarray(tokens, dtype=np.int64)
    vocab = model.config.vocab_size
    for pos, t in enumerate(tokens):
        if not 0 <= t < vocab:
            raise GraphError(f"token id {t} at position {pos} is out of range for vocab size {vocab}")
    if len(tokens) > model.config.n_positions:
        raise GraphError(f"{len(tokens)} tokens exceed the context of {model.config.n_positions}")
    return ids


def token_feeds(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"tokens": np.asarray(ids, dtype=np.int32).reshape(1, -1)}


def kv_feeds(graph: Graph, outputs: dict[str, np.ndarray], step: Graph) -> dict[str, np.ndarray]:
    """Map a pass's K/V outputs (logits first, then K, V per layer) to the cache inputs of the
    decode graph `step`, which lists them in the same order (each family names its own)."""
    caches = [op.name for op in step.inputs if op.name.endswith(("k_cache", "v_cache"))]
    kv = graph.outputs[1:]
    if len(caches) != len(kv):
        raise GraphError(f"{step.name} reads {len(caches)} caches, {graph.name} makes {len(kv)}")
    return {cache: outputs[value] for cache, value in zip(caches, kv)}


def prefill_logits(model: Model, tokens: Sequence[int], dtype: type = np.float64,
                   variant: Variant | None = None) -> np.ndarray:
    """Logits [len(tokens), vocab] of one prefill pass."""
    ids = check_tokens(model, tokens)
    graph = model.graph(prefill(len(ids)))
    return _run(model, variant, graph, token_feeds(ids), dtype)[graph.outputs[0]][0]


def decode_logits(model: Model, tokens: Sequence[int], dtype: type = np.float64,
                  variant: Variant | None = None) -> np.ndarray:
    """Logits [1, vocab] of the decode step of tokens[-1] against the cache of tokens[:-1]
    (the cache as the prefill wrote it: in a variant's KV format, read back)."""
    ids = check_tokens(model, tokens)
    if len(ids) < 2:
        raise GraphError("decode needs at least 2 tokens: a cache and the new token")
    first = model.graph(prefill(len(ids) - 1))
    step = model.graph(decode(len(ids) - 1))
    cache = kv_feeds(first, _run(model, variant, first, token_feeds(ids[:-1]), dtype), step)
    feeds = {**cache, **token_feeds(ids[-1:])}
    return _run(model, variant, step, feeds, dtype)[step.outputs[0]][0]


def step_feeds(model: Model, requests: Sequence[tuple[Sequence[int], int]],
               dtype: type = np.float64, batched: bool = True
               ) -> tuple[Step, dict[str, np.ndarray]]:
    """A serving step of `requests` (each its tokens so far and how many of them are already
    cached: the rest are this step's segment; `batched`: as `Step`'s) and its inputs: the new
    tokens in request order and each request's KV cache, filled by a prefill of its cached
    tokens (the caches of requests that attend as one group stacked along the batch)."""
    step = Step(tuple(Segment(len(tokens) - cached, cached) for tokens, cached in requests),
                batched)
    graph = model.graph(step)
    ids = [check_tokens(model, tokens) for tokens, _ in requests]
    feeds = token_feeds(np.concatenate([t[c:] for t, (_, c) in zip(ids, requests)]))
    first = 0
    for part in groups(step):
        members = range(first, first + part.batch)
        first += part.batch
        if not part.kv:
            continue
        cache_graph = model.graph(prefill(part.kv))
        outs = [execute(cache_graph, model.weights, token_feeds(ids[r][:part.kv]), dtype)
                for r in members]
        names = [op.name for op in graph.inputs
                 if op.name.endswith((f"{part.tag}.k_cache", f"{part.tag}.v_cache"))]
        for name, value in zip(names, cache_graph.outputs[1:]):
            feeds[name] = np.concatenate([out[value] for out in outs], axis=0)
    return step, feeds


def step_logits(model: Model, requests: Sequence[tuple[Sequence[int], int]],
                dtype: type = np.float64) -> np.ndarray:
    """Logits [requests, vocab] of each request's last token after one serving step
    (`step_feeds`)."""
    step, feeds = step_feeds(model, requests, dtype)
    graph = model.graph(step)
    return execute(graph, model.weights, feeds, dtype)[graph.outputs[0]][0]
