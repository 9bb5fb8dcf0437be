"""Tessel against SCALE-Sim 3.0.0 in speed: GPT-2 small prefill-128 on a 128x128 ws array,
both sides measured in one run on one machine (issue 17: 20,000x in process, 2,000x as whole
processes).

Dev-only.  Runs in the project's venv; SCALE-Sim runs in its own venv, as
tools/scalesim_reference.py sets it up (/tmp/ssvenv, scalesim==3.0.0 "numpy<2" "pandas<2.3"),
one case per process.  On a shared machine give both sides the same low priority:

    nice -n 15 .venv/bin/python tools/scalesim_speed.py --out /tmp/speed.json
    .venv/bin/python tools/scalesim_speed.py --tessel-only     # no SCALE-Sim (about a minute)

The whole run took 10.5 minutes on the 2-core development machine, 8.3 of them SCALE-Sim's LM
head (10.4 GB resident); docs/validation.md, "Speed against SCALE-Sim 3.0.0", has its figures.

SCALE-Sim side: every distinct GEMM of one GPT-2 layer (qkv, attention projection, fc1, fc2,
one head's scores and context) and the LM head, each in a fresh process running
`scalesim_reference.run_case` (the reference set's config: 8 MiB SRAMs, CALC bandwidth).  Its
"simulation" is the timed scalesim() + run_scale() call; its "process" is the child from
spawn to exit.  The model is 12 x layer (12 x 12 heads for scores and context) + LM head:
exact for SCALE-Sim, whose run depends only on the GEMM's shape and the config.  An LM head
that fails under its memory cap is timed in column pieces (multiples of the array's columns,
so the pieces' folds are the whole GEMM's folds), summed.

Tessel side: `tessel.driver.run` in this process (graph build, compile, verify, simulate;
not imports or model loading), the median of --repeats; and `tessel sim ... --no-functional
--gpu none` as a whole process, the median of --process-repeats.  The preset is scalesim-128
with dataflow=ws and attention=unfused, so its matrix unit runs exactly SCALE-Sim's 337 GEMMs
(checked: busy cycles = the GEMMs' SCALE-Sim cycles + 1 each, docs/systolic.md).

Child processes write bytecode to a private cache (PYTHONPYCACHEPREFIX in a temporary
directory, warmed by one untimed start), as any Python install does after its first run;
the Tessel start-up is also timed without it (this sandbox sets PYTHONDONTWRITEBYTECODE).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import scalesim_reference as ref  # noqa: E402 - stdlib only at import; SCALE-Sim runs in children

ARRAY = 128                         # rows = cols of the systolic array
DATAFLOW = "ws"
SEQ, N_LAYER, N_HEAD, D_MODEL, D_FF, HEAD_DIM, VOCAB = 128, 12, 12, 768, 3072, 64, 50257
PRESET = "scalesim-128"
OVERRIDES = ("dataflow=ws", "attention=unfused")   # SCALE-Sim's GEMMs: per-head scores, context
TARGETS_X = {"in_process": 20_000, "whole_process": 2_000}   # issue 17's must-show


@dataclass(frozen=True, slots=True)
class Gemm:
    """One distinct GEMM out[m, n] = A[m, k] . B[k, n] and how often the model runs it."""

    name: str
    m: int
    n: int
    k: int
    per_model: int

    def cycles(self) -> int:
        """SCALE-Sim's "Total Cycles" (the closed form of tools/scalesim_reference.py)."""
        return ref.closed_form_cycles(self.m, self.n, self.k, ARRAY, ARRAY, DATAFLOW)


