"""Quantised GPU kernels (tessel/gpu_quant.py): bytes by format, the tensor-core format a GEMM
runs in, the speedups beside COMET and Marlin (on the efficiency curve recomputed here from the
datasheet and the A100 curve fit, not read back from the model; by tiles, as the A100 preset
prices them and docs/validation.md shows them, held to what the mechanisms imply), and the
one-line refusals."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from arch import ArchError, load_arch
from compiler.frontend import PRESETS, build_graph
from compiler.phase import decode, prefill
from compiler.quant import Recipe, RecipeError
from compiler.quant.recipe import tensor_quant
from sim.gpu import gpu_baseline, kernel_time
from tessel.gpu_kernels import graph_kernels
from tessel.gpu_quant import check_gpus, linear_kernel, narrowing, resident_bytes
from tests.bad_input import refuses

ROOT = Path(__file__).parents[2]

# gpu-a100-80gb from first principles: datasheet rates (reference/gpu.md, reference/quant.md),
# FP32 lanes 108 SMs x 64 x 2 FLOPs x 1410 MHz, and the A100 fit of docs/validation.md.
FP16, INT4, FP32 = 312e12, 1248e12, 19.49e12
BW, BW_FRAC, RAMP_S = 2039e9, 0.84, 2.35e-6
MAX_FRAC, M_HALF, NK_HALF = 0.97, 46.2, 297.6
COMET_SPEEDUP = 2.88                  # kernel level, A100-80G, over cuBLAS (reference/quant.md)
MARLIN_IDEAL = 16 / (4 + 16 / 128)    # W4A16 g128 with its fp16 scales: 3.88x ("near 4x")


def eff(m: int, n: int, k: int) -> float:
    return MAX_FRAC * m / (m + M_HALF) * n / (n + NK_HALF) * k / (k + NK_HALF)


def device_s(flops_s: float, extra_ops: float, n_bytes: float) -> float:
    """max(tensor cores + CUDA-core instructions (2 FLOPs per lane-cycle), bytes + ramp)."""
    return max(flops_s + extra_ops * 2 / FP32, n_bytes / (BW_FRAC * BW) + RAMP_S)


def fp16_s(m: int, n: int, k: int) -> float:
    return device_s(2 * m * n * k / (eff(m, n, k) * FP16), 0, 2 * (m * k + k * n + m * n))


def w4a4_s(m: int, n: int, k: int, act_group: int | None = None) -> float:
    """int4 x int4 at the INT4 rate; weights a scale per output channel, activations one per
    token or per group (then every group's partial sums are rescaled: m n k/g FMAs)."""
    act_bits = 4 + 16 / (act_group or k)
    rescale = m * n * k / act_group if act_group else 0
    return device_s(2 * m * n * k / (eff(m, n, k) * INT4), rescale,
                    m * k * act_bits / 8 + k * n * (4 + 16 / k) / 8 + 2 * m * n)


def w4a16_s(m: int, n: int, k: int) -> float:
    """FP16 MACs; every weight dequantised once; weights 4 bits + an fp16 scale per 128."""
    return device_s(2 * m * n * k / (eff(m, n, k) * FP16), k * n,
                    2 * m * k + k * n * (4 + 16 / 128) / 8 + 2 * m * n)


def model_s(m: int, n: int, k: int, recipe, tiled: bool = False) -> float:
    """Device time on the A100 preset: by tiles (its `tiled_gemm`), or on the efficiency curve."""
    gpu = load_arch("gpu-a100-80gb")
    t = kernel_time(linear_kernel(m, n, k, recipe), gpu if tiled else dataclasses.replace(gpu, tiled_gemm=None),
                    "graph")
    return t.time_s - t.overhead_s


COMET_LIKE = Recipe("w4a4, a:g128", weights=tensor_quant("weights", "int4"),
                    activations=tensor_quant("activations", "int4", group=128))
SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096)]       # Llama-3-8B's (K, N)


@pytest.mark.parametrize("k, n", SHAPES)
def test_w4a4_speedup_beside_comet(k, n):
    for m in (1, 16, 64, 128, 256, 1024, 4096):
        plain = fp16_s(m, n, k) / w4a4_s(m, n, k)
        grouped = fp16_s(m, n, k) / w4a4_s(m, n, k, 128)
        assert model_s(m, n, k, Recipe("fp16")) / model_s(m, n, k, "w4a4") == pytest.approx(plain, rel=1e-6)
        assert model_s(m, n, k, Recipe("fp16")) / model_s(m, n, k, COMET_LIKE) == pytest.approx(grouped, rel=1e-6)
        if m >= 256:        # both compute-bound: the ratio of the datasheet rates, same curve
            assert plain == pytest.approx(INT4 / FP16)
            # rescaling 128-channel groups on the CUDA cores brings it to COMET's figure
            assert grouped == pytest.approx(COMET_SPEEDUP, rel=0.04)
        else:               # memory-bound: the ratio of bytes, less the ramp's share
            assert 2.8 < plain < INT4 / FP16


