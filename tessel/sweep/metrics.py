"""What a sweep can record about a point: the figures of a SimResult, flattened to names.

Scalars by name (`time_s`, `energy_j`, ...), per-key figures of the dict fields as
`bytes.dram` or `utilization.mxu`, target-specific figures as `extra.<key>`, and
`tokens_per_s`, derived from the phase (tokens of one pass / time). The model's own numbers
(SimResult.workload: KV bytes per token, expert weight bytes) are `extra.workload.<key>`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from compiler.phase import Phase
from sim.result import SimResult

__all__ = ["SCALAR_METRICS", "DICT_METRICS", "DERIVED_METRICS", "metric_error", "flatten",
           "columns", "higher_is_better"]

SCALAR_METRICS = ("cycles", "clock_hz", "time_s", "energy_j", "mac_utilization", "instructions", "macs")
DICT_METRICS = ("energy_breakdown_j", "utilization", "bytes", "unit_busy_cycles")
DERIVED_METRICS = ("tokens_per_s",)
# Figures where a larger value is the better design (every other figure: smaller is better).
_HIGHER_IS_BETTER = ("mac_utilization", "tokens_per_s", "utilization")


def metric_error(name: object) -> str | None:
    """Why `name` is not a metric a spec may name, or None when it is one."""
    if not isinstance(name, str):
        return f"expected a metric name, got {name!r}"
    head, dot, key = name.partition(".")
    if not dot and name in SCALAR_METRICS + DICT_METRICS + DERIVED_METRICS:
        return None
    if dot and key and head in DICT_METRICS + ("extra",):
        return None
    return (f"unknown metric '{name}' (metrics: {', '.join(SCALAR_METRICS + DERIVED_METRICS)}; "
            f"tables: {', '.join(DICT_METRICS)}, as a whole or one entry such as bytes.dram; "
            "extra.<key> for a figure the target reports)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def flatten(result: SimResult, phase: Phase | None) -> dict[str, float | int]:
    """Every recordable figure of one result, by metric name."""
    figures: dict[str, float | int] = {name: getattr(result, name) for name in SCALAR_METRICS}
    for table in DICT_METRICS:
        figures.update({f"{table}.{k}": v for k, v in getattr(result, table).items()})
    figures.update({f"extra.{k}": v for k, v in result.extra_json().items() if _number(v)})
    figures.update({f"extra.workload.{k}": v for k, v in result.workload.items() if _number(v)})
    if phase is not None and result.time_s > 0:
        figures["tokens_per_s"] = phase.seq * phase.batch / result.time_s
    return figures


def columns(names: tuple[str, ...], figures: Mapping[str, float | int]) -> dict[str, float | int | None]:
    """The named metrics of one point; a table name expands to its entries, a missing one is None."""
    out: dict[str, float | int | None] = {}
    for name in names:
        if name in DICT_METRICS:
            out.update({k: v for k, v in figures.items() if k.startswith(name + ".")})
        else:
            out[name] = figures.get(name)
    return out


def higher_is_better(name: str) -> bool:
    return name.partition(".")[0] in _HIGHER_IS_BETTER
