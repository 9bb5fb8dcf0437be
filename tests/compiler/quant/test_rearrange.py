"""The KV cache's outlier-aware channel rearrangement (compiler/quant/rearrange.py): on a
fixture with outlier channels it lowers the KV quantisation error; it only ever reorders the
channels that share a block, and a token's channels read back in their own order."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.driver import token_feeds
from compiler.frontend import load_model
from compiler.phase import prefill
from compiler.quant import quantise
from compiler.quant.plan import KVWrite
from compiler.quant.rearrange import channel_order
from compiler.quant.recipe import tensor_quant
from compiler.quant.tensors import token_rows, write_kv
from compiler.reference import execute

FIXTURES = Path(__file__).parents[2] / "fixtures"
GPT2 = load_model(str(FIXTURES / "tiny-gpt2"))
TOKENS = json.loads((FIXTURES / "tiny-gpt2/tokens.json").read_text())["tokens"]
OUTLIERS = (3, 21, 40, 58)      # one channel of each head, in both blocks of 32


def with_outliers() -> dict[str, np.ndarray]:
    """The fixture with channels 3, 21, 40 and 58 of K and V 16 times larger in both layers
    (their columns of c_attn and their biases), as LLMs' K caches have a few large channels."""
    weights = dict(GPT2.weights)
    for layer in range(2):
        w, b = (np.array(weights[f"h.{layer}.attn.c_attn.{n}"]) for n in ("weight", "bias"))
        for first in (64, 128):                 # the K and the V columns
            w[:, [first + c for c in OUTLIERS]] *= 16
            b[[first + c for c in OUTLIERS]] *= 16
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


@pytest.mark.parametrize("spec, at_most", [("kv:bfp8", 0.5), ("kv:bfp4", 0.6), ("kv:int4:g16", 0.4)])
def test_rearranging_channels_lowers_the_kv_error_where_channels_are_outliers(spec, at_most):
    weights = with_outliers()
    plain, rearranged = channel_error(spec, weights), channel_error(f"{spec}:rearrange", weights)
    assert rearranged < at_most * plain, (plain, rearranged)


def test_the_order_puts_the_outliers_in_one_block():
    weights = with_outliers()
    q = quantise(GPT2, "kv:bfp8:rearrange", weights=weights, calibration=TOKENS[:12])
    assert set(q.kv_order) == {(layer, which) for layer in (0, 1) for which in "kv"}
    for order in q.kv_order.values():
        assert sorted(order) == list(range(64)) and set(order[-4:]) == set(OUTLIERS)


def test_channel_order_is_by_magnitude_smallest_first():
    rows = np.array([[[1.0, -8.0, 0.5, 2.0]], [[-3.0, 1.0, 0.25, 2.0]]])
    assert list(channel_order(rows)) == [2, 3, 0, 1]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1),
       fmt=st.sampled_from([("bfp8", None, 32), ("bfp4:b8", None, 8), ("mxfp4", None, 32), ("int4", 8, 8)]))
def test_an_order_within_blocks_changes_nothing_and_reads_back_in_place(seed, fmt):
    """Reordering channels inside their own blocks keeps every block's scale and elements;
    any order reads each channel back at its own position."""
    name, group, block = fmt
    rng = np.random.default_rng(seed)
    value = rng.standard_normal((1, 2, 3, 16)) * rng.choice([0.01, 1.0, 50.0], size=(1, 2, 1, 16))
    write = KVWrite(tensor_quant("kv", name, group=group), 0, "k", 2, 16)
    within = np.concatenate([start + rng.permutation(block) for start in range(0, 32, block)])
    assert np.array_equal(write_kv(value, write, within), write_kv(value, write))
    back = write_kv(value, write, rng.permutation(32))
    assert np.abs(back - value).max() <= np.abs(value).max() / 2     # each channel near itself
