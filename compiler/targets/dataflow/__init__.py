"""The three-tier dataflow target (SN40L style): precision -> storage -> attention -> sections
-> placement -> emit (docs/dataflow.md)."""
from __future__ import annotations

from compiler.pipeline import Compilation, Pipeline, Step
from compiler.targets.attention_blocks import needs_mask
from compiler.targets.attention_plan import AttentionPlan, plan_attention
from compiler.targets.base import Lowered
from compiler.targets.dataflow.lowering import DataflowLowering, attention_regions
from compiler.targets.dataflow.place import ALIGN, Placement, constant_bytes, place, pmu_area
from compiler.targets.dataflow.sections import Sections, partition
from compiler.targets.steps import PRECISION, STORAGE

__all__ = ["PIPELINE"]


def _attention(c: Compilation) -> AttentionPlan:
    """Chains fused where their blocks fit the staging-ring area alone (the least a fused
    kernel gets: it also takes the PMUs its section leaves free, lowering.py); the bound's M is
    every PMU, in operand elements."""
    ring_bytes, _ = pmu_area(c.arch)
    (_, _, sram), (_, _, acc) = attention_regions(ring_bytes, 0, 0)
    return plan_attention(c.graph, c["storage"].views, c.arch.attention, c["precision"].dtype,
                          sram, acc, c.arch.sram_bytes)


def _fused_ops(c: Compilation) -> tuple[tuple[str, ...], ...]:
    return tuple((ch.scores, ch.probs, ch.context) for ch, _ in c["attention"].fused.values())


def _sections(c: Compilation) -> Sections:
    """Sections whose resident values fit the PMUs left after the staging rings."""
    ring_bytes, sram = pmu_area(c.arch)
    granularity = c.arch.kernel_granularity
    budget = sram - ring_bytes
    return Sections(partition(c.graph, c["storage"], granularity, c.arch.pcus, budget, _fused_ops(c)),
                    granularity, budget)


def _placement(c: Compilation) -> Placement:
    ring_bytes, sram = pmu_area(c.arch)
    views = c["storage"].views
    fused = c["attention"].fused.values()
    elided = c["attention"].elided(views)
    positions = sum(-(-t * 4 // ALIGN) * ALIGN for t in {ch.t for ch, _ in fused if needs_mask(ch)})
    return place(c.graph, c["storage"], c["sections"].calls, c.arch, ring_bytes, sram,
                 constant_bytes(c.graph) + positions, elided, c["precision"].stored)


def _emit(c: Compilation) -> Lowered:
    return DataflowLowering(c.graph, c.arch, c.dtype, c["storage"], c["sections"], c["placement"],
                            c["attention"], c["precision"].stored).lower()


PIPELINE = Pipeline("dataflow", (PRECISION, STORAGE, Step("attention", _attention),
                                 Step("sections", _sections), Step("placement", _placement),
                                 Step("emit", _emit)))
