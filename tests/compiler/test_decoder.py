"""The Llama-family graph and the new ops' reference numerics, against independent formulas."""
import dataclasses
import math

import numpy as np
import pytest

from compiler.builder import GraphBuilder
from compiler.cost import graph_cost
from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import Model
from compiler.frontend.decoder import PRESETS, DecoderConfig, build_graph
from compiler.ir import DType, GraphError, OpKind
from compiler.phase import decode, prefill
from compiler.reference import attention_mask, execute, rope_frequencies
from compiler.verify import verify
from tests.families.tiny import TINY

PUBLISHED = {   # ../shared/reference/models.md: total and, for MoE, active per token
    "llama-3.2-1b": 1_235_814_400, "llama-3.2-3b": 3_212_749_824, "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496, "mistral-7b": 7_241_732_096, "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-7b": 7_615_616_512, "qwen3-8b": 8_190_735_360, "mixtral-8x7b": 46_702_792_704,
    "qwen3-30b-a3b": 30_532_122_624,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_count_is_published_and_equals_its_graph(name):
    config = PRESETS[name]
    assert config.n_params == PUBLISHED[name]
    one = dataclasses.replace(config, num_hidden_layers=1)
    graph = build_graph(one, prefill(1))
    per_layer = sum(p.type.numel for p in graph.params if p.name.startswith("layers."))
    rest = sum(p.type.numel for p in graph.params) - per_layer
    assert rest + config.num_hidden_layers * per_layer == config.n_params


def test_active_parameters_count_only_the_chosen_experts():
    assert PRESETS["mixtral-8x7b"].active_params == 12_879_925_248      # "13B active"
    assert round(PRESETS["qwen3-30b-a3b"].active_params / 1e9, 2) == 3.35
    assert PRESETS["llama-3.1-8b"].active_params == PRESETS["llama-3.1-8b"].n_params


def test_kv_bytes_per_token_of_llama_3_1_8b():
    assert PRESETS["llama-3.1-8b"].kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072


def test_the_kv_cache_holds_each_kv_head_once():
    c = TINY["tiny-llama3"]
    graph = verify(build_graph(c, decode(5, batch=2)))
    cache = graph["layers.0.k_cache"].type.shape
    assert cache == (2, c.num_key_value_heads, 5, c.head_dim_)
    scores = graph["layers.0.self_attn.scores"].type.shape
    assert scores == (2, c.num_key_value_heads, c.group, 1, 6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_decode_against_a_cache_equals_the_last_prefill_row(name):
    model = Model(name, TINY[name])
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    np.testing.assert_allclose(decode_logits(model, tokens)[0], prefill_logits(model, tokens)[-1],
                               rtol=0, atol=1e-12)


def test_flops_of_a_dense_decoder_match_the_analytic_count():
    c, (B, S) = TINY["tiny-qwen3"], (2, 7)
    D, H, Hkv, Dh, F, V = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim_, c.intermediate_size, c.vocab_size
    T = B * S
    attn = 2 * T * D * (H + 2 * Hkv) * Dh + 2 * T * H * Dh * D + 2 * (2 * B * H * S * S * Dh)
    vector = (4 * T * D * 2 + 4 * T * (H + Hkv) * Dh           # rmsnorms (2 per block, q/k norms)
              + 3 * T * (H + Hkv) * Dh + 5 * B * H * S * S      # rope, softmax
              + 4 * T * F + T * F + 2 * T * D)                  # silu, gate product, residuals
    mlp = 3 * 2 * T * D * F
    expected = c.num_hidden_layers * (attn + vector + mlp) + 4 * T * D + 2 * T * D * V
    assert graph_cost(build_graph(c, prefill(S, batch=B))).total_flops == expected


def test_rope_frequencies_follow_llama3_scaling_by_band():
    inv = rope_frequencies(128, 5e5)
    scaled = rope_frequencies(128, 5e5, 8.0, 1.0, 4.0, 8192)
    wavelen = 2 * math.pi / inv
    high = wavelen < 8192 / 4          # short wavelengths: unchanged
    low = wavelen > 8192 / 1           # long: divided by the factor
    np.testing.assert_array_equal(scaled[high], inv[high])
    np.testing.assert_allclose(scaled[low], inv[low] / 8.0, rtol=1e-15)
    mid = ~high & ~low
    assert mid.any() and np.all(scaled[mid] < inv[mid]) and np.all(scaled[mid] > inv[mid] / 8.0)


def test_rope_rotates_pairs_by_position_and_keeps_norms():
    g = GraphBuilder("r")
    x = g.input("x", (3, 5, 8))
    g.op(OpKind.ROPE, "y", [x], theta=10000.0, start=4)
    graph = g.build(["y"])
    values = np.random.default_rng(1).standard_normal((3, 5, 8))
    y = execute(graph, {}, {"x": values})["y"]
    pair_norm = lambda a: a[..., :4] ** 2 + a[..., 4:] ** 2
    np.testing.assert_allclose(pair_norm(y), pair_norm(values), rtol=1e-12)
    angle = 6 * 10000.0 ** (-2 * 1 / 8)            # row 2 is position 6, pair 1
    c, s = math.cos(angle), math.sin(angle)
    x1, x2 = values[0, 2, 1], values[0, 2, 5]
    assert y[0, 2, 1] == pytest.approx(x1 * c - x2 * s) and y[0, 2, 5] == pytest.approx(x2 * c + x1 * s)


def test_rope_with_pairs_rotates_permuted_channels_as_their_own_pairs():
    """`pairs` = sigma rotates pair i by frequency sigma[i]: the rope of x[..., perm] with
    perm = [sigma, sigma + d/2] is the rope of x, permuted (compiler/passes/kv_fold.py)."""
    sigma = [2, 0, 3, 1]
    perm = sigma + [i + 4 for i in sigma]
    g = GraphBuilder("r")
    x = g.input("x", (3, 5, 8))
    g.op(OpKind.ROPE, "y", [x], theta=10000.0, start=4)
    g.op(OpKind.ROPE, "z", [x], theta=10000.0, start=4, pairs=sigma)
    values = np.random.default_rng(2).standard_normal((3, 5, 8))
    y = execute(g.build(["y"]), {}, {"x": values})["y"]
    z = execute(g.build(["z"]), {}, {"x": values[..., perm]})["z"]
    np.testing.assert_allclose(z, y[..., perm], rtol=1e-12, atol=1e-15)


def test_sliding_window_hides_keys_a_window_back():
    hidden = attention_mask(3, 6, window=2)         # queries at 3, 4, 5
    assert hidden.tolist() == [[True, True, False, False, True, True],
                               [True, True, True, False, False, True],
                               [True, True, True, True, False, False]]


def test_moe_op_refuses_mismatched_experts_and_top_k():
    g = GraphBuilder("m")
    x, logits = g.input("x", (4, 8)), g.input("l", (4, 2))
    w = [g.param(n, s) for n, s in (("g0", (8, 6)), ("u0", (8, 6)), ("d0", (6, 8)),
                                     ("g1", (8, 6)), ("u1", (8, 6)), ("d1", (8, 6)))]
    with pytest.raises(GraphError, match=r"expert 1: .* must be \[8, 6\], \[8, 6\], \[6, 8\]"):
        g.op(OpKind.MOE, "m", [x, logits, *w], top_k=1)
    with pytest.raises(GraphError, match="top_k 3 must be from 1 to the 2 experts"):
        g.op(OpKind.MOE, "m2", [x, logits, *w[:3], *w[:3]], top_k=3)


def test_grouped_matmul_broadcasts_only_size_one_batches():
    g = GraphBuilder("q")
    q, k = g.input("q", (1, 2, 3, 4, 8)), g.input("k", (1, 2, 1, 6, 8))
    assert g.type_of(g.op(OpKind.MATMUL, "s", [q, k], transpose_b=True)).shape == (1, 2, 3, 4, 6)
    bad = g.input("k2", (1, 2, 2, 6, 8))
    with pytest.raises(GraphError, match="batch dimensions differ"):
        g.op(OpKind.MATMUL, "s2", [q, bad], transpose_b=True)


def test_inconsistent_head_counts_name_the_fields():
    with pytest.raises(GraphError, match="num_attention_heads 6 is not a multiple of num_key_value_heads 4"):
        DecoderConfig("x", "llama", 10, 48, 64, 1, 6, 4)


def test_context_limit_is_enforced():
    with pytest.raises(GraphError, match="exceed the context of 256"):
        build_graph(TINY["tiny-llama3"], prefill(257))


@pytest.mark.parametrize("kind, attrs, message", [
    (OpKind.ROPE, dict(theta=1e4, start=0, factor=8.0), "llama3 frequency scaling needs 'low_freq_factor' too"),
    (OpKind.ROPE, dict(theta=1e4, start=0, factor=8.0, low_freq_factor=4.0, high_freq_factor=1.0,
                       original_max_position=64), "high_freq_factor must exceed low_freq_factor"),
    (OpKind.ROPE, dict(theta=1.0, start=0), "attribute 'theta' must be a finite number above 1"),
    (OpKind.ROPE, dict(theta=1e4), "missing attribute 'start'"),
    (OpKind.ROPE, dict(theta=1e4, start=0, pairs=[0, 1, 1, 3]),
     r"attribute 'pairs' must order the 4 rotated pairs of head_dim 8 \(each of 0..3 once\), got \[0, 1, 1, 3\]"),
    (OpKind.ROPE, dict(theta=1e4, start=0, pairs=[0, 1]), "attribute 'pairs' must order the 4 rotated pairs"),
    (OpKind.ROPE, dict(theta=1e4, start=0, pairs=1.5), "attribute 'pairs' must be a list of integers"),
    (OpKind.SOFTMAX, dict(window=4), "a sliding window needs causal=true"),
    (OpKind.SOFTMAX, dict(causal=True, window=0), "attribute 'window' must be a positive integer"),
])
def test_new_op_attributes_are_honoured_or_refused(kind, attrs, message):
    g = GraphBuilder("a")
    x = g.input("x", (2, 6, 8))
    with pytest.raises(GraphError, match=message):
        g.op(kind, "y", [x], **attrs)


def test_concat_refuses_mismatched_inputs():
    g = GraphBuilder("c")
    a, b = g.input("a", (2, 8)), g.input("b", (3, 4))
    with pytest.raises(GraphError, match="cannot concatenate"):
        g.op(OpKind.CONCAT, "y", [a, b], axis=0)
