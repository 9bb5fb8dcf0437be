"""Cycles of gpt2 prefill-128 over sram_bytes = 16 KiB .. 32 MiB on systolic-32 and
systolic-128: writes docs/figures/sram_sweep.png and prints the Markdown table in
docs/systolic.md. Each array's curve starts at its minimum rounded up to an 8 KiB step (the
planner's minimum: one fold beside one column of every other op), but not below 16 KiB (at
its 5,568-byte minimum the 32x32 array streams one row a gemm: tens of millions of
instructions); sizes below the start are marked."""
from __future__ import annotations

from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from arch import load_arch  # noqa: E402
from compiler.frontend import load_model  # noqa: E402
from compiler.phase import prefill  # noqa: E402
from compiler.targets.systolic import PIPELINE  # noqa: E402
from sim.simulate import simulate  # noqa: E402
from tessel.targets import TARGETS  # noqa: E402

STEP_KIB = 8                                          # the minimum is rounded up to this step
LEAST_KIB = 16
PRESETS = ("systolic-32", "systolic-128")
FIGURE = Path(__file__).parents[1] / "docs" / "figures" / "sram_sweep.png"
GRAPH = load_model("gpt2").graph(prefill(128))


def start_kib(preset: str) -> int:
    """The preset's minimum sram_bytes for the graph, in KiB rounded up to STEP_KIB, at least
    LEAST_KIB."""
    floors = PIPELINE.run(GRAPH, load_arch(preset), until="floors")["floors"]
    return max(LEAST_KIB, -(-floors.minimum_bytes() // (STEP_KIB << 10)) * STEP_KIB)


def cycles(preset: str, sram_bytes: int) -> int:
    """Timing-only cycles at `sram_bytes` (at or above the minimum: a CompileError is a bug)."""
    arch = load_arch(preset, [f"sram_bytes={sram_bytes}"])
    program = TARGETS["systolic"].compile(GRAPH, arch).program
    return simulate(program, TARGETS["systolic"].machine(arch), functional=False).result.cycles


def main() -> None:
    starts = {p: start_kib(p) for p in PRESETS}
    sizes_kib = sorted({*starts.values(), *(LEAST_KIB << i for i in range(12))})    # .. 32 MiB
    table = {p: [cycles(p, kib * 1024) if kib >= starts[p] else None for kib in sizes_kib]
             for p in PRESETS}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for preset, row in table.items():
        pts = [(k, c) for k, c in zip(sizes_kib, row) if c is not None]
        ax.plot([k for k, _ in pts], [c / 1e6 for _, c in pts], marker="o", label=preset)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sram_bytes (KiB)")
    ax.set_ylabel("cycles (millions)")
    ax.set_title("gpt2 prefill-128: cycles never rise with SRAM")
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)
    print("| sram_bytes | " + " | ".join(PRESETS) + " |")
    print("|---|" + "---|" * len(PRESETS))
    for i, kib in enumerate(sizes_kib):
        size = f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"
        print(f"| {size} | " + " | ".join(f"{table[p][i]:,}" if table[p][i] else "below the start"
                                          for p in PRESETS) + " |")


if __name__ == "__main__":
    main()
