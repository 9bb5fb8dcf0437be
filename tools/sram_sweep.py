"""Cycles of gpt2 prefill-128 over sram_bytes = 64 KiB .. 32 MiB on systolic-32 and
systolic-128: writes docs/figures/sram_sweep.png and prints the Markdown table in
docs/systolic.md. Sizes that cannot hold one fold (or one row of an op) are marked."""
from __future__ import annotations

from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from arch import load_arch  # noqa: E402
from compiler.errors import CompileError  # noqa: E402
from compiler.frontend import load_model  # noqa: E402
from compiler.phase import prefill  # noqa: E402
from sim.simulate import simulate  # noqa: E402
from tessel.targets import TARGETS  # noqa: E402

SIZES_KIB = [64 << i for i in range(10)]            # 64 KiB .. 32 MiB
PRESETS = ("systolic-32", "systolic-128")
FIGURE = Path(__file__).parents[1] / "docs" / "figures" / "sram_sweep.png"


def cycles(preset: str, sram_bytes: int) -> int | None:
    arch = load_arch(preset, [f"sram_bytes={sram_bytes}"])
    try:
        program = TARGETS["systolic"].compile(load_model("gpt2").graph(prefill(128)), arch).program
    except CompileError:
        return None
    return simulate(program, TARGETS["systolic"].machine(arch), functional=False).result.cycles


def main() -> None:
    table = {p: [cycles(p, kib * 1024) for kib in SIZES_KIB] for p in PRESETS}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for preset, row in table.items():
        pts = [(k, c) for k, c in zip(SIZES_KIB, row) if c is not None]
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
    for i, kib in enumerate(SIZES_KIB):
        size = f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"
        print(f"| {size} | " + " | ".join(f"{table[p][i]:,}" if table[p][i] else "does not compile"
                                          for p in PRESETS) + " |")


if __name__ == "__main__":
    main()
