"""The matrix unit's cycles against SCALE-Sim 3.0.0 on every recorded GEMM.

tests/fixtures/scalesim/reference.json holds SCALE-Sim's "Total Cycles" for one GEMM
out[M, N] = A[M, K] . B[K, N] per case (tools/scalesim_reference.py wrote it). Each case is
compiled from a .graph file and simulated timing-only, exactly as a user would run it.

SCALE-Sim reports folds * (P + R + C + T - 2) - 1 for a whole GEMM: one cycle less than the
array is busy, once per GEMM it simulates (docs/systolic.md, "SCALE-Sim"). Tessel counts the
full folds * (P + R + C + T - 2): one gemm instruction per fold (or per piece of a fold's
stream, the later pieces continuing it), so a whole GEMM is busy SCALE-Sim's figure plus one
whatever the buffers. SCALE-Sim has no double-buffered weights, so the runs here use
weight_preload_overlap = false (systolic-128's own setting is true).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import isa
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import prefill
from tessel.targets import TARGETS
from sim.simulate import simulate
from sim.timing import gemm_cycles

REFERENCE = Path(__file__).parents[1] / "fixtures" / "scalesim" / "reference.json"
CASES = json.loads(REFERENCE.read_text())["cases"]


def case_id(case: dict) -> str:
    return f"{case['M']}x{case['N']}x{case['K']}-{case['rows']}x{case['cols']}-{case['dataflow']}"


def gemm_graph(tmp_path: Path, m: int, n: int, k: int) -> Path:
    """A .graph file holding out[m, n] = a[m, k] @ b[k, n] and nothing else."""
    path = tmp_path / f"gemm_{m}x{n}x{k}.graph"
    path.write_text(f"graph gemm {{\n"
                    f"  input a: fp32[{m}, {k}]\n"
                    f"  param b: fp32[{k}, {n}]\n"
                    f"  out = matmul(a, b)\n"
                    f"  output out\n"
                    f"}}\n")
    return path


def mxu_run(tmp_path: Path, m: int, n: int, k: int, overrides: list[str]) -> tuple[int, int]:
    """(matrix-unit busy cycles, gemm instructions) of the GEMM on systolic-128 without
    overlapped preload (SCALE-Sim's arithmetic) + overrides."""
    arch = load_arch("systolic-128", ["weight_preload_overlap=false", *overrides])
    graph = load_model(str(gemm_graph(tmp_path, m, n, k))).fixed_graph
    program = TARGETS["systolic"].compile(graph, arch).program
    result = simulate(program, TARGETS["systolic"].machine(arch), functional=False).result
    opcodes = Counter(ins.opcode for ins in isa.unroll(program).instructions)
    return result.unit_busy_cycles["mxu"], opcodes["gemm"]


def array(case: dict) -> list[str]:
    return [f"rows={case['rows']}", f"cols={case['cols']}", f"dataflow={case['dataflow']}"]


def test_reference_covers_every_dataflow_and_array_shape():
    assert len(CASES) == 129
    assert {c["dataflow"] for c in CASES} == {"ws", "os", "is"}
    assert {(c["rows"], c["cols"]) for c in CASES} == {(4, 4), (8, 8), (16, 16), (32, 32), (8, 16), (16, 8)}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_closed_form_is_scalesim_plus_one(case):
    m, n, k = case["M"], case["N"], case["K"]
    assert gemm_cycles(m, n, k, case["rows"], case["cols"], case["dataflow"]) - 1 == case["scalesim_cycles"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_simulated_matrix_unit_matches_scalesim(tmp_path, case):
    # one gemm instruction per group of folds; their cycles add up to the whole GEMM's
    busy, _ = mxu_run(tmp_path, case["M"], case["N"], case["K"], array(case))
    assert busy == case["scalesim_cycles"] + 1


def test_tiling_the_pinned_dims_keeps_scalesim_cycles(tmp_path):
    # 128x768x64 on 32x32 ws with 256 KiB of SRAM: the result slot (7 %, 18,304 bytes) holds
    # 128 x 64 bf16 outputs, so N is split into twelve 64-column tiles of 2 x 2 folds each;
    # their folds add up to the whole GEMM's 2 x 24 = 48 and M (streamed) stays whole
    case = next(c for c in CASES if (c["M"], c["N"], c["K"], c["rows"], c["cols"], c["dataflow"])
                == (128, 768, 64, 32, 32, "ws"))
    busy, gemms = mxu_run(tmp_path, 128, 768, 64, array(case) + ["sram_bytes=262144"])
    assert gemms > 1
    assert busy == case["scalesim_cycles"] + 1 == 48 * (32 + 32 + 32 + 128 - 2)


@pytest.mark.parametrize("shape, array_side, overlapped", [
    # 128x768x64 on 32x32 ws: 48 folds of 2R + C + M - 2 = 222 cycles; overlapped, every fold
    # after the first costs max(M, R) = 128
    ((128, 768, 64), 32, 222 + 47 * 128),
    # 8x8x8 on 8x8: a single fold, nothing to hide a preload behind
    ((8, 8, 8), 8, 2 * 8 + 8 + 8 - 2),
], ids=["48-folds", "1-fold"])
def test_overlapped_weight_preload(tmp_path, shape, array_side, overlapped):
    m, n, k = shape
    side = [f"rows={array_side}", f"cols={array_side}", "dataflow=ws"]
    plain, _ = mxu_run(tmp_path, m, n, k, side + ["weight_preload_overlap=false"])
    hidden, gemms = mxu_run(tmp_path, m, n, k, side + ["weight_preload_overlap=true"])
    assert hidden == overlapped
    folds = -(-k // array_side) * -(-n // array_side)
    if folds > 1:
        assert hidden < plain
    else:
        assert hidden == plain


# GPT-2 small prefill of 128 tokens: SCALE-Sim's fold arithmetic summed over the whole model
# (shared/reference/systolic.md, whole-model table), one figure per GEMM it runs.
GPT2_GEMMS = 12 * (4 + 2 * 12) + 1      # per layer qkv, proj, fc, fc2 and 2 per head; LM head
GPT2_PREFILL_128 = {(32, "ws"): 27_295_007, (32, "os"): 16_984_215, (32, "is"): 16_827_983,
                    (128, "ws"): 3_992_963, (128, "os"): 1_330_253, (128, "is"): 1_297_241}


FAST_WHOLE_MODEL = {(128, "ws"), (128, "is")}     # the others run in the slow tier (up to 8 s each)


@pytest.mark.parametrize("side, dataflow", [
    pytest.param(*case, marks=() if case in FAST_WHOLE_MODEL else pytest.mark.slow)
    for case in sorted(GPT2_PREFILL_128)], ids=lambda v: str(v))
def test_gpt2_prefill_matrix_cycles_match_scalesim_arithmetic(side, dataflow):
    # pieces continue their fold's stream and partial sums that outgrow the accumulator (the
    # is LM head streams N = 50,257) spill to DRAM: one cycle per GEMM above SCALE-Sim.
    # Attention unfused: SCALE-Sim's GEMMs are the per-head scores and context products
    arch = load_arch("systolic-128", [f"rows={side}", f"cols={side}", f"dataflow={dataflow}",
                                      "attention=unfused", "weight_preload_overlap=false"])
    graph = load_model("gpt2").graph(prefill(128))
    program = TARGETS["systolic"].compile(graph, arch).program
    result = simulate(program, TARGETS["systolic"].machine(arch), functional=False).result
    assert result.unit_busy_cycles["mxu"] == GPT2_PREFILL_128[side, dataflow] + GPT2_GEMMS


# Every distinct GEMM of GPT-2 small (M, N, K): prefill of 128 tokens and decode at KV 128
# (the new token attends to 129 keys); attention per head (scores K = 64, context N = 64)
GPT2_SHAPES = {
    "prefill": [(128, 2304, 768), (128, 768, 768), (128, 3072, 768), (128, 768, 3072),
                (128, 128, 64), (128, 64, 128), (128, 50257, 768)],
    "decode": [(1, 2304, 768), (1, 768, 768), (1, 3072, 768), (1, 768, 3072),
               (1, 129, 64), (1, 64, 129), (1, 50257, 768)],
}
GPT2_CASES = [(preset, buffers, dataflow, shape)
              for preset in ("scalesim-32", "scalesim-128")
              for buffers in ("default", "32MiB")
              for dataflow in ("ws", "os", "is")
              for shape in GPT2_SHAPES["prefill"] + GPT2_SHAPES["decode"]]


# SCALE-Sim 3.0.0's own figures for 79 of those GEMMs x arrays x dataflows (test_scalesim_gpt2.py)
RECORDED = {(c["M"], c["N"], c["K"], c["rows"], c["dataflow"]): c["scalesim_cycles"]
            for c in json.loads((REFERENCE.parent / "gpt2.json").read_text())["cases"]}


def preset_run(tmp_path: Path, preset: str, m: int, n: int, k: int, overrides: list[str]) -> int:
    """Matrix-unit busy cycles of the GEMM compiled for `preset` + overrides."""
    arch = load_arch(preset, overrides)
    graph = load_model(str(gemm_graph(tmp_path, m, n, k))).fixed_graph
    program = TARGETS["systolic"].compile(graph, arch).program
    return simulate(program, TARGETS["systolic"].machine(arch), functional=False).result.unit_busy_cycles["mxu"]


@pytest.mark.slow
@pytest.mark.parametrize("preset, buffers, dataflow, shape", GPT2_CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_every_gpt2_gemm_is_scalesim_fold_arithmetic_at_any_buffer_size(tmp_path, preset, buffers,
                                                                      dataflow, shape):
    # the matrix unit is busy SCALE-Sim's fold arithmetic + 1 whatever the buffers: streams cut
    # into pieces continue (stream=1), partial sums that outgrow the accumulator spill to DRAM
    m, n, k = shape
    side = load_arch(preset).rows
    overrides = [f"dataflow={dataflow}"] + (["sram_bytes=33554432"] if buffers == "32MiB" else [])
    busy = preset_run(tmp_path, preset, m, n, k, overrides)
    assert busy == gemm_cycles(m, n, k, side, side, dataflow)
    if (m, n, k, side, dataflow) in RECORDED:
        assert busy == RECORDED[m, n, k, side, dataflow] + 1
