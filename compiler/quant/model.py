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

from compiler.driver import check_tokens, token_feeds
from compiler.frontend import Model
from compiler.ir import Graph, Op, OpKind
from compiler.passes.kv_fold import KVFold
from compiler.passes.quantised_values import rounded_experts
from compiler.phase import prefill
from compiler.quant.nested import ExpertBits, parse_expert_bits
from compiler.quant.plan import QuantPlan, plan
from compiler.quant.rearrange import KVOrder, kv_orders
from compiler.quant.recipe import Recipe, RecipeError
from compiler.quant.recipe_file import resolve_recipe
from compiler.quant.tensors import read_input, write_kv
from compiler.quant.weights import QuantizedWeights
from compiler.reference import execute

__all__ = ["QuantisedModel", "QuantNumerics", "quantise", "expert_widths", "routed_counts"]


class QuantNumerics:
    """The reference executor's hook for one graph: a planned matmul's input read in its
    format, a planned KV write stored in its format (in its channel order), both read back."""

    def __init__(self, plan_: QuantPlan, kv_order: KVOrder) -> None:
        self.plan = plan_
        self._kv_order = kv_order

    def operands(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        quant = self.plan.activations.get(op.name)
        return args if quant is None else [read_input(args[0], quant), *args[1:]]

    def expert_op(self, op: Op, args: list[np.ndarray]) -> Op:
        quant = self.plan.experts.get(op.name)
        if quant is None:
            return op
        return rounded_experts(self.plan.recipe.name, op, quant, args[0].shape[-1],
                               args[2].shape[-1])

    def result(self, op: Op, value: np.ndarray) -> np.ndarray:
        write = self.plan.kv.get(op.name)
        if write is None or write.quant is None:
            return value
        order = self._kv_order.get((write.layer, write.which)) if write.quant.rearrange else None
        return write_kv(value, write, order)


@dataclass(frozen=True)
class QuantisedModel:
    """`model` under `recipe`: `weights` stored quantised, `kv_order` the compile-time channel
    order of each rearranged KV write (per layer, a permutation of head_dim for K and for V:
    rearrange.py)."""

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

    def folded(self, fold: KVFold) -> QuantizedWeights:
        """The weights a graph with the KV order folded in reads (compiler/passes/kv_fold.py):
        the checkpoint's, the fold's parameters permuted before they are quantised, as the
        paper folds them; kv_fold refuses the groups where that would change their values."""
        if not fold.params:
            return self.weights
        return self.weights.rebased(fold.weights(self.weights.base), fold.params)


def quantise(model: Model, recipe: str | Recipe, weights: Mapping[str, np.ndarray] | None = None,
             calibration: Sequence[int] | None = None,
             expert_bits: str | ExpertBits | None = None) -> QuantisedModel:
    """Quantise `model`'s weights (or `weights`, the same tensors) by `recipe` (a name, a .toml
    file or a Recipe); the plan is checked against the model's shapes here, before any run.
    `calibration`: tokens that order the KV channels of a recipe that rearranges them, and that
    rank the experts of a `hot` expert-bits policy. `expert_bits`: the widths bit-nested expert
    weights are read at (nested.py)."""
    recipe = resolve_recipe(recipe)
    if model.config is None:
        raise RecipeError(f"recipe {recipe.name!r}: model '{model.name}' is a .graph file; "
                          "quantisation needs a model with a config (its layers and caches)")
    base = model.weights if weights is None else weights
    n_layers = model.config.n_layer
    whole = plan(model.graph(prefill(1)), recipe, n_layers)
    order = kv_orders(model, base, recipe, n_layers, calibration)
    widths = expert_widths(model, base, recipe, whole, expert_bits, calibration)
    return QuantisedModel(model, recipe, QuantizedWeights(base, whole, widths), order)


def expert_widths(model: Model, base: Mapping[str, np.ndarray] | None, recipe: Recipe,
                  whole: QuantPlan, expert_bits: str | ExpertBits | None,
                  calibration: Sequence[int] | None,
                  routed: Mapping[str, np.ndarray] | None = None) -> dict[str, int]:
    """The bits each bit-nested expert parameter is read at, by the policy (none: whole).
    A `hot` policy ranks each moe op's experts by `routed` (per moe op name, the tokens each
    expert was chosen for: a timing-only run's own routing, `routed_counts`) or else by the
    calibration tokens, routed with the weights `base` (neither: refused)."""
    if expert_bits is None:
        return {}
    policy = parse_expert_bits(expert_bits) if isinstance(expert_bits, str) else expert_bits
    graph = model.graph(prefill(len(calibration) if calibration else 1))
    moes = {op.name: op.inputs[2:] for op in graph.of_kind(OpKind.MOE)}
    nested = {name: whole.weights[name].quant for params in moes.values() for name in params
              if whole.weights[name].quant is not None and whole.weights[name].quant.nested}
    if not moes or not nested:
        what = "has no experts" if not moes else f"does not store them bit-nested ({recipe.name})"
        raise RecipeError(f"--expert-bits {policy.text}: the model {what}; a recipe with "
                          "nested weights (w8a16:nested, ...) on a mixture of experts takes it")
    if policy.hot is not None and routed is None:          # ranked by the calibration
        if not calibration or base is None:
            raise RecipeError(f"--expert-bits {policy.text}: ranks experts by the tokens the "
                              "calibration routes to them: give some (a numeric run's --tokens)")
        choices: dict[str, np.ndarray] = {}
        execute(graph, base, token_feeds(check_tokens(model, calibration)), np.float64, choices)
        routed = {op: np.bincount(choices[op].ravel(), minlength=len(p) // 3)
                  for op, p in moes.items()}
    widths = {}
    routed = routed or {}
    for op, params in moes.items():            # three parameters per expert, in order
        stored = [nested[name] for name in params if name in nested]
        if stored:
            experts, counts = len(params) // 3, routed.get(op, np.zeros(0, np.int64))
            if len(counts) < experts:               # the last never chosen (or none routed)
                counts = np.pad(counts, (0, experts - len(counts)))
            per_expert = policy.widths(stored[0].format.bits, experts, counts)
            widths.update({name: per_expert[i // 3] for i, name in enumerate(params)
                           if name in nested})
    return widths


def routed_counts(routing) -> dict[str, np.ndarray]:
    """Per moe op of a routing decision (compiler.passes.routing.Routing), how many tokens
    chose each expert (what a `hot` expert-bits policy ranks by)."""
    return {op: np.bincount(choice.ravel()) for op, choice in routing.choices.items()}