GEMMS = (
    Gemm("qkv", SEQ, 3 * D_MODEL, D_MODEL, N_LAYER),
    Gemm("attention projection", SEQ, D_MODEL, D_MODEL, N_LAYER),
    Gemm("fc1", SEQ, D_FF, D_MODEL, N_LAYER),
    Gemm("fc2", SEQ, D_MODEL, D_FF, N_LAYER),
    Gemm("scores (one head)", SEQ, SEQ, HEAD_DIM, N_LAYER * N_HEAD),
    Gemm("context (one head)", SEQ, HEAD_DIM, SEQ, N_LAYER * N_HEAD),
    Gemm("LM head", SEQ, VOCAB, D_MODEL, 1),
)


def model_total(per_gemm: Mapping[str, float], gemms: Sequence[Gemm] = GEMMS) -> float:
    """The whole model from one figure per distinct GEMM: each times its count, summed."""
    return sum(g.per_model * per_gemm[g.name] for g in gemms)


def column_pieces(n: int, cols: int, pieces: int) -> list[int]:
    """`n` output columns split into `pieces` widths that are whole multiples of `cols` (the
    last takes the remainder), as even as the folds allow: the pieces' column folds are the
    whole GEMM's, so SCALE-Sim does the same work, one fold stream per piece."""
    folds = math.ceil(n / cols)
    if not 1 <= pieces <= folds:
        raise ValueError(f"cannot split {n} columns ({folds} folds of {cols}) into {pieces} pieces")
    widths = [(folds // pieces + (i < folds % pieces)) * cols for i in range(pieces)]
    widths[-1] -= folds * cols - n
    return widths


STAGE_GROUPS = {"events": "engine"}   # simulate()'s stage names -> the table's


def stage_groups(stages: Mapping[str, float], compile_steps: Sequence[str]) -> dict[str, float]:
    """A profiled run's stages as the table shows them: the compiler's steps summed as
    "compile", the simulator's engine ("events") as "engine", the rest by their own names."""
    out: dict[str, float] = {}
    for stage, seconds in stages.items():
        name = "compile" if stage in compile_steps else STAGE_GROUPS.get(stage, stage)
        out[name] = out.get(name, 0.0) + seconds
    return out


def summary_rows(doc: dict) -> list[tuple[str, ...]]:
    """The table: one row per SCALE-Sim GEMM, its whole-model totals, Tessel's figures and the
    ratios; columns wall and CPU seconds, in process ("sim") and as whole processes."""
    def f(x: float | None, digits: int = 2) -> str:
        return "" if x is None else f"{x:,.{digits}f}"

    rows = []
    ss = doc["scalesim"]
    for c in ss["cases"]:
        rows.append((f"SCALE-Sim {c['name']} {c['m']}x{c['n']}x{c['k']}", f"x{c['per_model']}",
                     f(c["sim_s"]), f(c["process_s"]), f(c["sim_cpu_s"]), f(c["process_cpu_s"]),
                     c["method"]))
    if ss["cases"]:
        rows.append(("SCALE-Sim whole model", f"{ss['gemms']} GEMMs", f(ss["model_sim_s"], 1),
                     f(ss["model_process_s"], 1), f(ss["model_sim_cpu_s"], 1),
                     f(ss["model_process_cpu_s"], 1), "one process: + one start-up"))
        rows.append(("SCALE-Sim whole model, a process per GEMM", "", "",
                     f(ss["model_process_per_gemm_s"], 1), "", "", ""))
    t = doc["tessel"]
    cached = t["process"]["bytecode cached"]
    rows.append(("Tessel whole model (median)", f"{t['instructions']:,} instr",
                 f(t["in_process_s"], 3), f(cached["median_s"], 3), f(t["in_process_cpu_s"], 3),
                 f(cached["cpu_median_s"], 3), "bytecode cached"))
    cold = t["process"].get("no bytecode cache")
    if cold:
        rows.append(("Tessel whole process, no bytecode cache", "", "", f(cold["median_s"], 3), "",
                     f(cold["cpu_median_s"], 3), ""))
    r = doc.get("ratios")
    if r:
        def x(key: str) -> str:
            return f"{r[key]['ratio']:,.0f}x"
        met = "; ".join(f"{k} {r[k]['target']:,}x {'met' if r[k]['met'] else 'not met'}"
                        for k in ("in_process", "whole_process"))
        rows.append(("SCALE-Sim / Tessel", "", x("in_process"), x("whole_process"),
                     x("in_process_cpu"), x("whole_process_cpu"), met))
    return rows


def render(doc: dict) -> str:
    from tessel.table import render_table
    return render_table(("what", "count", "sim s", "process s", "sim CPU s", "process CPU s",
                         "note"), summary_rows(doc))


# ---- measuring -------------------------------------------------------------------------

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import scalesim_reference as ref
import scalesim.scale_sim
case, cap = json.loads(sys.argv[2]), float(sys.argv[3])
cpu = time.process_time()
r = ref.run_case(case, cap)
print(json.dumps({"cycles": r["scalesim_cycles"], "sim_s": r["_wall_s"],
                  "sim_cpu_s": time.process_time() - cpu, "peak_rss_mb": r["_peak_rss_mb"]}))
"""


class CaseFailed(RuntimeError):
    pass


def child_env(pycache: Path, *, bytecode: bool = True) -> dict[str, str]:
    """This process's environment, with bytecode cached under `pycache` (or not written)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def timed_process(argv: Sequence[str], env: Mapping[str, str], timeout_s: float | None = None
                  ) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def scalesim_run(python: str, m: int, n: int, k: int, cap_gb: float, env: Mapping[str, str],
                 timeout_s: float) -> dict:
    """One GEMM in a fresh SCALE-Sim process: its cycles, simulation and process times."""
    case = {"M": m, "N": n, "K": k, "rows": ARRAY, "cols": ARRAY, "dataflow": DATAFLOW,
            "note": "scalesim_speed"}
    argv = [python, "-c", CHILD, str(REPO / "tools"), json.dumps(case), str(cap_gb)]
    try:
        wall, cpu, done = timed_process(argv, env, timeout_s)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"{m}x{n}x{k}: over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise CaseFailed(f"{m}x{n}x{k} under {cap_gb:g} GB: {tail[0][:300]} (after {wall:.0f} s)")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = ref.closed_form_cycles(m, n, k, ARRAY, ARRAY, DATAFLOW)
    if out["cycles"] != expected:
        raise CaseFailed(f"{m}x{n}x{k}: SCALE-Sim {out['cycles']} cycles, closed form {expected}")
    return {**out, "process_s": wall, "process_cpu_s": cpu}


def scalesim_gemm(g: Gemm, args: argparse.Namespace, env: Mapping[str, str], log) -> dict:
    """A distinct GEMM's figures: the median of --small-repeats runs where one takes under a
    second; the LM head whole under --lm-head-max-mem-gb, else in column pieces, summed."""
    base = {"name": g.name, "m": g.m, "n": g.n, "k": g.k, "per_model": g.per_model,
            "cycles": g.cycles()}
    if g.name == "LM head":
        return {**base, **scalesim_lm_head(g, args, env, log)}
    runs = [scalesim_run(args.scalesim_python, g.m, g.n, g.k, args.max_mem_gb, env, args.case_timeout_s)]
    while runs[0]["process_s"] < 1.0 and len(runs) < args.small_repeats:
        runs.append(scalesim_run(args.scalesim_python, g.m, g.n, g.k, args.max_mem_gb, env,
                                 args.case_timeout_s))
    fig = {key: statistics.median(r[key] for r in runs)
           for key in ("sim_s", "sim_cpu_s", "process_s", "process_cpu_s", "peak_rss_mb")}
    log(f"SCALE-Sim {g.name}: sim {fig['sim_s']:.2f} s, process {fig['process_s']:.2f} s, "
        f"{fig['peak_rss_mb']:.0f} MB ({len(runs)} run{'s' * (len(runs) > 1)})")
    return {**base, **fig, "runs": len(runs), "method": "whole" + (f", median of {len(runs)}"
                                                                    if len(runs) > 1 else "")}


def scalesim_lm_head(g: Gemm, args: argparse.Namespace, env: Mapping[str, str], log) -> dict:
    failures = []
    for pieces in ([1] if not args.lm_head_pieces else []) + [args.lm_head_pieces or 2, 4, 8]:
        widths = column_pieces(g.n, ARRAY, pieces)
        cap = args.lm_head_max_mem_gb
        try:
            parts = []
            for w in widths:
                log(f"SCALE-Sim LM head {g.m}x{w}x{g.k} ({len(parts) + 1}/{pieces}) under {cap:g} GB ...")
                parts.append(scalesim_run(args.scalesim_python, g.m, w, g.k, cap, env,
                                          args.case_timeout_s))
        except CaseFailed as e:
            failures.append(str(e))
            log(f"  failed: {e}")
            continue
        fig = {key: sum(p[key] for p in parts)
               for key in ("sim_s", "sim_cpu_s", "process_s", "process_cpu_s")}
        fig["peak_rss_mb"] = max(p["peak_rss_mb"] for p in parts)
        method = ("whole" if pieces == 1 else
                  f"{pieces} column pieces ({', '.join(map(str, widths))}), summed")
        log(f"SCALE-Sim LM head: sim {fig['sim_s']:.1f} s, process {fig['process_s']:.1f} s ({method})")
        return {**fig, "method": method, "pieces": [{"n": w, **p} for w, p in zip(widths, parts)],
                "failed": failures}
    raise CaseFailed("LM head: " + "; ".join(failures))


class _Stamps:
    """Stands in for tessel.progress.Progress: records when each compile step and simulation
    stage begins (the callbacks the pipeline and simulate() already make)."""

    def __init__(self) -> None:
        self.marks = [("graph build", time.perf_counter())]

    @contextmanager
    def phase(self, desc: str, total: int, unit: str) -> Iterator:
        yield self._mark

    def _mark(self, stage: str, done: int) -> None:
        if stage != self.marks[-1][0]:
            self.marks.append((stage, time.perf_counter()))

    def durations(self, end: float) -> dict[str, float]:
        ends = [t for _, t in self.marks[1:]] + [end]
        out: dict[str, float] = {}
        for (stage, start), stop in zip(self.marks, ends):
            out[stage] = out.get(stage, 0.0) + stop - start
        return out


def tessel_in_process(repeats: int, log) -> dict:
    from arch import load_arch
    from compiler.frontend import load_model
    from compiler.phase import prefill
    from tessel.driver import run
    from tessel.request import make_request
    from tessel.targets import TARGETS

    model = load_model("gpt2")

    def once(progress=None) -> tuple[float, float, object]:
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        if progress is not None:
            progress.marks[0] = ("graph build", start)   # with the arch and the request
        request = make_request(model, "systolic", load_arch(PRESET, OVERRIDES), prefill(SEQ),
                               numerics=False)
        result = run(request, **({"progress": progress} if progress else {})).result
        return time.perf_counter() - start, time.process_time() - cpu, result

    times, cpus, result = [], [], None
    for _ in range(repeats):
        t, c, result = once()
        times.append(t)
        cpus.append(c)
        log(f"Tessel in process: {t:.3f} s (CPU {c:.3f} s)")
    stamps = _Stamps()
    profiled, _, _ = once(stamps)
    stages = stamps.durations(stamps.marks[0][1] + profiled)
    steps = TARGETS["systolic"].pipeline.names
    mxu = result.unit_busy_cycles["mxu"]
    expected = sum(g.per_model * (g.cycles() + 1) for g in GEMMS)
    if mxu != expected:
        raise SystemExit(f"Tessel's matrix unit was busy {mxu} cycles, not SCALE-Sim's GEMMs + 1 "
                         f"each ({expected}): not the same work")
    return {"times_s": times, "in_process_s": statistics.median(times),
            "in_process_cpu_s": statistics.median(cpus), "instructions":
            result.instructions, "cycles": result.cycles, "mxu_busy_cycles": mxu,
            "profiled_run_s": profiled, "stages_s": stages, "stage_groups_s": stage_groups(stages, steps)}


def tessel_argv() -> list[str]:
    script = Path(sys.executable).with_name("tessel")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "tessel.cli"]
    return [*head, "sim", "--model", "gpt2", "--target", "systolic", "--arch", PRESET,
            *(a for o in OVERRIDES for a in ("--set", o)), "--phase", "prefill", "--seq",
            str(SEQ), "--no-functional", "--gpu", "none"]


