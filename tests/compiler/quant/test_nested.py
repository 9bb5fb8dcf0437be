"""Bit-nested (matryoshka) expert weights (compiler/quant/nested.py): a b-bit read is the top b
bits of the W-bit codes, at the middle of the codes they stand for; reading every expert at W
bits is the plain W-bit recipe; fewer bits cost logits accuracy and read proportionally fewer
bytes; the width policies give each expert the width they say."""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa.formats import quantize
from compiler.driver import token_feeds
from compiler.frontend import load_model
from compiler.ir import OpKind
from compiler.phase import prefill
from compiler.quant import quantise, role_bytes
from compiler.quant.nested import nested_read, parse_expert_bits
from compiler.quant.recipe import RecipeError
from compiler.quant.report import run_logits
from compiler.reference import execute

MOE = load_model(str(Path(__file__).parents[2] / "fixtures" / "tiny-qwen3-moe"))
TOKENS = list(range(1, 13))


@settings(max_examples=80, deadline=None)
@given(st.integers(3, 8), st.data())
def test_a_b_bit_read_is_the_top_b_bits_at_the_middle_of_their_codes(width, data):
    bits = data.draw(st.integers(2, width))
    top = (1 << (width - 1)) - 1
    codes = np.array(data.draw(st.lists(st.integers(-top, top), min_size=1, max_size=40)))
    x = quantize(codes.astype(np.float64)[None, :], f"int{width}", codes.size)
    got = nested_read(x, width, bits).codes.astype(np.int64)
    k = width - bits
    u = x.codes.astype(np.int64) + (1 << (width - 1))            # offset binary, 1 .. 2^W - 1
    if k == 0:
        assert np.array_equal(got, x.codes)
    else:
        assert np.array_equal((got + (1 << (width - 1))) >> k, u >> k)   # the same top bits
        assert np.all(np.abs(got - x.codes) <= 1 << (k - 1))              # half a b-bit step
        assert np.all((got + (1 << (width - 1))) % (1 << k) == 1 << (k - 1))


def _errors(expert_bits: str) -> tuple[float, float]:
    plain = run_logits(MOE, TOKENS, np.float32, quantise(MOE, "w8a16"))
    q = quantise(MOE, "w8a16:nested", calibration=TOKENS, expert_bits=expert_bits)
    got = run_logits(MOE, TOKENS, np.float32, q)
    return (float(np.abs(got - plain).max() / np.abs(plain).max()),
            float(np.mean(got.argmax(-1) == plain.argmax(-1))))


def test_every_expert_at_the_stored_width_is_the_plain_recipe_and_fewer_bits_cost_accuracy():
    errors = {b: _errors(b) for b in ("8", "6", "4", "2")}
    assert errors["8"] == (0.0, 1.0)
    # measured on tiny-qwen3-moe (12 tokens, random weights): 0.031, 0.153, 0.425 of the largest
    # logit, top-1 agreement 12, 10, 7 of 12
    assert 0 < errors["6"][0] < errors["4"][0] < errors["2"][0]
    assert errors["6"][1] >= errors["4"][1] >= errors["2"][1]


def test_reading_fewer_bits_reads_proportionally_fewer_bytes():
    graph = MOE.graph(prefill(1))
    q = quantise(MOE, "w8a16:nested", calibration=TOKENS, expert_bits="4")
    b = role_bytes(graph, q.plan(graph), q.weights.widths)
    experts = [p for p in graph.params if ".experts." in p.name]
    assert experts and set(q.weights.widths) == {p.name for p in experts}
    # each expert weight: one fp16 scale per output channel of K input channels
    saved = sum(Fraction(p.type.numel * (8 - 4), 8) for p in experts)
    assert Fraction(b.weights) - Fraction(b.weights_read) == saved
    whole = role_bytes(graph, q.plan(graph))
    assert whole.weights_read == whole.weights == b.weights


def test_the_hot_policy_reads_the_most_routed_experts_of_each_layer_wider():
    q = quantise(MOE, "w8a16:nested", calibration=TOKENS, expert_bits="hot:2:8:3")
    graph = MOE.graph(prefill(len(TOKENS)))
    choices: dict = {}
    execute(graph, MOE.weights, token_feeds(np.array(TOKENS)), np.float64, choices)
    for op in graph.of_kind(OpKind.MOE):
        counts = np.bincount(choices[op.name].ravel(), minlength=8)
        hot = set(np.argsort(-counts, kind="stable")[:2].tolist())
        for i, name in enumerate(op.inputs[2:]):
            assert q.weights.widths[name] == (8 if i // 3 in hot else 3), name


def test_a_per_expert_list_gives_each_expert_its_width():
    widths = "8,8,4,4,2,2,2,2"
    q = quantise(MOE, "w8a16:nested", calibration=TOKENS, expert_bits=widths)
    for name, bits in q.weights.widths.items():
        expert = int(name.split(".experts.")[1].split(".")[0])
        assert bits == int(widths.split(",")[expert])


@pytest.mark.parametrize("text, message", [
    ("0x4", "expected B (every expert), b0,b1,... (one width per expert) or hot:K:HI:LO"),
    ("hot:0:8:4", "at least one hot expert"),
    ("hot:2:8", "expected B"),
])
def test_a_malformed_policy_is_one_line(text, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        parse_expert_bits(text)


def test_a_hot_policy_needs_calibration_tokens_and_no_more_hot_experts_than_experts():
    with pytest.raises(RecipeError, match="give some"):
        quantise(MOE, "w8a16:nested", expert_bits="hot:2:8:4")
    with pytest.raises(RecipeError, match="9 hot experts of 8"):
        quantise(MOE, "w8a16:nested", calibration=TOKENS, expert_bits="hot:9:8:4")
