"""The numpy reference executor: the oracle every compiled program is checked against.

Same math as Hugging Face's GPT-2: gelu_new (tanh form), biased-variance layer norm with
the configured epsilon, softmax of scaled scores with a causal mask, views for layout ops.
Computes in float64 by default so its own rounding is far below any tolerance we test.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np

from compiler.ir import Graph, GraphError, Op, OpKind

__all__ = ["execute", "EVALUATORS", "gelu_tanh", "layernorm", "softmax"]

Arrays = Sequence[np.ndarray]


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layernorm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def softmax(x: np.ndarray, scale: float = 1.0, causal: bool = False) -> np.ndarray:
    """softmax(scale * x) over the last axis; causal masks key j > query i + (T - S)."""
    z = x * scale
    if causal:
        s, t = z.shape[-2:]
        mask = np.arange(t)[None, :] > np.arange(s)[:, None] + (t - s)
        z = np.where(mask, -np.inf, z)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _embedding(op: Op, args: Arrays) -> np.ndarray:
    table, ids = args
    bad = np.argwhere((ids < 0) | (ids >= table.shape[0]))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise GraphError(f"op '{op.name}': id {int(ids[where])} at index {list(where)} is out of "
                         f"range for a table of {table.shape[0]} rows")
    return table[ids]


def _matmul(op: Op, args: Arrays) -> np.ndarray:
    a, b = args
    return a @ (np.swapaxes(b, -1, -2) if op.attr("transpose_b", False) else b)


def _linear(op: Op, args: Arrays) -> np.ndarray:
    y = args[0] @ args[1]
    return y + args[2] if len(args) == 3 else y


def _slice(op: Op, args: Arrays) -> np.ndarray:
    index = [slice(None)] * args[0].ndim
    index[op.attr("axis")] = slice(op.attr("start"), op.attr("stop"))
    return args[0][tuple(index)]


EVALUATORS: dict[OpKind, Callable[[Op, Arrays], np.ndarray]] = {
    OpKind.EMBEDDING: _embedding,
    OpKind.MATMUL: _matmul,
    OpKind.LINEAR: _linear,
    OpKind.ADD: lambda op, a: a[0] + a[1],
    OpKind.MUL: lambda op, a: a[0] * a[1],
    OpKind.LAYERNORM: lambda op, a: layernorm(*a, eps=op.attr("eps", 1e-5)),
    OpKind.GELU: lambda op, a: gelu_tanh(a[0]),
    OpKind.SOFTMAX: lambda op, a: softmax(a[0], op.attr("scale", 1.0), op.attr("causal", False)),
    OpKind.KV_APPEND: lambda op, a: np.concatenate(a, axis=-2),
    OpKind.RESHAPE: lambda op, a: a[0].reshape(op.attr("shape")),
    OpKind.TRANSPOSE: lambda op, a: a[0].transpose(op.attr("perm")),
    OpKind.SLICE: _slice,
}
assert set(EVALUATORS) | {OpKind.INPUT, OpKind.PARAM} == set(OpKind)


def _feed(op: Op, feeds: Mapping[str, np.ndarray], dtype: type) -> np.ndarray:
    if op.name not in feeds:
        raise GraphError(f"missing input '{op.name}' ({op.type})")
    value = np.asarray(feeds[op.name])
    if value.shape != op.type.shape:
        raise GraphError(f"input '{op.name}' has shape {list(value.shape)}, "
                         f"the graph expects {list(op.type.shape)}")
    is_int = op.type.dtype.name.startswith("int")
    return value.astype(np.int64 if is_int else dtype, copy=False)


def execute(graph: Graph, weights: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray],
            dtype: type = np.float64) -> dict[str, np.ndarray]:
    """Evaluate every op in topological order; return the graph's outputs by name.

    Intermediate values are dropped as soon as their last consumer has run, so large
    models fit in memory.
    """
    remaining = Counter(src for op in graph.ops for src in op.inputs)
    values: dict[str, np.ndarray] = {}
    keep = set(graph.outputs)
    for op in graph.ops:
        if op.kind is OpKind.INPUT:
            values[op.name] = _feed(op, feeds, dtype)
        elif op.kind is OpKind.PARAM:
            values[op.name] = np.asarray(weights[op.name]).astype(dtype, copy=False)
        else:
            values[op.name] = EVALUATORS[op.kind](op, [values[s] for s in op.inputs])
            for src in op.inputs:
                remaining[src] -= 1
                if remaining[src] == 0 and src not in keep:
                    del values[src]
    return {name: values[name] for name in graph.outputs}
