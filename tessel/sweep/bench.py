"""The sweep benchmark of `make bench`: points per second of sweeps/bench-gpt2-decode.toml
(16 systolic arrays, GPT-2 decode at KV 128, timing only) on a fresh store."""
from __future__ import annotations

import tempfile
from pathlib import Path

import tessel
from tessel.sweep.runner import run_sweep
from tessel.sweep.spec import load_spec

__all__ = ["bench_sweep", "BENCH_SPEC"]

BENCH_SPEC = Path(tessel.__file__).resolve().parents[1] / "sweeps" / "bench-gpt2-decode.toml"


def bench_sweep(workers: int) -> dict[str, float | int | str]:
    spec = load_spec(BENCH_SPEC)
    with tempfile.TemporaryDirectory(prefix="tessel-bench-sweep-") as out:
        summary = run_sweep(spec, Path(out), workers=workers, progress=False)
    return {"workload": f"sweep {BENCH_SPEC.name}, {workers} workers", "points": summary.evaluated,
            "wall_s": summary.wall_s, "points_per_s": summary.points_per_s,
            "failed": sum(n for _, n in summary.failed)}
