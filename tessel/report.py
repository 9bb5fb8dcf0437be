"""Human-readable reports of simulation results (the JSON form is SimResult.to_json)."""
from __future__ import annotations

from typing import Any, Mapping

from sim.result import SimResult
from tessel.attention import attention_rows
from tessel.table import render_table, si
from tessel.targets import TARGETS

__all__ = ["render_result", "workload_rows"]

_LISTED_EXPERTS = 16      # tokens per expert listed one by one up to this many experts


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_result(r: SimResult, title: str, top_ops: int = 10) -> str:
    lines = [title,
             f"architecture: {r.arch_name} ({r.target}"
             + (f", {r.arch_summary}" if r.arch_summary else "")
             + f", clock {r.clock_hz / 1e6:g} MHz)", ""]
    energy = ", ".join(f"{k} {si(v, 'J')}" for k, v in r.energy_breakdown_j.items())
    summary = [
        ("time", f"{r.time_s * 1e3:.4g} ms", f"{r.cycles:,} cycles at {r.clock_hz / 1e6:g} MHz"),
        ("instructions", f"{r.instructions:,}", ""),
        ("energy", si(r.energy_j, "J"), energy),
        ("MAC utilization", _pct(r.mac_utilization), f"{r.macs:,} useful MACs"),
    ]
    if r.logits_rel_error is not None:
        summary.append(("logits vs reference", f"{r.logits_rel_error:.2e}",
                        "max |sim - ref| / max |ref|"))
    summary.extend(attention_rows(r.attention))
    lines.append(render_table(("metric", "value", "detail"), summary))
    lines.extend(TARGETS[r.target].report_rows(r))
    lines.extend(workload_rows(r.workload))
    lines.append("")
    units = [(u, f"{r.unit_busy_cycles[u]:,}", _pct(r.utilization[u])) for u in r.unit_busy_cycles]
    lines.append(render_table(("unit", "busy cycles", "utilization"), units))
    lines.append("")
    lines.append(render_table(("traffic", "bytes"), [(k, f"{v:,}") for k, v in r.bytes.items()]))
    if r.gpu:
        lines.append("")
        first = next(iter(r.gpu.values()))
        width = f"in fp16 under recipe {first.recipe}" if first.recipe else "in fp16"
        width += ", attention fused" if first.attention == "fused" else ""
        what = ("Hugging Face eager generate, transformers' own operators"
                if first.mode == "hf" else "same graph")
        lines.append(f"GPU baselines ({what} {width}, {first.mode} mode; ratios are GPU / "
                     f"{r.arch_name})")
        rows = [(name, f"{g.time_s * 1e3:.4g} ms", si(g.energy_j, "J"), f"{g.avg_power_w:.0f} W",
                 f"{g.speedup:.3g}x", f"{g.energy_efficiency:.3g}x")
                for name, g in r.gpu.items()]
        lines.append(render_table(("gpu", "time", "energy", "power", "speedup", "energy eff."), rows))
        lines.extend(f"note: {g.memory_note}" for g in r.gpu.values() if g.memory_note)
        target_recipe = r.workload.get("quantised_weights", {}).get("recipe")
        if target_recipe is not None and first.recipe != target_recipe:
            lines.append(f"note: {r.arch_name} runs recipe {target_recipe}, the GPUs "
                         f"{'recipe ' + first.recipe if first.recipe else 'fp16'} "
                         f"(--gpu-quant {target_recipe} prices them under the same one)")
    if r.ops:
        lines.append("")
        rows = [(o.name, f"{o.cycles:,}", *(f"{o.busy_cycles.get(u, 0):,}" for u in r.unit_busy_cycles),
                 si(o.energy_j, "J")) for o in r.ops[:top_ops]]
        lines.append(f"top {min(top_ops, len(r.ops))} of {len(r.ops)} ops by cycles (span; busy per unit)")
        lines.append(render_table(("op", "cycles", *r.unit_busy_cycles, "energy"), rows))
    if r.assumptions:
        lines.append("")
        lines.append("assumptions: " + "; ".join(r.assumptions))
    return "\n".join(lines)


def workload_rows(w: Mapping[str, Any]) -> list[str]:
    """The model's own figures (SimResult.workload, filled by tessel.driver for Llama-family
    and mixture-of-experts models, and for programs that store weights quantised): none for
    GPT-2 at full precision, whose reports stay as they were."""
    if not w:
        return []
    rows = []
    if "kv_bytes_per_token" in w:
        rows.append(("KV cache per token", f"{w['kv_bytes_per_token']:,} B",
                     "K and V of every layer at the operand type"))
    if "routing" in w:
        per_expert, touched = w["tokens_per_expert"], w["experts_touched"]
        layers, experts = len(touched), len(per_expert)
        rows.append(("routing", w["routing"], "which experts each token uses (docs/models.md)"))
        rows.append(("experts touched", f"{min(touched)} .. {max(touched)} of {experts}",
                     f"per MoE layer, {layers} layers; only these cost time and traffic"))
        listed = (" ".join(map(str, per_expert)) if experts <= _LISTED_EXPERTS
                  else f"min {min(per_expert):,}, max {max(per_expert):,} (JSON: every expert)")
        rows.append(("tokens per expert", listed,
                     f"summed over the layers: {sum(per_expert):,} (token, expert) pairs"))
        rows.append(("expert weights read", f"{w['expert_weight_bytes']:,} B",
                     f"{si(w['expert_weight_bytes'], 'B')}: gate, up and down of each touched "
                     f"expert, once per layer"))
    if "quantised_weights" in w:
        q = w["quantised_weights"]
        rows.append(("quantised weights", f"{q['stored_bytes']:,} B",
                     f"{q['count']} weights in {q['recipe']}: codes and scales, "
                     f"{q['stored_bytes'] / q['full_bytes']:.4f} of their {q['full_bytes']:,} B "
                     f"at the operand type"))
    return ["", render_table(("workload", "value", "detail"), rows)]
