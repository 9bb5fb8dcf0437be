"""The systolic-array RTL against the simulator's own timing model and numpy.

For each array size N (4, 8, 16) one simulation runs 50 seeded random shapes (m, n, k up to
3N) per dataflow, each in both weight-preload modes, int8, and 12 more in int4 mode (two int4
values of consecutive K packed in each byte, k up to 6N); every run must take exactly
sim.timing.gemm_cycles(m, n, k, N, N, dataflow, overlap, pack) cycles (the RTL counter and the
clock edges between start and done) and produce C = A.B bit for bit (the simulator's integer
matmul: exact int32 sums). The largest shape moves its operands and C through the array's
ports, the rest through a memory backdoor (faster).
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
INT4_SHAPES_PER_DATAFLOW = 12
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
    int4: bool = False          # int4 mode: k int4 values, packed two a byte along K

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        lo, hi = (-8, 8) if self.int4 else (-128, 128)
        return (rng.integers(lo, hi, (self.m, self.k), dtype=np.int8),
                rng.integers(lo, hi, (self.k, self.n), dtype=np.int8))

    def array_operands(self) -> tuple[np.ndarray, np.ndarray, int]:
        """What the array's memories hold: the operands, int4 ones packed along K, and the K
        the array sees."""
        a, b = self.operands()
        if not self.int4:
            return a, b, self.k
        return pack_int4(a, 1), pack_int4(b, 0), -(-self.k // 2)

    def describe(self) -> str:
        mode = "overlapped" if self.overlap else "back-to-back"
        return (f"N={self.n_pe} {self.dataflow} {mode}{' int4' if self.int4 else ''} m={self.m} "
                f"n={self.n} k={self.k} seed={self.seed}{' via ports' if self.via_ports else ''}")


def pack_int4(x: np.ndarray, axis: int) -> np.ndarray:
    """int4 values (int8 in -8..7) packed two a byte along `axis`: the even index in bits 3:0,
    the odd one in bits 7:4 (an odd length padded with a zero)."""
    x = np.moveaxis(x, axis, -1)
    if x.shape[-1] % 2:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (1,), np.int8)], axis=-1)
    u = x.astype(np.uint8) & 0xF
    return np.moveaxis((u[..., 0::2] | (u[..., 1::2] << 4)).view(np.int8), -1, axis)


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
        # int4: K up to 6N values (3N pairs), odd K included; the largest through the ports
        int4 = [(1, 1, 1), (n_pe, n_pe, 2 * n_pe), (3 * n_pe, 3 * n_pe, 6 * n_pe)] + [
            (int(rng.integers(1, 3 * n_pe + 1)), int(rng.integers(1, 3 * n_pe + 1)),
             int(rng.integers(1, 6 * n_pe + 1))) for _ in range(INT4_SHAPES_PER_DATAFLOW - 3)]
        for m, n, k in int4:
            seed = int(rng.integers(2**31))
            cases += [GemmCase(n_pe, dataflow, overlap, m, n, k, seed,
                               (m, n, k) == (3 * n_pe, 3 * n_pe, 6 * n_pe), int4=True)
                      for overlap in (False, True)]
    return tuple(cases)


@functools.cache
def systolic_results(n_pe: int) -> tuple[tuple[GemmCase, ...], tuple[dict, ...]]:
    """Run every case of size n_pe in one simulation (once per session) -> (cases, results)."""
    cases = systolic_cases(n_pe)
    runs = []
    for c in cases:
        a, b, k = c.array_operands()
        runs.append({"dataflow": c.dataflow, "overlap": c.overlap, "via_ports": c.via_ports,
                     "int4": c.int4, "m": c.m, "n": c.n, "k": k, "a": a.tolist(), "b": b.tolist()})
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
                                  overlap_preload=case.overlap, pack=2 if case.int4 else 1)
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
        >= SHAPES_PER_DATAFLOW + INT4_SHAPES_PER_DATAFLOW
    assert {(cases[i].overlap, cases[i].via_ports, cases[i].int4) for i in picked} == \
        {(o, p, q) for o in (False, True) for p in (False, True) for q in (False, True)}
    problems = systolic_mismatches(tuple(cases[i] for i in picked),
                                   tuple(results[i] for i in picked))
    assert not problems, f"{len(problems)} of {len(picked)} runs disagree:\n" + \
        "\n".join(problems[:20])
