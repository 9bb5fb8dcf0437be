"""tools/gpu_vector_fit.py: Vidur's non-GEMM kernels against the GPU baseline. "today" is the
model before the per-kind fit (pinned here on rows computed with that code), the presets hold
what a refit gives, and docs/validation.md carries the tool's tables."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from arch import load_arch
from baselines.gpu_measurements import load_gpu

ROOT = Path(__file__).parents[2]
# Device time in us per Vidur operator as commit 39c8222's model priced it (graph mode minus
# launch), for three rows per GPU: (fixture row, {operator: us}).
TODAY_US = {
    "a100": ((0, {"emb": 80.7182, "input_layernorm": 80.723, "attn_rope": 92.8588,
                  "post_attention_layernorm": 80.723, "mlp_act": 690.38, "add": 119.895}),
             (300, {"emb": 5.33491, "input_layernorm": 5.33933, "attn_rope": 5.44614,
                    "post_attention_layernorm": 5.33933, "mlp_act": 7.20655, "add": 6.82682}),
             (650, {"emb": 3.59368, "input_layernorm": 3.59954, "attn_rope": 5.01089,
                    "post_attention_layernorm": 3.59954, "mlp_act": 5.74925, "add": 4.21534})),
    "h100": ((0, {"emb": 50.0493, "input_layernorm": 50.0522, "attn_rope": 58.3585,
                  "post_attention_layernorm": 50.0522, "mlp_act": 422.044, "add": 73.8946}),
             (300, {"emb": 4.86555, "input_layernorm": 4.86815, "attn_rope": 5.32881,
                    "post_attention_layernorm": 4.86815, "mlp_act": 6.81241, "add": 6.12286}),
             (479, {"emb": 3.39812, "input_layernorm": 3.40166, "attn_rope": 4.962,
                    "post_attention_layernorm": 3.40166, "mlp_act": 5.58426, "add": 3.92203})),
}


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("gpu_vector_fit", ROOT / "tools" / "gpu_vector_fit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("gpu", sorted(TODAY_US))
def test_today_is_the_model_before_the_fit(tool, gpu):
    rows = load_gpu(gpu)
    old = tool.generic(load_arch(tool.GPUS[gpu]))
    for index, expected in TODAY_US[gpu]:
        got = {p.op: tool.device_s(tool.today_kernels(p), old) * 1e6 for p in tool.points([rows[index]])}
        assert got == pytest.approx(expected, rel=1e-5)


def test_after_prices_the_presets_kinds(tool):
    row = load_gpu("a100")[0]                     # Llama-2-70B, tp 1, 4096 tokens
    a100 = load_arch("gpu-a100-80gb")
    by_op = {p.op: p for p in tool.points([row])}
    act = by_op["mlp_act"]
    (kernel,) = act.kernels                       # silu-gate: gate and up in, one out
    assert kernel.kind == "silu-gate" and kernel.bytes == 3 * 4096 * 28672 * 2
    expected = kernel.bytes / (a100.vector_frac["silu-gate"] * a100.mem_bw_bytes_per_s) \
        + a100.vector_ramp_us["silu-gate"] * 1e-6
    assert tool.device_s(act.kernels, a100) == pytest.approx(expected)
    rope = by_op["attn_rope"].kernels             # q and k, each with its cos/sin rows
    assert [k.kind for k in rope] == ["rope", "rope"]
    assert rope[1].bytes == 2 * 4096 * 1024 * 2 + 4096 * 128 * 2


@pytest.fixture(scope="module")
def by_gpu(tool):
    return tool.split()


@pytest.mark.slow
def test_docs_carry_the_generated_tables(tool, by_gpu):
    presets = {p: load_arch(p) for p in tool.GPUS.values()}
    docs = (ROOT / "docs" / "validation.md").read_text()
    assert tool.params_table(presets) in docs
    assert tool.table(tool.error_table(by_gpu, presets)) in docs
    assert tool.not_adopted_table(by_gpu) in docs


@pytest.mark.slow
def test_a_refit_gives_the_presets_values_and_beats_today_held_out(tool, by_gpu):
    for preset, kinds in tool.fit(by_gpu).items():
        gpu = load_arch(preset)
        assert {k: (gpu.vector_frac[k], gpu.vector_ramp_us[k]) for k in kinds} == kinds
    errors = tool.error_table(by_gpu, {p: load_arch(p) for p in tool.GPUS.values()})
    for gpu, ops in errors.items():
        for op, (_, kind) in tool.OPS.items():
            held = ops[op]["held out"]
            if kind in tool.FITTED:
                assert held["after"]["mean_abs"] < 0.6 * held["today"]["mean_abs"], (gpu, op)
                assert held["after"]["mean_abs"] < 0.20, (gpu, op)
            else:
                assert held["after"] == held["today"], (gpu, op)
