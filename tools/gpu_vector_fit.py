"""The GPU baseline's non-GEMM kernels against Vidur's measurements, before and after the
per-kind vector fit (issue 21, Deliver 3).

    .venv/bin/python tools/gpu_vector_fit.py          # the tables of docs/validation.md (presets' values)
    .venv/bin/python tools/gpu_vector_fit.py --fit    # refit on the fitting rows, print the preset values

Data: baselines/gpu_measurements.py, the A100 80 GB and H100 SXM rows (the A40 has no preset),
split by `split_rows` (held out: internlm-20b, the one width, 5120, no fitted model has). Each
Vidur operator is set beside the kernels tessel.gpu_kernels builds for its op in a one-block
Llama graph of the profiled tensor-parallel shard (heads, KV heads and MLP width / tp; norms,
residual add and embedding at full width) at num_tokens tokens, prefill: `OPS`. Device time,
as Vidur measures it (CUDA kernel durations): graph-mode kernel time minus the launch.
Against each row's median (Vidur keeps no minimum for these operators).

"today" is the model before this fit (commit 39c8222), re-priced from the same kernels
(`today_kernels`): RMSNorm priced as layernorm, RoPE as elementwise without its cos/sin table,
silu then mul as two elementwise kernels, every vector kind on the preset's [memory] curve.
Fit (--fit): per GPU and kind in FITTED, the (vector_frac, vector_ramp_us) that minimise the
mean squared log error of time on the fitting rows (a zoom grid); the held-out rows are only
reported. The embedding and the residual add are fitted for the record but not adopted: their
kinds are GPT-2's too (`NOT_ADOPTED`).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run from a checkout

from arch import load_arch  # noqa: E402
from arch.gpu import GpuArch  # noqa: E402
from baselines.gpu_measurements import ProfileRow, load_gpu, split_rows  # noqa: E402
from compiler.frontend.decoder import DecoderConfig  # noqa: E402
from compiler.phase import prefill  # noqa: E402
from sim.gpu import Kernel, kernel_time  # noqa: E402
from tessel.gpu_kernels import HALF_BYTES, model_kernels  # noqa: E402

GPUS = {"a100": "gpu-a100-80gb", "h100": "gpu-h100-sxm"}     # Vidur SKU -> preset
# Vidur operator -> (our kernels for it, in a one-block graph; their kind)
OPS = {"emb": (("embed",), "embedding"),
       "input_layernorm": (("layers.0.input_layernorm",), "rmsnorm"),
       "attn_rope": (("layers.0.self_attn.q.rope", "layers.0.self_attn.k.rope"), "rope"),
       "post_attention_layernorm": (("layers.0.post_attention_layernorm",), "rmsnorm"),
       "mlp_act": (("layers.0.mlp.gated",), "silu-gate"),
       "add": (("layers.0.mlp.residual",), "elementwise")}
FITTED = ("rmsnorm", "rope", "silu-gate")          # adopted in the presets' vector tables
NOT_ADOPTED = ("embedding", "elementwise")         # shared with GPT-2: fitted, reported, kept
BOUNDS = ((0.05, 1.0), (0.0, 20.0))                # vector_frac, vector_ramp_us
ROUNDS, STEPS = 14, 11
SILU_FLOPS, MUL_FLOPS = 4, 1                       # per element (compiler/ops.py): the split of a silu-gate
MISS, SHORT_S = 0.30, 10e-6     # a point beyond 30 %; a kernel under 10 us (the trace's 1 us ticks are 10 %)


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One Vidur row's operator beside the kernels we build for it."""

    row: ProfileRow
    op: str
    kernels: tuple[Kernel, ...]

    @property
    def measured_s(self) -> float:
        return self.row.median_ms[self.op] * 1e-3


def shard_config(row: ProfileRow) -> DecoderConfig:
    """One decoder block of the tensor-parallel shard Vidur profiled (mlp_impl.py)."""
    d, tp = row.dims, row.tp
    return DecoderConfig(f"vidur-{row.model}-tp{tp}", "llama", d.vocab_size, d.n_embd,
                         d.n_expanded_embd // tp, 1, d.n_head // tp, d.n_kv_head // tp,
                         head_dim=d.head_dim, max_position_embeddings=max(4096, row.num_tokens))


