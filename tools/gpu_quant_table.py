"""Print the quantised-GEMM tables of docs/validation.md (markdown): the GPU model's speedup of
W4A4 and of W4A16 (g128) linear layers over FP16 on an A100 preset, for Llama-3-8B's shapes.

    .venv/bin/python tools/gpu_quant_table.py

Kernel time without the launch (sim.gpu.kernel_time less its overhead), as a kernel benchmark
times it. Each cell is FP16 time / quantised time, with the quantised kernel's binding term:
c (compute: tensor cores plus dequantisation) or m (memory).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run from a checkout

from arch import load_arch  # noqa: E402
from compiler.quant.recipe import Recipe, tensor_quant  # noqa: E402
from sim.gpu import Kernel, kernel_time  # noqa: E402
from tessel.gpu_quant import linear_kernel  # noqa: E402

GPU = "gpu-a100-80gb"
SHAPES = ((4096, 4096), (4096, 14336))      # (K, N): Llama-3-8B's q/o and gate/up projections
FP16 = Recipe("fp16")
# COMET's W4A4 (reference/quant.md): activations in blocks of 128 channels; weights one scale
# per output channel (our assumption: the summary gives no weight granularity).
COMET_LIKE = Recipe("w4a4, a:g128", weights=tensor_quant("weights", "int4"),
                    activations=tensor_quant("activations", "int4", group=128))
W4A4_M = (1, 16, 64, 128, 256, 1024, 4096)
W4A16_M = (1, 2, 4, 8, 16, 32, 64, 128)


def device_s(kernel: Kernel) -> tuple[float, str]:
    t = kernel_time(kernel, load_arch(GPU), "graph")
    return t.time_s - t.overhead_s, t.bound[0]


def speedup(m: int, k: int, n: int, recipe: str | Recipe) -> str:
    fp16, _ = device_s(linear_kernel(m, n, k, FP16))
    quant, bound = device_s(linear_kernel(m, n, k, recipe))
    return f"{fp16 / quant:.2f}x {bound}"


def bandwidth_only(m: int, k: int, n: int, recipe: str) -> str:
    """FP16 bytes / quantised bytes, each at the modelled bandwidth with its ramp: the speedup
    if the compute term never bound."""
    gpu = load_arch(GPU)
    ramp_s = gpu.memory.ramp_us * 1e-6
    rate = gpu.memory.max_frac * gpu.mem_bw_bytes_per_s
    fp16, quant = (linear_kernel(m, n, k, r).bytes / rate + ramp_s for r in (FP16, recipe))
    return f"{fp16 / quant:.2f}x"


def w4a4_table() -> str:
    head = ["M"] + [f"{k}x{n} {c}" for k, n in SHAPES for c in ("fp16", "W4A4", "W4A4 a:g128")]
    rows = [[str(m)] + [cell for k, n in SHAPES for cell in (
        f"{device_s(linear_kernel(m, n, k, FP16))[0] * 1e6:.1f} us", speedup(m, k, n, "w4a4"),
        speedup(m, k, n, COMET_LIKE))] for m in W4A4_M]
    return _markdown(head, rows)


def w4a16_table() -> str:
    head = ["M"] + [f"{k}x{n} {c}" for k, n in SHAPES for c in ("fp16", "W4A16 g128", "bytes only")]
    rows = [[str(m)] + [cell for k, n in SHAPES for cell in (
        f"{device_s(linear_kernel(m, n, k, FP16))[0] * 1e6:.1f} us", speedup(m, k, n, "w4a16:g128"),
        bandwidth_only(m, k, n, "w4a16:g128"))] for m in W4A16_M]
    return _markdown(head, rows)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def tables() -> str:
    return f"{w4a4_table()}\n\n{w4a16_table()}"


if __name__ == "__main__":
    print(tables())
