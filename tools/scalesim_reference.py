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

``--set gpt2`` holds every distinct GEMM of GPT-2 small (prefill of 128
tokens, decode at KV 128) on 32x32 and 128x128 arrays, ws / os / is (84
cases), written to tests/fixtures/scalesim/gpt2.json.  Its LM head cases
take minutes and gigabytes each, so it is meant to be run in batches,
cheapest first, each batch merged into the file as it goes:

    /tmp/ssvenv/bin/python tools/scalesim_reference.py --set gpt2 --list
    nice -n 10 /tmp/ssvenv/bin/python tools/scalesim_reference.py --set gpt2 \
        --jobs 1 --resume --array 128x128 --max-cycles 2000000 --max-mem-gb 8

``--resume`` keeps the cases already in --out, skips them, and rewrites the
file after every case, so an interrupted batch loses at most the case in
flight.  ``--only TEXT`` keeps cases whose id (``MxNxK-RxC-df``) or note
contains TEXT; ``--array``, ``--dataflow`` and ``--max-cycles`` (the closed
form's cycle count) filter further; ``--max-mem-gb`` caps each worker's
address space (a case that exceeds it fails with MemoryError and is left
out); ``--deadline-s`` stops starting new cases after that many seconds.
Per-case wall time and peak resident memory are kept under "case_stats"
for the gpt2 set.

Measured on a shared 2-core machine (nice 10, --jobs 1): the 72 layer GEMMs
took 17 minutes in all (at most 78 s and 1.7 GB each); an LM head takes
4.5-8 minutes and 3.7-7.5 GB.  SCALE-Sim's memory grows with the simulated
cycles, about 3.5 KB per cycle at 32x32 and 8-13 KB per cycle at 128x128,
so the LM heads above about a million cycles (ws prefill at 128x128, ws
decode at 32x32 and all three prefill dataflows at 32x32) need more than
8 GB and are not in the file.

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
FIXTURES = REPO / "tests" / "fixtures" / "scalesim"

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

# GPT-2 small (d_model 768, 12 heads of 64, d_ff 3072, vocabulary 50257): every distinct
# GEMM of a 128-token prefill and of one decode step at KV 128 (the new token attends to
# 129 keys), as (M, N, K, note).  Attention GEMMs are per head: scores M=S, N=S, K=64;
# context M=S, N=64, K=S.
GPT2_SEQ = 128
GPT2_KEYS_DECODE = GPT2_SEQ + 1
GPT2_SHAPES: list[tuple[int, int, int, str]] = [
    (m, n, k, f"GPT-2 small {phase} {name}")
    for phase, m, keys in (("prefill-128", GPT2_SEQ, GPT2_SEQ), ("decode KV 128", 1, GPT2_KEYS_DECODE))
    for n, k, name in (
        (3 * 768, 768, "qkv"),
        (768, 768, "attention projection"),
        (3072, 768, "fc1"),
        (768, 3072, "fc2"),
        (keys, 64, "scores (per head)"),
        (64, keys, "context (per head)"),
        (50257, 768, "LM head"),
    )
]
GPT2_ARRAYS: list[tuple[int, int]] = [(32, 32), (128, 128)]


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


def cases_for(arrays: list[tuple[int, int]], shapes_for) -> list[dict]:
    return [
        {"M": m, "N": n, "K": k, "rows": rows, "cols": cols, "dataflow": df, "note": note}
        for rows, cols in arrays
        for m, n, k, note in shapes_for(rows, cols)
        for df in DATAFLOWS
    ]


def build_cases(include_large: bool) -> list[dict]:
    def shapes(rows: int, cols: int) -> list[tuple[int, int, int, str]]:
        large = include_large and (rows, cols) in LARGE_ARRAYS
        return SHAPES + (LARGE_SHAPES if large else [])

    return cases_for(ARRAYS, shapes)


def build_gpt2_cases(include_large: bool) -> list[dict]:
    return cases_for(GPT2_ARRAYS, lambda rows, cols: GPT2_SHAPES)


# name -> (case builder, default output file, whether per-case wall time and peak memory
# are recorded; the default set's file keeps its original format)
CASE_SETS = {
    "default": (build_cases, FIXTURES / "reference.json", False),
    "gpt2": (build_gpt2_cases, FIXTURES / "gpt2.json", True),
}


def case_key(case: dict) -> tuple:
    return (case["M"], case["N"], case["K"], case["rows"], case["cols"], case["dataflow"])


def case_id(case: dict) -> str:
    return f"{case['M']}x{case['N']}x{case['K']}-{case['rows']}x{case['cols']}-{case['dataflow']}"


def case_cycles(case: dict) -> int:
    return closed_form_cycles(*case_key(case))


def case_cost(case: dict) -> int:
    """Rough proxy for SCALE-Sim's run time and memory: its demand matrices hold one row
    per cycle and one column per array row / column."""
    return case_cycles(case) * case["cols"]


def select(cases: list[dict], args: argparse.Namespace) -> list[dict]:
    arrays = {tuple(int(x) for x in a.lower().split("x")) for a in args.array or []}
    keep = []
    for c in cases:
        if arrays and (c["rows"], c["cols"]) not in arrays:
            continue
        if args.dataflow and c["dataflow"] not in args.dataflow:
            continue
        if args.only and not any(t in case_id(c) or t in c["note"] for t in args.only):
            continue
        if args.max_cycles is not None and case_cycles(c) > args.max_cycles:
            continue
        keep.append(c)
    return keep


def run_case(case: dict, max_mem_gb: float | None = None) -> dict:
    """Run one case through SCALE-Sim in its own temp dir (called in a worker)."""
    import resource
    from importlib.metadata import version

    if max_mem_gb is not None:
        cap = int(max_mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

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
        out["_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def entry(r: dict) -> dict:
    return {
        "M": r["M"], "N": r["N"], "K": r["K"],
        "rows": r["rows"], "cols": r["cols"], "dataflow": r["dataflow"],
        "scalesim_cycles": r["scalesim_cycles"],
        "scalesim_version": r["scalesim_version"],
        "note": r["note"],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=sorted(CASE_SETS), default="default", help="case set")
    ap.add_argument("--out", type=Path, help="output JSON (default: the set's fixture)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--no-large", action="store_true", help="skip the 128x768x768 cases")
    ap.add_argument("--only", action="append", metavar="TEXT",
                    help="keep cases whose id MxNxK-RxC-df or note contains TEXT (repeatable)")
    ap.add_argument("--array", action="append", metavar="RxC", help="keep this array (repeatable)")
    ap.add_argument("--dataflow", action="append", choices=DATAFLOWS, help="keep this dataflow")
    ap.add_argument("--max-cycles", type=int, help="keep cases whose closed form is at most this")
    ap.add_argument("--resume", action="store_true",
                    help="keep the cases already in --out, run only the missing ones")
    ap.add_argument("--cheapest-first", action="store_true",
                    help="run in increasing estimated cost (default: longest first)")
    ap.add_argument("--max-mem-gb", type=float, help="address-space cap per worker")
    ap.add_argument("--deadline-s", type=float, help="start no case after this many seconds")
    ap.add_argument("--list", action="store_true", help="print the selected cases and exit")
    return ap.parse_args(argv)


def load_previous(path: Path, config: str) -> dict:
    doc = json.loads(path.read_text())
    if doc.get("config") != config:
        raise SystemExit(f"{path} was made with another SCALE-Sim config; not merging into it")
    return doc


def write_doc(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    build, default_out, record_stats = CASE_SETS[args.set]
    out_path = args.out or default_out
    config = config_text("{rows}", "{cols}", "{dataflow}")
    all_cases = build(include_large=not args.no_large)

    recorded: dict[tuple, dict] = {}
    stats: dict[str, dict] = {}
    failed: dict[str, str] = {}
    run_seconds = 0.0
    if args.resume and out_path.exists():
        prev = load_previous(out_path, config)
        recorded = {case_key(e): e for e in prev["cases"]}
        stats = prev.get("case_stats", {})
        failed = prev.get("failed", {})
        run_seconds = prev.get("run_seconds", 0.0)

    todo = [c for c in select(all_cases, args) if case_key(c) not in recorded]
    # Longest first (by the closed form's cycle count times array size, a rough
    # proxy for SCALE-Sim's run time), so the pool finishes evenly; or cheapest
    # first, so a batch cut short has recorded as many cases as it could.
    todo.sort(key=case_cost, reverse=not args.cheapest_first)
    if args.list:
        for c in todo:
            print(f"{case_id(c):26s} closed form {case_cycles(c):>10d}  cost {case_cost(c):>12d}  {c['note']}")
        print(f"{len(todo)} cases to run, {len(recorded)} already in {out_path}")
        return 0

    def write() -> None:
        order = {case_key(c): i for i, c in enumerate(all_cases)}
        entries = sorted(recorded.values(), key=lambda e: order.get(case_key(e), len(order)))
        if not entries:
            return
        doc = {
            "date": datetime.date.today().isoformat(),
            "generator": "tools/scalesim_reference.py" + ("" if args.set == "default" else f" --set {args.set}"),
            "scalesim_version": entries[0]["scalesim_version"],
            "cycles_field": "COMPUTE_REPORT.csv 'Total Cycles' (stall cycles were 0 in every case)",
            "gemm": "out[M,N] = A[M,K] . B[K,N]; topology row 'name, M, N, K,'; input_type_gemm=True",
            "array": "rows -> ArrayHeight, cols -> ArrayWidth",
            "config": config,
            "layout_file": "header-only CSV 'Layer,'",
            "run_seconds": round(run_seconds + time.monotonic() - t0, 1),
            "jobs": args.jobs,
        }
        if record_stats:
            doc["case_stats"] = dict(sorted(stats.items()))
            doc["failed"] = dict(sorted(failed.items()))
        doc["cases"] = entries
        write_doc(out_path, doc)

    t0 = time.monotonic()
    mismatches = 0
    # One fresh process per case where Python allows it (3.11+): SCALE-Sim's
    # large numpy arrays are then freed between cases.
    pool_kw = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, **pool_kw) as pool:
        futures = {pool.submit(run_case, c, args.max_mem_gb): c for c in todo}
        for done, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            c = futures[fut]
            if fut.cancelled():
                continue
            try:
                r = fut.result()
            except concurrent.futures.process.BrokenProcessPool as e:
                print(f"worker pool broke ({e}); stopping", file=sys.stderr, flush=True)
                break
            except Exception as e:  # noqa: BLE001 - one failed case must not lose the others
                failed[case_id(c)] = f"{type(e).__name__}: {e}"[:300]
                print(f"[{done:3d}/{len(todo)}] {case_id(c)} FAILED: {failed[case_id(c)]}", flush=True)
                write()
                continue
            cf = case_cycles(r)
            if cf != r["scalesim_cycles"]:
                mismatches += 1
                print(f"MISMATCH {case_id(r)}: SCALE-Sim {r['scalesim_cycles']}, closed form {cf}",
                      file=sys.stderr, flush=True)
            recorded[case_key(r)] = entry(r)
            stats[case_id(r)] = {"wall_s": round(r["_wall_s"], 1), "peak_rss_mb": round(r["_peak_rss_mb"])}
            failed.pop(case_id(r), None)
            write()
            print(
                f"[{done:3d}/{len(todo)}] {r['rows']:3d}x{r['cols']:<3d} {r['dataflow']} "
                f"M={r['M']:<3d} N={r['N']:<5d} K={r['K']:<4d} -> {r['scalesim_cycles']:>9d} "
                f"({r['_wall_s']:.1f} s, {r['_peak_rss_mb']:.0f} MB)",
                flush=True,
            )
            if args.deadline_s is not None and time.monotonic() - t0 > args.deadline_s:
                for f in futures:
                    f.cancel()
    total_wall = time.monotonic() - t0

    bad = [e for e in recorded.values() if case_cycles(e) != e["scalesim_cycles"]]
    for e in bad:
        print(f"MISMATCH {e}: closed form {case_cycles(e)}", file=sys.stderr)
    print(
        f"{len(recorded)} cases in {out_path} ({len(todo)} selected to run, {total_wall:.1f} s "
        f"with {args.jobs} jobs); {len(bad)} disagree with the closed form"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return 1 if bad or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
