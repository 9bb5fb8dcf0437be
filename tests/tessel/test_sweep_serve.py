"""Sweeps with a `[serve]` table: the table's keys checked at load (one line naming the file and
the key), serving figures flattened by dotted path, store keys that carry the serve settings and
the trace's contents while phase tasks keep theirs, and a tiny serving sweep end to end."""
import csv
import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest

from tessel.serve import summarize
from tessel.sweep import SweepError, load_spec, run_sweep
from tessel.sweep.evaluate import evaluate_point
from tessel.sweep.metrics import SERVE_TABLES, flatten_summary, higher_is_better
from tessel.sweep.points import tasks
from tessel.sweep.store import Store
from tests.conftest import FIXTURES
from tests.serve.toy import Linear, requests, run

ROOT = Path(__file__).parents[2]
SERVE = 'base = "systolic-32"\nmodels = ["gpt2"]\n[parameters]\nrows = [8, 16]\n[serve]\n'
SYNTH = SERVE + 'rate = 4.0\nrequests = 3\nprompt = "fixed:8"\noutput = "fixed:2"\n'
TRACE = "arrival_s,prompt_tokens,output_tokens\n0,4,2\n0,3,3\n0.001,5,2\n"


@pytest.fixture(autouse=True)
def pinned_tool_version(monkeypatch):
    monkeypatch.setattr("tessel.sweep.points.tool_version", lambda: "test")


def write(tmp_path, body: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_a_serve_table_gives_one_task_per_point_and_model_with_the_commands_defaults(tmp_path):
    spec = load_spec(write(tmp_path, SYNTH))
    serve = spec.serve
    assert spec.phases == () and spec.pareto_axes == ("serve.throughput.output_tokens_per_s", "serve.ttft_s.p99")
    assert spec.metrics[0] == "serve.ttft_s.p99" and all(m.startswith("serve.") for m in spec.metrics)
    assert serve.scheduler.describe() == {"policy": "sarathi", "max_batch": 128, "token_budget": 2048, "chunk": 512}
    assert (serve.preemption, serve.block_size, serve.kv_blocks, serve.kv_bucket) == ("recompute", 16, None, None)
    assert (serve.step_cost, serve.check_steps) == ("parts", 4)
    assert serve.workload.identity() == {"rate": 4.0, "requests": 3, "seed": 0,
                                         "prompt": {"kind": "fixed", "values": (8.0,), "max_tokens": None},
                                         "output": {"kind": "fixed", "values": (2.0,), "max_tokens": None}}
    assert [(t.phase, t.phase_label, t.serve) for t in tasks(spec)] == [(None, "serve", serve)] * 2


def test_serve_settings_and_the_traces_contents_are_part_of_the_key(tmp_path):
    (tmp_path / "t.csv").write_text(TRACE)
    keys = lambda body: [t.key for t in tasks(load_spec(write(tmp_path, body)))]
    base = keys(SERVE + 'trace = "t.csv"\n')
    assert base == keys(SERVE + 'trace = "t.csv"\nscheduler = "sarathi"\n')         # a default, spelled out
    for changed in ('kv_bucket = 8\n', 'chunk = 256\n', 'slo_ttft = 0.5\n', 'scheduler = "static"\n',
                    'step_cost = "whole"\n', 'check_steps = 2\n', 'token_grid = 16\n', 'tp = 2\n'):
        assert not set(base) & set(keys(SERVE + 'trace = "t.csv"\n' + changed)), changed
    (tmp_path / "t.csv").write_text(TRACE + "0.002,6,2\n")
    assert not set(base) & set(keys(SERVE + 'trace = "t.csv"\n'))
    assert keys(SYNTH) != keys(SYNTH.replace("requests = 3", "requests = 4"))


def test_phase_task_keys_are_those_of_sweeps_before_serve(tmp_path):
    """The identity of a phase task is exactly what it was (no 'serve' entry): stores are reused."""
    spec = load_spec(write(tmp_path, 'base = "systolic-32"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\n'
                                     "kv = 16\n[parameters]\nrows = [8]\n"))
    (task,) = tasks(spec, "v1")
    identity = {"target": "systolic", "base": spec.base_sha256, "point": {"rows": 8}, "model": "gpt2",
                "phase": asdict(spec.phases[0]), "tool": "v1"}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    assert task.key == hashlib.sha256(canonical).hexdigest() and task.serve is None


def test_the_summary_is_flattened_by_dotted_path_finite_numbers_only():
    result = run(requests((0.0, 4, 3), (0.5, 2, 2)), "continuous", capacity_blocks=10, block_size=1,
                 cost=Linear(fixed_s=0.5, per_token_s=0.25, energy_per_token_j=1.0))
    summary = summarize(result, slo_ttft_s=2.0) | {"target": {"target": "systolic", "cycles": 1}}
    figures = flatten_summary(summary)
    assert figures["serve.ttft_s.p50"] == pytest.approx((1.5 + 2.25) / 2)       # A 1.5 s, B 2.75 - 0.5
    assert figures["serve.throughput.output_tokens_per_s"] == pytest.approx(5 / 3.75)
    assert figures["serve.slo.attainment"] == 0.5 and figures["serve.settings.scheduler.max_batch"] == 128
    assert "serve.slo.tpot_s" not in figures and not any(k.startswith("serve.target") for k in figures)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in figures.values())
    named = {f"serve.{t}.{e}" for t, entries in SERVE_TABLES.items() for e in entries} | {"serve.duration_s"}
    stored = {k for k in figures if not k.startswith("serve.settings.")}
    assert stored <= named and named - stored == {"serve.slo.tpot_s"} | {
        f"serve.step_cost.{e}" for e in SERVE_TABLES["step_cost"]}   # no SLO on TPOT; serve_on adds step_cost