def points(rows: Sequence[ProfileRow]) -> list[Point]:
    out = []
    for row in rows:
        built = {k.name: k for k in model_kernels(shard_config(row), prefill(row.num_tokens))}
        out += [Point(row, op, tuple(built[n] for n in names)) for op, (names, _) in OPS.items()]
    return out


def split() -> dict[str, dict[str, list[Point]]]:
    """{gpu: {"fit": [...], "held out": [...]}} for the GPUs with a preset."""
    out = {}
    for gpu in GPUS:
        parts = split_rows(load_gpu(gpu))
        out[gpu] = {"fit": points(parts.fit), "held out": points(parts.held_out)}
    return out


def today_kernels(point: Point) -> list[Kernel]:
    """The kernels as the model before this fit priced them (see the module docstring)."""
    out = []
    for k in point.kernels:
        if k.kind == "rmsnorm":
            out.append(dataclasses.replace(k, kind="layernorm"))
        elif k.kind == "rope":
            table = point.row.num_tokens * point.row.dims.head_dim * HALF_BYTES
            out.append(dataclasses.replace(k, kind="elementwise", bytes=k.bytes - table))
        elif k.kind == "silu-gate":               # silu: gate in, act out; mul: act, up in, out
            n = k.flops // (SILU_FLOPS + MUL_FLOPS)
            out += [Kernel(f"{k.name}.silu", "elementwise", SILU_FLOPS * n, k.bytes * 2 // 3),
                    Kernel(k.name, "elementwise", MUL_FLOPS * n, k.bytes)]
        else:
            out.append(k)
    return out


def generic(gpu: GpuArch) -> GpuArch:
    """`gpu` with every vector kind on its [memory] curve (as before this fit)."""
    return dataclasses.replace(gpu, vector_frac={}, vector_ramp_us={})


def device_s(kernels: Sequence[Kernel], gpu: GpuArch) -> float:
    times = [kernel_time(k, gpu, "graph") for k in kernels]
    return sum(t.time_s - t.overhead_s for t in times)


def predicted_s(pts: Sequence[Point], gpu: GpuArch, today: bool) -> np.ndarray:
    if today:
        old = generic(gpu)
        return np.array([device_s(today_kernels(p), old) for p in pts])
    return np.array([device_s(p.kernels, gpu) for p in pts])


def errors(predicted: np.ndarray, measured: np.ndarray) -> dict:
    rel = predicted / measured - 1
    worst, beyond = int(np.argmax(np.abs(rel))), np.abs(rel) > MISS
    return {"count": int(rel.size), "mean_abs": float(np.mean(np.abs(rel))), "worst": float(rel[worst]),
            "beyond": int(np.sum(beyond)), "beyond_short": int(np.sum(beyond & (measured < SHORT_S)))}


def error_table(by_gpu: dict[str, dict[str, list[Point]]], presets: dict[str, GpuArch]) -> dict:
    """{gpu: {op: {part: {"today": errors, "after": errors}}}}."""
    out = {}
    for gpu, parts in by_gpu.items():
        arch = presets[GPUS[gpu]]
        out[gpu] = {op: {} for op in OPS}
        for part, pts in parts.items():
            for op in OPS:
                mine = [p for p in pts if p.op == op]
                measured = np.array([p.measured_s for p in mine])
                out[gpu][op][part] = {"today": errors(predicted_s(mine, arch, True), measured),
                                      "after": errors(predicted_s(mine, arch, False), measured)}
    return out


# --- the fit -----------------------------------------------------------------------------------

def _features(pts: Sequence[Point]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: kernels, total bytes, measured time (vector kernels are memory-bound, so
    time = kernels x ramp + bytes / (frac x BW))."""
    return (np.array([len(p.kernels) for p in pts], dtype=float),
            np.array([sum(k.bytes for k in p.kernels) for p in pts], dtype=float),
            np.array([p.measured_s for p in pts]))


def fit_kind(pts: Sequence[Point], bw_bytes_per_s: float) -> tuple[float, float]:
    """(vector_frac, vector_ramp_us) minimising the mean squared log error on `pts`: a grid
    that halves its box around the best point each round (deterministic)."""
    n, nbytes, measured = _features(pts)
    log_t = np.log(measured)

    def loss(x: tuple[float, float]) -> float:
        return float(np.mean((np.log(n * x[1] * 1e-6 + nbytes / (x[0] * bw_bytes_per_s)) - log_t) ** 2))

    box = list(BOUNDS)
    for _ in range(ROUNDS):
        grid = [(a, b) for a in np.linspace(*box[0], STEPS) for b in np.linspace(*box[1], STEPS)]
        best = min(grid, key=loss)
        box = [(max(lo0, v - (hi - lo) / 4), min(hi0, v + (hi - lo) / 4))
               for (lo, hi), v, (lo0, hi0) in zip(box, best, BOUNDS)]
    return round(float(best[0]), 3), round(float(best[1]), 2)


def fit(by_gpu: dict[str, dict[str, list[Point]]], kinds: Sequence[str] = FITTED
        ) -> dict[str, dict[str, tuple[float, float]]]:
    """{preset: {kind: (vector_frac, vector_ramp_us)}} from the fitting rows only."""
    out = {}
    for gpu, parts in by_gpu.items():
        bw = load_arch(GPUS[gpu]).mem_bw_bytes_per_s
        out[GPUS[gpu]] = {kind: fit_kind([p for p in parts["fit"] if OPS[p.op][1] == kind], bw)
                          for kind in kinds}
    return out


def with_fit(gpu: GpuArch, fitted: dict[str, tuple[float, float]]) -> GpuArch:
    return dataclasses.replace(gpu, vector_frac={k: f for k, (f, _) in fitted.items()},
                               vector_ramp_us={k: r for k, (_, r) in fitted.items()})


# --- tables ------------------------------------------------------------------------------------

def table(by_op: dict) -> str:
    """The error table (from error_table), markdown."""
    lines = ["| GPU | Vidur operator | our kernels | part | points | today mean | today worst "
             "| after mean | after worst | after beyond 30% (under 10 us) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for gpu, ops in by_op.items():
        for op, parts in ops.items():
            names, kind = OPS[op]
            ours = f"{len(names)} x {kind}" + ("" if kind in FITTED else " (unchanged)")
            for part, e in parts.items():
                t, a = e["today"], e["after"]
                lines.append(f"| {GPUS[gpu]} | {op} | {ours} | {part} | {a['count']} | "
                             f"{t['mean_abs']:.1%} | {t['worst']:+.1%} | {a['mean_abs']:.1%} | "
                             f"{a['worst']:+.1%} | {a['beyond']} ({a['beyond_short']}) |")
    return "\n".join(lines)


def params_table(presets: dict[str, GpuArch]) -> str:
    """The adopted per-kind values, as the presets hold them."""
    lines = ["| kind | " + " | ".join(f"{p} vector_frac | {p} vector_ramp_us" for p in presets) + " |",
             "|---|" + "---|---|" * len(presets)]
    for kind in FITTED:
        lines.append(f"| {kind} | " + " | ".join(f"{g.vector_frac[kind]:g} | {g.vector_ramp_us[kind]:g}"
                                                 for g in presets.values()) + " |")
    return "\n".join(lines)


def not_adopted_table(by_gpu: dict[str, dict[str, list[Point]]]) -> str:
    """What the same fit gives the embedding and the residual add, had it been adopted."""
    lines = ["| GPU | kind | vector_frac | vector_ramp_us | held out mean | held out worst |",
             "|---|---|---|---|---|---|"]
    for preset, kinds in fit(by_gpu, NOT_ADOPTED).items():
        gpu = next(g for g, p in GPUS.items() if p == preset)
        arch = with_fit(load_arch(preset), kinds)
        for kind, (frac, ramp) in kinds.items():
            held = [p for p in by_gpu[gpu]["held out"] if OPS[p.op][1] == kind]
            e = errors(predicted_s(held, arch, False), np.array([p.measured_s for p in held]))
            lines.append(f"| {preset} | {kind} | {frac:g} | {ramp:g} | {e['mean_abs']:.1%} | {e['worst']:+.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit on the fitting rows and print the values")
    args = parser.parse_args(argv)
    by_gpu = split()
    if args.fit:
        for preset, kinds in fit(by_gpu).items():
            print(f"{preset}: " + ", ".join(f"{k}: vector_frac {f:g}, vector_ramp_us {r:g}"
                                            for k, (f, r) in kinds.items()))
        return 0
    presets = {p: load_arch(p) for p in GPUS.values()}
    print(params_table(presets), "", table(error_table(by_gpu, presets)), "",
          not_adopted_table(by_gpu), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
