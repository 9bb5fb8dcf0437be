"""Fold the KV cache's rearranged channel order (compiler/quant/rearrange.py) into the graph's
parameters, as d-Matrix do ("Accurate Block Quantization in LLMs with Outliers", arXiv
2403.20137): the projections write K and V already in that order, so a program stores them in
it at no cost, not one instruction or cycle more than the unrearranged program.

An order is a permutation of head_dim, one per layer for K and one for V, shared by every head:
- K's order permutes, inside every head, the output columns (and bias) of the projection that
  makes K and of the one that makes Q (every query head: under GQA it reads its KV head's
  channels, in the same order), the gain of a per-head norm on the way (Qwen3's q_norm and
  k_norm: the norm's sum of squares does not see the order), and the frequencies of the rotary
  embedding (the rope op's `pairs`: the order moves each rotated pair (i, i + head_dim/2)
  together, so the rotation of the permuted channels is the permuted rotation). q.k sums over
  the channels, so the scores are unchanged.
- V's order permutes the V projection's output columns (and bias) in every head, and the rows
  of the projection that reads the attention's context (each query head's rows).
A fused projection (GPT-2's c_attn: q | k | v column blocks) takes each block's permutation.

The permuted weights are what a recipe quantises: its scale groups run along a weight's input
channels, so permuted output columns are permuted codes. The output projection's rows are its
input channels: its groups (and those of its rounded input) keep their members, and so the
reference's values, only when each holds whole heads (or one scale covers an output channel,
a token or the tensor); a smaller group is refused in one line.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterator, Mapping

import numpy as np

from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind, freeze_attrs

if TYPE_CHECKING:            # compiler.quant imports ml_dtypes: only runs with a recipe
    from compiler.quant.plan import KVWrite, QuantPlan
    from compiler.quant.recipe import TensorQuant

__all__ = ["KVOrder", "KVFold", "kv_fold", "projection", "Projection"]

KVOrder = Mapping[tuple[int | None, str], np.ndarray]   # (layer, "k" | "v") -> head_dim order


@dataclass(frozen=True, slots=True)
class Projection:
    """Where a per-head value [..., head_dim] is made: `width` output columns of `linear` from
    `offset` on, head after head, through the rope ops and per-head norms named."""

    linear: Op
    offset: int
    width: int
    ropes: tuple[str, ...]
    gains: tuple[str, ...]          # per-head norms' gain parameters [head_dim]


@dataclass(frozen=True)
class KVFold:
    """A graph with its rope ops' frequencies in the folded order, and the parameters to
    permute: name -> (axis, index), the parameter read as `weight.take(index, axis)`."""

    graph: Graph
    params: Mapping[str, tuple[int, np.ndarray]]

    def weights(self, weights: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """`weights` as the folded graph reads them (the permuted ones made when read)."""
        return weights if not self.params else _Permuted(weights, self.params)


class _Permuted(Mapping[str, np.ndarray]):
    def __init__(self, base: Mapping[str, np.ndarray], params: Mapping[str, tuple[int, np.ndarray]]):
        self._base, self._params = base, params

    def __getitem__(self, name: str) -> np.ndarray:
        value = self._base[name]
        if name not in self._params:
            return value
        axis, index = self._params[name]
        return np.asarray(value).take(index, axis=axis)

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def kv_fold(graph: Graph, plan: "QuantPlan | None", order: KVOrder) -> KVFold:
    """Fold `order` ((layer, "k" | "v") -> permutation of head_dim) into `graph` for every KV
    write `plan` rearranges; a write without an order (a run with no calibration: no weights
    to permute) is checked only. CompileError, in one line, for a graph this cannot fold."""
    index: dict[str, tuple[int, np.ndarray]] = {}       # param -> (axis, index)
    pairs: dict[str, tuple[int, ...]] = {}              # rope op -> its frequencies' order
    writes = [] if plan is None else [(v, w) for v, w in plan.kv.items()
                                      if w.quant is not None and w.quant.rearrange and v in graph]
    for value, write in writes:
        where = f"recipe {plan.recipe.name!r}: kv '{value}' in {write.quant}"
        made, reads = _parts(graph, plan, value, write, where)
        perm = order.get((write.layer, write.which))
        if perm is None:
            continue
        perm = np.asarray(perm)
        for p in made:
            for param in p.linear.inputs[1:]:           # weight [K, N] and bias [N]: columns
                _put(index, graph, param, -1, _blocks(graph[param].type.shape[-1], p.offset,
                                                      p.width, perm))
            for gain in p.gains:
                _put(index, graph, gain, -1, perm)
            pairs.update({rope: _pairs(perm, where) for rope in p.ropes})
        for linear in reads:                            # weight [K, N]: rows
            rows = graph[linear.inputs[1]].type.shape[-2]
            _put(index, graph, linear.inputs[1], -2, _blocks(rows, 0, rows, perm))
    ops = [replace(op, attrs=freeze_attrs({**dict(op.attrs), "pairs": pairs[op.name]}))
           if op.name in pairs else op for op in graph.ops]
    folded = Graph(graph.name, ops, graph.outputs) if pairs else graph
    return KVFold(folded, MappingProxyType(index))


def _parts(graph: Graph, plan: "QuantPlan", value: str, write: "KVWrite", where: str
           ) -> tuple[list[Projection], list[Op]]:
    """What a write's order permutes: the projections that make it (K: K's, and Q's through
    the scores that read it) and the linears that read it (V: the output projection, whose
    groups are checked)."""
    d = write.head_dim
    made = [projection(graph, value, d, where)]
    if write.which == "k":
        scores = _readers(graph, value, where, transposed=True)
        return made + [projection(graph, s.inputs[0], d, where) for s in scores], []
    reads = [_reader(graph, c, where) for c in _readers(graph, value, where, transposed=False)]
    for linear in reads:
        _check_groups(plan, linear, d, where)
    return made, reads


def projection(graph: Graph, value: str, head_dim: int, where: str) -> Projection:
    """The linear whose output columns the per-head `value` [..., head_dim] holds: walked back
    through the ops that keep a head's channels on the last axis (transposes that keep it,
    rope, per-head rmsnorm, reshapes), the reshape that splits heads off the columns, and
    slices; any other op is refused."""
    ropes, gains, offset, width = [], [], 0, None
    op = graph[value]
    while op.kind is not OpKind.LINEAR and op.inputs:
        x = graph[op.inputs[0]].type.shape
        heads = width is None                   # still a head's channels on the last axis
        if heads and op.type.shape[-1:] != (head_dim,):
            break
        if op.kind is OpKind.RESHAPE and x[-1] != op.type.shape[-1]:
            if not heads or x[-1] % head_dim:
                break
            width = x[-1]                       # the heads split off the projection's columns
        elif op.kind is OpKind.SLICE and op.attr("axis") % len(x) == len(x) - 1:
            if heads:
                break
            offset += op.attr("start")
        elif heads and op.kind is OpKind.ROPE:
            ropes.append(op.name)
        elif heads and op.kind is OpKind.RMSNORM:
            gains.append(op.inputs[1])
        elif not (op.kind in (OpKind.RESHAPE, OpKind.SLICE)
                  or op.kind is OpKind.TRANSPOSE and op.attr("perm")[-1] == len(x) - 1):
            break
        op = graph[op.inputs[0]]
    if op.kind is not OpKind.LINEAR or graph[op.inputs[1]].kind is not OpKind.PARAM:
        raise CompileError(f"{where}: the channel order folds into the projection that makes "
                           f"'{value}', and '{op.name}' ({op.kind.value}) is on the way there")
    width = head_dim if width is None else width
    return Projection(op, offset, width, tuple(ropes), tuple(gains))


def _readers(graph: Graph, value: str, where: str, transposed: bool) -> list[Op]:
    """The attention matmuls that read a K (`transposed`: the scores) or V write (the context)
    as their second operand, through its rounding, its cache append and GQA's reshapes."""
    found, todo = [], [value]
    while todo:
        name = todo.pop()
        for op in graph.consumers(name):
            if op.kind in (OpKind.QUANTIZE, OpKind.KV_APPEND) or (
                    op.kind is OpKind.RESHAPE and op.type.shape[-1] == graph[name].type.shape[-1]):
                todo.append(op.name)
            elif (op.kind is OpKind.MATMUL and op.inputs[1] == name and op.inputs[0] != name
                  and bool(op.attr("transpose_b", False)) == transposed):
                found.append(op)
            else:
                raise CompileError(f"{where}: the channel order folds into the ops that read "
                                   f"it, and '{op.name}' ({op.kind.value}) reads it")
    return found