def tessel_processes(repeats: int, pycache: Path, log) -> dict:
    """`tessel sim` from start to exit, and a bare `import tessel.cli`, with bytecode cached
    (after one untimed start) and without."""
    out = {}
    for mode, bytecode in (("bytecode cached", True), ("no bytecode cache", False)):
        env = child_env(pycache, bytecode=bytecode)
        timed_process(tessel_argv(), env)                       # warms the cache
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu, done = timed_process(tessel_argv(), env)
            if done.returncode != 0:
                raise SystemExit(f"tessel sim failed: {done.stderr.strip()[-500:]}")
            walls.append(wall)
            cpus.append(cpu)
        imports = [timed_process([sys.executable, "-c", "import tessel.cli"], env)[:2]
                   for _ in range(repeats)]
        out[mode] = {"median_s": statistics.median(walls), "times_s": walls,
                     "cpu_median_s": statistics.median(cpus),
                     "import_cli_median_s": statistics.median(w for w, _ in imports),
                     "import_cli_cpu_median_s": statistics.median(c for _, c in imports)}
        log(f"Tessel whole process, {mode}: {out[mode]['median_s']:.3f} s "
            f"(CPU {out[mode]['cpu_median_s']:.3f} s; import tessel.cli "
            f"{out[mode]['import_cli_median_s']:.3f} s, CPU {out[mode]['import_cli_cpu_median_s']:.3f} s)")
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
            * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(), "nice": os.nice(0)}


