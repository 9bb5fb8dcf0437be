"""The forward-only pipeline schedule of micro-batches (GPipe, inference) and its bubble.

Stage s starts micro-batch j once stage s-1 has finished j (its activations are ready) and
stage s has finished j-1 (one micro-batch at a time per stage). Hand-off time between stages is
not modelled here: a caller that knows the link adds it to the stage times. With P equal
stages of time t and m micro-batches the last one ends at (m + P - 1) t and each stage idles
(P - 1) t of it: the bubble share (P-1)/(m+P-1) (GPipe, Huang et al. 2019; reference/parallel.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Sequence

from compiler.parallel.plan import PlanError

__all__ = ["PipelineSchedule", "pipeline_schedule"]


@dataclass(frozen=True, slots=True)
class PipelineSchedule:
    """Start and end of every (stage, micro-batch), indexed [stage][microbatch], in seconds.
    Exact when the stage times are ints or Fractions."""

    start_s: tuple[tuple[Real, ...], ...]
    end_s: tuple[tuple[Real, ...], ...]

    @property
    def makespan_s(self) -> Real:
        """When the last stage finishes the last micro-batch."""
        return self.end_s[-1][-1]

    @property
    def busy_s(self) -> Real:
        """Time the stages compute, summed over stages."""
        return sum(end - start for starts, ends in zip(self.start_s, self.end_s)
                   for start, end in zip(starts, ends))

    @property
    def bubble_share(self) -> Real:
        """The share of the stages' time (stages x makespan) that they idle."""
        total = len(self.start_s) * self.makespan_s
        return (total - self.busy_s) / total


def pipeline_schedule(stage_s: Sequence[Real], microbatches: int) -> PipelineSchedule:
    """The schedule of `microbatches` micro-batches through stages taking stage_s[s] seconds
    each per micro-batch."""
    if not stage_s or any(not isinstance(t, Real) or not math.isfinite(t) or t <= 0 for t in stage_s):
        raise PlanError(f"stage times {list(stage_s)}: need at least one, each positive and finite")
    if not isinstance(microbatches, int) or isinstance(microbatches, bool) or microbatches < 1:
        raise PlanError(f"microbatches {microbatches!r}: must be a positive integer")
    starts: list[list[Real]] = []
    ends: list[list[Real]] = []
    for s, t in enumerate(stage_s):
        starts.append([])
        ends.append([])
        for j in range(microbatches):
            ready = ends[s - 1][j] if s else 0
            free = ends[s][j - 1] if j else 0
            starts[s].append(max(ready, free))
            ends[s].append(starts[s][j] + t)
    return PipelineSchedule(tuple(map(tuple, starts)), tuple(map(tuple, ends)))