def _reader(graph: Graph, context: Op, where: str) -> Op:
    """The linear that reads attention's context (heads merged into its input channels)."""
    op, width = context, None
    while True:
        readers = graph.consumers(op.name)
        if len(readers) != 1:
            break
        nxt, shape = readers[0], op.type.shape
        if nxt.kind is OpKind.LINEAR and nxt.inputs[0] == op.name and width is not None:
            if graph[nxt.inputs[1]].type.shape[-2] == width:
                return nxt
            break
        if nxt.kind is OpKind.RESHAPE and nxt.type.shape[-1] != shape[-1] and width is None:
            width = nxt.type.shape[-1]
        elif not (nxt.kind is OpKind.RESHAPE and nxt.type.shape[-1] == shape[-1]
                  or nxt.kind is OpKind.QUANTIZE and width is not None       # its rounded input
                  or nxt.kind is OpKind.TRANSPOSE and nxt.attr("perm")[-1] == len(shape) - 1
                  or nxt.kind is OpKind.CONCAT and nxt.attr("axis") % len(shape) != len(shape) - 1):
            break
        op = nxt
    raise CompileError(f"{where}: the V order folds into the projection that reads attention's "
                       f"context '{context.name}', which is not found past '{op.name}'")


def _check_groups(plan: "QuantPlan", linear: Op, head_dim: int, where: str) -> None:
    """The reading projection's weight rows and rounded input are grouped in whole heads."""
    weight = plan.weights.get(linear.inputs[1])
    for what, quant in ((f"weight '{linear.inputs[1]}'", weight.quant if weight else None),
                        (f"the input of '{linear.name}'", plan.activations.get(linear.name))):
        size = _group(quant)
        if size is not None and size % head_dim:
            raise CompileError(f"{where}: the V order permutes the channels of each head of "
                               f"{head_dim} in {what}, whose {quant} scale groups of {size} "
                               f"split a head: give it groups of whole heads (a multiple of "
                               f"{head_dim}) or one scale per channel or token")


