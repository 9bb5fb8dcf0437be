"""The KV cache's outlier-aware channel rearrangement (compiler/quant/rearrange.py): one order
of head_dim per layer for K and for V, shared by every head (rotated pairs kept together where
the model applies RoPE); on a fixture with outlier channels it lowers the KV quantisation error
of blocks smaller than a head, cannot change a block of whole heads, and a token's channels
read back in their own order."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa.formats import dequantize, quantize

from compiler.driver import token_feeds
from compiler.frontend import load_model
from compiler.phase import prefill
from compiler.quant import quantise
from compiler.quant.plan import KVWrite, scale_group
from compiler.quant.rearrange import channel_order
from compiler.quant.recipe import tensor_quant
from compiler.quant.tensors import token_rows, write_kv
from compiler.reference import execute

FIXTURES = Path(__file__).parents[2] / "fixtures"
GPT2 = load_model(str(FIXTURES / "tiny-gpt2"))
TOKENS = json.loads((FIXTURES / "tiny-gpt2/tokens.json").read_text())["tokens"]
OUTLIERS = (3, 12)      # of each head of 16: one in each half, so in both blocks of 8


def with_outliers() -> dict[str, np.ndarray]:
    """The fixture with channels 3 and 12 of every head of K and V 16 times larger in both
    layers (their columns of c_attn and their biases), as LLMs' K caches have a few large
    channels, often at the same place in every head."""
    weights = dict(GPT2.weights)
    columns = [head * 16 + c for head in range(4) for c in OUTLIERS]
    for layer in range(2):
        w, b = (np.array(weights[f"h.{layer}.attn.c_attn.{n}"]) for n in ("weight", "bias"))
        for first in (64, 128):                 # the K and the V columns
            w[:, [first + c for c in columns]] *= 16
            b[[first + c for c in columns]] *= 16
        weights[f"h.{layer}.attn.c_attn.weight"], weights[f"h.{layer}.attn.c_attn.bias"] = w, b
    return weights


def channel_error(spec: str, weights: dict[str, np.ndarray]) -> float:
    """Mean over the KV channels of each one's RMS quantisation error over its RMS value, on
    all the fixture's tokens (the order was calibrated on the first half)."""
    q = quantise(GPT2, spec, weights=weights, calibration=TOKENS[:12])
    graph = GPT2.graph(prefill(len(TOKENS)))
    values = execute(graph, weights, token_feeds(np.asarray(TOKENS)), np.float64)
    hook = q.numerics(graph)
    errors = []
    for name in graph.outputs[1:]:
        exact = token_rows(values[name]).reshape(-1, 64)
        error = token_rows(hook.result(graph[name], values[name])).reshape(-1, 64) - exact
        errors.append(np.sqrt((error ** 2).mean(0) / (exact ** 2).mean(0)))
    return float(np.mean(errors))


@pytest.mark.parametrize("spec, at_most", [("kv:bfp8:b8", 0.7), ("kv:bfp4:b8", 0.7),
                                           ("kv:int4:g8", 0.7), ("kv:int4:g4", 0.7)])
def test_rearranging_channels_lowers_the_kv_error_where_channels_are_outliers(spec, at_most):
    """Blocks smaller than a head: each half of a head held an outlier; in the order both
    share the last block."""
    weights = with_outliers()
    plain, rearranged = channel_error(spec, weights), channel_error(f"{spec}:rearrange", weights)
    assert rearranged < at_most * plain, (plain, rearranged)


@pytest.mark.parametrize("spec", ["kv:bfp8", "kv:int4:g16", "kv:int8"])
def test_an_order_within_heads_leaves_blocks_of_whole_heads_alone(spec):
    """bfp8's blocks of 32 hold two of the fixture's heads of 16, g16 and per-head scales one:
    the order moves channels inside their blocks only, so every value is the same."""
    weights = with_outliers()
    assert channel_error(spec, weights) == channel_error(f"{spec}:rearrange", weights)


def test_the_order_puts_the_outliers_in_one_block():
    weights = with_outliers()
    q = quantise(GPT2, "kv:bfp8:b8:rearrange", weights=weights, calibration=TOKENS[:12])
    assert set(q.kv_order) == {(layer, which) for layer in (0, 1) for which in "kv"}
    for order in q.kv_order.values():
        assert sorted(order) == list(range(16)) and set(order[-2:]) == set(OUTLIERS)


def test_channel_order_is_by_magnitude_over_heads_and_tokens_smallest_first():
    values = np.array([[[[1.0, -8.0, 0.5, 2.0]], [[-3.0, 1.0, 0.25, 2.0]]]])   # [1, 2 heads, 1, 4]
    assert list(channel_order(values)) == [2, 3, 0, 1]
    assert list(channel_order(np.array([1.0, 2.0, 1.0, 0.5]))) == [3, 0, 2, 1]    # ties: lower first


def test_a_rotated_order_moves_each_pair_together():
    """Pairs (i, i + 2) ranked by the larger channel: pair 0 (max 8) after pair 1 (max 3)."""
    values = np.array([[1.0, 3.0, -8.0, 0.5], [0.5, -1.0, 2.0, 2.0]])
    assert list(channel_order(values, paired=True)) == [1, 0, 3, 2]


@pytest.mark.parametrize("fixture", ["tiny-llama3-tied", "tiny-qwen3"])
def test_a_rope_models_k_orders_keep_pairs_and_its_v_orders_need_not(fixture):
    model = load_model(str(FIXTURES / fixture))
    q = quantise(model, "kv:int4:g8:rearrange", calibration=list(range(3, 15)))
    d = model.config.head_dim_
    for (layer, which), order in q.kv_order.items():
        assert sorted(order) == list(range(d))
        if which == "k":
            assert np.array_equal(order[d // 2:], order[:d // 2] + d // 2)
    assert any(not np.array_equal(order[d // 2:], order[:d // 2] + d // 2)
               for (_, which), order in q.kv_order.items() if which == "v")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1),
       fmt=st.sampled_from([("bfp8", None, 32), ("bfp4:b8", None, 8), ("mxfp4", None, 32), ("int4", 8, 8)]))
def test_an_order_within_blocks_changes_nothing_and_reads_back_in_place(seed, fmt):
    """Reordering each head's channels inside their own blocks keeps every block's scale and
    elements; any order reads each channel back at its own position."""
    name, group, block = fmt
    rng = np.random.default_rng(seed)
    d = max(block, 16)
    value = rng.standard_normal((1, 2, 3, d)) * rng.choice([0.01, 1.0, 50.0], size=(1, 2, 1, d))
    write = KVWrite(tensor_quant("kv", name, group=group), 0, "k", 2, d)
    within = np.concatenate([start + rng.permutation(block) for start in range(0, d, block)])
    assert np.array_equal(write_kv(value, write, within), write_kv(value, write))
    order = rng.permutation(d)
    back = write_kv(value, write, order)
    assert np.abs(back - value).max() <= np.abs(value).max() / 2     # each channel near itself
    rows = token_rows(value[..., order])                             # the per-head permuted rows
    stored = dequantize(quantize(rows, write.quant.format,
                                 scale_group(write.quant, rows.shape[-1], d)))
    assert np.array_equal(token_rows(back[..., order]), stored)
