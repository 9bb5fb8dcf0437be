"""Target-specific report lines from SimResult.extra, behind a registry (no `if target` in
report.py): EXTRA_ROWS[target](extra) -> lines to insert after the summary table."""
from __future__ import annotations

from typing import Any, Callable

from tessel.table import render_table

__all__ = ["EXTRA_ROWS", "extra_table"]


_TOP_CALLS = 5      # the longest section calls shown (all are in the JSON)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _dataflow(extra: dict[str, Any]) -> list[str]:
    d = extra.get("dataflow")
    if not d:
        return []
    rows = [("kernel granularity", d["granularity"],
             f"{d['calls']} calls, {d['sections']} section runs, {d['configurations']} configurations"),
            ("PCU utilization", _pct(d["pcu_utilization"]), "busy PCU-cycles / (PCUs x cycles)"),
            ("PMU utilization", _pct(d["pmu_utilization"]), "PMUs held by the running section, time-weighted")]
    for tier in ("sram", "hbm", "ddr"):
        rows.append((f"{tier} traffic / occupancy", f"{d['tier_bytes'][tier]:,} B",
                     f"{_pct(d['tier_occupancy'][tier])} occupied ({d['tier_held_bytes'][tier]:,} B)"))
    if d["switch_s"]:
        rows.append(("model switch time", f"{d['switch_s'] * 1e3:.4g} ms", "DDR -> HBM (df.xfer)"))
    for c in d["calls_timing"][:_TOP_CALLS]:
        rows.append((f"call at {c['first_op']}", f"{c['cycles']:,} cycles",
                     f"{c['stages']} stages x {c['loops']} loops, {c['tiles']} tiles/iteration, "
                     f"launch {c['launch']:,} + fill {c['fill']:,} + {c['steady']:,} x tiles "
                     f"+ drain {c['drain']:,} ({c['bound']}-bound)"))
    return ["", render_table(("dataflow metric", "value", "detail"), rows),
            "dataflow assumptions: " + "; ".join(d["assumptions"])]


def _pim(extra: dict[str, Any]) -> list[str]:
    if "row_hit_rate" not in extra:
        return []
    per_ch = extra["mac_utilization_per_channel"]
    banks = [u for ch in extra["mac_utilization_per_bank"] for u in ch]
    clocks = extra["clock_domains"]
    rows = [("time", f"{extra['time_ns']:,.1f} ns",
             ", ".join(f"{name} {c['cycles']:,} cycles at {c['clock_mhz']:g} MHz" for name, c in clocks.items())),
            ("row-buffer hit rate", _pct(extra["row_hit_rate"]), "column accesses to an already open row"),
            ("MAC utilization per channel", f"{_pct(min(per_ch))} .. {_pct(max(per_ch))}",
             "MAC column slots / cycles, per channel (JSON: every channel and bank)"),
            ("MAC utilization per bank", f"{_pct(min(banks))} .. {_pct(max(banks))}", ""),
            ("non-VMM share", _pct(extra["non_vmm_share"]), "time with no pim queue busy"),
            ("DRAM commands", f"{sum(extra['dram_commands'].values()):,}",
             " ".join(f"{k} {v:,}" for k, v in extra["dram_commands"].items()))]
    return ["", render_table(("PIM metric", "value", "detail"), rows)]


EXTRA_ROWS: dict[str, Callable[[dict[str, Any]], list[str]]] = {"dataflow": _dataflow, "pim": _pim}


def extra_table(target: str, extra: dict[str, Any]) -> list[str]:
    """The target's extra report lines (starting with a blank line), or none."""
    return EXTRA_ROWS.get(target, lambda _: [])(extra)