@pytest.mark.parametrize("k, n", SHAPES)
def test_tiled_speedups_beside_comet_and_marlin(k, n):
    """What docs/validation.md shows: by tiles the same INT4/FP16 rate ratio, less each kernel's
    ramp, bounds W4A4; COMET's grouped rescaling lands it near 2.88x once compute-bound; a
    weight-only GEMV gains less than its bytes (its 16-row tiles' tensor time and the
    dequantisation in series bind) and less as M grows."""
    for m in (1024, 4096):
        fp16 = model_s(m, n, k, Recipe("fp16"), tiled=True)
        assert 3.4 < fp16 / model_s(m, n, k, "w4a4", tiled=True) < INT4 / FP16
        assert fp16 / model_s(m, n, k, COMET_LIKE, tiled=True) == pytest.approx(COMET_SPEEDUP, rel=0.04)
    gains = [model_s(m, n, k, Recipe("fp16"), tiled=True) / model_s(m, n, k, "w4a16:g128", tiled=True)
             for m in (1, 2, 4, 8, 16)]
    assert all(1.4 < g < 2.4 for g in gains) and gains == sorted(gains, reverse=True)


@pytest.mark.parametrize("k, n", SHAPES)
def test_w4a16_decode_speedup_beside_marlin(k, n):
    speedups = []
    for m in (1, 2, 4, 8, 16):
        expected = fp16_s(m, n, k) / w4a16_s(m, n, k)
        assert model_s(m, n, k, Recipe("fp16")) / model_s(m, n, k, "w4a16:g128") == pytest.approx(
            expected, rel=1e-6)
        speedups.append(expected)
    # under Marlin's near-ideal 3.88x: the fp16 curve makes the narrow GEMV compute-bound
    assert all(2.1 < s < 2.9 for s in speedups) and speedups == sorted(speedups, reverse=True)
    assert max(speedups) < MARLIN_IDEAL


def test_weight_only_bytes_are_the_formats_share():
    k, n = 4096, 14336
    kernel = linear_kernel(1, n, k, "w4a16:g128")
    assert kernel.bytes == 2 * k + k * n * (4 + 16 / 128) / 8 + 2 * n     # (4 + 16/128)/16 of fp16's
    assert (kernel.mma, kernel.dequant_ops) == ("fp16", k * n)
    w4a8 = linear_kernel(64, n, k, "w4a8")             # int4 weights widened to the int8 MACs
    assert (w4a8.mma, w4a8.dequant_ops) == ("int8", k * n)
    assert linear_kernel(64, n, k, "fp8").mma == "fp8"


@pytest.fixture(scope="module")
def gpt2_decode():
    return build_graph(PRESETS["gpt2"], decode(128))


def test_graph_bytes_shrink_by_role(gpt2_decode):
    g = gpt2_decode
    fp16 = {k.name: k for k in graph_kernels(g)}
    assert graph_kernels(g, narrowing(g, Recipe("none"))) == list(fp16.values())   # unchanged
    weights = {k.name: k for k in graph_kernels(g, narrowing(g, "w4a16:g128"))}
    fc = weights["h.0.mlp.c_fc"]                        # 768 x 3072 weight, 4.125 bits
    assert fp16["h.0.mlp.c_fc"].bytes - fc.bytes == 768 * 3072 * (16 - 4.125) / 8
    assert weights["lm_head"] == fp16["lm_head"]        # the recipe keeps the LM head
    kv = {k.name: k for k in graph_kernels(g, narrowing(g, "kv:int8"))}
    # the cache read in attention: 12 heads x 129 tokens x 64, 8 bits + an fp16 scale per head
    saved = 12 * 129 * 64 * (16 - (8 + 16 / 64)) / 8
    for name in ("h.0.attn.scores", "h.0.attn.context"):
        assert fp16[name].bytes - kv[name].bytes == round(saved)
        assert kv[name].dequant_ops == 12 * 129 * 64
    assert fp16["h.0.attn.k_all"].bytes - kv["h.0.attn.k_all"].bytes == round(12 * 64 * 7.75 / 8)
    assert resident_bytes(narrowing(g, Recipe("none"))) > resident_bytes(narrowing(g, "w4a16:g128"))


