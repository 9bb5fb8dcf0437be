"""One model and phase on several targets, side by side: a column per target (`make sim`)."""
from __future__ import annotations

from typing import Sequence

from sim.machines.pim.report import PimReport
from sim.result import SimResult
from tessel.table import render_table, si

__all__ = ["compare_rows", "render_comparison", "render_node_comparison"]


# SimResult.workload figures shown as rows: (key, label, unit)
_WORKLOAD = (("kv_bytes_per_token", "KV cache per token", " B"), ("routing", "routing", ""),
             ("expert_weight_bytes", "expert weights read", " B"))


def _figure(value: object, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def compare_rows(results: Sequence[SimResult], tokens: int) -> list[tuple[str, ...]]:
    """Metric rows; a target without a figure shows '-'."""
    def row(name, cell):
        return (name, *(cell(r) for r in results))


    rows = [
        row("architecture", lambda r: r.arch_name),
        row("time", lambda r: f"{r.time_s * 1e3:.4g} ms"),
        row("tokens/s", lambda r: f"{tokens / r.time_s:,.0f}" if r.time_s else "-"),
        row("cycles", lambda r: f"{r.cycles:,} @ {r.clock_hz / 1e6:g} MHz"),
        row("energy", lambda r: si(r.energy_j, "J")),
        row("MAC utilization", lambda r: _pct(r.mac_utilization)),
        row("instructions", lambda r: f"{r.instructions:,}"),
        row("logits vs reference",
            lambda r: f"{r.logits_rel_error:.2e}" if r.logits_rel_error is not None else "-"),
        row("row-buffer hit rate",
            lambda r: _pct(r.target_report.row_hit_rate) if isinstance(r.target_report, PimReport) else "-"),
    ]
    if any(r.attention for r in results):       # systolic and dataflow (tessel/attention.py)
        rows.append(row("attention traffic / bound", lambda r: (
            f"{r.attention['offchip_bytes']:,} B / {r.attention['bound_bytes']:,} B = "
            f"{r.attention['ratio']:.2f}" if r.attention else "-")))
    for key, label, unit in _WORKLOAD:      # Llama-family and MoE runs only (tessel.driver)
        if any(key in r.workload for r in results):
            rows.append(row(label, lambda r, key=key, unit=unit: _figure(r.workload.get(key), unit)))
    gpus = sorted({g for r in results for g in r.gpu})
    for g in gpus:
        rows.append(row(f"speedup vs {g}",
                        lambda r, g=g: f"{r.gpu[g].speedup:.3g}x" if g in r.gpu else "-"))
        rows.append(row(f"energy eff. vs {g}",
                        lambda r, g=g: f"{r.gpu[g].energy_efficiency:.3g}x" if g in r.gpu else "-"))
    return rows


def render_comparison(title: str, targets: Sequence[str], results: Sequence[SimResult],
                      tokens: int, notes: Sequence[str] = ()) -> str:
    lines = [title, render_table(("metric", *targets), compare_rows(results, tokens))]
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def render_node_comparison(title: str, columns: Sequence[tuple], tokens: int) -> str:
    """Node presets side by side: (node, plan, NodeRun | GpuComparison) per column; a GPU node
    has only the figures its model gives ('-' elsewhere)."""
    def cell(run, simulated, gpu=lambda g: "-"):
        return simulated(run) if hasattr(run, "node") else gpu(run)

    def share(value: float) -> str:
        return f"{value:.1%}"

    def row(name, simulated, gpu=lambda g: "-"):
        return (name, *(cell(run, simulated, gpu) for _, _, run in columns))

    rows = [
        ("device", *(f"{node.devices} x {node.device}" for node, _, _ in columns)),
        ("link", *(node.link for node, _, _ in columns)),
        ("plan", *(f"tp {plan.tp} x pp {plan.pp}" for _, plan, _ in columns)),
        row("time", lambda r: f"{r.node.time_s * 1e3:.4g} ms", lambda g: f"{g.time_s * 1e3:.4g} ms"),
        row("tokens/s", lambda r: f"{tokens / r.node.time_s:,.1f}",
            lambda g: f"{tokens / g.time_s:,.1f}"),
        row("energy", lambda r: si(r.node.energy_j, "J"), lambda g: si(g.energy_j, "J")),
        row("energy per token", lambda r: si(r.node.energy_j / tokens, "J"),
            lambda g: si(g.energy_j / tokens, "J")),
        row("link busy", lambda r: share(r.node.link_share)),
        row("exposed communication", lambda r: share(r.node.exposed_share)),
        row("idle", lambda r: share(r.node.idle_share)),
        row("logits vs reference",
            lambda r: f"{r.logits_rel_error:.2e}" if r.logits_rel_error is not None else "-"),
    ]
    notes = dict.fromkeys(run.memory_note for _, _, run in columns
                          if not hasattr(run, "node") and run.memory_note)
    lines = [title, render_table(("metric", *(node.name for node, _, _ in columns)), rows)]
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
