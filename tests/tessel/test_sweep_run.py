"""Running sweeps: the local pool, resuming after SIGKILL, Dask against the pool, the CLI,
and one point of every example spec whose target exists."""
import csv
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tessel.targets import TARGETS
from tessel.cli import main
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode
from tessel.driver import run
from tessel.request import make_request
from tessel.sweep import load_spec, run_sweep
from tessel.sweep.evaluate import evaluate_point
from tessel.sweep.points import tasks
from tessel.sweep.store import Store
from tests.tessel.test_sweep_spec import target_of

pytestmark = pytest.mark.slow   # end-to-end: sweeps in worker processes (make test, not make test-fast)

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "sweeps").glob("*.toml"))
# The command line in a process of its own, with the tool version pinned: the store keys then
# stay put even if another engineer edits the simulator's sources while the test runs.
PINNED_CLI = ("import sys, tessel.sweep.points as p; p.tool_version = lambda: 'test'; "
              "from tessel.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture(autouse=True)
def pinned_tool_version(monkeypatch):
    monkeypatch.setattr("tessel.sweep.points.tool_version", lambda: "test")


def stack_graph(layers: int, width: int = 256, tokens: int = 32) -> str:
    """A residual MLP stack: about 0.15 s per point at 16 layers, slow enough to kill mid-sweep."""
    lines = ["graph mlp-stack {", f"  input x0: fp32[1, {tokens}, {width}]"]
    for i in range(layers):
        lines += [f"  param fc{i}.weight: fp32[{width}, {4 * width}]", f"  param fc{i}.bias: fp32[{4 * width}]",
                  f"  param pj{i}.weight: fp32[{4 * width}, {width}]", f"  param pj{i}.bias: fp32[{width}]",
                  f"  u{i} = linear(x{i}, fc{i}.weight, fc{i}.bias)", f"  a{i} = gelu(u{i})",
                  f"  d{i} = linear(a{i}, pj{i}.weight, pj{i}.bias)", f"  x{i + 1} = add(x{i}, d{i})"]
    return "\n".join(lines + [f"  output x{layers}", "}"]) + "\n"


def small_spec(tmp_path: Path) -> Path:
    """Two .graph models x 2 x 3 points; sram_bytes 2048 is below every minimum (one fold beside
    one column of every other op: the MLP graph's 2,240 bytes on 8 rows, 3,264 on 16; the
    attention graph, unfused at this size, 2,112 and 2,688): 4 failed points."""
    spec = tmp_path / "small.toml"
    spec.write_text(f'base = "systolic-32"\nmodels = ["{ROOT}/examples/mlp.graph", "{ROOT}/examples/attention.graph"]\n'
                    'metrics = ["cycles", "mac_utilization", "bytes"]\n'
                    "[parameters]\nrows = [8, 16]\nsram_bytes = [2048, 262144, 1048576]\n"
                    '[plot]\naxes = [["time_s", "mac_utilization"]]\n')
    return spec


def stored(path: Path) -> dict[str, tuple]:
    with Store(path) as store:
        return {k: (r.ok, r.metrics, r.error) for k, r in store.rows(_all_keys(path)).items()}


def _all_keys(path: Path) -> list[str]:
    return [k for (k,) in sqlite3.connect(path).execute("SELECT key FROM results")]


def test_local_pool_records_every_point_and_a_rerun_evaluates_none(tmp_path):
    spec = load_spec(small_spec(tmp_path))
    first = run_sweep(spec, tmp_path / "out", workers=2, progress=False)
    assert (first.points, first.reused, first.evaluated) == (12, 0, 12)
    assert sum(n for _, n in first.failed) == 4 and all("cannot hold one fold" in r or r.startswith("op '") for r, _ in first.failed)
    lines = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(lines) == 12 and {line["ok"] for line in lines} == {"True", "False"}
    assert all(float(line["time_s"]) > 0 and float(line["mac_utilization"]) > 0 for line in lines if line["ok"] == "True")
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    again = run_sweep(spec, tmp_path / "out", workers=2, progress=False)
    assert (again.reused, again.evaluated) == (12, 0)


def test_a_recipe_axis_records_each_recipe_as_tessel_sim_quant_does(tmp_path):
    spec = tmp_path / "q.toml"
    spec.write_text('base = "systolic-32"\nmodels = ["gpt2"]\nquant = ["none", "w4a16:g128"]\n'
                    '[[phases]]\nkind = "decode"\nkv = 16\n[parameters]\nrows = [16, 32]\n')
    summary = run_sweep(load_spec(spec), tmp_path / "out", workers=2, progress=False)
    assert (summary.points, summary.evaluated) == (4, 4)
    lines = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [(line["rows"], line["quant"]) for line in lines] == [
        ("16", "none"), ("16", "w4a16:g128"), ("32", "none"), ("32", "w4a16:g128")]
    alone = run(make_request(load_model("gpt2"), "systolic", load_arch("systolic-32", ["rows=32"]),
                             decode(16), numerics=False, quant="w4a16:g128")).result
    assert float(lines[3]["time_s"]) == alone.time_s < float(lines[2]["time_s"])
    assert lines[2]["pareto"] == lines[3]["pareto"] == "True"          # a front per recipe


def test_dask_local_cluster_gives_the_same_results_as_the_local_pool(tmp_path):
    spec = load_spec(small_spec(tmp_path))
    run_sweep(spec, tmp_path / "pool", workers=2, progress=False)
    summary = run_sweep(spec, tmp_path / "dask", dask="local:2", progress=False)
    assert summary.evaluated == 12
    pool, dask = stored(tmp_path / "pool" / "results.sqlite"), stored(tmp_path / "dask" / "results.sqlite")
    assert set(pool) == {t.key for t in tasks(spec)} and pool == dask
    assert (tmp_path / "pool" / "results.csv").read_text() == (tmp_path / "dask" / "results.csv").read_text()


def test_sweep_killed_with_sigkill_resumes_with_every_point_exactly_once(tmp_path):
    (tmp_path / "stack.graph").write_text(stack_graph(16))
    spec_path = tmp_path / "kill.toml"
    spec_path.write_text('base = "systolic-32"\nmodels = ["stack.graph"]\n'
                         "[parameters]\nrows = [8, 16, 32, 64]\ncols = [8, 16]\ndataflow = [\"ws\", \"os\"]\n")
    out, db = tmp_path / "out", tmp_path / "out" / "results.sqlite"
    argv = [sys.executable, "-c", PINNED_CLI, "sweep", str(spec_path), "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not db.exists() or _count(db) < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)            # the sweep and its workers, at once
    proc.wait()
    expected = {t.key for t in tasks(load_spec(spec_path))}
    done = set(_all_keys(db))
    assert 4 <= len(done) < len(expected) == 16 and done <= expected
    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"16 points ({len(done)} already in the store, {16 - len(done)} evaluated" in resumed.stdout
    keys = _all_keys(db)
    assert len(keys) == len(set(keys)) == 16 and set(keys) == expected
    assert all(ok for ok, _, _ in stored(db).values())
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 16


def _count(db: Path) -> int:
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:            # the table is not created yet
        return 0


@pytest.mark.parametrize("argv, message", [
    (["sweep", "{tmp}/bad.toml"], r"^error: {tmp}/bad\.toml: parameters\.rowz: unknown parameter of systolic arch \(fields: rows,"),
    (["sweep", "{tmp}/missing.toml"], r"^error: {tmp}/missing\.toml: cannot read \(No such file or directory\)$"),
    (["sweep", "{tmp}/ok.toml", "--dask", "local:0"], r"^error: --dask local:0: expected local:N with N a positive number"),
    (["sweep", "{tmp}/ok.toml", "--workers", "2", "--dask", "local:2"], r"^error: tessel sweep: argument --dask: not allowed with argument --workers"),
])
def test_cli_rejects_bad_input_before_running_with_one_line(capsys, tmp_path, argv, message):
    (tmp_path / "bad.toml").write_text('base = "systolic-32"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\n'
                                       "[parameters]\nrowz = [8, 16]\n")
    (tmp_path / "ok.toml").write_text(small_spec(tmp_path).read_text())
    code = main([a.format(tmp=tmp_path) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and re.search(message.format(tmp=re.escape(str(tmp_path))), err)
    assert not (tmp_path / "out").exists() and not Path("out/sweeps/ok").exists()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_first_point_of_every_example_spec_runs(example):
    target = target_of(example)
    if target not in TARGETS:
        pytest.skip(f"{example.name}: target '{target}' is missing (no compiler in TARGETS yet)")
    spec = load_spec(example)
    outcome = evaluate_point(tasks(spec)[0])
    assert outcome.ok, outcome.error
    figures = ("serve.throughput.output_tokens_per_s", "serve.energy.total_j") if spec.serve else ("time_s", "energy_j")
    assert all(outcome.metrics[f] > 0 for f in figures)
