"""Outlier-aware channel rearrangement of the KV cache, chosen at compile time (d-Matrix,
"Accurate Block Quantization in LLMs with Outliers", arXiv 2403.20137: channels of similar
magnitude share a block, so an outlier channel no longer sets the shared exponent of the small
ones beside it).

Each layer's K (and V) channels are ordered by their largest magnitude over calibration tokens,
smallest first; the cache stores a token's channels in that order, so consecutive blocks hold
channels of similar size, and reads them back in the original order. The paper folds the
order into the K and Q projections instead (q.k is unchanged when both are permuted alike); the
values, and so the logits, are the same either way.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from compiler.driver import check_tokens, token_feeds
from compiler.frontend import Model
from compiler.phase import prefill
from compiler.quant.plan import plan
from compiler.quant.recipe import Recipe, RecipeError
from compiler.quant.tensors import token_rows
from compiler.reference import execute

__all__ = ["KVOrder", "channel_order", "kv_orders"]

KVOrder = Mapping[tuple[int | None, str], np.ndarray]   # (layer, "k" | "v") -> channel order


def channel_order(rows: np.ndarray) -> np.ndarray:
    """The channels of token rows [..., channels] ordered by their largest magnitude, smallest
    first (ties: the lower channel first)."""
    magnitude = np.abs(rows).reshape(-1, rows.shape[-1]).max(axis=0)
    return np.argsort(magnitude, kind="stable")


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
    return {(w.layer, w.which): channel_order(token_rows(values[name])) for name, w in writes}
