"""Each target's own lines in the text report, from its typed report (SimResult.target_report):
the target record (tessel/targets.py) names which function a target uses, so report.py has
no `if target`. Each returns the lines to insert after the summary table (a blank line first)."""
from __future__ import annotations

from sim.result import SimResult
from tessel.table import render_table

__all__ = ["no_rows", "pim_rows", "dataflow_rows"]


_TOP_CALLS = 5      # the longest section calls shown (all are in the JSON)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def no_rows(result: SimResult) -> list[str]:
    """For a target whose report has no lines of its own (the systolic array)."""
    return []


def dataflow_rows(result: SimResult) -> list[str]:
    from sim.machines.dataflow.report import DataflowReport     # a dataflow run's: imported then
    d = result.target_report
    if not isinstance(d, DataflowReport):
        return []
    rows = [("kernel granularity", d.granularity,
             f"{d.calls} calls, {d.sections} section runs, {d.configurations} configurations"),
            ("PCU utilization", _pct(d.pcu_utilization), "busy PCU-cycles / (PCUs x cycles)"),
            ("PMU utilization", _pct(d.pmu_utilization), "PMUs held by the running section, time-weighted")]
    for tier in ("sram", "hbm", "ddr"):
        rows.append((f"{tier} traffic / occupancy", f"{d.tier_bytes[tier]:,} B",
                     f"{_pct(d.tier_occupancy[tier])} occupied ({d.tier_held_bytes[tier]:,} B)"))
    if d.switch_s:
        rows.append(("model switch time", f"{d.switch_s * 1e3:.4g} ms", "DDR -> HBM (df.xfer)"))
    for c in d.calls_timing[:_TOP_CALLS]:
        t = c.timing
        rows.append((f"call at {c.first_op}", f"{t.cycles:,} cycles",
                     f"{c.stages} stages x {c.loops} loops, {c.tiles} tiles/iteration, "
                     f"launch {t.launch_cycles:,} + fill {t.fill_cycles:,} + {t.steady_cycles:,} x tiles "
                     f"+ drain {t.drain_cycles:,} ({t.bound}-bound)"))
    return ["", render_table(("dataflow metric", "value", "detail"), rows),
            "dataflow assumptions: " + "; ".join(d.assumptions)]


def pim_rows(result: SimResult) -> list[str]:
    from sim.machines.pim.report import PimReport               # a PIM run's: imported then
    p = result.target_report
    if not isinstance(p, PimReport):
        return []
    per_ch = p.mac_utilization_per_channel
    banks = [u for ch in p.mac_utilization_per_bank for u in ch]
    rows = [("time", f"{p.time_ns:,.1f} ns",
             ", ".join(f"{name} {c.cycles:,} cycles at {c.clock_mhz:g} MHz" for name, c in p.clock_domains.items())),
            ("row-buffer hit rate", _pct(p.row_hit_rate), "column accesses to an already open row"),
            ("MAC utilization per channel", f"{_pct(min(per_ch))} .. {_pct(max(per_ch))}",
             "MAC column slots / cycles, per channel (JSON: every channel and bank)"),
            ("MAC utilization per bank", f"{_pct(min(banks))} .. {_pct(max(banks))}", ""),
            ("non-VMM share", _pct(p.non_vmm_share), "time with no pim queue busy"),
            ("DRAM commands", f"{sum(p.dram_commands.values()):,}",
             " ".join(f"{k} {v:,}" for k, v in p.dram_commands.items()))]
    return ["", render_table(("PIM metric", "value", "detail"), rows)]
