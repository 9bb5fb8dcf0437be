"""The PIM-DRAM target (PIM-GPT style): precision -> storage -> placement -> emit (docs/pim.md)."""
from __future__ import annotations

from isa import DType

from compiler.errors import CompileError
from compiler.passes.precision import Precision, precision
from compiler.pipeline import Compilation, Pipeline, Step
from compiler.targets.pim.lowered import PimLowered
from compiler.targets.pim.lowering import PimLowering
from compiler.targets.pim.placement import PimPlacement, place
from compiler.targets.steps import STORAGE

__all__ = ["PIPELINE", "PimLowered"]


def _precision(c: Compilation) -> Precision:
    """The shared decision, for bf16 only: the banks' MAC units compute in bf16."""
    if c.dtype is not DType.bf16:
        raise CompileError(f"the PIM target computes in bf16 (the MAC units' type), not {c.dtype.value}")
    return precision(c.graph, c.dtype, c.quant, narrow_kv=False)   # its KV cache: bf16 rows


def _placement(c: Compilation) -> PimPlacement:
    return place(c.graph, c["storage"], c.arch, c["precision"].quantised)


def _emit(c: Compilation) -> PimLowered:
    return PimLowering(c.graph, c.arch, c.dtype, c["storage"], c["placement"],
                       c["precision"].quantised).lower()


PIPELINE = Pipeline("pim", (Step("precision", _precision), STORAGE, Step("placement", _placement),
                            Step("emit", _emit)))