def test_a_serve_table_runs_on_tensor_parallel_ranks(tmp_path):
    spec = load_spec(write(tmp_path, SYNTH + 'tp = 2\nlink = "pcie4-x16"\n'))
    settings = spec.serve.settings(None)
    assert (settings.tp, settings.link) == (2, "pcie4-x16")


def test_serving_figures_that_are_better_larger():
    assert higher_is_better("serve.throughput.output_tokens_per_s") and higher_is_better("serve.slo.attainment")
    assert not higher_is_better("serve.ttft_s.p99") and not higher_is_better("serve.energy.per_output_token_j")


GRAPH = ROOT / "examples" / "mlp.graph"


@pytest.mark.parametrize("body, message", [
    (SYNTH + "chunks = 4\n", r"s\.toml: serve\.chunks: unknown key \(keys: trace, rate, requests,"),
    (SYNTH + 'trace = "t.csv"\n', r"s\.toml: serve\.rate: not with trace"),
    (SERVE + 'trace = "t.csv"\nseed = 3\n', r"s\.toml: serve\.seed: only with rate \(a synthetic workload\), not with trace"),
    (SERVE + 'trace = "bad.csv"\n', r"s\.toml: serve\.trace: .*bad\.csv: line 3, column prompt_tokens: 'x' is not a positive integer$"),
    (SERVE + 'trace = "none.csv"\n', r"s\.toml: serve\.trace: .*none\.csv: cannot read the trace \(No such file"),
    (SERVE + "trace = 3\n", r"s\.toml: serve\.trace: expected a CSV file"),
    (SERVE, r"s\.toml: serve: missing the workload: trace"),
    (SYNTH + 'scheduler = "static"\nchunk = 64\n', r"s\.toml: serve\.chunk: only with scheduler = \"sarathi\" \(the static scheduler prefills whole\)"),
    (SYNTH + 'scheduler = "fifo"\n', r"s\.toml: serve\.scheduler: expected one of static, continuous, sarathi, got 'fifo'"),
    (SYNTH + 'preemption = "drop"\n', r"s\.toml: serve\.preemption: expected one of recompute, swap, got 'drop'"),
    (SYNTH + "max_batch = 0\n", r"s\.toml: serve\.max_batch: expected an integer >= 1, got 0"),
    (SYNTH + "max_batch = 64\ntoken_budget = 32\n", r"s\.toml: serve\.token_budget: .*token_budget 32 is below max_batch 64"),
    (SYNTH + "kv_bucket = 2.5\n", r"s\.toml: serve\.kv_bucket: expected an integer >= 1, got 2\.5"),
    (SYNTH + "block_size = true\n", r"s\.toml: serve\.block_size: expected an integer >= 1, got True"),
    (SYNTH + "slo_ttft = -1\n", r"s\.toml: serve\.slo_ttft: expected a finite number of seconds > 0, got -1"),
    (SYNTH + "slo_tpot = inf\n", r"s\.toml: serve\.slo_tpot: expected a finite number of seconds > 0, got inf"),
    (SYNTH.replace("rate = 4.0", "rate = 0"), r"s\.toml: serve\.rate: expected a finite number of requests/s > 0, got 0"),
    (SYNTH.replace("requests = 3", "requests = 0"), r"s\.toml: serve\.requests: expected an integer >= 1, got 0"),
    (SYNTH.replace("fixed:8", "fixed:0"), r"s\.toml: serve\.prompt: prompt lengths 'fixed:0': N '0' is not an integer >= 1"),
    (SYNTH + "seed = -1\n", r"s\.toml: serve\.seed: expected an integer >= 0, got -1"),
    (SYNTH + 'step_cost = "guess"\n', r"s\.toml: serve\.step_cost: expected one of parts, whole, got 'guess'"),
    (SYNTH + 'step_cost = "whole"\ncheck_steps = 2\n', r"s\.toml: serve\.check_steps: nothing to check \(the steps are priced whole"),
    (SYNTH + "check_steps = -1\n", r"s\.toml: serve\.check_steps: expected an integer >= 0, got -1"),
    (SYNTH + "tp = 0\n", r"s\.toml: serve\.tp: expected an integer >= 1, got 0"),
    (SYNTH + 'link = "pcie4-x16"\n', r"s\.toml: serve\.link: only with tp > 1"),
    (SYNTH + 'tp = 2\nlink = "nowhere"\n', r"s\.toml: serve\.link: expected a link preset \(.*\), got 'nowhere'"),
    (SYNTH + "tp = 5\n", r"s\.toml: models\[0\]: serve\.tp: --tp 5: .* not divisible by 5"),
    (SYNTH + "token_grid = 1\n", r"s\.toml: serve\.token_grid: expected an integer >= 2, got 1"),
    (SYNTH + 'step_cost = "whole"\ntoken_grid = 8\n', r"s\.toml: serve\.token_grid: only with step_cost = \"parts\""),
    ("serve = 3\n" + SERVE.replace("[serve]\n", ""), r"s\.toml: serve: expected a table"),
    (SYNTH.replace("[parameters]", '[[phases]]\nkind = "decode"\n[parameters]'), r"s\.toml: phases: not with \[serve\]"),
    ('metrics = ["time_s"]\n' + SYNTH, r"s\.toml: metrics\[0\]: 'time_s' is a figure of one simulated pass; a spec with \[serve\] records serving figures only"),
    ('metrics = ["serve.ttft.p99"]\n' + SYNTH, r"s\.toml: metrics\[0\]: unknown serving metric 'serve\.ttft\.p99' \(serve\.duration_s, or serve\.<table>\.<entry>"),
    ('metrics = ["serve.ttft_s.p95"]\n' + SYNTH, r"metrics\[0\]: unknown serving metric 'serve\.ttft_s\.p95' \(entries of serve\.ttft_s: mean, p50, p90, p99, max\)"),
    ('metrics = ["serve.ttft_s.p99"]\nbase = "systolic-32"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\n[parameters]\nrows = [8]\n',
     r"s\.toml: metrics\[0\]: 'serve\.ttft_s\.p99' is a serving figure: only in a spec with a \[serve\] table"),
    (SYNTH.replace("[serve]", '[plot]\naxes = [["rows", "serve.ttft_s"]]\n[serve]'), r"s\.toml: plot\.axes\[0\]: 'serve\.ttft_s' is a table: name one entry"),
    (SYNTH.replace('"gpt2"', f'"{GRAPH}"'), r"s\.toml: models\[0\]: .*mlp\.graph: a \.graph file has no requests to serve"),
    (SYNTH.replace("systolic-32", "gpu-a100-80gb").replace("rows = [8, 16]", "mem_gb = [40.0]"),
     r"s\.toml: base: a gpu architecture; \[serve\] runs on a simulated target \(systolic, pim, dataflow\)"),
])
def test_bad_serve_tables_are_refused_naming_file_and_key(tmp_path, body, message):
    (tmp_path / "t.csv").write_text(TRACE)
    (tmp_path / "bad.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,4,2\n0,x,3\n")
    with pytest.raises(SweepError, match=message) as info:
        load_spec(write(tmp_path, body))
    assert "\n" not in str(info.value)


