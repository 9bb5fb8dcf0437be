"""What each op kind means for shapes and costs: shape inference, FLOPs and bytes moved.

One `OpRule` per `OpKind`, checked complete at import so a new kind cannot be silently
ignored. Cost conventions (documented in docs/graph-format.md, used by the FLOP tests):
- matmul 2*M*N*K per batch; linear adds one FLOP per output for the bias;
- add, mul: 1 per output element; layernorm 7 per element (mean, subtract, square, variance
  sum, scale by 1/std, gain, bias); gelu 8 per element (tanh form); softmax 5 per element
  (scale, subtract max, exp, sum, divide);
- rmsnorm 4 per element (square, sum, scale by 1/rms, gain); rope 3 per element (two products
  and a sum against the cos/sin tables); silu 4 per element (negate, exp, add one, divide);
  div 1 per output element;
- moe: per routed (token, expert) pair the gated MLP's three GEMMs (6*D*F), SiLU (4*F) and the
  gate product (F), plus the router softmax (5 per logit) and the weighted combine (2*D per
  pair) -- exact whatever the routing, since every token uses top_k experts; an expert-parallel
  shard (`first_expert`: it holds some of the router's experts) counts its share of the pairs,
  T*top_k*given/E rounded down, the mean under uniform routing (its routed graph is exact);
  with its tokens split over `ranks` (all-to-all dispatch), T counts every rank's tokens;
- quantize 4 per element (the group's largest magnitude, divide by the scale, round, multiply
  back): a recipe's dynamic rounding of a matmul input or a KV write (docs/formats.md);
- embedding, gather, concat, kv_append and layout ops: 0 FLOPs;
- allreduce: the adds rank `rank` does in a ring all-reduce (NCCL's order, `ring_chunks`): the
  tensor is cut into `ranks` chunks (np.array_split's sizes) and the rank adds into every chunk
  but chunk rank-1, so (ranks-1)/ranks x elements exactly when ranks divides them.
- all_gather, all_to_all: 0 FLOPs; bytes are what the rank sends on its link: its tensor to
  each of the other ranks-1 (all_gather), every chunk but its own (all_to_all).
Bytes moved assume an unfused execution: each compute op reads its inputs and writes its
result; an embedding or gather reads only the rows it gathers; a moe reads the weights of at
most min(E, T * top_k) experts (which ones is decided by routing; the routed graph's costs
are exact); a KV append writes the new entries in
place (the cache is not copied); layout ops are views and move nothing. An allreduce counts
the bytes its rank sends over its link, not memory traffic: every chunk but chunk rank in the
reduce-scatter and every chunk but chunk rank+1 in the all-gather, 2(ranks-1)/ranks x the
tensor when ranks divides it (nccl-tests' bus-bandwidth factor, reference/parallel.md).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from isa.qformats import QFORMATS, group_error

from compiler.ir import DType, GraphError, Op, OpKind, TensorType

__all__ = ["OpRule", "RULES", "infer_type", "op_flops", "op_bytes", "ARITY", "ATTRIBUTES",
           "attribute_error", "ring_chunks"]

Types = tuple[TensorType, ...]


@dataclass(frozen=True, slots=True)
class OpRule:
    """Shape inference and cost model of one op kind."""

    arity: tuple[int, int]                          # (min, max) number of inputs
    infer: Callable[[Op, Types], TensorType]        # op.type is ignored by infer
    flops: Callable[[Op, Types], int]
    bytes_moved: Callable[[Op, Types], int]


def _fail(op: Op, message: str) -> GraphError:
    return GraphError(f"op '{op.name}' ({op.kind.value}): {message}")


def _shape(t: TensorType) -> list[int]:
    return list(t.shape)


def _float(op: Op, *types: TensorType) -> None:
    for t in types:
        if t.dtype in (DType.int8, DType.int32):
            raise _fail(op, f"expects floating-point operands, got {t}")


def _broadcast(op: Op, a: TensorType, b: TensorType) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise _fail(op, f"shapes {_shape(a)} and {_shape(b)} do not broadcast") from None


def _source(op: Op, types: Types) -> TensorType:
    return op.type


def _embedding(op: Op, types: Types) -> TensorType:
    table, ids = types
    if len(table.shape) != 2:
        raise _fail(op, f"table must be 2-D, got {_shape(table)}")
    if ids.dtype is not DType.int32:
        raise _fail(op, f"ids must be int32, got {ids}")
    return TensorType(ids.shape + (table.shape[1],), table.dtype)


def _matmul(op: Op, types: Types) -> TensorType:
    a, b = types
    _float(op, a, b)
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise _fail(op, f"operands must be at least 2-D, got {_shape(a)} and {_shape(b)}")
    k_b, n = (b.shape[-1], b.shape[-2]) if op.attr("transpose_b", False) else b.shape[-2:]
    if a.shape[-1] != k_b:
        raise _fail(op, f"inner dimensions differ: {_shape(a)} x {_shape(b)}"
                        f"{' (b transposed)' if op.attr('transpose_b', False) else ''}")
    # b's batch dimensions equal a's or are 1 (broadcast): grouped-query attention multiplies
    # every query head of a group by its one KV head, which is stored once
    if len(b.shape) > 2 and (len(b.shape) != len(a.shape) or any(
            db not in (1, da) for da, db in zip(a.shape[:-2], b.shape[:-2]))):
        raise _fail(op, f"batch dimensions differ: {_shape(a)} x {_shape(b)}")
    return TensorType(a.shape[:-1] + (n,), a.dtype)


def _linear(op: Op, types: Types) -> TensorType:
    x, w = types[0], types[1]
    _float(op, *types)
    if len(w.shape) != 2 or x.shape[-1:] != w.shape[:1]:
        raise _fail(op, f"weight {_shape(w)} does not match input {_shape(x)}")
    if len(types) == 3 and types[2].shape != w.shape[1:]:
        raise _fail(op, f"bias {_shape(types[2])} must be [{w.shape[1]}]")
    return TensorType(x.shape[:-1] + (w.shape[1],), x.dtype)


def _elementwise(op: Op, types: Types) -> TensorType:
    a, b = types
    _float(op, a, b)
    return TensorType(_broadcast(op, a, b), a.dtype)


def _layernorm(op: Op, types: Types) -> TensorType:
    x, gain, bias = types
    _float(op, *types)
    if gain.shape != x.shape[-1:] or bias.shape != x.shape[-1:]:
        raise _fail(op, f"gain {_shape(gain)} and bias {_shape(bias)} must be [{x.shape[-1]}]")
    if not op.attr("eps", 1e-5) > 0:
        raise _fail(op, f"eps must be positive, got {op.attr('eps')}")
    return x


def _unary(op: Op, types: Types) -> TensorType:
    _float(op, types[0])
    return types[0]


def _softmax(op: Op, types: Types) -> TensorType:
    (x,) = types
    _float(op, x)
    if op.attr("window") is not None and not op.attr("causal", False):
        raise _fail(op, "a sliding window needs causal=true")
    if op.attr("causal", False) and (len(x.shape) < 2 or x.shape[-1] < x.shape[-2]):
        raise _fail(op, f"causal softmax needs [..., S, T] with T >= S, got {_shape(x)}")
    return x


def _rmsnorm(op: Op, types: Types) -> TensorType:
    x, gain = types
    _float(op, *types)
    if gain.shape != x.shape[-1:]:
        raise _fail(op, f"gain {_shape(gain)} must be [{x.shape[-1]}]")
    return x


def _rope(op: Op, types: Types) -> TensorType:
    (x,) = types
    _float(op, x)
    if len(x.shape) < 2 or x.shape[-1] % 2:
        raise _fail(op, f"needs [..., seq, head_dim] with an even head_dim, got {_shape(x)}")
    scaling = [n for n in _ROPE_SCALING if op.attr(n) is not None]
    if scaling and len(scaling) != len(_ROPE_SCALING):
        missing = next(n for n in _ROPE_SCALING if op.attr(n) is None)
        raise _fail(op, f"llama3 frequency scaling needs '{missing}' too")
    if scaling and not op.attr("high_freq_factor") > op.attr("low_freq_factor"):
        raise _fail(op, "high_freq_factor must exceed low_freq_factor")
    pairs = op.attr("pairs")
    if pairs is not None and sorted(pairs) != list(range(x.shape[-1] // 2)):
        raise _fail(op, f"attribute 'pairs' must order the {x.shape[-1] // 2} rotated pairs of "
                        f"head_dim {x.shape[-1]} (each of 0..{x.shape[-1] // 2 - 1} once), got {_show(pairs)}")
    return x


def _div(op: Op, types: Types) -> TensorType:
    return _elementwise(op, types)


def _quantize(op: Op, types: Types) -> TensorType:
    """Same type as x. `format` is a code format a vquant rounds to (isa/qformats.py); `group`
    the elements of the last axis one scale covers (0: one scale for the whole tensor); an MX
    format's group is its block of 32, a bfp format's its block (any), fp8 takes one scale."""
    (x,) = types
    _float(op, x)
    fmt, group = op.attr("format"), op.attr("group")
    length = x.shape[-1] if x.shape else 1
    if group and length % group:
        raise _fail(op, f"group {group} does not divide the last axis ({length} elements)")
    if (why := group_error(fmt, group)) is not None:
        raise _fail(op, f"group {group}: {why}")
    return x


def _concat(op: Op, types: Types) -> TensorType:
    first = types[0]
    axis = op.attr("axis")
    if not -len(first.shape) <= axis < len(first.shape):
        raise _fail(op, f"axis {axis} out of range for {_shape(first)}")
    axis %= len(first.shape)
    for t in types[1:]:
        if t.dtype != first.dtype or len(t.shape) != len(first.shape) or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise _fail(op, f"cannot concatenate {t} with {first} along axis {axis}")
    total = sum(t.shape[axis] for t in types)
    return TensorType(first.shape[:axis] + (total,) + first.shape[axis + 1:], first.dtype)


def _moe(op: Op, types: Types) -> TensorType:
    x, logits, *experts = types
    _float(op, *types)
    if len(experts) % 3:
        raise _fail(op, f"takes x, router logits and (gate, up, down) per expert, got "
                        f"{len(types)} inputs")
    n_experts = len(experts) // 3
    first = op.attr("first_expert", None)
    routed = n_experts if first is None else logits.shape[-1]
    if len(x.shape) != 2 or logits.shape != (x.shape[0], routed):
        raise _fail(op, f"x {_shape(x)} must be [tokens, hidden] and router logits "
                        f"{_shape(logits)} [tokens, {routed}]")
    if first is not None and first + n_experts > routed:
        raise _fail(op, f"experts {first}..{first + n_experts - 1} (first_expert and the "
                        f"{n_experts} given) run past the router's {routed}")
    ranks, rank = op.attr("ranks"), op.attr("rank")
    if (ranks is None) != (rank is None) or ranks is not None and (
            first is None or rank >= ranks or routed % ranks or n_experts != routed // ranks):
        raise _fail(op, "tokens split over ranks (expert parallelism by all-to-all) take ranks, "
                        "rank below it and first_expert, with the router's experts split evenly "
                        "over the ranks")
    d, f = x.shape[1], experts[0].shape[-1]
    for e in range(n_experts):
        gate, up, down = experts[3 * e: 3 * e + 3]
        if gate.shape != (d, f) or up.shape != (d, f) or down.shape != (f, d):
            raise _fail(op, f"expert {e}: gate {_shape(gate)}, up {_shape(up)}, down "
                            f"{_shape(down)} must be [{d}, {f}], [{d}, {f}], [{f}, {d}]")
    if not 1 <= op.attr("top_k") <= routed:
        raise _fail(op, f"top_k {op.attr('top_k')} must be from 1 to the {routed} experts")
    _expert_rounding(op, d, f)
    return x


def _expert_rounding(op: Op, d: int, f: int) -> None:
    """A moe op whose experts' matmul inputs a recipe rounds (act_format, act_group for each
    expert's rows of x, hidden_group for its gated hidden): all three or none, each group one
    the format takes that divides its axis (d, f)."""
    given = [op.attr(name) is not None for name in _ROUNDING]
    if not any(given):
        return
    if not all(given):
        raise _fail(op, "rounded experts take act_format, act_group and hidden_group together")
    fmt = op.attr("act_format")
    for name, length in (("act_group", d), ("hidden_group", f)):
        group = op.attr(name)
        if (why := group_error(fmt, group)) is not None:
            raise _fail(op, f"{name} {group}: {why}")
        if group and length % group:
            raise _fail(op, f"{name} {group} does not divide the {length} elements it scales")


def _allreduce(op: Op, types: Types) -> TensorType:
    (x,) = types
    _float(op, x)
    if op.attr("rank") >= op.attr("ranks"):
        raise _fail(op, f"rank {op.attr('rank')} must be below ranks {op.attr('ranks')}")
    return x


def _all_gather(op: Op, types: Types) -> TensorType:
    (x,) = _collective(op, types)
    return TensorType((op.attr("ranks") * x.shape[0], *x.shape[1:]), x.dtype)


def _all_to_all(op: Op, types: Types) -> TensorType:
    (x,) = _collective(op, types)
    if x.shape[0] % op.attr("ranks"):
        raise _fail(op, f"axis 0 of {_shape(x)} does not split into {op.attr('ranks')} chunks")
    return x


def _collective(op: Op, types: Types) -> Types:
    (x,) = types
    if not x.shape:
        raise _fail(op, "needs a tensor with a leading axis")
    if op.attr("rank") >= op.attr("ranks"):
        raise _fail(op, f"rank {op.attr('rank')} must be below ranks {op.attr('ranks')}")
    return types


def _kv_append(op: Op, types: Types) -> TensorType:
    cache, new = types
    if len(cache.shape) < 2 or cache.shape[:-2] != new.shape[:-2] \
            or cache.shape[-1] != new.shape[-1] or cache.dtype != new.dtype:
        raise _fail(op, f"cannot append {new} to cache {cache}")
    return TensorType(cache.shape[:-2] + (cache.shape[-2] + new.shape[-2], cache.shape[-1]),
                      cache.dtype)


def _reshape(op: Op, types: Types) -> TensorType:
    (x,) = types
    shape = tuple(op.attr("shape", ()))
    if math.prod(shape) != x.numel or any(d < 0 for d in shape):
        raise _fail(op, f"cannot reshape {_shape(x)} to {list(shape)}")
    return TensorType(shape, x.dtype)


def _transpose(op: Op, types: Types) -> TensorType:
    (x,) = types
    perm = tuple(op.attr("perm", ()))
    if sorted(perm) != list(range(len(x.shape))):
        raise _fail(op, f"perm {list(perm)} is not a permutation of {len(x.shape)} axes")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


def _slice(op: Op, types: Types) -> TensorType:
    (x,) = types
    axis, start, stop = op.attr("axis"), op.attr("start"), op.attr("stop")
    if not isinstance(axis, int) or not -len(x.shape) <= axis < len(x.shape):
        raise _fail(op, f"axis {axis} out of range for {_shape(x)}")
    axis %= len(x.shape)
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= x.shape[axis]):
        raise _fail(op, f"slice [{start}:{stop}] out of range for axis {axis} of {_shape(x)}")
    return TensorType(x.shape[:axis] + (stop - start,) + x.shape[axis + 1:], x.dtype)


def _zero(op: Op, types: Types) -> int:
    return 0


def _per_element(n: int) -> Callable[[Op, Types], int]:
    return lambda op, types: n * op.type.numel


def _matmul_flops(op: Op, types: Types) -> int:
    return 2 * op.type.numel * types[0].shape[-1]


def _linear_flops(op: Op, types: Types) -> int:
    return 2 * op.type.numel * types[0].shape[-1] + (op.type.numel if len(types) == 3 else 0)


def _moe_flops(op: Op, types: Types) -> int:
    x, logits, gate = types[0], types[1], types[2]
    (t, d), (e, f), k = x.shape, (logits.shape[1], gate.shape[1]), op.attr("top_k")
    tokens = t * op.attr("ranks", 1)                  # split over ranks: every rank's tokens
    pairs = tokens * k * ((len(types) - 2) // 3) // e  # all T k pairs, or a shard's 1/ep
    return pairs * (6 * d * f + 5 * f + 2 * d) + 5 * t * e


def ring_chunks(numel: int, ranks: int) -> list[int]:
    """Element counts of the chunks a ring all-reduce of `numel` elements over `ranks` devices
    passes around: np.array_split's, the first numel % ranks chunks one element larger."""
    return [numel // ranks + (c < numel % ranks) for c in range(ranks)]


def _allreduce_flops(op: Op, types: Types) -> int:
    n, r, chunks = op.attr("ranks"), op.attr("rank"), ring_chunks(op.type.numel, op.attr("ranks"))
    return op.type.numel - chunks[(r - 1) % n]


def _allreduce_bytes(op: Op, types: Types) -> int:
    n, r, chunks = op.attr("ranks"), op.attr("rank"), ring_chunks(op.type.numel, op.attr("ranks"))
    return (2 * op.type.numel - chunks[r] - chunks[(r + 1) % n]) * op.type.dtype.itemsize


def _all_gather_bytes(op: Op, types: Types) -> int:
    return (op.attr("ranks") - 1) * types[0].size_bytes


def _all_to_all_bytes(op: Op, types: Types) -> int:
    return (op.attr("ranks") - 1) * types[0].size_bytes // op.attr("ranks")


def _moe_bytes(op: Op, types: Types) -> int:
    x, logits, *experts = types
    n_experts = len(experts) // 3
    touched = min(n_experts, x.shape[0] * op.attr("top_k"))
    per_expert = sum(t.size_bytes for t in experts[:3])
    return x.size_bytes + logits.size_bytes + op.type.size_bytes + touched * per_expert


def _rw_bytes(op: Op, types: Types) -> int:
    return sum(t.size_bytes for t in types) + op.type.size_bytes


def _embedding_bytes(op: Op, types: Types) -> int:
    return types[1].size_bytes + 2 * op.type.size_bytes


def _kv_append_bytes(op: Op, types: Types) -> int:
    return 2 * types[1].size_bytes


_COMPUTE = dict(bytes_moved=_rw_bytes)
MAX_EXPERTS = 1024
_ROPE_SCALING = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position")
RULES: dict[OpKind, OpRule] = {
    OpKind.INPUT: OpRule((0, 0), _source, _zero, _zero),
    OpKind.PARAM: OpRule((0, 0), _source, _zero, _zero),
    OpKind.EMBEDDING: OpRule((2, 2), _embedding, _zero, _embedding_bytes),
    OpKind.MATMUL: OpRule((2, 2), _matmul, _matmul_flops, **_COMPUTE),
    OpKind.LINEAR: OpRule((2, 3), _linear, _linear_flops, **_COMPUTE),
    OpKind.ADD: OpRule((2, 2), _elementwise, _per_element(1), **_COMPUTE),
    OpKind.MUL: OpRule((2, 2), _elementwise, _per_element(1), **_COMPUTE),
    OpKind.LAYERNORM: OpRule((3, 3), _layernorm, _per_element(7), **_COMPUTE),
    OpKind.GELU: OpRule((1, 1), _unary, _per_element(8), **_COMPUTE),
    OpKind.SOFTMAX: OpRule((1, 1), _softmax, _per_element(5), **_COMPUTE),
    OpKind.KV_APPEND: OpRule((2, 2), _kv_append, _zero, _kv_append_bytes),
    OpKind.RMSNORM: OpRule((2, 2), _rmsnorm, _per_element(4), **_COMPUTE),
    OpKind.ROPE: OpRule((1, 1), _rope, _per_element(3), **_COMPUTE),
    OpKind.SILU: OpRule((1, 1), _unary, _per_element(4), **_COMPUTE),
    OpKind.DIV: OpRule((2, 2), _div, _per_element(1), **_COMPUTE),
    OpKind.GATHER: OpRule((2, 2), _embedding, _zero, _embedding_bytes),
    OpKind.CONCAT: OpRule((1, 1 << 16), _concat, _zero, **_COMPUTE),
    OpKind.MOE: OpRule((5, 2 + 3 * MAX_EXPERTS), _moe, _moe_flops, _moe_bytes),
    OpKind.QUANTIZE: OpRule((1, 1), _quantize, _per_element(4), **_COMPUTE),
    OpKind.ALLREDUCE: OpRule((1, 1), _allreduce, _allreduce_flops, _allreduce_bytes),
    OpKind.ALL_GATHER: OpRule((1, 1), _all_gather, _zero, _all_gather_bytes),
    OpKind.ALL_TO_ALL: OpRule((1, 1), _all_to_all, _zero, _all_to_all_bytes),
    OpKind.RESHAPE: OpRule((1, 1), _reshape, _zero, _zero),
    OpKind.TRANSPOSE: OpRule((1, 1), _transpose, _zero, _zero),
    OpKind.SLICE: OpRule((1, 1), _slice, _zero, _zero),
}
assert set(RULES) == set(OpKind), f"ops without a rule: {set(OpKind) - set(RULES)}"
ARITY = {kind: rule.arity for kind, rule in RULES.items()}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute an op kind takes: which values it accepts, and whether it must be given."""

    accepts: Callable[[Any], bool]
    expected: str                      # for errors: "true or false", "a list of integers", ...
    required: bool = False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_BOOL = Attribute(lambda v: isinstance(v, bool), "true or false")
_INT = Attribute(_is_int, "an integer", required=True)
_INTS = Attribute(lambda v: isinstance(v, tuple) and all(map(_is_int, v)), "a list of integers",
                  required=True)
def _is_finite(v: Any) -> bool:
    """An int or float that a float64 holds finitely (10**400 does not)."""
    if not (_is_int(v) or isinstance(v, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


_FINITE = Attribute(_is_finite, "a finite number")
_WINDOW = Attribute(lambda v: _is_int(v) and v >= 1, "a positive integer (keys visible to a query)")
_START = Attribute(lambda v: _is_int(v) and v >= 0, "a non-negative integer (the first row's position)",
                   required=True)
_POSITIVE_INT = Attribute(lambda v: _is_int(v) and v >= 1, "a positive integer")
_RANKS = Attribute(lambda v: _is_int(v) and v >= 2, "an integer of at least 2 (the devices)",
                   required=True)
_RANK = Attribute(lambda v: _is_int(v) and v >= 0, "a non-negative integer (this device's index)",
                  required=True)
_SPLIT_RANKS = Attribute(lambda v: _is_int(v) and v >= 2,
                         "an integer of at least 2 (the ranks its tokens are split over)")
_SPLIT_RANK = Attribute(lambda v: _is_int(v) and v >= 0, "a non-negative integer (this rank)")
_TOP_K = Attribute(lambda v: _is_int(v) and v >= 1, "a positive integer", required=True)
_FIRST_EXPERT = Attribute(lambda v: _is_int(v) and v >= 0,
                          "a non-negative integer (the router's id of the first expert given)")
_POSITIVE = Attribute(lambda v: _is_finite(v) and v > 0, "a positive finite number")
_FORMAT = Attribute(lambda v: v in QFORMATS, f"a code format ({', '.join(QFORMATS)})",
                    required=True)
_GROUP = Attribute(lambda v: _is_int(v) and v >= 0,
                   "a non-negative integer (elements per scale; 0: one scale)", required=True)
_ROUNDING = ("act_format", "act_group", "hidden_group")     # a moe op's rounded expert inputs
_THETA = Attribute(lambda v: _is_finite(v) and v > 1, "a finite number above 1 (the RoPE base)",
                   required=True)
# a rope's rotated pairs in a channel order folded into its projections (compiler/passes/kv_fold.py)
_PAIRS = Attribute(lambda v: isinstance(v, tuple) and all(map(_is_int, v)),
                   "a list of integers (the frequency index of each rotated pair)")

# Every attribute each op kind reads (docs/graph-format.md lists them); any other is refused,
# so a misspelt `casual=true` cannot silently mean a non-causal softmax.
ATTRIBUTES: dict[OpKind, dict[str, Attribute]] = {
    **{kind: {} for kind in OpKind},
    OpKind.MATMUL: {"transpose_b": _BOOL},
    OpKind.LAYERNORM: {"eps": _POSITIVE},
    OpKind.SOFTMAX: {"scale": _FINITE, "causal": _BOOL, "window": _WINDOW},
    OpKind.RMSNORM: {"eps": _POSITIVE},
    OpKind.ROPE: {"theta": _THETA, "start": _START, "factor": _POSITIVE, "low_freq_factor": _POSITIVE,
                  "high_freq_factor": _POSITIVE, "original_max_position": _POSITIVE_INT,
                  "pairs": _PAIRS},
    OpKind.CONCAT: {"axis": _INT},
    OpKind.QUANTIZE: {"format": _FORMAT, "group": _GROUP},
    OpKind.MOE: {"top_k": _TOP_K, "norm_topk_prob": _BOOL, "first_expert": _FIRST_EXPERT,
                 "ranks": _SPLIT_RANKS, "rank": _SPLIT_RANK,
                 "act_format": replace(_FORMAT, required=False),
                 "act_group": replace(_GROUP, required=False),
                 "hidden_group": replace(_GROUP, required=False)},
    OpKind.ALLREDUCE: {"ranks": _RANKS, "rank": _RANK},
    OpKind.ALL_GATHER: {"ranks": _RANKS, "rank": _RANK},
    OpKind.ALL_TO_ALL: {"ranks": _RANKS, "rank": _RANK},
    OpKind.RESHAPE: {"shape": _INTS},
    OpKind.TRANSPOSE: {"perm": _INTS},
    OpKind.SLICE: {"axis": _INT, "start": _INT, "stop": _INT},
}


def attribute_error(kind: OpKind, name: str, value: Any) -> str | None:
    """Why `name=value` is not an attribute of `kind`, or None when it is fine."""
    known = ATTRIBUTES[kind]
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        takes = f"{kind.value} takes {', '.join(known)}" if known else f"{kind.value} takes none"
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown attribute '{name}' = {_show(value)} ({takes}{hint})"
    if not known[name].accepts(value):
        return f"attribute '{name}' must be {known[name].expected}, got {_show(value)}"
    return None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


def _check_attributes(op: Op) -> None:
    for name, value in op.attrs:
        problem = attribute_error(op.kind, name, value)
        if problem:
            raise _fail(op, problem)
    given = {name for name, _ in op.attrs}
    missing = [n for n, a in ATTRIBUTES[op.kind].items() if a.required and n not in given]
    if missing:
        raise _fail(op, f"missing attribute '{missing[0]}'")


def infer_type(op: Op, input_types: Types) -> TensorType:
    """The result type `op` must have given its inputs; raises GraphError naming the op."""
    _check_attributes(op)
    lo, hi = RULES[op.kind].arity
    if not lo <= len(input_types) <= hi:
        expected = str(lo) if lo == hi else f"{lo} to {hi}"
        raise _fail(op, f"takes {expected} inputs, got {len(input_types)}")
    return RULES[op.kind].infer(op, input_types)


def op_flops(op: Op, input_types: Types) -> int:
    return RULES[op.kind].flops(op, input_types)


def op_bytes(op: Op, input_types: Types) -> int:
    return RULES[op.kind].bytes_moved(op, input_types)

