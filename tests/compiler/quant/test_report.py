"""Per-recipe reports (compiler/quant/report.py): the logits error of every named recipe on the
GPT-2 and Llama fixtures within the tolerance docs/formats.md documents, with the top-1
agreement measured there, and bytes by role exactly as the formats' widths and scales predict."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from compiler.frontend import load_model
from compiler.phase import prefill
from compiler.quant import named_recipe, plan, recipe_reports, render, role_bytes

FIXTURES = Path(__file__).parents[2] / "fixtures"
MODELS = {name: load_model(str(FIXTURES / name)) for name in ("tiny-gpt2", "tiny-llama-sharded")}
TOKENS = {name: json.loads((FIXTURES / name / "tokens.json").read_text())["tokens"] for name in MODELS}
WEIGHTS = {name: dict(model.weights) for name, model in MODELS.items()}   # read once, not per run
# recipe -> per fixture (GPT-2, Llama): (tolerance on max |error| / max |logit|, positions whose
# top-1 token agrees with the fp32 reference, of 24 and 13). Tolerance: 1.25 x the measured
# error, rounded up to two significant digits (docs/formats.md has the measured figures).
TOLERANCES = {
    "w8a8": ((0.0038, 24), (0.03, 13)),
    "w4a16": ((0.055, 22), (0.33, 11)),
    "w4a16:g32": ((0.049, 23), (0.35, 10)),
    "w4a8": ((0.055, 22), (0.33, 11)),
    "w4a8:g32": ((0.048, 23), (0.36, 10)),
    "w4a4kv4": ((0.084, 21), (0.55, 8)),
    "fp8": ((0.016, 23), (0.15, 10)),
    "mxfp4": ((0.074, 23), (0.57, 7)),
    "kv:bfp8": ((0.0012, 24), (0.015, 13)),
    "kv:int8": ((0.0011, 24), (0.008, 12)),
    "kv:int4": ((0.02, 24), (0.18, 10)),
    "kv:mxfp8_e4m3": ((0.0071, 24), (0.055, 13)),
    "w8a8+kv:int8": ((0.0037, 24), (0.033, 13)),
    "w4a8:g32+kv:bfp8": ((0.047, 23), (0.36, 10)),
}


@pytest.mark.parametrize("fixture", [0, 1], ids=list(MODELS))
@pytest.mark.parametrize("recipe", TOLERANCES)
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_every_recipe_within_its_tolerance_and_top1_agreement(recipe, fixture):
    name = list(MODELS)[fixture]
    tolerance, agree = TOLERANCES[recipe][fixture]
    (report,) = recipe_reports(MODELS[name], [recipe], TOKENS[name], weights=WEIGHTS[name])
    assert report.positions == len(TOKENS[name])
    # within the tolerance, and not so far below it that the recipe stopped rounding anything
    assert tolerance / 2 < report.relative_error <= tolerance, report
    assert round(report.top1_agreement * report.positions) >= agree, report


def test_w4a16_g128_weights_take_4_125_over_16_of_bf16s_bytes():
    """On GPT-2 (124M: every input dimension is a multiple of 128), from the report's bytes."""
    graph = load_model("gpt2").graph(prefill(1))
    b = role_bytes(graph, plan(graph, named_recipe("w4a16:g128"), 12))
    assert Fraction(b.weights) / Fraction(b.weights_bf16) == Fraction(4 * 128 + 16, 128 * 16)
    assert b.weights_bf16 == 2 * 12 * (3 * 768 * 768 + 768 * 768 + 2 * 768 * 3072)
    assert b.kv_per_token == b.kv_per_token_bf16 == 12 * 2 * 768 * 2
    assert b.activations_per_token == b.activations_per_token_bf16


@pytest.mark.parametrize("recipe, kv_bits, act", [
    ("kv:bfp8", 8 + 8 / 32, None),             # blocks of 32 share an 8-bit exponent
    ("kv:mxfp8_e4m3", 8 + 8 / 32, None),
    ("kv:int4", 4 + 16 / 16, None),            # an fp16 scale per head (16 channels) and token
    ("w8a8", 16, (8, 16)),                     # an fp16 scale per token
    ("fp8", 16, (8, 32)),                      # one fp32 scale per tensor: a token's, here
])
def test_kv_and_activation_bytes_per_token(recipe, kv_bits, act):
    graph = MODELS["tiny-gpt2"].graph(prefill(1))
    b = role_bytes(graph, plan(graph, named_recipe(recipe), 2))
    assert b.kv_per_token == 2 * 2 * 64 * kv_bits / 8 and b.kv_per_token_bf16 == 2 * 2 * 64 * 2
    head = 64 * 2                               # the LM head's input, kept in BF16
    inputs = (64, 64, 64, 256) * 2              # c_attn, attn.c_proj, c_fc, mlp.c_proj per layer
    assert b.activations_per_token_bf16 == head + sum(inputs) * 2
    if act is None:
        assert b.activations_per_token == b.activations_per_token_bf16
    else:
        element, scale = act
        assert b.activations_per_token == head + sum((c * element + scale) / 8 for c in inputs)


def test_kv_bfp8_halves_the_kv_cache_but_for_its_exponents():
    graph = MODELS["tiny-llama-sharded"].graph(prefill(1))
    b = role_bytes(graph, plan(graph, named_recipe("kv:bfp8"), 2))
    assert b.kv_per_token / b.kv_per_token_bf16 == 8.25 / 16


def test_the_report_renders_one_row_per_recipe():
    reports = recipe_reports(MODELS["tiny-gpt2"], ["w8a8", "kv:bfp8"], TOKENS["tiny-gpt2"])
    text = render(reports)
    assert text.splitlines()[0].split()[:3] == ["recipe", "max", "abs"]
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["w8a8", "kv:bfp8"]
    assert reports[1].as_dict()["bytes"]["kv_per_token"] == 2 * 2 * 64 * 8.25 / 8
    assert np.isfinite([r.max_abs_error for r in reports]).all()
