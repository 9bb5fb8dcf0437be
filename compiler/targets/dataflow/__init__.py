"""The three-tier dataflow target (SN40L style): precision -> storage -> sections -> placement
-> emit (docs/dataflow.md)."""
from __future__ import annotations

from compiler.pipeline import Compilation, Pipeline, Step
from compiler.targets.base import Lowered
from compiler.targets.dataflow.lowering import DataflowLowering
from compiler.targets.dataflow.place import Placement, constant_bytes, place, pmu_area
from compiler.targets.dataflow.sections import Sections, partition
from compiler.targets.steps import PRECISION, STORAGE

__all__ = ["PIPELINE"]



def _sections(c: Compilation) -> Sections:
    """Sections whose resident values fit the PMUs left after the staging rings."""
    ring_bytes, sram = pmu_area(c.arch)
    granularity = c.arch.kernel_granularity
    budget = sram - ring_bytes
    return Sections(partition(c.graph, c["storage"], granularity, c.arch.pcus, budget), granularity, budget)


def _placement(c: Compilation) -> Placement:
    ring_bytes, sram = pmu_area(c.arch)
    return place(c.graph, c["storage"], c["sections"].calls, c.arch, ring_bytes, sram, constant_bytes(c.graph))


def _emit(c: Compilation) -> Lowered:
    return DataflowLowering(c.graph, c.arch, c.dtype, c["storage"], c["sections"], c["placement"]).lower()


PIPELINE = Pipeline("dataflow", (PRECISION, STORAGE, Step("sections", _sections),
                                 Step("placement", _placement), Step("emit", _emit)))
