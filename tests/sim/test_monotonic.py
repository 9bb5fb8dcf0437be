"""More SRAM, more DRAM bandwidth or lower DRAM latency never makes an op slower: every op of
gpt2 prefill-128 and decode (KV 128) on systolic-128, over a grid of each (issue 16); more
SRAM on systolic-32's 32x32 array (128 KiB .. 32 MiB), whole prefill; and near the minimum,
where the rings sit at their floors and the vector ops go by column blocks (16 KiB on
systolic-32, 72 KiB on systolic-128, up)."""
from __future__ import annotations

from functools import lru_cache

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from sim.simulate import simulate
from tessel.targets import TARGETS

PHASES = {"prefill-128": prefill(128), "decode-kv-128": decode(128)}
# each grid runs from the worst value to the best
GRIDS = {
    "sram_bytes": [256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20],
    "dram_bw_gbps": [12.8, 25.6, 64.0, 256.0, 1024.0],
    "dram_latency_ns": [400.0, 200.0, 100.0, 50.0, 0.0],
}


@lru_cache(maxsize=None)
def op_cycles(phase: str, field: str, value: float, preset: str = "systolic-128") -> dict[str, int]:
    arch = load_arch(preset, [f"{field}={value}"])
    graph = load_model("gpt2").graph(PHASES[phase])
    program = TARGETS["systolic"].compile(graph, arch).program
    result = simulate(program, TARGETS["systolic"].machine(arch), functional=False).result
    return {op.name: op.cycles for op in result.ops}


@pytest.mark.slow
@pytest.mark.parametrize("field", GRIDS)
@pytest.mark.parametrize("phase", PHASES)
def test_better_memory_never_slows_an_op(phase, field):
    values = GRIDS[field]
    for worse, better in zip(values, values[1:]):
        before, after = op_cycles(phase, field, worse), op_cycles(phase, field, better)
        slower = {n: (before[n], after[n]) for n in before if after[n] > before[n]}
        assert not slower, f"{field} {worse} -> {better}: {slower}"


@pytest.mark.slow
def test_more_sram_never_slows_a_32x32_array():
    # four points, each a whole prefill of about 1.1 M instructions: the suite's budget
    values = [128 << 10, 512 << 10, 4 << 20, 32 << 20]
    for worse, better in zip(values, values[1:]):
        before, after = (op_cycles("prefill-128", "sram_bytes", v, "systolic-32") for v in (worse, better))
        slower = {n: (before[n], after[n]) for n in before if after[n] > before[n]}
        assert not slower, f"sram_bytes {worse} -> {better}: {slower}"


# near the minimum (5,568 bytes on systolic-32, 68,672 on systolic-128): the floors hold the
# plan, the effective size is below sram_bytes, layer norm and softmax rows go by column
# blocks; decode, the cheaper phase (about 10 s a point)
SMALL = {"systolic-32": [16 << 10, 32 << 10, 96 << 10],
         "systolic-128": [72 << 10, 96 << 10, 128 << 10, 192 << 10]}


@pytest.mark.slow
@pytest.mark.parametrize("preset", SMALL)
def test_more_sram_near_the_minimum_never_slows_an_op(preset):
    values = SMALL[preset]
    for worse, better in zip(values, values[1:]):
        before, after = (op_cycles("decode-kv-128", "sram_bytes", v, preset) for v in (worse, better))
        slower = {n: (before[n], after[n]) for n in before if after[n] > before[n]}
        assert not slower, f"{preset}: sram_bytes {worse} -> {better}: {slower}"
