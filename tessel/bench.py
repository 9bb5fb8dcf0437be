"""`make bench`: simulator wall time and instructions per second on fixed workloads.

Speed targets live here, never in unit tests: gpt2 prefill-128 under 5 s timing-only and
under 30 s with numerics, gpt2-xl decode under 20 s timing-only; gpt2 prefill-128 on the
sn40l dataflow preset and gpt2-xl decode on the pim-gpt preset under 10 s timing-only
(2 cores). Also the points per second of a
16-point gpt2 decode sweep on 2 worker processes (tessel.sweep.bench; reported, no budget).
"""
from __future__ import annotations

import json
import sys
import time

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from tessel.driver import run
from tessel.request import make_request
from tessel.sweep.bench import bench_sweep
from tessel.table import render_table

WORKLOADS = (
    ("gpt2 prefill-128, timing only", "gpt2", prefill(128), False, 5.0),
    ("gpt2 prefill-128, with numerics", "gpt2", prefill(128), True, 30.0),
    ("gpt2-xl decode kv-128, timing only", "gpt2-xl", decode(128), False, 20.0),
)


# (label, model, phase, target, preset, budget_s): other targets, timing only
TARGET_WORKLOADS = (
    ("gpt2 prefill-128 on sn40l, timing only", "gpt2", prefill(128), "dataflow", "sn40l", 10.0),
    ("gpt2-xl decode kv-128 on pim-gpt, timing only", "gpt2-xl", decode(128), "pim", "pim-gpt", 10.0),
)


def main() -> int:
    arch = load_arch("systolic-128")
    rows, records = [], []
    for label, name, phase, functional, budget_s in WORKLOADS:
        model = load_model(name)
        start = time.perf_counter()
        result = run(make_request(model, "systolic", arch, phase, numerics=functional)).result
        wall = time.perf_counter() - start
        rows.append((label, f"{wall:.2f}", f"{result.instructions:,}",
                     f"{result.instructions / wall:,.0f}", f"{budget_s:g}", "ok" if wall <= budget_s else "OVER"))
        records.append({"workload": label, "wall_s": wall, "instructions": result.instructions,
                        "instructions_per_s": result.instructions / wall, "budget_s": budget_s})
    for label, name, phase, target, preset, budget_s in TARGET_WORKLOADS:
        model = load_model(name)
        start = time.perf_counter()
        result = run(make_request(model, target, load_arch(preset), phase, numerics=False)).result
        wall = time.perf_counter() - start
        rows.append((label, f"{wall:.2f}", f"{result.instructions:,}",
                     f"{result.instructions / wall:,.0f}", f"{budget_s:g}", "ok" if wall <= budget_s else "OVER"))
        records.append({"workload": label, "wall_s": wall, "instructions": result.instructions,
                        "instructions_per_s": result.instructions / wall, "budget_s": budget_s})
    print(render_table(("workload (systolic-128 unless named)", "wall s", "instructions", "instr/s", "budget s", ""), rows))
    sweep = bench_sweep(workers=2)
    print(f"{sweep['workload']}: {sweep['points']} points in {sweep['wall_s']:.1f} s, "
          f"{sweep['points_per_s']:.2f} points/s")
    records.append(sweep)
    print(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
