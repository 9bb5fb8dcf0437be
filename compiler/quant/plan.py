"""Which tensors of a graph a recipe quantises, and how: the plan both the reference
executor's quantised mode and (later) the targets follow.

- weights: the weight operand of every linear, of a matmul with a parameter (the LM head) and
  of every expert; one scale group runs along the contracted (input-channel) axis. The router
  of a mixture of experts stays at full precision: a flipped expert choice costs far more than
  its few bytes save. Embedding tables follow the `embeddings` role (full precision unless a
  recipe says so); a table tied to the LM head is one stored tensor, so both uses must agree.
  Norm gains and biases are never quantised.
- activations: operand 0 (the input) of those same matmuls, groups along its last axis.
- kv: the values a pass writes to the KV cache: the graph's outputs after the logits, K and V
  of each layer in turn (compiler.driver.kv_feeds reads them in that order); a cached pass
  appends its new tokens' values, so those are what it writes. Groups run along one token's
  channels of all the layer's KV heads.
A group, or a format's block, that does not divide the axis it runs along is refused here,
naming the tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from compiler.ir import Graph, Op, OpKind
from compiler.passes.routing import moe_routers
from compiler.quant.recipe import Recipe, RecipeError, TensorQuant

__all__ = ["WeightUse", "KVWrite", "QuantPlan", "plan", "layer_of", "scale_group"]


@dataclass(frozen=True, slots=True)
class WeightUse:
    """A parameter's format (None: kept at full precision) and where its groups run: along its
    last axis (`contracted_last`: a transposed matmul's weight, an embedding's rows) or along
    the axis before (a linear's [in, out])."""

    quant: TensorQuant | None
    contracted_last: bool
    role: str                   # weights | embeddings


@dataclass(frozen=True, slots=True)
class KVWrite:
    """A value written to the KV cache: [b, heads, tokens, head_dim], K or V of a layer."""

    quant: TensorQuant | None
    layer: int | None
    which: str                  # k | v
    heads: int
    head_dim: int


@dataclass(frozen=True)
class QuantPlan:
    """Per graph: every weight parameter, every matmul's input and every KV write, each with
    its format (None where the recipe keeps full precision)."""

    recipe: Recipe
    weights: Mapping[str, WeightUse]            # parameter -> its use
    activations: Mapping[str, TensorQuant | None]   # matmul op -> its input's format
    kv: Mapping[str, KVWrite]                   # op whose value is written -> the write
    widths: Mapping[str, int] = field(default_factory=dict)   # bit-nested parameter -> bits read
    experts: Mapping[str, TensorQuant | None] = field(default_factory=dict)  # moe op -> its
                                    # experts' matmul inputs' format (rows of x, gated hidden)


def layer_of(name: str) -> int | None:
    """The layer an op belongs to: the first all-digit part of its dotted name (h.3.attn.c_attn,
    layers.3.mlp.experts.7.w1 -> 3), None outside the layers (embed, ln_f, lm_head)."""
    return next((int(part) for part in name.split(".") if part.isdigit()), None)


def scale_group(quant: TensorQuant, length: int, head_dim: int | None = None) -> int | None:
    """The `group` isa.formats.quantize takes for a tensor whose grouped axis has `length`
    elements: None for one scale per tensor or a format's own block."""
    return {"tensor": None, "block": None, "group": quant.group, "head": head_dim}.get(
        quant.scale, length)


def plan(graph: Graph, recipe: Recipe, n_layers: int,
         routers: frozenset[str] = frozenset()) -> QuantPlan:
    """The plan of `recipe` on `graph` (a model of `n_layers` layers). `routers`: router
    linears kept at full precision besides those of `graph`'s moe ops: a routed graph (its
    experts' linears in place of each moe op) keeps the router's linear but not the moe op
    that names it, so its caller passes the unrouted graph's (`moe_routers`)."""
    weights: dict[str, WeightUse] = {}
    activations: dict[str, TensorQuant | None] = {}
    experts: dict[str, TensorQuant | None] = {}
    routers = moe_routers(graph) | routers
    for op in graph.ops:
        layer = layer_of(op.name)
        key = "lm_head" if layer is None else layer
        with_weight = len(op.inputs) > 1 and graph[op.inputs[1]].kind is OpKind.PARAM
        if op.kind in (OpKind.LINEAR, OpKind.MATMUL) and with_weight and op.name not in routers:
            last = bool(op.attr("transpose_b", False))      # a linear's weight is [in, out]
            _use(graph, recipe, weights, op.inputs[1], recipe.role("weights", key, n_layers), last)
            activations[op.name] = _input(graph, recipe, op, recipe.role("activations", key, n_layers))
        elif op.kind is OpKind.MOE:
            for name in op.inputs[2:]:
                _use(graph, recipe, weights, name, recipe.role("weights", key, n_layers), False)
            experts[op.name] = _experts_input(graph, recipe, op,
                                              recipe.role("activations", key, n_layers))
        elif op.kind is OpKind.EMBEDDING and graph[op.inputs[0]].kind is OpKind.PARAM:
            _use(graph, recipe, weights, op.inputs[0], recipe.embeddings, True, "embeddings")
    return QuantPlan(recipe, weights, activations, _kv_writes(graph, recipe, n_layers),
                     experts=experts)


def _use(graph: Graph, recipe: Recipe, uses: dict[str, WeightUse], name: str,
         quant: TensorQuant | None, last: bool, role: str = "weights") -> None:
    shape = graph[name].type.shape
    length = shape[-1] if last else shape[-2]
    was = uses.get(name)
    stored = _stored_as(quant, last, length)
    if was is not None and _stored_as(was.quant, was.contracted_last, length) != stored:
        raise RecipeError(f"recipe {recipe.name!r}: '{name}' is one stored tensor read as "
                          f"{was.role} ({was.quant or 'full precision'}) and as {role} "
                          f"({quant or 'full precision'}): give both uses one format")
    if quant is not None:
        what = "channels of each row" if role == "embeddings" else "input channels"
        _check(recipe, role, quant, length, f"the {length} {what} of '{name}'")
    uses.setdefault(name, WeightUse(quant, last, role))


def _stored_as(quant: TensorQuant | None, last: bool, length: int) -> tuple | None:
    """What a use stores: a tied table's rows read as an embedding (a scale per row) and as the
    LM head's weight (a scale per output channel: the same rows) store alike."""
    return None if quant is None else (quant.format, scale_group(quant, length), last)


def _input(graph: Graph, recipe: Recipe, op: Op, quant: TensorQuant | None) -> TensorQuant | None:
    if quant is not None:
        length = graph[op.inputs[0]].type.shape[-1]
        _check(recipe, "activations", quant, length,
               f"the {length} channels of the input of '{op.name}'")
    return quant


def _experts_input(graph: Graph, recipe: Recipe, op: Op, quant: TensorQuant | None
                   ) -> TensorQuant | None:
    """The rounding of a moe op's experts' matmul inputs (its router stays full): each
    expert's rows of x and its gated hidden, so a group must divide both widths."""
    if quant is not None:
        _input(graph, recipe, op, quant)
        hidden = graph[op.inputs[2]].type.shape[-1]
        _check(recipe, "activations", quant, hidden,
               f"the {hidden} channels of the hidden of the experts of '{op.name}'")
    return quant


def _kv_writes(graph: Graph, recipe: Recipe, n_layers: int) -> dict[str, KVWrite]:
    writes = {}
    for index, name in enumerate(graph.outputs[1:]):
        op = graph[name]
        written = op.inputs[1] if op.kind is OpKind.KV_APPEND else name
        _, heads, _, head_dim = graph[written].type.shape
        layer = layer_of(name)
        quant = recipe.role("kv", layer, n_layers)
        if quant is not None:
            length = heads * head_dim
            heads_text = f"{heads} head{'s' if heads != 1 else ''}"
            _check(recipe, "kv", quant, length, f"the {length} channels ({heads_text} x "
                   f"{head_dim}) each token writes to '{written}'", head_dim)
        writes[written] = KVWrite(quant, layer, "kv"[index % 2], heads, head_dim)
    return writes


def _check(recipe: Recipe, role: str, quant: TensorQuant, length: int, what: str,
           head_dim: int | None = None) -> None:
    """A group or block must divide the axis it runs along."""
    fmt = quant.format
    size = fmt.block if quant.scale == "block" else scale_group(quant, length, head_dim)
    if size is not None and length % size:
        field = f"{fmt.name}'s block of {size}" if quant.scale == "block" else f"group {size}"
        raise RecipeError(f"recipe {recipe.name!r}: {role}: {field} does not divide {what}")
