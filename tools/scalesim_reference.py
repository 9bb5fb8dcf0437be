"""Regenerate tests/fixtures/scalesim/reference.json from the real SCALE-Sim.

Dev-only.  Needs SCALE-Sim 3.0.0 (PyPI ``scalesim``), which is NOT a
dependency of Tessel and must not be installed into the project's
environment.  Install it into a throwaway venv outside the repository;
numpy 2 makes every SCALE-Sim 3.0.0 run crash, hence the pins:

    python3 -m venv /tmp/ssvenv
    /tmp/ssvenv/bin/pip install scalesim==3.0.0 "numpy<2" "pandas<2.3"

Usage (from anywhere):

    /tmp/ssvenv/bin/python tools/scalesim_reference.py            # all cases
    /tmp/ssvenv/bin/python tools/scalesim_reference.py --jobs 2   # default
    /tmp/ssvenv/bin/python tools/scalesim_reference.py --no-large # skip the
                                                  # 128x768x768 cases on 32x32
    /tmp/ssvenv/bin/python tools/scalesim_reference.py --out /tmp/x.json

On a 2-core machine the full set (129 cases) took 316 s with --jobs 2
(7.2 CPU-minutes); the slowest single cases are the 4x4 ones at 128x768x64
(70-120 s each) and the 32x32 ones at 128x768x768 (25-40 s each).  The
per-case wall time is printed as it goes.

What it does, for every case (one GEMM out[M,N] = A[M,K] . B[K,N] on an
array of ``rows`` x ``cols`` PEs with dataflow ws / os / is):

* writes, in a fresh temporary directory, a SCALE-Sim config (see CONFIG
  below), a one-row GEMM topology ``name, M, N, K,`` (K is the reduction;
  the trailing comma is required by SCALE-Sim's parser) and a header-only
  layout CSV (SCALE-Sim wants a layout path even when custom layouts are off);
* runs it through SCALE-Sim's Python API, not its CLI (the CLI ignores -s and
  writes per-cycle traces), as

      from scalesim.scale_sim import scalesim
      sim = scalesim(save_disk_space=True, verbose=False, config=cfg,
                     topology=topo, layout=layout, input_type_gemm=True)
      sim.run_scale(top_path=tmpdir)

* reads "Total Cycles" from <tmpdir>/<run_name>/COMPUTE_REPORT.csv and checks
  it equals ``sim.runner.single_layer_sim_object_list[0]
  .get_compute_report_items()[1]`` (``scalesim.get_total_cycles()`` itself is
  broken in 3.0.0: it indexes a bound method and raises TypeError);
* checks that SCALE-Sim reported 0 stall cycles, and deletes the directory.

"Total Cycles" is SCALE-Sim's compute cycle count (stalls included, and
there are none in its default CALC bandwidth mode).  The other column,
"Total Cycles (incl. prefetch)", spans DRAM traffic of the whole SRAM-sized
prefetch and grows with the configured SRAM size, so it is not recorded.

ArrayHeight is the number of rows (SCALE-Sim's ``arr_row``: the dimension
that K maps onto for ws and is, M for os) and ArrayWidth the number of
columns; ``rows`` / ``cols`` in the output are written into those keys.

Afterwards every result is compared with the closed form in
shared/reference/systolic.md (see ``closed_form_cycles``); a mismatch is
printed and makes the script exit 1 (the JSON is still written).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "scalesim" / "reference.json"

RUN_NAME = "ref"

# The exact SCALE-Sim config.  ArrayHeight / ArrayWidth / Dataflow are filled
# in per case; everything else is fixed.  InterfaceBandwidth = CALC is
# SCALE-Sim's default "estimate bandwidth" mode (no DRAM stalls).  SRAMs are
# 8 MiB each so no operand ever has to be refetched; in CALC mode the compute
# cycle count was checked to be the same with 1 kB SRAMs.  No network_presets
# section: SCALE-Sim 3.0.0 reads TopologyCsvLoc from the wrong section when
# it is present, and the topology path is passed through the API anyway.
CONFIG: dict[str, dict[str, str]] = {
    "general": {"run_name": RUN_NAME},
    "run_presets": {"InterfaceBandwidth": "CALC", "UseRamulatorTrace": "False"},
    "architecture_presets": {
        "ArrayHeight": "{rows}",
        "ArrayWidth": "{cols}",
        "ifmapsramszkB": "8192",
        "filtersramszkB": "8192",
        "ofmapsramszkB": "8192",
        "IfmapOffset": "0",
        "FilterOffset": "10000000",
        "OfmapOffset": "20000000",
        "Dataflow": "{dataflow}",
        "ReadRequestBuffer": "32",
        "WriteRequestBuffer": "32",
    },
    "layout": {
        "IfmapCustomLayout": "False",
        "FilterCustomLayout": "False",
        "IfmapSRAMBankBandwidth": "10",
        "IfmapSRAMBankNum": "10",
        "IfmapSRAMBankPort": "2",
        "FilterSRAMBankBandwidth": "10",
        "FilterSRAMBankNum": "10",
        "FilterSRAMBankPort": "2",
    },
    "sparsity": {"SparsitySupport": "false"},
}

ARRAYS: list[tuple[int, int]] = [(4, 4), (8, 8), (16, 16), (32, 32), (8, 16), (16, 8)]
DATAFLOWS = ("ws", "os", "is")

# (M, N, K, note).  Chosen so that M, N and K are, across the arrays above,
# smaller than, equal to, exact multiples of and one-past multiples of the
# array dimensions, so partial ("edge") folds occur on both axes.
SHAPES: list[tuple[int, int, int, str]] = [
    (8, 8, 8, "hand example; single fold on 8x8 and larger"),
    (1, 64, 64, "decode GEMV (M=1)"),
    (17, 33, 50, "no dimension a multiple of any array side"),
    (64, 48, 96, "exact multiples of 16; 48 leaves a partial fold on 32"),
    (128, 96, 72, "72 leaves a partial K fold on 16 and 32"),
    (100, 200, 30, "K smaller than the array on 32; ragged M and N"),
    (128, 768, 64, "GPT-2 small width, short reduction"),
]
LARGE_SHAPES: list[tuple[int, int, int, str]] = [
    (128, 768, 768, "GPT-2 small attention projection (prefill 128)"),
]
LARGE_ARRAYS: list[tuple[int, int]] = [(32, 32)]


def closed_form_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """Stall-free SCALE-Sim compute cycles (shared/reference/systolic.md)."""
    if dataflow == "ws":
        folds = math.ceil(k / rows) * math.ceil(n / cols)
        per_fold = 2 * rows + cols + m - 2
    elif dataflow == "os":
        folds = math.ceil(m / rows) * math.ceil(n / cols)
        per_fold = rows + cols + k - 2
    elif dataflow == "is":
        folds = math.ceil(k / rows) * math.ceil(m / cols)
        per_fold = 2 * rows + cols + n - 2
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}")
    return folds * per_fold - 1


def config_text(rows: int, cols: int, dataflow: str) -> str:
    lines: list[str] = []
    for section, keys in CONFIG.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            lines.append(f"{key} = {value.format(rows=rows, cols=cols, dataflow=dataflow)}")
        lines.append("")
    return "\n".join(lines)


def build_cases(include_large: bool) -> list[dict]:
    cases = []
    for rows, cols in ARRAYS:
        shapes = list(SHAPES)
        if include_large and (rows, cols) in LARGE_ARRAYS:
            shapes += LARGE_SHAPES
        for m, n, k, note in shapes:
            for df in DATAFLOWS:
                cases.append(
                    {"M": m, "N": n, "K": k, "rows": rows, "cols": cols, "dataflow": df, "note": note}
                )
    return cases


def run_case(case: dict) -> dict:
    """Run one case through SCALE-Sim in its own temp dir (called in a worker)."""
    from importlib.metadata import version

    from scalesim.scale_sim import scalesim

    workdir = tempfile.mkdtemp(prefix="scalesim_ref_")
    try:
        cfg = os.path.join(workdir, "arch.cfg")
        topo = os.path.join(workdir, "gemm.csv")
        layout = os.path.join(workdir, "layout.csv")
        with open(cfg, "w") as f:
            f.write(config_text(case["rows"], case["cols"], case["dataflow"]))
        with open(topo, "w") as f:
            f.write("Layer, M, N, K,\n")
            f.write(f"gemm, {case['M']}, {case['N']}, {case['K']},\n")
        with open(layout, "w") as f:
            f.write("Layer,\n")

        t0 = time.monotonic()
        sim = scalesim(
            save_disk_space=True,
            verbose=False,
            config=cfg,
            topology=topo,
            layout=layout,
            input_type_gemm=True,
        )
        sim.run_scale(top_path=os.path.join(workdir, "out"))
        wall = time.monotonic() - t0

        items = sim.runner.single_layer_sim_object_list[0].get_compute_report_items()
        api_cycles, api_stalls = int(items[1]), int(items[2])

        report = os.path.join(workdir, "out", RUN_NAME, "COMPUTE_REPORT.csv")
        with open(report, newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f)]
        header, values = rows[0], rows[1]
        csv_cycles = int(values[header.index("Total Cycles")])
        csv_stalls = int(values[header.index("Stall Cycles")])
        if (csv_cycles, csv_stalls) != (api_cycles, api_stalls):
            raise RuntimeError(
                f"COMPUTE_REPORT.csv ({csv_cycles}, {csv_stalls}) disagrees with the API "
                f"({api_cycles}, {api_stalls}) for {case}"
            )
        if csv_stalls != 0:
            raise RuntimeError(f"SCALE-Sim reported {csv_stalls} stall cycles for {case}")

        out = dict(case)
        out["scalesim_cycles"] = csv_cycles
        out["scalesim_version"] = version("scalesim")
        out["_wall_s"] = wall
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--no-large", action="store_true", help="skip the 128x768x768 cases")
    args = ap.parse_args(argv)

    cases = build_cases(include_large=not args.no_large)
    # Longest first (by the closed form's cycle count times array size, a rough
    # proxy for SCALE-Sim's run time), so the pool finishes evenly.
    order = sorted(
        range(len(cases)),
        key=lambda i: -closed_form_cycles(
            cases[i]["M"], cases[i]["N"], cases[i]["K"],
            cases[i]["rows"], cases[i]["cols"], cases[i]["dataflow"],
        ) * cases[i]["cols"],
    )
    results: list[dict | None] = [None] * len(cases)
    t0 = time.monotonic()
    # One fresh process per case where Python allows it (3.11+): SCALE-Sim's
    # large numpy arrays are then freed between cases.
    pool_kw = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, **pool_kw) as pool:
        futures = {pool.submit(run_case, cases[i]): i for i in order}
        for done, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            i = futures[fut]
            r = fut.result()
            results[i] = r
            print(
                f"[{done:3d}/{len(cases)}] {r['rows']:2d}x{r['cols']:<2d} {r['dataflow']} "
                f"M={r['M']:<3d} N={r['N']:<3d} K={r['K']:<3d} -> {r['scalesim_cycles']:>8d} "
                f"({r['_wall_s']:.1f} s)",
                flush=True,
            )
    total_wall = time.monotonic() - t0

    mismatches = 0
    entries = []
    for r in results:
        assert r is not None
        cf = closed_form_cycles(r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"])
        if cf != r["scalesim_cycles"]:
            mismatches += 1
            print(f"MISMATCH {r}: closed form {cf}", file=sys.stderr)
        entries.append(
            {
                "M": r["M"], "N": r["N"], "K": r["K"],
                "rows": r["rows"], "cols": r["cols"], "dataflow": r["dataflow"],
                "scalesim_cycles": r["scalesim_cycles"],
                "scalesim_version": r["scalesim_version"],
                "note": r["note"],
            }
        )

    doc = {
        "date": datetime.date.today().isoformat(),
        "generator": "tools/scalesim_reference.py",
        "scalesim_version": entries[0]["scalesim_version"],
        "cycles_field": "COMPUTE_REPORT.csv 'Total Cycles' (stall cycles were 0 in every case)",
        "gemm": "out[M,N] = A[M,K] . B[K,N]; topology row 'name, M, N, K,'; input_type_gemm=True",
        "array": "rows -> ArrayHeight, cols -> ArrayWidth",
        "config": config_text("{rows}", "{cols}", "{dataflow}"),
        "layout_file": "header-only CSV 'Layer,'",
        "run_seconds": round(total_wall, 1),
        "jobs": args.jobs,
        "cases": entries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"{len(entries)} cases in {total_wall:.1f} s with {args.jobs} jobs; "
        f"{mismatches} disagree with the closed form; wrote {args.out}"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
