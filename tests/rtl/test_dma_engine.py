"""rtl_models/dma_engine.v against sim/timing.py's dma_cycles (cycles) and numpy (bytes).

One build, one simulation of seeded random transfers over latency, bytes per cycle and sizes
(empty, exact multiples of bytes per cycle, one over and one under, arbitrary, the whole memory,
wrapping addresses). The RTL's bytes per cycle is an integer, so the oracle is
dma_cycles(nbytes, latency, clock_hz=1, bw_bytes_per_s=bytes_per_cycle).
"""
from __future__ import annotations


import numpy as np
import pytest

import sim.timing as timing

import rtl_models.runner as runner

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(runner.missing_tools() is not None, reason=str(runner.missing_tools()))]

SEED = 20240602
CASES = 60
MEM_BYTES = 1024
MAX_BPC = 64
BENCH = runner.Bench("dma_engine", {"MEM_BYTES": MEM_BYTES, "MAX_BPC": MAX_BPC})


def _size(rng: np.random.Generator, bpc: int) -> int:
    """Empty, a multiple of bpc, one over or under one, or anything up to the whole memory."""
    k = int(rng.integers(1, max(2, MEM_BYTES // bpc)))
    n = [0, k * bpc, k * bpc + 1, k * bpc - 1, int(rng.integers(1, MEM_BYTES + 1)), MEM_BYTES]
    return min(MEM_BYTES, n[int(rng.choice(6, p=[0.05, 0.25, 0.2, 0.2, 0.25, 0.05]))])


def make_stimulus(seed: int, cases: int) -> dict:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(cases):
        latency = int(rng.choice([0, 1, int(rng.integers(2, 41)), int(rng.integers(41, 301))]))
        bpc = int(rng.choice([1, 2, MAX_BPC, int(rng.integers(1, MAX_BPC + 1))]))
        out.append({"latency": latency, "bytes_per_cycle": bpc, "nbytes": _size(rng, bpc),
                    "src_addr": int(rng.integers(MEM_BYTES)),
                    "dst_addr": int(rng.integers(MEM_BYTES)),
                    "src": rng.integers(256, size=MEM_BYTES).tolist(),
                    "dst": rng.integers(256, size=MEM_BYTES).tolist()})
    limit = max(c["latency"] + c["nbytes"] for c in out) + 16
    return {"cases": out, "limit_cycles": limit}


def expected_destination(case: dict) -> list[int]:
    """The destination memory after the copy (addresses wrap modulo the memory size)."""
    dst, src = np.array(case["dst"]), np.array(case["src"])
    j = np.arange(case["nbytes"])
    dst[(case["dst_addr"] + j) % MEM_BYTES] = src[(case["src_addr"] + j) % MEM_BYTES]
    return dst.tolist()


def mismatches(stimulus: dict, results: dict) -> list[str]:
    out = []
    for i, (case, got) in enumerate(zip(stimulus["cases"], results["cases"], strict=True)):
        params = {k: case[k] for k in ("nbytes", "latency", "bytes_per_cycle", "src_addr",
                                       "dst_addr")}
        if got["stuck"]:
            out.append(f"case {i} {params}: done never rose")
            continue
        want = timing.dma_cycles(case["nbytes"], case["latency"], 1, case["bytes_per_cycle"])
        if got["cycles"] != want:
            out.append(f"case {i} {params}: RTL counted {got['cycles']} cycles, "
                       f"dma_cycles says {want}")
        if got["timed_cycles"] != got["cycles"]:
            out.append(f"case {i} {params}: cycle counter {got['cycles']} != edges from start "
                       f"to done {got['timed_cycles']}")
        dst = expected_destination(case)
        if got["dst"] != dst:
            bad = [a for a in range(MEM_BYTES) if got["dst"][a] != dst[a]]
            out.append(f"case {i} {params}: {len(bad)} destination bytes differ, first at "
                       f"{bad[0]}: {got['dst'][bad[0]]} != {dst[bad[0]]}")
    return out


@pytest.fixture(scope="module")
def dma_run():
    stimulus = make_stimulus(SEED, CASES)
    return stimulus, runner.run_bench(BENCH, stimulus).results


def test_stimulus_covers_the_corners(dma_run):
    stimulus, _ = dma_run
    cases = stimulus["cases"]
    assert len(cases) >= 50
    assert {0, 1} <= {c["latency"] for c in cases}
    assert {1, MAX_BPC} <= {c["bytes_per_cycle"] for c in cases}
    assert any(c["nbytes"] == 0 for c in cases)
    assert any(c["nbytes"] and c["nbytes"] % c["bytes_per_cycle"] == 0 for c in cases)
    assert any(c["nbytes"] % c["bytes_per_cycle"] for c in cases)
    assert any(max(c["src_addr"], c["dst_addr"]) + c["nbytes"] > MEM_BYTES for c in cases)


def test_cycles_and_bytes_match_the_simulator(dma_run):
    problems = mismatches(*dma_run)
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:10])


def test_a_one_cycle_change_to_dma_cycles_is_reported(dma_run, monkeypatch):
    dma_cycles = timing.dma_cycles
    monkeypatch.setattr(timing, "dma_cycles", lambda *args: dma_cycles(*args) + 1)
    problems = mismatches(*dma_run)
    assert len(problems) == len(dma_run[0]["cases"])
    assert all("dma_cycles says" in p for p in problems)
