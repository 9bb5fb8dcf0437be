"""Precision: the storage type of every parameter, decided before storage is planned.

Values are stored in the target's operand type, except layer-norm gains and biases and linear
biases, which stay in fp32: they are few, and their rounding would show in the logits; and the
weights a quantisation recipe stores as integer codes with scales (compiler/passes/quantised.py),
which the program dequantises to the operand type as it loads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from isa import DType

from compiler.frontend.weights import param_roles
from compiler.ir import Graph
from compiler.passes.quantised import StoredFormat, narrow_caches, stored_formats

if TYPE_CHECKING:
    from compiler.quant.plan import QuantPlan

__all__ = ["Precision", "precision"]


@dataclass(frozen=True, slots=True)
class Precision:
    """`dtype` for values, fp32 for the parameters in `fp32` (int32 token ids stay int32), the
    weights in `quantised` as codes and scales, and the KV caches in `kv` (an append's buffer)
    as codes with a scale per group of each token's channels."""

    dtype: DType
    fp32: frozenset[str]
    quantised: Mapping[str, StoredFormat] = field(default_factory=lambda: MappingProxyType({}))
    kv: Mapping[str, StoredFormat] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def stored(self) -> Mapping[str, StoredFormat]:
        """Every buffer stored as codes and scales: the quantised weights and KV caches."""
        return MappingProxyType({**self.quantised, **self.kv})

    def dump(self) -> str:
        kept = sorted(self.fp32)
        lines = [f"operand and storage type: {self.dtype.value}",
                 f"kept in fp32 ({len(kept)} parameters: gains and biases):",
                 *(f"  {name}" for name in kept)]
        if self.quantised:
            lines.append(f"stored quantised ({len(self.quantised)} weights, dequantised as loaded):")
            lines += [f"  {name}: {fmt.describe()}" for name, fmt in self.quantised.items()]
        if self.kv:
            lines.append(f"KV caches stored narrow ({len(self.kv)}, written by storeq, read by loadq):")
            lines += [f"  {name}: {fmt.describe()}" for name, fmt in self.kv.items()]
        return "\n".join(lines)


def precision(graph: Graph, dtype: DType, quant: "QuantPlan | None" = None,
              narrow_kv: bool = True) -> Precision:
    """Which parameters keep fp32 (gains and biases, by how the graph uses them), which
    weights `quant` (a recipe's plan for this graph) stores quantised, and (`narrow_kv`: a
    target whose loads and stores take codes) which KV caches it stores narrow."""
    roles = param_roles(graph)
    params = {p.name for p in graph.params}    # a computed gain is stored like any value
    kv = narrow_caches(graph) if narrow_kv and quant is not None else {}
    return Precision(dtype, frozenset(n for n, r in roles.items() if r in ("gain", "bias") and n in params),
                     stored_formats(graph, quant), MappingProxyType(kv))
