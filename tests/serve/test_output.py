"""tessel/serve/output.py and plots.py: the run's files written whole and parseable."""
import csv
import json
import subprocess
import sys

import pytest

from tessel.files import OutputError
from tessel.serve import REQUEST_COLUMNS, Swap, chrome_trace, summarize, synthetic, write_outputs

from tests.serve.toy import Linear, run


@pytest.fixture(scope="module")
def result():
    reqs = synthetic(30, 20.0, "uniform:8,64", "uniform:1,8", seed=1)
    return run(reqs, "sarathi", capacity_blocks=12, block_size=8, max_batch=4, token_budget=32, chunk=16,
               preemption=Swap(bytes_per_token=128, bw_bytes_per_s=1e9), kv_bucket=16,
               cost=Linear(per_context_s=1e-5))


def test_the_csv_json_and_trace_are_written_and_parse(result, tmp_path):
    out = tmp_path / "run"                                      # made when missing
    written = write_outputs(result, out, summary=summarize(result, slo_ttft_s=0.5), devices=2, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["requests.csv", "summary.json", "trace.json"]
    assert written == [out / "requests.csv", out / "summary.json", out / "trace.json"]
    with open(out / "requests.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == REQUEST_COLUMNS and len(rows) == len(result.requests)
    assert [int(r["id"]) for r in rows] == [r.id for r in result.requests]
    assert float(rows[0]["ttft_s"]) == result.requests[0].ttft_s         # full precision
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slo"]["ttft_s"] == 0.5 and summary["settings"]["kv_bucket"] == 16
    assert summary["settings"]["preemption"] == {"mode": "swap", "bytes_per_token": 128, "bw_bytes_per_s": 1e9}
    trace = json.loads((out / "trace.json").read_text())
    steps = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(steps) == 2 * len(result.steps) and {e["tid"] for e in steps} == {0, 1}
    first = next(e for e in steps if e["tid"] == 1)
    assert first["ts"] == result.steps[0].start_s * 1e6 and first["args"]["batch"] == result.steps[0].batch
    assert first["args"]["tokens"] == result.steps[0].tokens


def test_one_track_per_device_named(result):
    trace = chrome_trace(result, devices=3)
    names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"]
    assert names == ["device 0", "device 1", "device 2"]
    with pytest.raises(ValueError, match="devices must be an integer >= 1, got 0"):
        chrome_trace(result, devices=0)


def test_an_output_folder_that_cannot_be_made_is_refused_before_writing(result, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is not a directory"):
        write_outputs(result, tmp_path / "file" / "run", plots=False)


@pytest.mark.slow
def test_the_plots_are_pngs(result, tmp_path):
    written = write_outputs(result, tmp_path, plots=True)
    for name in ("latency_cdf.png", "timeline.png"):
        assert tmp_path / name in written
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_importing_the_package_loads_neither_matplotlib_nor_tqdm():
    code = "import sys, tessel.serve; print(sorted({'matplotlib', 'tqdm'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
