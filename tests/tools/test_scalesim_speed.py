"""tools/scalesim_speed.py's arithmetic, without SCALE-Sim: the GEMMs it times and how often
GPT-2 runs them, the whole-model sums, the LM head's column pieces, the ratios and the table."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("scalesim_speed", ROOT / "tools" / "scalesim_speed.py")
speed = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = speed          # its dataclass looks its module up while it loads
spec.loader.exec_module(speed)
ref = speed.ref


def test_the_gemms_are_the_reference_sets_prefill_gemms():
    prefill = {(m, n, k) for m, n, k, note in ref.GPT2_SHAPES if "prefill-128" in note}
    assert {(g.m, g.n, g.k) for g in speed.GEMMS} == prefill
    # 12 layers of qkv, projection, fc1, fc2 and 12 heads' scores and context, one LM head
    assert sum(g.per_model for g in speed.GEMMS) == 12 * (4 + 2 * 12) + 1 == 337


def test_model_cycles_are_the_fold_arithmetic():
    # ws on 128x128: folds ceil(K/128) x ceil(N/128), 2 x 128 + 128 + 128 - 2 = 510 cycles a fold
    per_layer = (108 + 36 + 144 + 144) * 510 - 4 + 12 * 2 * (510 - 1)
    lm_head = 6 * 393 * 510 - 1
    assert sum(g.per_model * g.cycles() for g in speed.GEMMS) == 12 * per_layer + lm_head == 3_992_963


def test_model_total_scales_each_gemm_by_its_count():
    ones = {g.name: 1.0 for g in speed.GEMMS}
    assert speed.model_total(ones) == 337
    seconds = {**{g.name: 0.0 for g in speed.GEMMS}, "qkv": 38.0, "scores (one head)": 0.1,
               "LM head": 400.0}
    assert speed.model_total(seconds) == pytest.approx(12 * 38.0 + 144 * 0.1 + 400.0)


@pytest.mark.parametrize("pieces", [1, 2, 3, 4, 8, 393])
def test_column_pieces_keep_the_whole_gemms_folds(pieces):
    n, cols = 50257, 128
    widths = speed.column_pieces(n, cols, pieces)
    assert len(widths) == pieces and sum(widths) == n
    assert all(w % cols == 0 for w in widths[:-1]) and widths[-1] > 0
    folds = [math.ceil(w / cols) for w in widths]
    assert sum(folds) == math.ceil(n / cols)
    assert max(folds) - min(folds) <= 1           # as even as whole folds allow
    # SCALE-Sim's "Total Cycles" is folds x per fold - 1 per GEMM: each piece takes its one off
    cycles = [ref.closed_form_cycles(128, w, 768, 128, 128, "ws") for w in widths]
    assert sum(cycles) == ref.closed_form_cycles(128, n, 768, 128, 128, "ws") - (pieces - 1)


def test_column_pieces_refuse_more_pieces_than_folds():
    with pytest.raises(ValueError, match=r"cannot split 300 columns \(3 folds of 128\) into 4 pieces"):
        speed.column_pieces(300, 128, 4)


def test_stage_groups_sum_the_compiler_steps():
    stages = {"graph build": 0.01, "precision": 0.1, "emit": 0.4, "verify": 0.5, "costs": 0.3,
              "events": 0.2, "report": 0.1}
    assert speed.stage_groups(stages, ("precision", "emit")) == pytest.approx(
        {"graph build": 0.01, "compile": 0.5, "verify": 0.5, "costs": 0.3, "engine": 0.2,
         "report": 0.1})


def synthetic_doc() -> dict:
    cases = [{"name": g.name, "m": g.m, "n": g.n, "k": g.k, "per_model": g.per_model,
              "sim_s": 2.0, "sim_cpu_s": 1.5, "process_s": 2.5, "process_cpu_s": 2.0,
              "method": "whole", "runs": 1} for g in speed.GEMMS]
    scalesim = {"cases": cases, "gemms": 337, "model_sim_s": 674.0, "model_sim_cpu_s": 505.5,
                "model_process_s": 674.5, "model_process_cpu_s": 506.0,
                "model_process_per_gemm_s": 842.5}
    tessel = {"in_process_s": 0.5, "in_process_cpu_s": 0.5, "instructions": 228_699,
              "process": {"bytecode cached": {"median_s": 1.0, "cpu_median_s": 0.9}}}
    return {"scalesim": scalesim, "tessel": tessel, "ratios": speed.ratios(scalesim, tessel)}


def test_ratios_wall_and_cpu_against_the_targets():
    r = synthetic_doc()["ratios"]
    assert r["in_process"]["ratio"] == pytest.approx(1348.0)
    assert r["whole_process"]["ratio"] == pytest.approx(674.5)
    assert r["in_process_cpu"]["ratio"] == pytest.approx(1011.0)
    assert r["whole_process_cpu"]["ratio"] == pytest.approx(506.0 / 0.9)
    assert not r["in_process"]["met"] and r["in_process"]["target"] == 20_000
    assert r["whole_process"]["target"] == 2_000


def test_table_has_a_row_per_gemm_the_totals_and_the_ratios():
    text = speed.render(synthetic_doc())
    lines = text.splitlines()
    assert len(lines) == 2 + len(speed.GEMMS) + 2 + 1 + 1
    assert "SCALE-Sim LM head 128x50257x768" in text and "x144" in text
    assert lines[-1].split()[:5] == ["SCALE-Sim", "/", "Tessel", "1,348x", "674x"]
    assert "in_process 20,000x not met; whole_process 2,000x not met" in lines[-1]


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--max-mem-gb", "-1"], ["--lm-head-pieces", "x"],
                                  ["--scalesim-python", "/nonexistent/python"]])
def test_bad_arguments_are_one_line_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        speed.parse_args(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and "error: " in last and argv[0] in last
