"""Systolic costs against figures derived here from the graph, the tiling and the preset.

Nothing below calls the timing or machine code it checks: MACs come from the graph's
shapes, DRAM bytes from the lowering's tiling worked out by hand (docs/systolic.md,
"Tiling"), energies from the preset's per-action values, the DMA cycles from the preset's
clock, bandwidth and latency.
"""
from __future__ import annotations

import math
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

import isa
from arch import load_arch
from arch.config import CONFIG_DIR
from compiler.frontend import load_model
from compiler.ir import Graph, OpKind
from compiler.phase import prefill
from sim.result import SimResult
from tessel.targets import TARGETS
from sim.simulate import simulate
from tessel.driver import run
from tessel.request import make_request

BF16_BYTES = 2


def graph_macs(graph: Graph) -> int:
    """Sum of M*N*K over the matmul and linear ops: every output element takes K MACs."""
    total = 0
    for op in graph.ops:
        if op.kind in (OpKind.MATMUL, OpKind.LINEAR):
            total += math.prod(op.type.shape) * graph[op.inputs[0]].type.shape[-1]
    return total


def check_energy(result: SimResult, macs: int, energy_toml: dict) -> None:
    """compute = MACs x mac_pj, dram = bytes x pj/byte, static = W x s, total = the sum."""
    breakdown = result.energy_breakdown_j
    assert set(breakdown) == {"compute", "sram", "dram", "vector", "static"}
    dram_bytes = result.bytes["dram_read"] + result.bytes["dram_write"]
    assert breakdown["compute"] == pytest.approx(macs * energy_toml["mac_pj"] * 1e-12, rel=1e-12)
    assert breakdown["dram"] == pytest.approx(dram_bytes * energy_toml["dram_pj_per_byte"] * 1e-12, rel=1e-12)
    assert breakdown["static"] == pytest.approx(energy_toml["static_w"] * result.time_s, rel=1e-12)
    assert result.energy_j == pytest.approx(math.fsum(breakdown.values()), rel=1e-12)


def preset(name: str) -> dict:
    return tomllib.loads((CONFIG_DIR / f"{name}.toml").read_text())


def gemm_graph(tmp_path: Path, m: int, n: int, k: int) -> Path:
    path = tmp_path / "gemm.graph"
    path.write_text(f"graph gemm {{\n  input a: fp32[{m}, {k}]\n  param b: fp32[{k}, {n}]\n"
                    f"  out = matmul(a, b)\n  output out\n}}\n")
    return path


# (M, K, N, overrides, times A is read): a GEMM runs fold by fold (folds.py); A stays on chip
# for every column group when it fits its slot, else it is reloaded once per column group
# (groups ramp 1, 2, 4, ... column folds). B is loaded once, C written once.
GEMMS = [
    # everything fits
    (24, 40, 72, ["rows=8", "cols=8"], 1),
    # 32 KiB SRAM: A (1,920 bytes) still fits its 2,560-byte slot
    (24, 40, 72, ["rows=8", "cols=8", "sram_bytes=32768"], 1),
    # 32 KiB SRAM, K = 72: A (3,456 bytes) does not fit, so it is read once per column fold (9)
    (24, 72, 72, ["rows=8", "cols=8", "sram_bytes=32768"], 9),
]


@pytest.mark.parametrize("m, k, n, overrides, a_reads", GEMMS, ids=["whole", "n-split", "k-and-n-split"])
def test_single_gemm_costs(tmp_path, m, k, n, overrides, a_reads):
    arch = load_arch("systolic-128", overrides)
    model = load_model(str(gemm_graph(tmp_path, m, n, k)))
    result = run(make_request(model, "systolic", arch, None, numerics=False)).result
    energy = preset("systolic-128")["energy"]
    macs = m * n * k
    assert graph_macs(model.fixed_graph) == macs
    assert result.macs == macs
    assert result.mac_utilization == pytest.approx(macs / (8 * 8 * result.cycles), rel=1e-12)
    # bf16 storage: A read a_reads times, B once, C written once
    assert result.bytes["dram_read"] == BF16_BYTES * (a_reads * m * k + k * n)
    assert result.bytes["dram_write"] == BF16_BYTES * m * n
    check_energy(result, macs, energy)
    # the epilogue converts every output element once on the vector unit
    assert result.energy_breakdown_j["vector"] == pytest.approx(m * n * energy["vector_op_pj"] * 1e-12)


