"""The systolic-array RTL against the simulator's own timing model and numpy.

For each array size N (4, 8, 16) one simulation runs 50 seeded random shapes (m, n, k up to
3N) per dataflow, each in both weight-preload modes; every run must take exactly
sim.timing.gemm_cycles(m, n, k, N, N, dataflow, overlap) cycles (the RTL counter and the clock
edges between start and done) and produce C = A.B bit for bit. The largest shape moves its
operands and C through the array's ports, the rest through a memory backdoor (faster).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rtl_models.runner import missing_tools, run_cocotb
from sim import timing

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))]

SIZES = (4, 8, 16)
DATAFLOWS = ("ws", "os")
SHAPES_PER_DATAFLOW = 50
FOLDS_MAX = 4            # the RTL memories hold m, n, k <= FOLDS_MAX * N
SEED = 20261128          # base seed; size N uses SEED + N
SOURCE = Path(__file__).resolve().parents[2] / "rtl_models" / "systolic_array.v"


@dataclass(frozen=True, slots=True)
class GemmCase:
    """One GEMM on an N x N array: C[m,n] = A[m,k] B[k,n], int8 operands from `seed`;
    `via_ports`: operands in and C out through the array's ports (else a memory backdoor)."""
    n_pe: int
    dataflow: str
    overlap: bool
    m: int
    n: int
    k: int
    seed: int
    via_ports: bool = False

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return (rng.integers(-128, 128, (self.m, self.k), dtype=np.int8),
                rng.integers(-128, 128, (self.k, self.n), dtype=np.int8))

    def describe(self) -> str:
        mode = "overlapped" if self.overlap else "back-to-back"
        return (f"N={self.n_pe} {self.dataflow} {mode} m={self.m} n={self.n} k={self.k} "
                f"seed={self.seed}{' via ports' if self.via_ports else ''}")


def systolic_cases(n_pe: int) -> tuple[GemmCase, ...]:
    """50 shapes per dataflow (the corners 1, N, N+1, 3N first, then random), both modes;
    the largest goes through the memory ports, the others through the backdoor."""
    rng = np.random.default_rng(SEED + n_pe)
    largest = (3 * n_pe,) * 3
    corners = [(1, 1, 1), (n_pe, n_pe, n_pe), (n_pe + 1, 1, 3 * n_pe), largest,
               (1, 3 * n_pe, n_pe + 1)]
    cases = []
    for dataflow in DATAFLOWS:
        shapes = corners + [tuple(int(x) for x in rng.integers(1, 3 * n_pe + 1, 3))
                            for _ in range(SHAPES_PER_DATAFLOW - len(corners))]
        for m, n, k in shapes:
            seed = int(rng.integers(2**31))
            cases += [GemmCase(n_pe, dataflow, overlap, m, n, k, seed, (m, n, k) == largest)
                      for overlap in (False, True)]
    return tuple(cases)


@functools.cache
def systolic_results(n_pe: int) -> tuple[tuple[GemmCase, ...], tuple[dict, ...]]:
    """Run every case of size n_pe in one simulation (once per session) -> (cases, results)."""
    cases = systolic_cases(n_pe)
    runs = []
    for c in cases:
        a, b = c.operands()
        runs.append({"dataflow": c.dataflow, "overlap": c.overlap, "via_ports": c.via_ports,
                     "m": c.m, "n": c.n, "k": c.k, "a": a.tolist(), "b": b.tolist()})
    inputs = {"n_pe": n_pe, "folds_max": FOLDS_MAX, "cases": runs}
    out = run_cocotb(toplevel="systolic_array", sources=[SOURCE],
                     test_module="rtl_models.tb_systolic_array", inputs=inputs,
                     parameters={"N": n_pe, "FOLDS_MAX": FOLDS_MAX})
    return cases, tuple(out["cases"])


def systolic_mismatches(cases: tuple[GemmCase, ...], results: tuple[dict, ...]) -> list[str]:
    """Every way the RTL disagrees with sim.timing.gemm_cycles or numpy, one line per case."""
    if len(cases) != len(results):
        return [f"{len(results)} results for {len(cases)} cases"]
    problems = []
    for case, got in zip(cases, results):
        want = timing.gemm_cycles(case.m, case.n, case.k, case.n_pe, case.n_pe, case.dataflow,
                                  overlap_preload=case.overlap)
        if got["cycles"] != want or got["cycles_timed"] != want:
            problems.append(f"{case.describe()}: cycles RTL counter {got['cycles']}, "
                            f"start-to-done edges {got['cycles_timed']}, gemm_cycles {want}")
        if got["c"] is None:
            continue
        a, b = case.operands()
        ref = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
        c = np.array(got["c"], dtype=object).reshape(case.m, case.n)   # None: X in the RTL
        bad = [(i, j) for (i, j), v in np.ndenumerate(c) if v is None or v != ref[i, j]]
        if bad:
            i, j = bad[0]
            problems.append(f"{case.describe()}: {len(bad)} values differ, first C[{i},{j}] "
                            f"RTL {'X' if c[i, j] is None else c[i, j]} numpy {ref[i, j]}")
    return problems


@pytest.mark.parametrize("n_pe", SIZES)
@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_systolic_array_matches_gemm_cycles_and_numpy(n_pe: int, dataflow: str) -> None:
    cases, results = systolic_results(n_pe)
    picked = [i for i, c in enumerate(cases) if c.dataflow == dataflow]
    assert len({(cases[i].m, cases[i].n, cases[i].k, cases[i].seed) for i in picked}) \
        >= SHAPES_PER_DATAFLOW
    assert {(cases[i].overlap, cases[i].via_ports) for i in picked} == \
        {(False, False), (True, False), (False, True), (True, True)}
    problems = systolic_mismatches(tuple(cases[i] for i in picked),
                                   tuple(results[i] for i in picked))
    assert not problems, f"{len(problems)} of {len(picked)} runs disagree:\n" + \
        "\n".join(problems[:20])
