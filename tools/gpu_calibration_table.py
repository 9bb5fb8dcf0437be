"""Print the GPU-baseline calibration table of docs/validation.md (markdown).

    .venv/bin/python tools/gpu_calibration_table.py              # the table
    .venv/bin/python tools/gpu_calibration_table.py --fit        # re-derive fitted constants
    .venv/bin/python tools/gpu_calibration_table.py --measured run.json --gpu gpu-a100-80gb

Rows are sim.gpu.CALIBRATION, the measurements cited in reference/gpu.md, each beside the
model's prediction (tessel.gpu_kernels.predict). --fit reproduces the fitted constants of
arch/configs/gpu-*.toml by least squares on log error; --measured adds the per-token
latencies of a baselines/measure_gpu.py run, predicted with the preset and calibrated on it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run from a checkout

from arch import ArchError, GemmEfficiency, MemoryEfficiency, load_arch  # noqa: E402
from compiler.phase import decode, prefill  # noqa: E402
from sim.gpu import (CALIBRATION, CALIBRATION_TOLERANCE, CalibrationError,  # noqa: E402
                     CalibrationPoint, calibrate, load_calibration)
from tessel.gpu_kernels import MODELS, pass_cost, predict  # noqa: E402


def seconds(t: float) -> str:
    unit, scale = next((u, s) for u, s in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
                       if t >= s or u == "us")
    return f"{t / scale:.3g} {unit}"


def measured(p: CalibrationPoint) -> str:
    lo, hi = p.measured_s
    if not p.workload:
        return "—"
    return seconds(lo) if lo == hi else f"{seconds(lo)} – {seconds(hi)}"


def status(p: CalibrationPoint, error: float | None) -> str:
    if error is None:
        return "not evaluable: " + p.known_miss
    if abs(error) <= CALIBRATION_TOLERANCE:
        return "ok"
    return ("known miss: " + p.known_miss) if p.known_miss else "MISS"


def table(points: Sequence[CalibrationPoint] = CALIBRATION) -> str:
    lines = ["| measurement | GPU | mode | measured | model | error | status |",
             "|---|---|---|---|---|---|---|"]
    errors = []
    for p in points:
        pred = predict(p)
        error = None if pred is None else p.error(pred)
        if error is not None:
            errors.append(abs(error))
        lines.append(f"| {p.what} | {p.gpu} | {p.mode} | {measured(p)} | "
                     f"{'—' if pred is None else seconds(pred)} | "
                     f"{'—' if error is None else f'{error:+.1%}'} | {status(p, error)} |")
    within = sum(e <= CALIBRATION_TOLERANCE for e in errors)
    lines.append("")
    lines.append(f"{within} of {len(errors)} evaluable points within "
                 f"{CALIBRATION_TOLERANCE:.0%}; mean |error| {sum(errors) / len(errors):.1%}.")
    return "\n".join(lines)


# --- fitting -------------------------------------------------------------------------------

def log_loss(points: Sequence[CalibrationPoint], gpu) -> float:
    return sum(math.log(predict(p, gpu) / math.sqrt(p.measured_s[0] * p.measured_s[1])) ** 2
               for p in points)


def zoom(loss: Callable[[tuple[float, ...]], float], bounds: Sequence[tuple[float, float]],
         rounds: int = 8, steps: int = 9) -> tuple[float, ...]:
    """Grid search that halves the box around the best point each round."""
    box = list(bounds)
    best = tuple((lo + hi) / 2 for lo, hi in box)
    for _ in range(rounds):
        axes = [[lo + (hi - lo) * i / (steps - 1) for i in range(steps)] for lo, hi in box]
        grid = [()]
        for axis in axes:
            grid = [g + (v,) for g in grid for v in axis]
        best = min(grid, key=loss)
        box = [(max(blo, b - (hi - lo) / 4), min(bhi, b + (hi - lo) / 4))
               for (lo, hi), b, (blo, bhi) in zip(box, best, bounds)]
    return best


def fit() -> str:
    """The curve's constants (`gemm`, `memory.ramp_us`), fitted with the A100 and H200 on the
    curve: the presets without a `tiled_gemm` table (T4, V100, RTX A6000) carry them."""
    a100 = dataclasses.replace(load_arch("gpu-a100-80gb"), tiled_gemm=None)
    gemms = [p for p in CALIBRATION if p.key.startswith("a100-gemm")]
    ft = [p for p in CALIBRATION if p.key.startswith("ft-")]

    def with_gemm(gpu, x):
        return dataclasses.replace(gpu, gemm=GemmEfficiency(*x))

    def with_ramp(gpu, x):
        return dataclasses.replace(gpu, memory=MemoryEfficiency(gpu.memory.max_frac, x[0]))

    gpu = a100
    for _ in range(2):              # the M=64 GEMM feels the ramp, FT prefill the GEMM curve
        gpu = with_gemm(gpu, zoom(lambda x: log_loss(gemms, with_gemm(gpu, x)),
                                  [(0.5, 1.0), (1.0, 400.0), (1.0, 1000.0)]))
        gpu = with_ramp(gpu, zoom(lambda x: log_loss(ft, with_ramp(gpu, x)), [(0.0, 10.0)],
                                  rounds=10))
    h200_point = next(p for p in CALIBRATION if p.key == "h200-gemm-8192")
    h200 = dataclasses.replace(load_arch("gpu-h200"), gemm=gpu.gemm, tiled_gemm=None)
    target = math.sqrt(h200_point.measured_s[0] * h200_point.measured_s[1])
    h_frac = gpu.gemm.max_frac * predict(h200_point, h200) / target
    g = gpu.gemm
    return "\n".join([
        f"A100-80GB GEMM curve ({len(gemms)} GEMMs): max_frac = {g.max_frac:.3f}, "
        f"m_half = {g.m_half:.1f}, nk_half = {g.nk_half:.1f}",
        f"kernel ramp (graph mode vs {len(ft)} FasterTransformer points): "
        f"ramp_us = {gpu.memory.ramp_us:.2f}",
        f"H100/H200 gemm.max_frac (H200 8192^3 at {h200_point.what}): {h_frac:.3f}",
        f"rms log error: GEMMs {math.sqrt(log_loss(gemms, gpu) / len(gemms)):.3f}, "
        f"FT {math.sqrt(log_loss(ft, gpu) / len(ft)):.3f}"])


# --- a measured run -----------------------------------------------------------------------

TOKEN_PASSES = {"gpt2-decode-kv128-eager": (decode(128), "eager"),
                "gpt2-decode-kv128-graph": (decode(128), "graph"),
                "gpt2-prefill128-eager": (prefill(128), "eager")}


def measured_table(path: Path, preset: str) -> str:
    run = load_calibration(path)
    gpu = load_arch(preset)
    tuned = calibrate(gpu, run)
    lines = [f"Measured on {run.gpu_name} ({run.date}, torch {run.torch_version}); "
             f"model: {preset}, then {preset} calibrated on this run.", "",
             "| pass | measured | preset | error | calibrated | error |", "|---|---|---|---|---|---|"]
    for key, ms in sorted(run.tokens_ms.items()):
        if key not in TOKEN_PASSES:
            continue
        phase, mode = TOKEN_PASSES[key]
        a, b = (pass_cost(MODELS["gpt2"], phase, g, mode)[0] for g in (gpu, tuned))
        lines.append(f"| {key} | {ms:.3g} ms | {seconds(a)} | {a / (ms * 1e-3) - 1:+.1%} | "
                     f"{seconds(b)} | {b / (ms * 1e-3) - 1:+.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="re-derive the fitted constants")
    parser.add_argument("--measured", type=Path, help="a baselines/measure_gpu.py JSON")
    parser.add_argument("--gpu", default="gpu-a100-80gb", help="preset for --measured")
    args = parser.parse_args(argv)
    try:
        print(fit() if args.fit else measured_table(args.measured, args.gpu) if args.measured
              else table())
    except (ArchError, CalibrationError) as e:
        sys.exit(f"gpu_calibration_table.py: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
