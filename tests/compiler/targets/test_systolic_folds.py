"""Fold-by-fold GEMMs whose stream outgrows the accumulator: partial sums spill to DRAM in
fp32, the values stay the reference's and the matrix unit's cycles stay SCALE-Sim's fold
arithmetic (compiler/targets/systolic/folds.py)."""
from collections import Counter

import numpy as np
import pytest

from dataclasses import replace

from arch import load_arch
from isa import unroll
from compiler.builder import GraphBuilder
from compiler.ir import OpKind
from sim.timing import gemm_cycles
from tessel.targets import target
from tests.compiler.targets.test_vector_ops import _simulate

# 40 x 96 @ 96 x 300 + bias on 32x32: three folds along K, so partial sums accumulate
M, K, N = 40, 96, 300


def _linear():
    g = GraphBuilder("lin")
    x, w, b = g.input("x", (M, K)), g.param("w", (K, N)), g.param("bias", (N,))
    return g.build([g.op(OpKind.LINEAR, "out", [x, w, b])])


@pytest.mark.parametrize("dataflow", ["ws", "is"])
@pytest.mark.parametrize("acc_bytes", [4096, 1 << 20], ids=["spilled", "in-accumulator"])
def test_spilled_partial_sums_keep_values_and_fold_arithmetic(dataflow, acc_bytes):
    overrides = (f"dataflow={dataflow}", f"acc_bytes={acc_bytes}")
    got, want, _ = _simulate(_linear(), "systolic", "systolic-32", overrides)
    assert np.abs(got["out"] - want["out"]).max() / np.abs(want["out"]).max() < 2e-5


def _mxu(dataflow: str, acc_bytes: int):
    arch = load_arch("systolic-32", [f"dataflow={dataflow}", f"acc_bytes={acc_bytes}", "dtype=fp32"])
    t = target("systolic")
    lowered = t.compile(_linear(), arch)
    sim = t.simulate(replace(lowered.program, data=None), arch, functional=False)
    symbols = {s.name for s in lowered.program.symbols}
    return sim.result.unit_busy_cycles["mxu"], symbols, Counter(i.opcode for i in unroll(lowered.program).instructions)


@pytest.mark.parametrize("dataflow", ["ws", "is"])
def test_a_small_accumulator_spills_instead_of_refilling_the_array(dataflow):
    # is streams N = 300 columns: 32 x 300 fp32 partial sums outgrow a 2 KiB slot; ws streams
    # M = 40 rows: 40 x 32 x 4 = 5 KiB, also above it
    busy, symbols, opcodes = _mxu(dataflow, 4096)
    assert "psum_0" in symbols
    assert busy == gemm_cycles(M, N, K, 32, 32, dataflow)
    roomy, roomy_symbols, _ = _mxu(dataflow, 1 << 20)
    assert roomy == busy and "psum_0" not in roomy_symbols
