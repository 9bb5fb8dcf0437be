"""Attention's off-chip traffic beside its I/O lower bound, for the reports.

Traffic is counted from the program: the bytes of every load and store (off-chip <-> on-chip
DMA) inside the op marks of an attention chain — the scores, softmax and context ops when
unfused, the one fused kernel otherwise. The bound is each chain's
max(instances * S * T * d^2 / M, 2 d (instances * S + kv_instances * T)) elements at the
operand type (compiler/targets/attention_plan.py, docs/systolic.md); the ratio is traffic /
bound, summed over the chains.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import isa
from isa.loops import loop_structure
from isa.unroll import executed_count, multiplicities
from sim.compact_costs import marks_outside_patterns, op_segments, segment_counts

__all__ = ["attention_report", "attention_rows"]

_DMA = frozenset({"load", "store"})


def _op_bytes(program: isa.Program) -> dict[str, int]:
    """Off-chip bytes moved by load and store instructions within each op mark. A load's
    bytes (rows x row_bytes) are the same in every iteration of its loops (only addresses
    move), so each compact instruction counts times its executions, per op as the unrolled
    program's ops hold them (`op_segments`: a loop whose iterations have ops of their own
    counts one iteration's executions per op); marks inside loops that are not laid out so
    are read from the unrolled program."""
    structure = loop_structure(program.instructions, ops=program.ops)
    if marks_outside_patterns(program, structure):
        program = isa.unroll(program)
        structure = loop_structure(program.instructions, ops=program.ops)
    times = multiplicities(structure)
    moved = np.zeros(len(program.instructions), dtype=np.int64)
    for k, ins in enumerate(program.instructions):
        if ins.opcode in _DMA:
            moved[k] = ins["rows"] * ins["row_bytes"]
    out: dict[str, int] = {}
    for name, segments in op_segments(program, structure):
        total = sum(int((moved[lo:hi] * segment_counts(times, loop)[lo:hi]).sum())
                    for lo, hi, loop in segments)
        out[name] = out.get(name, 0) + total
    return out


def attention_report(program: isa.Program, sites: Sequence) -> dict[str, Any]:
    """The report's `attention` entry: totals and one record per chain; {} without attention."""
    if not sites:
        return {}
    per_op = _op_bytes(program)
    chains = []
    for site in sites:
        traffic = sum(per_op.get(op, 0) for op in site.ops)
        chains.append({"name": site.name, "fused": site.fused, "blocks": site.blocks,
                       "s": site.s, "t": site.t, "d": site.d, "instances": site.instances,
                       "offchip_bytes": traffic, "bound_bytes": round(site.bound_bytes),
                       "quadratic_bound_bytes": round(site.quadratic_elements * site.itemsize),
                       "compulsory_bytes": site.compulsory_elements * site.itemsize,
                       "ratio": traffic / site.bound_bytes})
    traffic = sum(c["offchip_bytes"] for c in chains)
    bound = sum(c["bound_bytes"] for c in chains)
    fused = sum(c["fused"] for c in chains)
    return {"mode": "fused" if fused == len(chains) else "unfused" if not fused else "mixed",
            "fused_chains": fused, "chains_total": len(chains),
            "onchip_elements": sites[0].onchip_elements,
            "offchip_bytes": traffic, "bound_bytes": bound, "ratio": traffic / bound,
            "bound": "max(instances*S*T*d^2/M, 2*d*(instances*S + kv_instances*T)) elements "
                     "x operand bytes, per chain; M = on-chip memory in operand elements",
            "chains": chains}


def attention_rows(a: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The text report's rows for an `attention` entry."""
    if not a:
        return []
    c = a["chains"][0]
    return [("attention traffic", f"{a['offchip_bytes']:,} B",
             f"off-chip bytes of {a['chains_total']} chains, {a['mode']} "
             f"({a['fused_chains']} fused); S {c['s']}, T {c['t']}, d {c['d']}"),
            ("attention I/O bound", f"{a['bound_bytes']:,} B",
             f"max(S T d^2 / M, Q+K+V+O) per head, M = {a['onchip_elements']:,} elements on chip"),
            ("attention traffic / bound", f"{a['ratio']:.2f}", "docs/systolic.md, fused attention")]


def attention_graph(n: int, d: int = 64, heads: int = 1):
    """One causal self-attention over n positions: q, k, v [1, heads, n, d] -> context (the
    sweep of docs/systolic.md's bound table)."""
    from compiler.builder import GraphBuilder
    from compiler.ir import OpKind
    g = GraphBuilder(f"attention-{n}")
    q, k, v = (g.input(x, (1, heads, n, d)) for x in "qkv")
    scores = g.op(OpKind.MATMUL, "attn.scores", [q, k], transpose_b=True)
    probs = g.op(OpKind.SOFTMAX, "attn.probs", [scores], scale=d ** -0.5, causal=True)
    return g.build([g.op(OpKind.MATMUL, "attn.context", [probs, v])])


SMALL_ARRAY_BELOW = 256 << 10     # on-chip bytes below which the systolic sweep uses 32x32


def onchip_overrides(target: str, onchip_bytes: int) -> list[str]:
    """--set arguments giving `target` `onchip_bytes` of on-chip memory: the systolic SRAM and
    accumulator at systolic-128's 8 : 1, or that many bytes of dataflow PMUs (PMUs of at most
    512 KiB)."""
    if target == "systolic":
        acc = onchip_bytes // 9 // 64 * 64
        return [f"sram_bytes={onchip_bytes - acc}", f"acc_bytes={acc}"]
    pmu = min(onchip_bytes, 1 << 19)
    return [f"pmu_bytes={pmu}", f"pmus={onchip_bytes // pmu}"]


def attention_point(target: str, n: int, onchip_bytes: int, mode: str, d: int = 64,
                    heads: int = 1) -> dict[str, Any]:
    """Compile one attention (no simulation: traffic is static) and return its report entry."""
    from tessel.targets import target as get_target
    t = get_target(target)
    # the rings of a 128x128 array need 67,584 bytes of SRAM for one fold alone (docs/systolic.md,
    # on-chip rings), so smaller memories are the 32x32 array of systolic-32's (a Gemmini-class chip)
    preset = "systolic-32" if target == "systolic" and onchip_bytes < SMALL_ARRAY_BELOW else None
    arch = t.load_arch(preset, [*onchip_overrides(target, onchip_bytes), f"attention={mode}"])
    lowered = t.compile(attention_graph(n, d, heads), arch)
    return attention_report(lowered.program, lowered.attention) | {
        "instructions": executed_count(lowered.program)}