def test_energy_follows_time_at_the_same_power_model():
    gpu = load_arch("gpu-a100-80gb")
    g = build_graph(PRESETS["gpt2"], prefill(512))
    fp16, w4a4 = gpu_baseline(graph_kernels(g), gpu), gpu_baseline(graph_kernels(g, narrowing(g, "w4a4")), gpu)
    assert w4a4.time_s < fp16.time_s and w4a4.energy_j < fp16.energy_j
    assert any("int4 GEMMs at 1248.0 TOPS" in a for a in w4a4.assumptions)
    assert not any("int4" in a for a in fp16.assumptions)


def test_recipes_a_gpu_cannot_run_are_refused(gpt2_decode):
    g = gpt2_decode
    with pytest.raises(ArchError, match=r"^gpu-a100-80gb: 'h.0.attn.c_attn' \(weights fp8_e4m3, "
                                        r"activations fp8_e4m3\) multiplies in fp8 on the tensor "
                                        r"cores, but the preset has no field 'tensor_tops.fp8'"):
        check_gpus(narrowing(g, "fp8"), [load_arch("gpu-a100-80gb")])
    check_gpus(narrowing(g, "fp8"), [load_arch("gpu-h100-sxm")])
    with pytest.raises(RecipeError, match=r"recipe 'mxfp4': 'h.0.attn.c_attn': no GPU tensor core "
                                          r"multiplies weights mxfp4 by activations mxfp4"):
        check_gpus(narrowing(g, "mxfp4"), [load_arch("gpu-h200")])
    with pytest.raises(RecipeError, match=r"recipe 'w4a16:g100': weights: group 100 does not divide"):
        linear_kernel(1, 4096, 4096, "w4a16:g100")


SIM = ["sim", "--model", "gpt2", "--phase", "decode", "--kv", "16", "--no-functional"]


@pytest.mark.parametrize("extra, message", [
    (["--gpu", "a100-80gb", "--gpu-quant", "fp8"],
     r"gpu-a100-80gb: 'h.0.attn.c_attn' \(weights fp8_e4m3, activations fp8_e4m3\) multiplies in "
     r"fp8 on the tensor cores, but the preset has no field 'tensor_tops.fp8' \(its low-precision "
     r"rates: int8, int4\)$"),
    (["--gpu", "v100", "--gpu-quant", "w8a8"], r"gpu-v100: .* no field 'tensor_tops.int8' .*rates: none\)$"),
    (["--gpu", "h100-sxm", "--gpu-quant", "w4a4"], r"gpu-h100-sxm: .* no field 'tensor_tops.int4'"),
    (["--gpu-quant", "w9a9"], r"recipe 'w9a9': w9: integer widths are 2..8 bits"),
    (["--gpu", "none", "--gpu-quant", "w8a8"], r"--gpu-quant: no GPU to run it on \(--gpu none\)$"),
    (["--quant", "kv:int4:g128"], r"recipe 'kv:int4:g128': kv '.*' in int4:g128: a scale over 128 "
                                  r"channels reaches across its 12 heads of 64, which is not built"),
    (["--devices", "2", "--tp", "2", "--gpu", "a100-80gb", "--gpu-quant", "w8a8"],
     r"--gpu-quant: not with --devices \(a GPU node's plan is priced in fp16\)$"),
])
def test_sim_refuses_in_one_line(capsys, extra, message):
    refuses(capsys, SIM + extra, message)


def test_gpu_quant_with_a_program_file_is_refused(capsys, tmp_path):
    refuses(capsys, ["sim", tmp_path / "p.tbin", "--gpu-quant", "w8a8"],
            r"--gpu-quant: only with --model")


@pytest.mark.slow
def test_sim_prices_the_gpu_under_the_recipe(capsys, tmp_path):
    from tessel.cli import main
    out = tmp_path / "r.json"
    assert main(SIM + ["--gpu", "a100-80gb", "--gpu-quant", "w4a16:g128", "--json", str(out)]) == 0
    assert "GPU baselines (same graph in fp16 under recipe w4a16:g128, graph mode" in capsys.readouterr().out
    quant = json.loads(out.read_text())["gpu"]["gpu-a100-80gb"]
    assert main(SIM + ["--gpu", "a100-80gb", "--json", str(out)]) == 0
    fp16 = json.loads(out.read_text())["gpu"]["gpu-a100-80gb"]
    assert quant["recipe"] == "w4a16:g128" and "recipe" not in fp16
    assert quant["time_s"] < fp16["time_s"]


def test_docs_carry_the_generated_tables():
    spec = importlib.util.spec_from_file_location("gpu_quant_table", ROOT / "tools" / "gpu_quant_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    doc = (ROOT / "docs" / "validation.md").read_text()
    assert tool.w4a4_table() in doc and tool.w4a16_table() in doc
