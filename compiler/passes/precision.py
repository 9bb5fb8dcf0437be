"""Precision: the storage type of every parameter, decided before storage is planned.

Values are stored in the target's operand type, except layer-norm gains and biases and linear
biases, which stay in fp32: they are few, and their rounding would show in the logits.
"""
from __future__ import annotations

from dataclasses import dataclass

from isa import DType

from compiler.frontend.weights import param_roles
from compiler.ir import Graph

__all__ = ["Precision", "precision"]


@dataclass(frozen=True, slots=True)
class Precision:
    """`dtype` for values, fp32 for the parameters in `fp32` (int32 token ids stay int32)."""

    dtype: DType
    fp32: frozenset[str]

    def dump(self) -> str:
        kept = sorted(self.fp32)
        return "\n".join([f"operand and storage type: {self.dtype.value}",
                          f"kept in fp32 ({len(kept)} parameters: gains and biases):",
                          *(f"  {name}" for name in kept)])


def precision(graph: Graph, dtype: DType) -> Precision:
    """Which parameters keep fp32 (gains and biases, by how the graph uses them)."""
    roles = param_roles(graph)
    params = {p.name for p in graph.params}    # a computed gain is stored like any value
    return Precision(dtype, frozenset(n for n, r in roles.items() if r in ("gain", "bias") and n in params))
