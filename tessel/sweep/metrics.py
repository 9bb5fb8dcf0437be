"""What a sweep can record about a point: the figures of a SimResult, flattened to names.

Scalars by name (`time_s`, `energy_j`, ...), per-key figures of the dict fields as
`bytes.dram` or `utilization.mxu`, target-specific figures as `extra.<key>`, and
`tokens_per_s`, derived from the phase (tokens of one pass / time). The model's own numbers
(SimResult.workload: KV bytes per token, expert weight bytes) are `extra.workload.<key>`.

A spec with a `[serve]` table records a serving run instead (tessel/serve/metrics.py
`summarize`): its figures by dotted path, `serve.ttft_s.p99`, `serve.throughput.output_tokens_per_s`.
A point has one kind of figure or the other, so a spec names one kind only.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from compiler.phase import Phase
from sim.result import SimResult
from tessel.serve.metrics import PERCENTILES

__all__ = ["SCALAR_METRICS", "DICT_METRICS", "DERIVED_METRICS", "SERVE_TABLES", "PASS_AXES",
           "SERVE_AXES", "metric_error", "is_table", "flatten", "flatten_summary", "columns",
           "higher_is_better"]

SCALAR_METRICS = ("cycles", "clock_hz", "time_s", "energy_j", "mac_utilization", "instructions", "macs")
DICT_METRICS = ("energy_breakdown_j", "utilization", "bytes", "unit_busy_cycles")
DERIVED_METRICS = ("tokens_per_s",)
# Figures where a larger value is the better design (every other figure: smaller is better).
_HIGHER_IS_BETTER = ("mac_utilization", "tokens_per_s", "utilization")

# The figures of a serving summary a spec may name, table by table (the summary's `settings`
# echo the spec's own inputs and its `target` names the run: stored, not named).
_DISTRIBUTION = ("mean", *(f"p{q}" for q in PERCENTILES), "max")
SERVE_TABLES: dict[str, tuple[str, ...]] = {
    "ttft_s": _DISTRIBUTION, "tpot_s": _DISTRIBUTION, "e2e_s": _DISTRIBUTION, "tbt_s": _DISTRIBUTION,
    "throughput": ("output_tokens_per_s", "requests_per_s"),
    "slo": ("ttft_s", "tpot_s", "met", "attainment", "goodput_requests_per_s"),
    "energy": ("total_j", "per_output_token_j"),
    "requests": ("total", "finished", "rejected"),
    "steps": ("count", "mean_batch", "preemptions", "swap_s"),
    "kv_cache": ("capacity_blocks", "peak_blocks", "mean_blocks", "peak_fraction", "mean_fraction"),
    "cost_model": ("distinct_shapes", "memo_hits"),
    "step_cost": ("kv_bucket", "token_grid", "parts_simulated", "steps_checked", "mean_rel_error", "max_rel_error",
                  "max_rel_error_energy"),
}
_SERVE_SCALARS = ("duration_s",)
# Serving figures where larger is better: work done, and the share of requests served well.
_SERVE_HIGHER_IS_BETTER = ("serve.throughput", "serve.slo.met", "serve.slo.attainment",
                           "serve.slo.goodput_requests_per_s", "serve.requests.finished",
                           "serve.kv_cache.capacity_blocks")
# The Pareto plot's first panel and the CSV's `pareto` column: latency against energy for one
# pass; for serving, the throughput a design sustains against its tail time to first token.
PASS_AXES = ("time_s", "energy_j")
SERVE_AXES = ("serve.throughput.output_tokens_per_s", "serve.ttft_s.p99")


def metric_error(name: object, serve: bool = False) -> str | None:
    """Why `name` is not a metric a spec may name, or None when it is one; `serve`: the spec
    has a [serve] table, whose points have serving figures only."""
    if not isinstance(name, str):
        return f"expected a metric name, got {name!r}"
    if serve or name.startswith("serve."):
        return _serve_metric_error(name, serve)
    head, dot, key = name.partition(".")
    if not dot and name in SCALAR_METRICS + DICT_METRICS + DERIVED_METRICS:
        return None
    if dot and key and head in DICT_METRICS + ("extra",):
        return None
    return (f"unknown metric '{name}' (metrics: {', '.join(SCALAR_METRICS + DERIVED_METRICS)}; "
            f"tables: {', '.join(DICT_METRICS)}, as a whole or one entry such as bytes.dram; "
            "extra.<key> for a figure the target reports)")


def _serve_metric_error(name: str, serve: bool) -> str | None:
    head, _, rest = name.partition(".")
    if head != "serve":
        return (f"'{name}' is a figure of one simulated pass; a spec with [serve] records serving "
                "figures only (serve.ttft_s.p99, serve.throughput.output_tokens_per_s, ...)")
    if not serve:
        return f"'{name}' is a serving figure: only in a spec with a [serve] table"
    table, dot, entry = rest.partition(".")
    if (not dot and table in _SERVE_SCALARS + tuple(SERVE_TABLES)) or entry in SERVE_TABLES.get(table, ()):
        return None
    if table in SERVE_TABLES:
        return f"unknown serving metric '{name}' (entries of serve.{table}: {', '.join(SERVE_TABLES[table])})"
    return (f"unknown serving metric '{name}' (serve.duration_s, or serve.<table>.<entry> with tables "
            f"{', '.join(SERVE_TABLES)}, as a whole or one entry such as serve.ttft_s.p99)")


def is_table(name: str) -> bool:
    """A metric name that stands for several figures (a CSV column each): it cannot be an axis."""
    return name in DICT_METRICS or (name.startswith("serve.") and name[len("serve."):] in SERVE_TABLES)


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


def flatten_summary(summary: Mapping[str, Any], prefix: str = "serve") -> dict[str, float | int]:
    """Every finite number of a serving summary by dotted path (`serve.ttft_s.p99`); the run's
    `target` entry, strings, lists and missing figures (None) are left out."""
    figures: dict[str, float | int] = {}
    for key, value in summary.items():
        if key == "target" and prefix == "serve":
            continue
        if isinstance(value, Mapping):
            figures.update(flatten_summary(value, f"{prefix}.{key}"))
        elif _number(value):
            figures[f"{prefix}.{key}"] = value
    return figures


def columns(names: tuple[str, ...], figures: Mapping[str, float | int]) -> dict[str, float | int | None]:
    """The named metrics of one point; a table name expands to its entries, a missing one is None."""
    out: dict[str, float | int | None] = {}
    for name in names:
        if is_table(name):
            out.update({k: v for k, v in figures.items() if k.startswith(name + ".")})
        else:
            out[name] = figures.get(name)
    return out


def higher_is_better(name: str) -> bool:
    if name.startswith("serve."):
        return any(name == p or name.startswith(p + ".") for p in _SERVE_HIGHER_IS_BETTER)
    return name.partition(".")[0] in _HIGHER_IS_BETTER
