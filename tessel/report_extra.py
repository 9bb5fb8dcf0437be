"""Target-specific report rows from SimResult.extra, behind a registry (no `if target` in
report.py): EXTRA_ROWS[target](extra) -> rows of (metric, value, detail)."""
from __future__ import annotations

from typing import Any, Callable

from tessel.table import render_table

__all__ = ["EXTRA_ROWS", "extra_table"]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _dataflow(extra: dict[str, Any]) -> list[tuple[str, str, str]]:
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
    return rows


EXTRA_ROWS: dict[str, Callable[[dict[str, Any]], list[tuple[str, str, str]]]] = {"dataflow": _dataflow}


def extra_table(target: str, extra: dict[str, Any]) -> list[str]:
    """The target's extra rows as a rendered table (preceded by a blank line), or nothing."""
    rows = EXTRA_ROWS.get(target, lambda _: [])(extra)
    return ["", render_table(("dataflow metric", "value", "detail"), rows)] if rows else []
