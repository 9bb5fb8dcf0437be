"""GraphBuilder: add ops one at a time with their result types inferred.

Frontends (GPT-2 presets, Hugging Face checkpoints, .graph files) all build through this,
so shape errors are caught where the op is added, with the op named.
"""
from __future__ import annotations

from typing import Any, Sequence

from compiler.ir import DType, Graph, GraphError, Op, OpKind, TensorType, freeze_attrs
from compiler.ops import infer_type

__all__ = ["GraphBuilder"]

_PLACEHOLDER = TensorType((), DType.fp32)


class GraphBuilder:
    """Accumulates ops; `build(outputs)` returns the immutable Graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ops: dict[str, Op] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def type_of(self, name: str) -> TensorType:
        return self._ops[name].type

    def source(self, kind: OpKind, name: str, shape: Sequence[int], dtype: DType) -> str:
        return self._add(Op(name, kind, (), TensorType(tuple(shape), dtype)))

    def input(self, name: str, shape: Sequence[int], dtype: DType = DType.fp32) -> str:
        return self.source(OpKind.INPUT, name, shape, dtype)

    def param(self, name: str, shape: Sequence[int], dtype: DType = DType.fp32) -> str:
        return self.source(OpKind.PARAM, name, shape, dtype)

    def op(self, kind: OpKind, name: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Add a compute or layout op; its type is inferred from its inputs."""
        for src in inputs:
            if src not in self._ops:
                raise GraphError(f"op '{name}' ({kind.value}): unknown input '{src}'")
        draft = Op(name, kind, tuple(inputs), _PLACEHOLDER, freeze_attrs(attrs))
        result = infer_type(draft, tuple(self._ops[s].type for s in inputs))
        return self._add(Op(name, kind, tuple(inputs), result, draft.attrs))

    def _add(self, op: Op) -> str:
        if op.name in self._ops:
            raise GraphError(f"duplicate op name '{op.name}'")
        self._ops[op.name] = op
        return op.name

    def build(self, outputs: Sequence[str]) -> Graph:
        return Graph(self.name, self._ops.values(), outputs)
