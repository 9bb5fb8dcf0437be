"""The numpy reference executor: the oracle every compiled program is checked against.

Same math as Hugging Face's GPT-2: gelu_new (tanh form), biased-variance layer norm with
the configured epsilon, softmax of scaled scores with a causal mask, views for layout ops.
Llama-family ops follow Hugging Face's modeling_llama / modeling_mixtral / modeling_qwen3:
RMSNorm, rotary embedding with rotate_half pairs (dim i with i + d/2) and the `llama3`
frequency scaling, SiLU, and routed experts (softmax over all experts, top-k, optional
renormalisation, weighted sum of the chosen experts' gated MLPs).
Computes in float64 by default so its own rounding is far below any tolerance we test.
A collective (allreduce, all_gather, all_to_all) or a mixture of experts whose tokens are split
over the ranks needs the other devices' values, so `evaluate` pauses at each one and whoever
runs all the devices' graphs (compiler.parallel.reference) supplies its result.
A `Numerics` hook changes the values ops read and make (compiler.quant: the quantised mode);
without one, every value is computed as above.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Generator, Mapping, Protocol, Sequence

import numpy as np

from compiler.ir import Graph, GraphError, Op, OpKind
from isa.qformats import formats_args

__all__ = ["execute", "evaluate", "Numerics", "EVALUATORS", "gelu_tanh", "layernorm", "softmax",
           "rmsnorm", "silu", "rope_tables", "rope", "top_k_experts", "moe"]

Arrays = Sequence[np.ndarray]


class Numerics(Protocol):
    """A change to the executor's values: the operands a compute op reads (before it runs) and
    the value it makes (after), e.g. a matmul's input quantised, a K cache write rounded."""

    def operands(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]: ...

    def result(self, op: Op, value: np.ndarray) -> np.ndarray: ...

    def expert_op(self, op: Op, args: list[np.ndarray]) -> Op:
        """A moe op as it runs here: its experts' matmul inputs rounded (act_format) or not."""


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layernorm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def attention_mask(s: int, t: int, window: int | None = None) -> np.ndarray:
    """True where query i (of the last s of t positions) may not see key j: j after it, or,
    with a sliding window, j at or before its position - window (Mistral's)."""
    query = np.arange(s)[:, None] + (t - s)
    key = np.arange(t)[None, :]
    hidden = key > query
    if window is not None:
        hidden |= key <= query - window
    return hidden


def softmax(x: np.ndarray, scale: float = 1.0, causal: bool = False,
            window: int | None = None) -> np.ndarray:
    """softmax(scale * x) over the last axis; causal masks key j > query i + (T - S)."""
    z = x * scale
    if causal:
        z = np.where(attention_mask(*z.shape[-2:], window), -np.inf, z)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def rmsnorm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gain


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), written so exp never overflows (silu(-inf) = -0, the limit)."""
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def rope_frequencies(head_dim: int, theta: float, factor: float | None = None,
                     low_freq_factor: float | None = None, high_freq_factor: float | None = None,
                     original_max_position: int | None = None) -> np.ndarray:
    """inv_freq [head_dim/2]: 1/theta^(2i/d), with Llama 3's scaling when `factor` is given
    (HF _compute_llama3_parameters): long wavelengths divided by factor, short ones kept,
    those between interpolated."""
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if factor is None:
        return inv
    wavelen = 2 * math.pi / inv
    low, high = original_max_position / low_freq_factor, original_max_position / high_freq_factor
    scaled = np.where(wavelen > low, inv / factor, inv)
    smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    medium = (wavelen >= high) & (wavelen <= low)
    return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def rope_tables(op: Op, seq: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [seq, head_dim/2] of positions start .. start+seq-1 for a rope op; pair i
    at frequency `pairs`[i] when the op has them (a channel order folded into its input:
    compiler/passes/kv_fold.py)."""
    inv = rope_frequencies(head_dim, op.attr("theta"), op.attr("factor"), op.attr("low_freq_factor"),
                           op.attr("high_freq_factor"), op.attr("original_max_position"))
    if op.attr("pairs") is not None:
        inv = inv[list(op.attr("pairs"))]
    angles = (op.attr("start") + np.arange(seq, dtype=np.float64))[:, None] * inv[None, :]
    return np.cos(angles), np.sin(angles)


