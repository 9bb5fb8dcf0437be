"""The GPU baseline's attention as a user runs it (tessel/gpu_kernels.py, --gpu-attention):
unfused = scores GEMM, softmax, context GEMM; fused = one FlashAttention-style kernel that
reads Q, K, V and writes O once. Mechanisms, the datasheet floor, and one-line refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from arch import load_arch, preset_names
from compiler.frontend import PRESETS, build_graph
from compiler.phase import decode, prefill
from compiler.reference import attention_mask
from sim.gpu import Kernel, floor_s, kernel_time
from tessel.gpu_kernels import HALF_BYTES, graph_kernels, model_kernels, pass_cost, visible_pairs
from tests.bad_input import refuses
from tests.families.tiny import TINY

A100 = load_arch("gpu-a100-80gb")
GPUS = [load_arch(p) for p in preset_names() if p.startswith("gpu-")]
LLAMA = PRESETS["llama-3.1-8b"]            # 32 query heads over 8 KV heads of 128
UNFUSED = ("self_attn.scores", "self_attn.probs", "self_attn.context")


def block(phase, attention: str) -> dict[str, Kernel]:
    return {k.name.removeprefix("layers.0."): k for k in model_kernels(LLAMA, phase, attention)
            if k.name.startswith("layers.0.")}


@pytest.mark.parametrize("s, t, window", [(5, 5, None), (3, 9, None), (1, 9, None), (7, 7, 3),
                                          (4, 12, 6), (1, 12, 6), (6, 6, 10)])
def test_visible_pairs_are_the_masks_unmasked_entries(s, t, window):
    assert visible_pairs(s, t, True, window) == int((~attention_mask(s, t, window)).sum())
    assert visible_pairs(s, t, False, None) == s * t


def test_fused_prefill_moves_no_scores_and_skips_the_masked_half():
    unfused, fused = block(prefill(2048), "unfused"), block(prefill(2048), "fused")
    one = fused["self_attn.attention"]
    assert all(name not in fused for name in UNFUSED) and one.kind == "attention"
    heads, kv_heads, s, d = 32, 8, 2048, 128
    q_o, k_v = 2 * heads * s * d * HALF_BYTES, 2 * kv_heads * s * d * HALF_BYTES
    assert one.bytes == q_o + k_v                  # Q, K, V read once, O written once
    scores = heads * s * s * HALF_BYTES            # one S x S matrix per query head
    moved = sum(unfused[n].bytes for n in UNFUSED)
    assert moved - one.bytes >= 4 * scores         # scores written, softmax in and out, read
    both = unfused["self_attn.scores"].flops + unfused["self_attn.context"].flops
    assert one.flops == round(both * (s + 1) / (2 * s))          # causal: the lower triangle
    t_unfused = sum(kernel_time(unfused[n], A100, "graph").time_s for n in UNFUSED)
    timed = kernel_time(one, A100, "graph")
    assert timed.bound == "compute" and timed.time_s < t_unfused / 3


def test_fused_decode_at_long_kv_is_bound_by_the_kv_cache():
    unfused, fused = block(decode(8192), "unfused"), block(decode(8192), "fused")
    one, kv = fused["self_attn.attention"], 2 * 8 * 8193 * 128 * HALF_BYTES
    assert kv < one.bytes < 1.01 * kv              # the cache is nearly all it moves
    timed = kernel_time(one, A100, "graph")
    assert timed.bound == "memory" and timed.memory_s >= kv / A100.mem_bw_bytes_per_s
    moved = sum(unfused[n].bytes for n in UNFUSED)
    assert one.bytes < moved < 1.1 * one.bytes     # unfused reads the cache once too: no S x T to save
    t_unfused = sum(kernel_time(unfused[n], A100, "graph").time_s for n in UNFUSED)
    assert 0.5 * t_unfused < timed.time_s < t_unfused      # two launches and ramps fewer


def test_fused_is_faster_on_a_whole_pass_and_unfused_is_the_default():
    for phase in (prefill(2048), decode(8192)):
        assert pass_cost(LLAMA, phase, A100, "graph", "fused")[0] < pass_cost(LLAMA, phase, A100, "graph")[0]
    assert model_kernels(LLAMA, decode(128)) == model_kernels(LLAMA, decode(128), "unfused")


def test_sliding_window_and_gqa_of_a_tiny_mistral():
    graph = build_graph(TINY["tiny-mistral"], prefill(12))        # window 6, one KV head
    unfused = {k.name: k for k in graph_kernels(graph)}
    fused = {k.name: k for k in graph_kernels(graph, attention="fused")}
    one = fused["layers.0.self_attn.attention"]
    both = unfused["layers.0.self_attn.scores"].flops + unfused["layers.0.self_attn.context"].flops
    assert one.flops == round(both * visible_pairs(12, 12, True, 6) / 144)
    assert (one.m, one.batch) == (4 * 12, 1)      # four query heads share the one KV head
    assert len(fused) == len(unfused) - 2 * TINY["tiny-mistral"].n_layer


@settings(max_examples=60, deadline=None)
@given(s=st.integers(1, 32768), extra=st.integers(0, 131072), d=st.sampled_from([64, 128, 256]),
       kv_heads=st.integers(1, 64), group=st.sampled_from([1, 2, 4, 8]), batch=st.integers(1, 16),
       causal=st.booleans(), gpu=st.sampled_from(GPUS))
def test_fused_attention_never_beats_the_datasheet_floor(s, extra, d, kv_heads, group, batch, causal, gpu):
    t = s + extra
    pairs = visible_pairs(s, t, causal, None)
    assert s <= pairs <= s * t
    heads = batch * kv_heads * group
    kernel = Kernel("attention", "attention", 4 * heads * pairs * d,
                    HALF_BYTES * (2 * heads * s * d + 2 * batch * kv_heads * t * d),
                    m=group * s, n=d, k=t, batch=batch * kv_heads)
    timed = kernel_time(kernel, gpu, "graph")
    assert timed.time_s - timed.overhead_s >= floor_s(kernel, gpu) > 0
    assert 0 < timed.utilization <= 1


SIM = ["sim", "--model", "gpt2", "--phase", "decode", "--kv", "16", "--no-functional"]


@pytest.mark.parametrize("argv, message", [
    (SIM + ["--gpu", "none", "--gpu-attention", "fused"],
     r"--gpu-attention fused: no GPU to run it on \(--gpu none\)$"),
    (SIM + ["--gpu", "a100-80gb", "--gpu-quant", "w8a8", "--gpu-attention", "fused"],
     r"--gpu-attention fused: not with --gpu-quant \(the fused kernel is priced in fp16"),
    (["compare", "--model", "gpt2", "--quant", "none,w8a8", "--gpu-attention", "fused"],
     r"--gpu-attention: not with --quant"),
    (["compare", "--model", "gpt2", "--nodes", "pim-cxl-32", "--gpu-attention", "fused"],
     r"--gpu-attention: no GPU node among pim-cxl-32 to run it on$"),
    (["sim", "p.tbin", "--gpu-attention", "fused"], r"--gpu-attention: only with --model"),
])
def test_refused_in_one_line_where_it_does_not_apply(capsys, argv, message):
    refuses(capsys, argv, message)


@pytest.mark.slow
def test_sim_reports_the_fused_gpu_and_keeps_the_default_json(capsys, tmp_path):
    from tessel.cli import main
    base = SIM + ["--gpu", "a100-80gb"]
    times = {}
    for attention in ("unfused", "fused"):
        out = tmp_path / f"{attention}.json"
        assert main(base + ["--gpu-attention", attention, "--json", str(out)]) == 0
        text = capsys.readouterr().out
        assert ("GPU baselines (same graph in fp16, attention fused," in text) == (attention == "fused")
        gpu = json.loads(out.read_text())["gpu"]["gpu-a100-80gb"]
        assert gpu.get("attention", "unfused") == attention and ("attention" in gpu) == (attention == "fused")
        times[attention] = gpu["time_s"]
    assert np.isclose(times["unfused"], pass_cost(PRESETS["gpt2"], decode(16), A100, "graph")[0])
    assert times["fused"] < times["unfused"]
