"""The reference executor's quantised mode (compiler/quant/model.py, tensors.py, weights.py):
weights stored as codes and scales and read back, matmul inputs and KV writes rounded where and
in the order docs/formats.md states (checked here against formulas written out independently
of isa.formats), and the default path untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compiler.driver import decode_logits, prefill_logits, token_feeds
from compiler.frontend import load_model
from compiler.phase import prefill
from compiler.quant import Recipe, quantise
from compiler.quant.model import QuantNumerics
from compiler.quant.plan import WeightUse
from compiler.quant.recipe import tensor_quant
from compiler.quant.tensors import store_weight
from compiler.reference import execute

FIXTURES = Path(__file__).parents[2] / "fixtures"
GPT2 = load_model(str(FIXTURES / "tiny-gpt2"))
TOKENS = json.loads((FIXTURES / "tiny-gpt2/tokens.json").read_text())["tokens"]


class Recording(QuantNumerics):
    """QuantNumerics that keeps, per op, the operands it handed on, the value the op made and
    the value it handed on."""

    def __init__(self, inner: QuantNumerics) -> None:
        super().__init__(inner.plan, inner._kv_order)
        self.seen: dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray]] = {}

    def operands(self, op, args):
        self.seen[op.name] = (super().operands(op, args), None, None)
        return self.seen[op.name][0]

    def result(self, op, value):
        out = super().result(op, value)
        self.seen[op.name] = (self.seen[op.name][0], value, out)
        return out


def record(recipe: str, tokens=TOKENS) -> tuple[Recording, dict[str, np.ndarray]]:
    q = quantise(GPT2, recipe)
    graph = GPT2.graph(prefill(len(tokens)))
    hook = Recording(q.numerics(graph))
    return hook, execute(graph, q.weights, token_feeds(np.asarray(tokens)), np.float32, numerics=hook)


def test_a_recipe_that_quantises_nothing_changes_no_bit():
    q = quantise(GPT2, Recipe("none"))
    assert np.array_equal(prefill_logits(GPT2, TOKENS, np.float32, q), prefill_logits(GPT2, TOKENS, np.float32))
    assert np.array_equal(decode_logits(GPT2, TOKENS, np.float32, q), decode_logits(GPT2, TOKENS, np.float32))


def test_weights_are_stored_as_codes_and_scales_and_the_rest_passes_through():
    q = quantise(GPT2, "w4a16:g32")
    stored = q.weights.stored["h.0.attn.c_attn.weight"]           # [in 64, out 192]
    assert stored.swapped and stored.quantized.codes.shape == (192, 64)
    assert stored.quantized.codes.dtype == np.int8 and np.abs(stored.quantized.codes).max() == 7
    assert stored.quantized.scales.shape == (192, 2)              # a scale per 32 input channels
    w = np.asarray(GPT2.weights["h.0.attn.c_attn.weight"], np.float64)
    scales = stored.quantized.scales
    blocks = w.T.reshape(192, 2, 32)
    assert np.array_equal(scales, (np.abs(blocks).max(-1) / 7).astype(np.float16).astype(np.float64))
    codes = np.clip(np.rint(blocks / scales[..., None]), -7, 7)
    assert np.array_equal(q.weights["h.0.attn.c_attn.weight"], (codes * scales[..., None]).reshape(192, 64).T)
    for kept in ("wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.bias", "ln_f.bias"):
        assert kept not in q.weights.stored
        assert np.array_equal(q.weights[kept], GPT2.weights[kept])
    assert len(q.weights) == len(GPT2.weights) and set(q.weights) == set(GPT2.weights)


def test_a_matmul_input_is_read_per_token_in_its_format():
    """int8 per token: scale = fp16(max |row| / 127), code = rint(x / scale), value =
    code x scale in float64, rounded once to float32."""
    hook, _ = record("w8a8")
    x = hook.seen["h.0.ln_1"][2].astype(np.float64)
    read = hook.seen["h.0.attn.c_attn"][0][0]
    assert read.dtype == np.float32
    scale = (np.abs(x).max(-1, keepdims=True) / 127).astype(np.float16).astype(np.float64)
    assert np.array_equal(read, (np.clip(np.rint(x / scale), -127, 127) * scale).astype(np.float32))
    assert np.array_equal(hook.seen["lm_head"][0][0], hook.seen["ln_f"][2])    # the LM head is kept


def test_the_kv_cache_is_written_in_its_format():
    """bfp8: each token's 64 channels (4 heads x 16, head-major) in blocks of 32 sharing
    2^(floor(log2 max |x|) - 6), mantissas rint(x / 2^e) within +-127."""
    hook, outputs = record("kv:bfp8")
    _, before, stored = hook.seen["h.1.attn.k.heads"]
    before = before.astype(np.float64)
    assert np.array_equal(outputs["h.1.attn.k.heads"], stored)    # the prefill hands on what it stored
    rows = before.transpose(0, 2, 1, 3).reshape(1, len(TOKENS), 2, 32)
    step = 2.0 ** (np.floor(np.log2(np.abs(rows).max(-1, keepdims=True))) - 6)
    expect = (np.clip(np.rint(rows / step), -127, 127) * step).reshape(1, len(TOKENS), 4, 16)
    assert np.array_equal(stored, expect.transpose(0, 2, 1, 3).astype(np.float32))
    assert not np.array_equal(stored, before.astype(np.float32))


def test_a_decode_step_reads_the_cache_as_stored_and_writes_its_own_token_alike():
    """Per-token formats give a token the same values whether it is decoded against the cache
    or is the last of a prefill."""
    q = quantise(GPT2, "w4a8:g32+kv:int4")
    full = prefill_logits(GPT2, TOKENS, np.float64, q)[-1]
    step = decode_logits(GPT2, TOKENS, np.float64, q)[0]
    assert np.allclose(step, full, rtol=0, atol=1e-12)
    assert not np.allclose(step, decode_logits(GPT2, TOKENS, np.float64), rtol=0, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(w=hnp.arrays(np.float64, (8, 12), elements=st.floats(-4, 4).map(lambda v: v if abs(v) > 1e-3 else 0.0)),
       bits=st.integers(2, 8), group=st.sampled_from([None, 1, 2, 4, 8]),
       last=st.booleans())
@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_stored_weights_read_back_and_store_again_to_the_same_codes(w, bits, group, last):
    """What a weight reads back as is a fixed point of storing (codes and fp16 scales; values
    near 0 are 0 here, so that no group's scale underflows fp16)."""
    if group is not None and (w.shape[-1] if last else w.shape[-2]) % group:
        return
    use = WeightUse(tensor_quant("weights", f"int{bits}", group=group), last, "weights")
    once = store_weight(w, use)
    again = store_weight(once.values(), use)
    assert np.array_equal(again.quantized.codes, once.quantized.codes)
    assert np.array_equal(again.quantized.scales, once.quantized.scales)
    assert np.array_equal(again.values(), once.values())


@pytest.mark.parametrize("spec", ["w8a8", "fp8", "mxfp4", "kv:bfp8"])
def test_quantised_runs_are_deterministic(spec):
    q = quantise(GPT2, spec)
    assert np.array_equal(prefill_logits(GPT2, TOKENS, np.float32, q), prefill_logits(GPT2, TOKENS, np.float32, q))