def rope(op: Op, x: np.ndarray) -> np.ndarray:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1] (halves of head_dim)."""
    half = x.shape[-1] // 2
    cos, sin = (t.astype(x.dtype) for t in rope_tables(op, x.shape[-2], x.shape[-1]))
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def top_k_experts(logits: np.ndarray, k: int) -> np.ndarray:
    """Expert ids [tokens, k] of the k largest router logits per token, largest first (ties:
    the lower id, as a stable sort gives); the softmax is monotonic, so its top-k is this."""
    return np.argsort(-logits, axis=-1, kind="stable")[:, :k]


def moe(op: Op, args: Arrays, choice: np.ndarray) -> np.ndarray:
    """Sum over each token's chosen experts of weight * down(silu(x gate) * (x up)); weights
    are the softmax probabilities of the chosen experts, renormalised to 1 with norm_topk_prob.
    An expert-parallel shard (`first_expert`) sums only the experts it holds. With act_format
    (a recipe's activations), each expert's rows of x and its gated hidden are rounded as a
    quantize op rounds them, each expert's as a tensor of its own (what the routed graph's
    quantize ops on its rows do: compiler/passes/routing.py)."""
    x, logits, *experts = args
    fmt = op.attr("act_format")             # a recipe rounds each expert's matmul inputs

    def inputs(value: np.ndarray, group: str) -> np.ndarray:
        return value if fmt is None else rounded(value, fmt, op.attr(group))

    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = z / z.sum(axis=-1, keepdims=True)
    weights = np.take_along_axis(probs, choice, axis=-1)
    if op.attr("norm_topk_prob", False):
        weights = weights / weights.sum(axis=-1, keepdims=True)
    out = np.zeros_like(x)
    first = op.attr("first_expert", 0)         # an expert-parallel shard holds some experts
    for e in np.unique(choice):
        if not first <= e < first + len(experts) // 3:
            continue
        tokens, slot = np.nonzero(choice == e)
        gate, up, down = experts[3 * (e - first): 3 * (e - first) + 3]
        xe = inputs(x[tokens], "act_group")
        hidden = inputs(silu(xe @ gate) * (xe @ up), "hidden_group")
        out[tokens] += weights[tokens, slot][:, None] * (hidden @ down)
    return out


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


def rounded(x: np.ndarray, fmt: str, group: int) -> np.ndarray:
    """x quantised to code format `fmt` in scale groups of `group` (0: one scale) with scales
    of its own values and read back (isa.formats, float64), rounded once to x's dtype: the
    order of rounding of docs/formats.md, steps 2 and 3."""
    from isa.formats import dequantize, quantize      # ml_dtypes: only graphs that quantise
    return dequantize(quantize(x, *formats_args(fmt, group))).astype(x.dtype)


def _quantize(op: Op, args: Arrays) -> np.ndarray:
    return rounded(args[0], op.attr("format"), op.attr("group"))


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
    OpKind.SOFTMAX: lambda op, a: softmax(a[0], op.attr("scale", 1.0), op.attr("causal", False),
                                          op.attr("window")),
    OpKind.RMSNORM: lambda op, a: rmsnorm(*a, eps=op.attr("eps", 1e-6)),
    OpKind.ROPE: lambda op, a: rope(op, a[0]),
    OpKind.SILU: lambda op, a: silu(a[0]),
    OpKind.DIV: lambda op, a: a[0] / a[1],
    OpKind.GATHER: _embedding,
    OpKind.CONCAT: lambda op, a: np.concatenate(a, axis=op.attr("axis")),
    OpKind.KV_APPEND: lambda op, a: np.concatenate(a, axis=-2),
    OpKind.RESHAPE: lambda op, a: a[0].reshape(op.attr("shape")),
    OpKind.TRANSPOSE: lambda op, a: a[0].transpose(op.attr("perm")),
    OpKind.SLICE: _slice,
    OpKind.QUANTIZE: _quantize,
}
assert set(EVALUATORS) | {OpKind.INPUT, OpKind.PARAM, OpKind.MOE} | {
    k for k in OpKind if k.is_collective} == set(OpKind)


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
            dtype: type = np.float64, routing: dict[str, np.ndarray] | None = None,
            numerics: Numerics | None = None) -> dict[str, np.ndarray]:
    """Evaluate every op in topological order; return the graph's outputs by name. A graph
    with a collective is one device's part of a parallel plan and is refused: its devices run
    together (compiler.parallel.reference)."""
    run = evaluate(graph, weights, feeds, dtype, routing, numerics)
    try:
        op, _ = next(run)
    except StopIteration as done:
        return done.value
    raise GraphError(f"op '{op.name}' ({op.kind.value}) needs the values of {op.attr('ranks')} "
                     "devices: run the plan's graphs together (compiler.parallel.reference)")


Evaluation = Generator[tuple[Op, np.ndarray], np.ndarray, dict[str, np.ndarray]]


def evaluate(graph: Graph, weights: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray],
             dtype: type = np.float64, routing: dict[str, np.ndarray] | None = None,
             numerics: Numerics | None = None) -> Evaluation:
    """Evaluate every op in topological order; return the graph's outputs by name.

    At each op that needs the other ranks' values (`Op.exchanges`: a collective, a mixture of
    experts whose tokens are split over the ranks) the generator yields (op, this device's
    inputs) and resumes with the op's result, sent by the caller that holds every device's.

    A moe op routes each token to the top_k experts of its router logits; when `routing` is
    given, each moe op's choice [tokens, top_k] is recorded in it under the op's name (the
    router's real choice, which compiled programs are then routed by).
    `numerics` sees every compute op's operands and result, and gives each moe op the
    rounding of its experts' inputs (`expert_op`).
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
        elif op.exchanges:
            values[op.name] = yield op, [values[s] for s in op.inputs]
        elif op.kind is OpKind.MOE:
            args = [values[s] for s in op.inputs]
            choice = top_k_experts(args[1], op.attr("top_k"))
            if routing is not None:
                routing[op.name] = choice
            values[op.name] = moe(op if numerics is None else numerics.expert_op(op, args), args, choice)
        elif numerics is None:
            values[op.name] = EVALUATORS[op.kind](op, [values[s] for s in op.inputs])
        else:
            args = numerics.operands(op, [values[s] for s in op.inputs])
            values[op.name] = numerics.result(op, EVALUATORS[op.kind](op, args))
        if not op.kind.is_source:
            for src in op.inputs:
                remaining[src] -= 1
                if remaining[src] == 0 and src not in keep:
                    del values[src]
    return {name: values[name] for name in graph.outputs}
