"""The RTL cross-check can fail: a timing model one cycle off, or one wrong value, is reported.

Uses the real 4 x 4 systolic-array results (the same simulation run as test_systolic_array.py
when both run in one session) and the same comparison function.
"""
from __future__ import annotations

import re

import pytest

from rtl_models.runner import missing_tools
from sim import timing
from tests.rtl.test_systolic_array import systolic_mismatches, systolic_results

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))]

N_PE = 4


def test_unperturbed_models_agree_with_the_rtl() -> None:
    cases, results = systolic_results(N_PE)
    assert systolic_mismatches(cases, results) == []


def test_timing_model_one_cycle_off_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    cases, results = systolic_results(N_PE)
    real = timing.gemm_cycles
    monkeypatch.setattr(timing, "gemm_cycles", lambda *args, **kwargs: real(*args, **kwargs) + 1)
    problems = systolic_mismatches(cases, results)
    assert len(problems) == len(cases)
    for case, problem in zip(cases, problems):
        got = re.fullmatch(re.escape(case.describe()) + r": cycles RTL counter (\d+), "
                           r"start-to-done edges (\d+), gemm_cycles (\d+)", problem)
        assert got, problem
        rtl, edges, model = (int(x) for x in got.groups())
        assert rtl == edges == model - 1


def test_one_wrong_value_is_reported() -> None:
    cases, results = systolic_results(N_PE)
    first = results[0]
    c = [row[:] for row in first["c"]]
    c[0][0] += 1
    problems = systolic_mismatches(cases, ({**first, "c": c},) + results[1:])
    assert problems == [f"{cases[0].describe()}: 1 values differ, first C[0,0] "
                        f"RTL {c[0][0]} numpy {c[0][0] - 1}"]