@contextmanager
def in_process(workers: int):
    """The local pool's interface without its processes (starting them costs more than the point)."""
    yield lambda pending, record: [record(task, evaluate_point(task)) for task in pending]


@pytest.mark.slow      # about 1.3 s in process: the fast tier stays under 30 s
@pytest.mark.parametrize("pool", [False, True], ids=["in-process", "pool"])
def test_a_tiny_serving_sweep_records_serving_figures_and_reuses_its_store(tmp_path, monkeypatch, pool):
    """tiny-gpt2 on a systolic array, three short requests: every figure the summary has (SLOs,
    bucketing and the token grid included) is stored, the CSV has the named ones, a rerun evaluates none."""
    if not pool:
        monkeypatch.setattr("tessel.sweep.runner.local_pool", in_process)
    (tmp_path / "t.csv").write_text(TRACE)
    spec = load_spec(write(tmp_path, f'base = "systolic-32"\nmodels = ["{FIXTURES / "tiny-gpt2"}"]\n'
                                     'metrics = ["serve.tpot_s.p50", "serve.slo.attainment"]\n'
                                     "[parameters]\ndram_bw_gbps = [100]\n[serve]\n"
                                     'trace = "t.csv"\nkv_bucket = 8\ntoken_budget = 16\nmax_batch = 4\n'
                                     "chunk = 8\ncheck_steps = 1\ntoken_grid = 4\nslo_ttft = 1.0\nslo_tpot = 1.0\n"))
    first = run_sweep(spec, tmp_path / "out", workers=1, progress=False)
    assert (first.points, first.evaluated, first.failed) == (1, 1, ())
    (line,) = csv.DictReader((tmp_path / "out" / "results.csv").open())
    named = ["serve.throughput.output_tokens_per_s", "serve.ttft_s.p99", "serve.tpot_s.p50", "serve.slo.attainment"]
    assert list(line)[:8] == ["dram_bw_gbps", "model", "phase", "ok", *named] and line["phase"] == "serve"
    assert all(math.isfinite(float(line[n])) and float(line[n]) > 0 for n in named)
    again = run_sweep(spec, tmp_path / "out", workers=1, progress=False)
    assert (again.reused, again.evaluated) == (1, 0)
    with Store(tmp_path / "out" / "results.sqlite") as store:
        (row,) = store.rows(t.key for t in tasks(spec)).values()
    every = {f"serve.{t}.{e}" for t, entries in SERVE_TABLES.items() for e in entries} | {"serve.duration_s"}
    assert {k for k in row.metrics if not k.startswith("serve.settings.")} == every


def test_a_serving_error_is_a_failed_point_with_one_line(tmp_path):
    """gpt2's weights (about 250 MB at BF16) fill a 64 MiB device: no room for a KV cache."""
    spec = load_spec(write(tmp_path, SYNTH.replace("rows = [8, 16]", "dram_bytes = [67108864]")))
    outcome = evaluate_point(tasks(spec)[0])
    assert not outcome.ok and outcome.metrics == {}
    assert re.fullmatch(r"gpt2: its weights \([^)]*\) leave no room for a KV cache in the "
                        r"device's 67,108,864 bytes", outcome.error)
