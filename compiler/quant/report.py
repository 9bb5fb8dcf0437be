"""What a recipe costs the logits and what it saves in bytes, per recipe.

Logits: every position of the tokens, as a prefill of all but the last token followed by a
decode step of the last one against the cache that prefill wrote (so the KV cache's format is
read back both within a pass and across passes), quantised against the same run unquantised,
in the same dtype (float32 by default): the largest absolute difference, that difference over
the largest reference logit, and the share of positions whose top-1 token is the same.

Bytes (isa.formats.bits_per_element: elements and their scales' share), against BF16:
- weights: the parameters the recipe quantises, in their formats; `weights_read` the bytes a
  pass reads of them once each, bit-nested experts at the width they are read at (nested.py:
  b of W bits reads b/W of the elements' bytes, the scales whole); `weights_bf16` the same
  tensors in BF16; `kept` every other parameter (kept weights, embeddings, gains, biases) in BF16;
- kv_per_token: K and V of every layer for one token (a scale per tensor: one per token's write);
- activations_per_token: every planned matmul's input for one token, a mixture's top_k
  experts' included (kept inputs in BF16).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from isa.formats import bits_per_element, parse_format

from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import Model
from compiler.ir import Graph
from compiler.phase import prefill
from compiler.quant.model import QuantisedModel, quantise
from compiler.quant.plan import QuantPlan, scale_group
from compiler.quant.recipe import Recipe, TensorQuant

__all__ = ["RoleBytes", "RecipeReport", "role_bytes", "run_logits", "recipe_reports", "render"]

BF16_BITS = 16          # the baseline every role is compared with
_NONE = Recipe("none")  # no role quantised: the reference run, on the model's weights or others


@dataclass(frozen=True, slots=True)
class RoleBytes:
    weights: float
    weights_read: float
    weights_bf16: float
    kept: float
    kv_per_token: float
    kv_per_token_bf16: float
    activations_per_token: float
    activations_per_token_bf16: float


@dataclass(frozen=True, slots=True)
class RecipeReport:
    recipe: str
    max_abs_error: float        # max |quantised - reference| over every logit
    relative_error: float       # that, over max |reference|
    top1_agreement: float       # share of positions whose argmax is the reference's
    positions: int
    bytes: RoleBytes

    def as_dict(self) -> dict:
        return asdict(self)


def _bits(quant: TensorQuant, length: int, elements: int, head_dim: int | None = None) -> float:
    return bits_per_element(quant.format, scale_group(quant, length, head_dim), elements)


def role_bytes(graph: Graph, plan: QuantPlan, widths: Mapping[str, int] | None = None) -> RoleBytes:
    """Bytes by role of `plan` on `graph`; per-token figures are the pass's over its tokens
    (a one-token pass: a scale per tensor is one per token). `widths`: the bits bit-nested
    weights are read at (QuantizedWeights.widths)."""
    weights = weights_read = weights_bf16 = kept = 0.0
    for param in graph.params:
        use, n = plan.weights.get(param.name), param.type.numel
        if use is None or use.quant is None:
            kept += n * BF16_BITS / 8
            continue
        shape = param.type.shape
        length = shape[-1] if use.contracted_last else shape[-2]
        stored = n * _bits(use.quant, length, n) / 8
        bits = (widths or {}).get(param.name)
        weights += stored
        weights_read += stored if bits is None else n * _bits(
            replace(use.quant, format=parse_format(f"int{bits}")), length, n) / 8
        weights_bf16 += n * BF16_BITS / 8
    kv = kv_bf16 = 0.0              # a token's channels; a scale per tensor is shared by the
    for name, write in plan.kv.items():     # pass's tokens (bits_per_element of its elements)
        channels, elements = write.heads * write.head_dim, graph[name].type.numel
        kv_bf16 += channels * BF16_BITS / 8
        kv += channels * (BF16_BITS if write.quant is None else
                          _bits(write.quant, channels, elements, write.head_dim)) / 8
    acts = acts_bf16 = 0.0
    for name, quant in plan.activations.items():
        t = graph[graph[name].inputs[0]].type
        channels = t.shape[-1]
        acts_bf16 += channels * BF16_BITS / 8
        acts += channels * (BF16_BITS if quant is None else _bits(quant, channels, t.numel)) / 8
    for name, quant in plan.experts.items():    # each of a token's top_k experts reads its row
        op = graph[name]                        # of x (gate, up) and its gated hidden (down)
        x, k = graph[op.inputs[0]].type, op.attr("top_k")
        for channels in (x.shape[-1], graph[op.inputs[2]].type.shape[-1]):
            acts_bf16 += k * channels * BF16_BITS / 8
            acts += k * channels * (BF16_BITS if quant is None else
                                    _bits(quant, channels, channels * x.shape[0])) / 8
    return RoleBytes(weights, weights_read, weights_bf16, kept, kv, kv_bf16, acts, acts_bf16)


def run_logits(model: Model, tokens: Sequence[int], dtype: type = np.float32,
               variant: QuantisedModel | None = None) -> np.ndarray:
    """Logits [len(tokens), vocab]: a prefill of tokens[:-1], then a decode step of the last."""
    return np.concatenate([prefill_logits(model, tokens[:-1], dtype, variant),
                           decode_logits(model, tokens, dtype, variant)])


def recipe_reports(model: Model, recipes: Sequence[str | Recipe], tokens: Sequence[int],
                   dtype: type = np.float32, weights: Mapping[str, np.ndarray] | None = None,
                   calibration: Sequence[int] | None = None,
                   expert_bits: str | None = None) -> list[RecipeReport]:
    """One report per recipe on `tokens` (at least 2). `calibration` orders the channels of a
    rearranged KV cache and ranks a `hot` expert-bits policy's experts (default: `tokens`
    themselves); `expert_bits`: the widths bit-nested experts are read at (nested.py)."""
    reference = run_logits(model, tokens, dtype, quantise(model, _NONE, weights))
    one_token = model.graph(prefill(1))
    reports = []
    for recipe in recipes:
        q = quantise(model, recipe, weights, calibration if calibration is not None else tokens,
                     expert_bits)
        got = run_logits(model, tokens, dtype, q)
        err = float(np.abs(got.astype(np.float64) - reference).max())
        reports.append(RecipeReport(
            q.recipe.name, err, err / float(np.abs(reference).max()),
            float(np.mean(got.argmax(-1) == reference.argmax(-1))), len(reference),
            role_bytes(one_token, q.plan(one_token), q.weights.widths)))
    return reports


def render(reports: Sequence[RecipeReport]) -> str:
    """A fixed-width table: errors, top-1 agreement, bytes against BF16."""
    head = (f"{'recipe':<22} {'max abs err':>11} {'rel err':>9} {'top-1':>6} "
            f"{'weights/bf16':>12} {'KV B/token':>10} {'act B/token':>11}")
    rows = [head, "-" * len(head)]
    for r in reports:
        b = r.bytes
        ratio = b.weights / b.weights_bf16 if b.weights_bf16 else 1.0
        rows.append(f"{r.recipe:<22} {r.max_abs_error:>11.4g} {r.relative_error:>9.4g} "
                    f"{r.top1_agreement:>6.1%} {ratio:>12.4f} {b.kv_per_token:>10.1f} "
                    f"{b.activations_per_token:>11.1f}")
    return "\n".join(rows)