def scalesim_side(args: argparse.Namespace, env: Mapping[str, str], log) -> dict:
    python = args.scalesim_python
    check = subprocess.run([python, "-c", "from importlib.metadata import version as v; "
                            "print(v('scalesim'), v('numpy'), v('pandas'))"],
                           env=dict(env), capture_output=True, text=True)   # also warms the cache
    if check.returncode != 0:
        raise SystemExit(f"{python} has no SCALE-Sim: set it up as tools/scalesim_reference.py says")
    subprocess.run([python, "-c", "import scalesim.scale_sim"], env=dict(env), check=True)
    versions = dict(zip(("scalesim", "numpy", "pandas"), check.stdout.split()))
    cases = [scalesim_gemm(g, args, env, log) for g in GEMMS]
    per = {c["name"]: c for c in cases}
    sim = model_total({n: c["sim_s"] for n, c in per.items()})
    # a process's own cost (start-up, imports, files), from the GEMMs run whole
    startup = statistics.median(c["process_s"] - c["sim_s"] for c in cases if "runs" in c)
    startup_cpu = statistics.median(c["process_cpu_s"] - c["sim_cpu_s"] for c in cases if "runs" in c)
    sim_cpu = model_total({n: c["sim_cpu_s"] for n, c in per.items()})
    return {"python": python, "versions": versions, "config": ref.config_text(ARRAY, ARRAY, DATAFLOW),
            "cases": cases, "model_sim_s": sim,
            "model_sim_cpu_s": sim_cpu, "startup_median_s": startup,
            "startup_cpu_median_s": startup_cpu, "model_process_s": sim + startup,
            "model_process_cpu_s": sim_cpu + startup_cpu,
            "model_process_per_gemm_s": model_total({n: c["process_s"] for n, c in per.items()}),
            "gemms": sum(g.per_model for g in GEMMS),
            "model_cycles": sum(g.per_model * g.cycles() for g in GEMMS)}


