"""SimResult: everything one simulation measured, as a typed object that serialises to JSON."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["SimResult", "OpStats", "GpuComparison", "TargetReport"]


@dataclass(frozen=True, slots=True)
class OpStats:
    """One graph op's share: the span from its first start to its last end, busy cycles per
    unit, dynamic energy and useful MACs."""

    name: str
    cycles: int
    busy_cycles: dict[str, int]
    energy_j: float
    macs: int


class TargetReport(Protocol):
    """A machine's own figures after a run (PimReport, DataflowReport): typed fields for the
    reports, and the form they take in the result's JSON."""

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class GpuComparison:
    """The same graph on one GPU (sim/gpu.py's model) against the simulated accelerator."""

    mode: str                          # graph (launch cost per kernel) or eager
    time_s: float
    energy_j: float
    avg_power_w: float
    speedup: float | None              # GPU time / accelerator time
    energy_efficiency: float | None    # GPU energy / accelerator energy
    memory_note: str = ""              # set when the model does not fit the GPU's memory
    recipe: str = ""                   # the quantisation recipe the GPU ran (tessel/gpu_quant.py)
    attention: str = "unfused"         # how it ran attention (tessel/gpu_kernels.py ATTENTION)

    def to_json(self) -> dict[str, Any]:
        """The fields, without an empty memory note or recipe or the default attention (the
        JSON of an fp16 run of a model that fits is as before)."""
        d = dataclasses.asdict(self)
        for key in ("memory_note", "recipe"):
            if not d[key]:
                del d[key]
        if d["attention"] == "unfused":
            del d["attention"]
        return d


@dataclass(frozen=True)
class SimResult:
    target: str
    arch_name: str
    cycles: int
    clock_hz: float
    instructions: int
    energy_breakdown_j: dict[str, float]     # compute, sram, dram, vector, static (per target)
    unit_busy_cycles: dict[str, int]         # per unit kind (dma, mxu, vpu, ...)
    utilization: dict[str, float]            # busy / (cycles x queues of that unit)
    mac_utilization: float                   # useful MACs / (MAC units x cycles)
    macs: int
    bytes: dict[str, int]                    # traffic per memory tier
    ops: tuple[OpStats, ...]                 # sorted by cycles, largest first
    arch: dict[str, Any]                     # the architecture, as simulated
    assumptions: tuple[str, ...]
    arch_summary: str = ""                   # the architecture in one line
    target_report: TargetReport | None = None            # what only this target measures
    gpu: dict[str, GpuComparison] = field(default_factory=dict)   # by GPU preset name
    logits_rel_error: float | None = None    # numeric runs: max |sim - ref| / max |ref|
    tokens: int | None = None                # numeric runs: tokens fed
    workload: dict[str, Any] = field(default_factory=dict)   # the model's own figures: KV bytes
                                             # per token, routing decision and expert traffic
    attention: dict[str, Any] = field(default_factory=dict)  # attention's off-chip traffic and
                                             # its I/O lower bound (tessel/attention.py)
    sim_peak_rss_bytes: int | None = None    # `tessel sim`: the process's peak resident memory
                                             # at the end of the run (tessel/budget.py)

    @property
    def time_s(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def energy_j(self) -> float:
        return sum(self.energy_breakdown_j.values())

    def extra_json(self) -> dict[str, Any]:
        """The figures beyond the common ones, as the JSON shows them after those: the
        architecture line, the target's report, GPU comparisons, the numeric check and the
        process's peak memory (`tessel sim` only)."""
        d: dict[str, Any] = {"arch_summary": self.arch_summary}
        if self.target_report is not None:
            d.update(self.target_report.to_json())
        if self.gpu:
            d["gpu"] = {name: g.to_json() for name, g in self.gpu.items()}
        if self.logits_rel_error is not None:
            d.update(logits_rel_error=self.logits_rel_error, tokens=self.tokens)
        if self.workload:
            d["workload"] = dict(self.workload)
        if self.attention:
            d["attention"] = dict(self.attention)
        if self.sim_peak_rss_bytes is not None:    # last: varies run to run (pinned tests drop it)
            d["sim_peak_rss_bytes"] = self.sim_peak_rss_bytes
        return d

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _EXTRA}
        d["ops"] = [dataclasses.asdict(op) for op in self.ops]
        d["assumptions"] = list(self.assumptions)
        d.update(time_s=self.time_s, energy_j=self.energy_j, **self.extra_json())
        return json.loads(json.dumps(d, default=str))


_EXTRA = frozenset({"arch_summary", "target_report", "gpu", "logits_rel_error", "tokens", "workload",
                    "attention", "sim_peak_rss_bytes"})
