"""The steps every target's pipeline starts with: the precision decision, then storage."""
from __future__ import annotations

from compiler.passes.precision import Precision, precision
from compiler.passes.storage import StoragePlan, plan_storage
from compiler.pipeline import Compilation, Step

__all__ = ["PRECISION", "STORAGE"]


def _precision(c: Compilation) -> Precision:
    return precision(c.graph, c.dtype, c.quant)


def _storage(c: Compilation) -> StoragePlan:
    p = c["precision"]
    return plan_storage(c.graph, p.dtype, p.fp32)


PRECISION = Step("precision", _precision)
STORAGE = Step("storage", _storage)