def ratios(scalesim: dict, tessel: dict) -> dict:
    """Wall-clock ratios (the issue's figures) and the same in CPU time, which a shared
    machine's other work disturbs less."""
    cached = tessel["process"]["bytecode cached"]
    figures = {
        "in_process": (scalesim["model_sim_s"], tessel["in_process_s"], TARGETS_X["in_process"]),
        "whole_process": (scalesim["model_process_s"], cached["median_s"], TARGETS_X["whole_process"]),
        "in_process_cpu": (scalesim["model_sim_cpu_s"], tessel["in_process_cpu_s"],
                           TARGETS_X["in_process"]),
        "whole_process_cpu": (scalesim["model_process_cpu_s"], cached["cpu_median_s"],
                              TARGETS_X["whole_process"]),
    }
    return {k: {"scalesim_s": s, "tessel_s": t, "ratio": s / t, "target": target,
                "met": s / t >= target} for k, (s, t, target) in figures.items()}


def _positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` above 0, else a one-line usage error."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--scalesim-python", default="/tmp/ssvenv/bin/python")
    ap.add_argument("--tessel-only", action="store_true", help="skip SCALE-Sim")
    ap.add_argument("--repeats", type=_positive(int), default=7, help="Tessel in-process runs (median)")
    ap.add_argument("--process-repeats", type=_positive(int), default=5, help="Tessel processes (median)")
    ap.add_argument("--small-repeats", type=_positive(int), default=3,
                    help="runs of a SCALE-Sim GEMM whose process takes under a second (median)")
    ap.add_argument("--max-mem-gb", type=_positive(float), default=8.0,
                    help="address-space cap per SCALE-Sim GEMM (GB)")
    ap.add_argument("--lm-head-max-mem-gb", type=_positive(float), default=16.0, help="the LM head's cap (GB)")
    ap.add_argument("--lm-head-pieces", type=_positive(int),
                    help="time the LM head in this many column pieces (default: whole, then 2, 4, 8)")
    ap.add_argument("--case-timeout-s", type=_positive(float), default=2400.0)
    args = ap.parse_args(argv)
    if not args.tessel_only and not Path(args.scalesim_python).is_file():
        ap.error(f"--scalesim-python {args.scalesim_python}: no such file (set up SCALE-Sim's "
                 "venv as tools/scalesim_reference.py says, or pass --tessel-only)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f} s] {text}", file=sys.stderr, flush=True)

    doc: dict = {"date": datetime.date.today().isoformat(), "generator": "tools/scalesim_speed.py",
                 "machine": machine(), "load_average_start": os.getloadavg(),
                 "workload": f"GPT-2 small prefill-{SEQ} on a {ARRAY}x{ARRAY} {DATAFLOW} array"}
    with tempfile.TemporaryDirectory(prefix="scalesim_speed_pyc_") as pycache:
        env = child_env(Path(pycache))
        tessel = tessel_in_process(args.repeats, log)
        tessel["process"] = tessel_processes(args.process_repeats, Path(pycache), log)
        tessel["command"] = " ".join(["tessel", *tessel_argv()[tessel_argv().index("sim"):]])
        doc["tessel"] = tessel
        doc["scalesim"] = {"cases": []}
        if not args.tessel_only:
            doc["scalesim"] = scalesim_side(args, env, log)
            doc["ratios"] = ratios(doc["scalesim"], tessel)
    doc["load_average_end"] = os.getloadavg()
    doc["run_s"] = time.perf_counter() - began
    print(render(doc))
    print(f"Tessel: {tessel['command']}")
    print("Tessel in process by stage (one profiled run, "
          f"{tessel['profiled_run_s']:.3f} s): " + ", ".join(
              f"{k} {v:.3f} s" for k, v in tessel["stage_groups_s"].items()))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
