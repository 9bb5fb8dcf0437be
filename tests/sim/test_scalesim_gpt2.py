"""SCALE-Sim 3.0.0 on the GEMMs of GPT-2 small against the closed form.

tests/fixtures/scalesim/gpt2.json holds SCALE-Sim's "Total Cycles" for the distinct GEMMs of
GPT-2 small (prefill of 128 tokens, decode at KV 128) on 32x32 and 128x128 arrays, ws / os / is,
as far as they could be run (`tools/scalesim_reference.py --set gpt2`; the file's "failed"
section names the cases SCALE-Sim could not finish within the memory cap). Every recorded case
is SCALE-Sim's figure, which is the closed form minus one (docs/systolic.md, "SCALE-Sim").
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.timing import gemm_cycles

FIXTURE = Path(__file__).parents[1] / "fixtures" / "scalesim" / "gpt2.json"
DOC = json.loads(FIXTURE.read_text())
CASES = DOC["cases"]

D_MODEL, D_FF, HEAD_DIM, VOCAB, SEQ = 768, 3072, 64, 50257, 128
GPT2_GEMMS = {  # (M, N, K): prefill of SEQ tokens, then decode with SEQ + 1 keys
    (SEQ, 3 * D_MODEL, D_MODEL), (SEQ, D_MODEL, D_MODEL), (SEQ, D_FF, D_MODEL),
    (SEQ, D_MODEL, D_FF), (SEQ, SEQ, HEAD_DIM), (SEQ, HEAD_DIM, SEQ), (SEQ, VOCAB, D_MODEL),
    (1, 3 * D_MODEL, D_MODEL), (1, D_MODEL, D_MODEL), (1, D_FF, D_MODEL), (1, D_MODEL, D_FF),
    (1, SEQ + 1, HEAD_DIM), (1, HEAD_DIM, SEQ + 1), (1, VOCAB, D_MODEL),
}


def case_id(case: dict) -> str:
    return f"{case['M']}x{case['N']}x{case['K']}-{case['rows']}x{case['cols']}-{case['dataflow']}"


def test_cases_are_gpt2_gemms_on_the_two_arrays():
    keys = [(c["M"], c["N"], c["K"], c["rows"], c["cols"], c["dataflow"]) for c in CASES]
    assert len(keys) == len(set(keys))
    assert {k[:3] for k in keys} <= GPT2_GEMMS
    assert {k[3:5] for k in keys} <= {(32, 32), (128, 128)}
    assert {k[5] for k in keys} == {"ws", "os", "is"}
    # every layer GEMM (all but the LM head) was run on both arrays in all three dataflows
    assert len([k for k in keys if k[1] != VOCAB]) == 12 * 2 * 3
    assert not set(DOC["failed"]) & {case_id(c) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_closed_form_is_scalesim_plus_one(case):
    m, n, k = case["M"], case["N"], case["K"]
    assert gemm_cycles(m, n, k, case["rows"], case["cols"], case["dataflow"]) - 1 == case["scalesim_cycles"]
