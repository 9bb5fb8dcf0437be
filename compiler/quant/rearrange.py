"""Outlier-aware channel rearrangement of the KV cache, chosen at compile time (d-Matrix,
"Accurate Block Quantization in LLMs with Outliers", arXiv 2403.20137: channels of similar
magnitude share a block, so an outlier channel no longer sets the shared exponent of the small
ones beside it).

Each layer gets one order for K and one for V: a permutation of head_dim that every KV head
shares, its channels ranked by their largest magnitude over all heads and calibration tokens,
smallest first. One order within a head is what folds into the projections, as the paper does
(compiler/passes/kv_fold.py): permuting the columns of W_k and W_q head by head leaves q.k
unchanged, and V's order moves to W_o's rows; an order across heads would mix them. Where the
model rotates K (RoPE, Hugging Face's rotate_half pairs channel i with i + head_dim/2), the
order moves each pair together, ranked by the larger of its two channels: only such an order
commutes with the rotation (a permuted pair rotates by its own frequency), and the rotation
spreads a pair's magnitude over both channels anyway.

The reference executor stores each head's channels in the order (compiler/quant/tensors.py
write_kv) and reads them back in place; a program computes them in it (the folded graph), so
both round the same blocks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from compiler.driver import check_tokens, token_feeds
from compiler.frontend import Model
from compiler.ir import Graph
from compiler.passes.kv_fold import KVOrder, projection
from compiler.phase import prefill
from compiler.quant.plan import KVWrite, plan
from compiler.quant.recipe import Recipe, RecipeError
from compiler.reference import execute

__all__ = ["KVOrder", "channel_order", "kv_orders"]


def channel_order(values: np.ndarray, paired: bool = False) -> np.ndarray:
    """The head_dim channels of `values` [..., head_dim] (every head and token) ordered by
    their largest magnitude, smallest first (ties: the lower channel first). `paired`: the
    pairs (i, i + head_dim/2) ranked by the larger of the two, the order [sigma, sigma + half]."""
    magnitude = np.abs(values).reshape(-1, values.shape[-1]).max(axis=0)
    if not paired:
        return np.argsort(magnitude, kind="stable")
    half = len(magnitude) // 2
    sigma = np.argsort(np.maximum(magnitude[:half], magnitude[half:]), kind="stable")
    return np.concatenate([sigma, sigma + half])


def kv_orders(model: Model, weights: Mapping[str, np.ndarray], recipe: Recipe, n_layers: int,
              calibration: Sequence[int] | None) -> KVOrder:
    """The channel order of every KV write the recipe rearranges, from a full-precision
    prefill of the `calibration` tokens."""
    graph = model.graph(prefill(len(calibration) if calibration else 1))
    writes = [(name, w) for name, w in plan(graph, recipe, n_layers).kv.items()
              if w.quant is not None and w.quant.rearrange]
    if not writes:
        return {}
    if not calibration:
        raise RecipeError(f"recipe {recipe.name!r}: kv.rearrange orders the cache's channels "
                          "from calibration tokens: give some")
    values = execute(graph, weights, token_feeds(check_tokens(model, calibration)), np.float64)
    # a prefill appends to no cache: the ops that write the KV are its outputs
    return {(w.layer, w.which): channel_order(values[name], _rotated(graph, name, w, recipe))
            for name, w in writes}


def _rotated(graph: Graph, name: str, write: KVWrite, recipe: Recipe) -> bool:
    """Whether the write passes a rotary embedding on its way from its projection."""
    where = f"recipe {recipe.name!r}: kv '{name}' in {write.quant}"
    return bool(projection(graph, name, write.head_dim, where).ropes)