def _group(quant: "TensorQuant | None") -> int | None:
    """Consecutive input channels one scale covers, where fewer than all of them."""
    if quant is None:
        return None
    return {"group": quant.group, "block": quant.format.block}.get(quant.scale)


def _blocks(length: int, offset: int, width: int, perm: np.ndarray) -> np.ndarray:
    """The index of `length` columns whose `width` from `offset` on are heads of len(perm)
    channels, each permuted by `perm`."""
    index = np.arange(length)
    d = len(perm)
    index[offset:offset + width] = offset + (np.arange(width) // d * d + perm[np.arange(width) % d])
    return index


def _pairs(perm: np.ndarray, where: str) -> tuple[int, ...]:
    """The rope frequencies in K's order: [sigma, sigma + d/2] gives sigma."""
    half = len(perm) // 2
    if not np.array_equal(perm[half:], perm[:half] + half):
        raise CompileError(f"{where}: the K order does not keep each rotated pair (i, i + "
                           f"{half}) together, so it cannot fold into the rotary embedding")
    return tuple(int(i) for i in perm[:half])


def _put(index: dict[str, tuple[int, np.ndarray]], graph: Graph, name: str, axis: int,
         values: np.ndarray) -> None:
    """Record a parameter's index along `axis`; a second path to it (a fused projection's
    other blocks, another group's heads) changes only the entries it moves."""
    if graph[name].kind is not OpKind.PARAM:
        raise CompileError(f"'{name}' is computed, not a parameter: the channel order cannot fold into it")
    was = index.get(name)
    if was is None:
        index[name] = (axis, values.copy())
        return
    if was[0] != axis:
        raise CompileError(f"'{name}' would be permuted along two axes by the channel order")
    moved = values != np.arange(len(values))
    was[1][moved] = values[moved]
