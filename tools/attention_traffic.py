"""Print the attention-traffic tables of docs/systolic.md and docs/dataflow.md (markdown).

    .venv/bin/python tools/attention_traffic.py [systolic|dataflow]

1. GPT-2 small prefill-1024: attention's off-chip bytes (12 layers), unfused vs fused, beside
   the I/O lower bound, for three on-chip memories (sram_bytes on systolic-128, PMUs on sn40l).
2. One causal attention (d = 64, one head) for N = 1024 and 4096 and on-chip memories of
   64 KiB .. 32 MiB (tessel.attention.onchip_overrides): fused and unfused traffic / bound.
Traffic is counted from the compiled program (no simulation), as every report counts it.
"""
from __future__ import annotations

import sys

from compiler.errors import CompileError
from compiler.frontend import PRESETS, build_graph
from compiler.phase import prefill
from tessel.attention import attention_point, attention_report
from tessel.targets import target as get_target

GPT2_SRAM = {"systolic": [("sram_bytes", v) for v in (1 << 20, 4 << 20, 32 << 20)],
             "dataflow": [("pmus", v) for v in (8, 64, 1040)]}
MEMORIES_KIB = (64, 256, 1024, 4096, 32768)


def gpt2_rows(tgt: str) -> list[str]:
    t = get_target(tgt)
    graph = build_graph(PRESETS["gpt2"], prefill(1024))
    rows = ["| on-chip | unfused bytes | fused bytes | bound bytes | unfused / bound | fused / bound |",
            "|---|---|---|---|---|---|"]
    for field, value in GPT2_SRAM[tgt]:
        got = {}
        for mode in ("unfused", "fused"):
            arch = t.load_arch(None, [f"{field}={value}", f"attention={mode}"])
            lowered = t.compile(graph, arch)
            got[mode] = attention_report(lowered.program, lowered.attention)
        size = value if field == "sram_bytes" else value * arch.pmu_bytes
        u, f = got["unfused"], got["fused"]
        rows.append(f"| {field}={value} ({size / 2**20:g} MiB) | {u['offchip_bytes']:,} | {f['offchip_bytes']:,} "
                    f"| {f['bound_bytes']:,} | {u['ratio']:.2f} | {f['ratio']:.2f} |")
    return rows


def sweep_rows(tgt: str) -> list[str]:
    rows = ["| N | on-chip | blocks (fused) | fused bytes | unfused bytes | bound bytes | fused / bound | unfused / bound |",
            "|---|---|---|---|---|---|---|---|"]
    for n in (1024, 4096):
        for kib in MEMORIES_KIB:
            f = attention_point(tgt, n, kib << 10, "fused")
            try:
                u = attention_point(tgt, n, kib << 10, "unfused")
                ub, ur = f"{u['offchip_bytes']:,}", f"{u['ratio']:.2f}"
            except CompileError:
                ub = ur = "does not compile"
            rows.append(f"| {n} | {kib:,} KiB | {f['chains'][0]['blocks']} | {f['offchip_bytes']:,} | {ub} "
                        f"| {f['bound_bytes']:,} | {f['ratio']:.2f} | {ur} |")
    return rows


def main(argv: list[str]) -> None:
    for tgt in argv or ["systolic", "dataflow"]:
        print(f"## {tgt}: gpt2 prefill-1024\n")
        print("\n".join(gpt2_rows(tgt)))
        print(f"\n## {tgt}: one causal attention, d = 64\n")
        print("\n".join(sweep_rows(tgt)))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
