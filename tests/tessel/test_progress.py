"""tessel/progress.py: a bar per phase on a terminal's stderr once a command has run
DELAY_S (set here, never slept on), nothing when stderr is not a terminal; the JSON's
`sim_peak_rss_bytes`."""
from __future__ import annotations

import io
import json
import os
import sys

import pytest

from tessel import progress
from tessel.cli import main

TINY = ["--phase", "decode", "--kv", "8", "--no-functional"]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (tqdm then draws with carriage returns)."""

    def isatty(self) -> bool:
        return True


def _sim(capsys, monkeypatch, tiny_hf, *argv, delay_s: float, terminal: bool = True) -> tuple[str, str]:
    """`tessel sim` on the tiny model: its stdout and what reached stderr."""
    monkeypatch.setattr(progress, "DELAY_S", delay_s)
    err = Terminal()
    if terminal:
        monkeypatch.setattr(sys, "stderr", err)
    assert main(["sim", "--model", str(tiny_hf), *TINY, *map(str, argv)]) == 0
    out, captured = capsys.readouterr()
    return out, err.getvalue() if terminal else captured


def test_a_run_longer_than_the_delay_shows_each_phase(capsys, monkeypatch, tiny_hf, tmp_path):
    out, err = _sim(capsys, monkeypatch, tiny_hf, "--json", tmp_path / "r.json", delay_s=0)
    assert "systolic: compile" in err and "systolic: simulate" in err and "instr" in err
    assert "%|" not in out and "\r" not in out            # the report on stdout is clean
    json.loads((tmp_path / "r.json").read_text())


def test_a_run_shorter_than_the_delay_shows_nothing(capsys, monkeypatch, tiny_hf):
    _, err = _sim(capsys, monkeypatch, tiny_hf, delay_s=3600)
    assert err == ""


def test_no_bar_when_stderr_is_not_a_terminal(capsys, monkeypatch, tiny_hf):
    _, err = _sim(capsys, monkeypatch, tiny_hf, delay_s=0, terminal=False)
    assert err == ""


def test_compare_compile_and_program_files_show_bars_too(capsys, monkeypatch, tiny_hf, tmp_path):
    monkeypatch.setattr(progress, "DELAY_S", 0)
    monkeypatch.setattr(sys, "stderr", err := Terminal())
    assert main(["compare", "--model", str(tiny_hf), "--targets", "systolic,pim", *TINY]) == 0
    assert "systolic: compile" in err.getvalue() and "pim: simulate" in err.getvalue()
    err.seek(0)
    err.truncate()
    program = str(tmp_path / "p.tbin")
    assert main(["compile", "--model", str(tiny_hf), "--target", "dataflow", "-o", program]) == 0
    assert "dataflow: compile" in err.getvalue() and "write" in err.getvalue()
    err.seek(0)
    err.truncate()
    assert main(["sim", program, "--no-functional"]) == 0
    assert "dataflow: simulate" in err.getvalue()


def test_a_phase_tells_its_stage_and_count(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0)
    monkeypatch.setattr(sys, "stderr", err := Terminal())
    with progress.Progress().phase("pim: simulate", 1000, "instr") as bar:
        bar("events", 500)
    assert "pim: simulate:  50%" in err.getvalue() and "events" in err.getvalue()
    with progress.QUIET.phase("pim: simulate", 1000, "instr") as bar:
        assert bar is None


def test_json_reports_the_peak_resident_memory(capsys, tiny_hf, tmp_path):
    assert main(["sim", "--model", str(tiny_hf), *TINY, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    peak = report["sim_peak_rss_bytes"]
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert isinstance(peak, int) and 10_000_000 < peak < physical   # numpy alone is > 10 MB
    assert list(report)[-1] == "sim_peak_rss_bytes"


@pytest.mark.parametrize("argv", [["compare", "--targets", "systolic"], ["sim", "--target", "pim"]])
def test_only_tessel_sim_reports_it(capsys, tiny_hf, tmp_path, argv):
    """compare's JSON has a result per target and no process figure; sim's always has one."""
    assert main([argv[0], "--model", str(tiny_hf), *argv[1:], *TINY, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert ("sim_peak_rss_bytes" in report) == (argv[0] == "sim")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_run_started_by_a_large_parent_reports_its_own_peak(tiny_hf, tmp_path):
    """getrusage's ru_maxrss keeps the parent's mark across fork and exec (make bench, 1.3 GB,
    reported that figure for every process it started); the peak is the run's own."""
    import subprocess

    import numpy as np

    held = np.ones(500_000_000 // 8)                     # this process: 500 MB resident
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, "-m", "tessel.cli", "sim", "--model", str(tiny_hf), *TINY,
                    "--json", str(out)], check=True, capture_output=True)
    assert held.sum() and json.loads(out.read_text())["sim_peak_rss_bytes"] < 300_000_000