def test_tiny_gpt2_prefill_costs(tiny_hf):
    arch = load_arch("systolic-32")
    model = load_model(str(tiny_hf))
    phase = prefill(8)
    result = run(make_request(model, "systolic", arch, phase, numerics=False)).result
    macs = graph_macs(model.graph(phase))
    # per layer: qkv 8*64*192, scores and context 2 * 4 heads * 8*8*16, c_proj 8*64*64,
    # fc 8*64*256, proj 8*256*64; then the LM head 8*64*512
    layer = 8 * 64 * 192 + 2 * 4 * 8 * 8 * 16 + 8 * 64 * 64 + 2 * 8 * 64 * 256
    assert macs == 2 * layer + 8 * 64 * 512 == 1_064_960
    assert result.macs == macs
    assert result.mac_utilization == pytest.approx(macs / (32 * 32 * result.cycles), rel=1e-12)
    assert 0 < result.mac_utilization < 1
    check_energy(result, macs, preset("systolic-32")["energy"])


@pytest.mark.parametrize("name", ["systolic-128", "systolic-32", "tpu-v1"])
def test_lone_load_takes_latency_plus_transfer(name):
    toml = preset(name)
    program = isa.assemble(".target systolic\n.isa 3\n.spaces dram sram acc\n"
                           ".symbol x dram 0x0 3x500 bf16\n"
                           "dma0 load dst=sram[0x0] src=dram[0x0] rows=3 row_bytes=1000\n"
                           "dma0 halt\n")
    result = simulate(program, TARGETS["systolic"].machine(load_arch(name)), functional=False).result
    clock_hz = Fraction(str(toml["clock_mhz"])) * 10**6
    latency = Fraction(str(toml["dram_latency_ns"])) * clock_hz / 10**9
    assert latency.denominator == 1                  # every preset's latency is whole cycles
    bw_bytes_per_s = Fraction(str(toml["dram_bw_gbps"])) * 10**9
    expected = int(latency) + math.ceil(3000 * clock_hz / bw_bytes_per_s)
    assert result.cycles == result.unit_busy_cycles["dma"] == expected
    assert result.bytes["dram_read"] == 3000


def test_an_overlapping_dma_holds_the_port_for_its_bytes_and_lands_its_data_later():
    """dma_overlap: back-to-back loads hold the port for their beats only; the signal after
    them gives the reader the data the access latency later (94 cycles on systolic-128)."""
    text = (".target systolic\n.isa 3\n.spaces dram sram acc\n"
            ".symbol x dram 0x0 4x4096 bf16\n"
            + "".join(f"dma0 load dst=sram[{i * 8192:#x}] src=dram[{i * 8192:#x}] rows=1 "
                      "row_bytes=8192\n" for i in range(4)) +
            "dma0 signal sem=0\nmxu0 wait sem=0\nmxu0 halt\ndma0 halt\n")
    program = isa.assemble(text)
    runs = {o: simulate(program, TARGETS["systolic"].machine(
        load_arch("systolic-128", [f"dma_overlap={o}"])), functional=False).result
        for o in ("false", "true")}
    arch = load_arch("systolic-128")
    latency, beats = arch.dram_latency_cycles, math.ceil(8192 * 940e6 / 256e9)
    assert latency == 94
    assert runs["false"].unit_busy_cycles["dma"] == 4 * (latency + beats)
    assert runs["true"].unit_busy_cycles["dma"] == 4 * beats
    assert runs["true"].cycles == 4 * beats + latency            # the reader waits for the data
    assert runs["false"].cycles == 4 * (latency + beats)


# -- the gemm's stream and preloaded flags (sim/timing.gemm_cycles) ---------------------------
TIMED = (".target systolic\n.isa 3\n.spaces dram sram acc\n"
         "mxu0 mcfg m={m} n=32 k=32 dtype=bf16 acc=fp32\n"
         "mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x4000] accumulate=0 transpose_b=0 "
         "stream={stream} preloaded={preloaded}\n")


def _gemm_busy(text: str, overlap: bool) -> int:
    arch = load_arch("systolic-32", [f"weight_preload_overlap={'true' if overlap else 'false'}"])
    program = isa.assemble(text + "mxu0 halt\n")
    return simulate(program, TARGETS["systolic"].machine(arch), functional=False).result.unit_busy_cycles["mxu"]


@pytest.mark.parametrize("m, stream, preloaded, overlap, cycles", [
    (100, 0, 0, False, 32 + 32 + 32 + 100 - 2),   # a cold fold: preload, fill, stream, drain
    (100, 1, 0, False, 100),                      # continues the fold: only its stream
    (100, 1, 0, True, 100),
    (100, 0, 1, True, 100),                       # operand shifted in behind a stream: max(T, rows)
    (8, 0, 1, True, 32),                          # ... the array waits for the rest of the preload
    (8, 1, 0, True, 8),
])
def test_gemm_flags_time_the_first_fold(m, stream, preloaded, overlap, cycles):
    assert _gemm_busy(TIMED.format(m=m, stream=stream, preloaded=preloaded), overlap) == cycles


def test_preloaded_needs_double_buffered_weights():
    with pytest.raises(isa.IsaError, match=r"preloaded=1 needs double-buffered weights, and systolic-32 "
                                           r"has weight_preload_overlap = false"):
        _gemm_busy(TIMED.format(m=8, stream=0, preloaded=1), False)
