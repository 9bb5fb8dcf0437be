"""rtl_models/vector_lane.v against sim/timing.py's vector_cycles (cycles) and numpy (values).

One build and one simulation per pipeline depth (1: copy, 3: add, 12: div, the span of the
presets' vector latencies), each running seeded random int32 element-wise ops over lengths
from 1 to the lane's buffer size, around the depth included. The oracle for one lane is
vector_cycles(n, lanes=1, latency_cycles=DEPTH) = n + DEPTH (n >= 1: the lane has no element
to carry the latency of an empty run).
"""
from __future__ import annotations


import numpy as np
import pytest

import sim.timing as timing

import rtl_models.runner as runner

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(runner.missing_tools() is not None, reason=str(runner.missing_tools()))]

SEED = 20240603
CASES = 50                          # per depth
DEPTHS = (1, 3, 12)
MAXN = 256
# vector_lane.v's func codes, with the int32 (wrapping) numpy reference of each
FUNCS = {0: ("add", lambda a, b, c: a + b), 1: ("sub", lambda a, b, c: a - b),
         2: ("mul", lambda a, b, c: a * b), 3: ("fma", lambda a, b, c: a * b + c)}


def _length(rng: np.random.Generator, depth: int) -> int:
    choices = [1, 2, max(1, depth - 1), depth, depth + 1, MAXN, int(rng.integers(1, MAXN + 1))]
    return choices[int(rng.choice(len(choices), p=[.1, .1, .1, .1, .1, .1, .4]))]


def make_stimulus(depth: int, seed: int, cases: int) -> dict:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(cases):
        n = _length(rng, depth)
        a, b, c = (rng.integers(-(1 << 31), 1 << 31, size=n).tolist() for _ in range(3))
        out.append({"n": n, "func": int(rng.integers(len(FUNCS))), "a": a, "b": b, "c": c})
    return {"cases": out, "limit_cycles": MAXN + depth + 16}


def expected_y(case: dict) -> list[int]:
    a, b, c = (np.array(case[k], dtype=np.int32) for k in "abc")
    with np.errstate(over="ignore"):
        return FUNCS[case["func"]][1](a, b, c).astype(np.int32).tolist()


def mismatches(depth: int, stimulus: dict, results: dict) -> list[str]:
    out = []
    for i, (case, got) in enumerate(zip(stimulus["cases"], results["cases"], strict=True)):
        what = f"case {i} (DEPTH={depth}, n={case['n']}, {FUNCS[case['func']][0]})"
        if got["stuck"]:
            out.append(f"{what}: done never rose")
            continue
        want = timing.vector_cycles(case["n"], 1, depth)
        if got["cycles"] != want:
            out.append(f"{what}: RTL counted {got['cycles']} cycles, vector_cycles says {want}")
        if got["timed_cycles"] != got["cycles"]:
            out.append(f"{what}: cycle counter {got['cycles']} != edges from start to done "
                       f"{got['timed_cycles']}")
        y = expected_y(case)
        if got["y"] != y:
            j = next(j for j in range(case["n"]) if got["y"][j] != y[j])
            out.append(f"{what}: y[{j}] = {got['y'][j]}, numpy says {y[j]}")
    return out


@pytest.fixture(scope="module", params=DEPTHS, ids=lambda d: f"depth{d}")
def lane_run(request):
    depth = request.param
    stimulus = make_stimulus(depth, SEED + depth, CASES)
    bench = runner.Bench("vector_lane", {"DEPTH": depth, "MAXN": MAXN})
    return depth, stimulus, runner.run_bench(bench, stimulus).results


def test_stimulus_covers_every_op_and_the_lengths_around_the_depth(lane_run):
    depth, stimulus, _ = lane_run
    cases = stimulus["cases"]
    assert len(cases) >= 50 and {c["func"] for c in cases} == set(FUNCS)
    assert {1, depth, depth + 1, MAXN} <= {c["n"] for c in cases}


def test_cycles_and_values_match_the_simulator(lane_run):
    problems = mismatches(*lane_run)
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:10])


def test_a_one_cycle_change_to_vector_cycles_is_reported(lane_run, monkeypatch):
    vector_cycles = timing.vector_cycles
    monkeypatch.setattr(timing, "vector_cycles", lambda *args: vector_cycles(*args) - 1)
    problems = mismatches(*lane_run)
    assert len(problems) == len(lane_run[1]["cases"])
    assert all("vector_cycles says" in p for p in problems)
