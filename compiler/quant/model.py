"""A model quantised by a recipe: its weights as codes and scales, made once at compile time,
and for each graph a run executes, the hook (reference.Numerics) that rounds the matmuls'
inputs and the KV cache's writes as the recipe says. compiler.driver runs it as a `Variant`:

    q = quantise(model, "w4a8")
    prefill_logits(model, tokens, np.float32, q)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from compiler.frontend import Model
from compiler.ir import Graph, Op
from compiler.phase import prefill
from compiler.quant.plan import QuantPlan, plan
from compiler.quant.rearrange import KVOrder, kv_orders
from compiler.quant.recipe import Recipe, RecipeError
from compiler.quant.recipe_file import resolve_recipe
from compiler.quant.tensors import read_input, write_kv
from compiler.quant.weights import QuantizedWeights

__all__ = ["QuantisedModel", "QuantNumerics", "quantise"]


class QuantNumerics:
    """The reference executor's hook for one graph: a planned matmul's input read in its
    format, a planned KV write stored in its format (in its channel order), both read back."""

    def __init__(self, plan_: QuantPlan, kv_order: KVOrder) -> None:
        self.plan = plan_
        self._kv_order = kv_order

    def operands(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        quant = self.plan.activations.get(op.name)
        return args if quant is None else [read_input(args[0], quant), *args[1:]]

    def result(self, op: Op, value: np.ndarray) -> np.ndarray:
        write = self.plan.kv.get(op.name)
        if write is None or write.quant is None:
            return value
        order = self._kv_order.get((write.layer, write.which)) if write.quant.rearrange else None
        return write_kv(value, write, order)


@dataclass(frozen=True)
class QuantisedModel:
    """`model` under `recipe`: `weights` stored quantised, `kv_order` the compile-time channel
    order of each rearranged KV write."""

    model: Model
    recipe: Recipe
    weights: QuantizedWeights
    kv_order: KVOrder

    @property
    def n_layers(self) -> int:
        return self.model.config.n_layer

    def plan(self, graph: Graph) -> QuantPlan:
        return plan(graph, self.recipe, self.n_layers)

    def numerics(self, graph: Graph) -> QuantNumerics:
        return QuantNumerics(self.plan(graph), self.kv_order)


def quantise(model: Model, recipe: str | Recipe, weights: Mapping[str, np.ndarray] | None = None,
             calibration: Sequence[int] | None = None) -> QuantisedModel:
    """Quantise `model`'s weights (or `weights`, the same tensors) by `recipe` (a name, a .toml
    file or a Recipe); the plan is checked against the model's shapes here, before any run.
    `calibration`: tokens that order the KV channels of a recipe that rearranges them."""
    recipe = resolve_recipe(recipe)
    if model.config is None:
        raise RecipeError(f"recipe {recipe.name!r}: model '{model.name}' is a .graph file; "
                          "quantisation needs a model with a config (its layers and caches)")
    base = model.weights if weights is None else weights
    n_layers = model.config.n_layer
    whole = plan(model.graph(prefill(1)), recipe, n_layers)
    order = kv_orders(model, base, recipe, n_layers, calibration)
    return QuantisedModel(model, recipe, QuantizedWeights(base, whole), order)
