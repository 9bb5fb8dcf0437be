"""Reference executor: Hugging Face logits, decode with a KV cache, op semantics."""
import json

import numpy as np
import pytest

from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import Model, load_model
from compiler.frontend.gpt2 import GPT2Config
from compiler.ir import GraphError
from compiler.reference import gelu_tanh, softmax


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| — the project's logit tolerance measure."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("variant", ["tiny_hf", "tiny_hf_noprefix"])
def test_prefill_reproduces_hugging_face_logits(variant, request, tiny_hf):
    model = load_model(str(request.getfixturevalue(variant)))
    tokens = json.loads((tiny_hf / "tokens.json").read_text())["tokens"]
    expected = np.load(tiny_hf / "expected_logits.npy")
    assert relative_error(prefill_logits(model, tokens), expected) < 1e-4


def test_decode_reproduces_hugging_face_cached_logits(tiny_hf):
    model = load_model(str(tiny_hf))
    tokens = json.loads((tiny_hf / "tokens.json").read_text())["tokens"]
    expected = np.load(tiny_hf / "expected_decode_logits.npy")
    assert relative_error(decode_logits(model, tokens), expected) < 1e-4


@pytest.mark.parametrize("model", [
    Model("small", GPT2Config("small", n_layer=3, n_head=4, n_embd=32, vocab_size=97, n_positions=40), seed=3),
    pytest.param(load_model("gpt2"), marks=pytest.mark.slow),
], ids=lambda m: m.name)
def test_decode_with_kv_cache_equals_full_recompute(model):
    tokens = list(np.random.default_rng(5).integers(0, model.config.vocab_size, size=9))
    full = prefill_logits(model, tokens)
    step = decode_logits(model, tokens)
    np.testing.assert_allclose(step[0], full[-1], rtol=0, atol=1e-10 * np.abs(full).max())


def test_random_weights_are_reproducible_and_seeded():
    a, b, c = (load_model("gpt2", seed=s).weights for s in (0, 0, 1))
    np.testing.assert_array_equal(a["h.3.mlp.c_fc.weight"], b["h.3.mlp.c_fc.weight"])
    assert not np.array_equal(a["h.3.mlp.c_fc.weight"], c["h.3.mlp.c_fc.weight"])
    assert abs(a["h.0.ln_1.weight"].mean() - 1.0) < 0.01      # layer-norm gains near 1


def test_gelu_is_the_tanh_form():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(gelu_tanh(x), expected)


def test_causal_softmax_masks_the_future_with_an_offset():
    p = softmax(np.zeros((2, 5)), causal=True)          # 2 queries at positions 3 and 4
    np.testing.assert_allclose(p[0], [0.25] * 4 + [0.0])
    np.testing.assert_allclose(p[1], [0.2] * 5)


def test_token_out_of_vocab_is_rejected():
    with pytest.raises(GraphError, match="token id 50257 at position 1 is out of range for vocab size 50257"):
        prefill_logits(load_model("gpt2"), [1, 50257])
