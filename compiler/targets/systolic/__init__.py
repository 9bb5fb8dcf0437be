"""The systolic-array target: precision -> storage -> attention -> dram -> floors -> sram -> emit
(docs/systolic.md)."""
from __future__ import annotations

from compiler.pipeline import Compilation, Pipeline, Step
from compiler.targets.attention_plan import AttentionPlan, plan_attention
from compiler.targets.base import Lowered
from compiler.targets.steps import PRECISION, STORAGE
from compiler.targets.systolic.lowering import SystolicLowering
from compiler.targets.systolic.memory import (DramLayout, SramFloors, SramLayout, plan_dram, plan_sram,
                                              sram_floors)

__all__ = ["PIPELINE"]


def _dram(c: Compilation) -> DramLayout:
    return plan_dram(c.graph, c["storage"], c.arch, c["attention"].elided(c["storage"].views),
                     c["precision"].stored)


def _floors(c: Compilation) -> SramFloors:
    """A fused attention chain's ops run in its kernel, not on the rings: they set no floor."""
    fused = frozenset(n for chain, _ in c["attention"].fused.values()
                      for n in (chain.scores, chain.probs, chain.context))
    return sram_floors(c.graph, c["storage"], c.arch, c.dtype, fused)


def _sram(c: Compilation) -> SramLayout:
    return plan_sram(c.arch, c.dtype, c["floors"])


def _attention(c: Compilation) -> AttentionPlan:
    """Fused attention owns the whole SRAM and accumulator while it runs; the I/O bound's M is
    both, in operand elements. Key blocks of a prefill are at most the array's width (at least
    64 rows, the chunk minimum)."""
    a = c.arch
    return plan_attention(c.graph, c["storage"].views, a.attention, c["precision"].dtype,
                          a.sram_bytes, a.acc_bytes, a.sram_bytes + a.acc_bytes,
                          key_block_max=max(64, a.cols))


def _emit(c: Compilation) -> Lowered:
    return SystolicLowering(c.graph, c.arch, c.dtype, c["storage"], c["dram"], c["sram"],
                            c["attention"], c["precision"].stored).lower()


PIPELINE = Pipeline("systolic", (PRECISION, STORAGE, Step("attention", _attention),
                                 Step("dram", _dram), Step("floors", _floors), Step("sram", _sram),
                                 Step("emit", _emit)))
