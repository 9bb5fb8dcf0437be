"""The Llama families on the PIM target end to end: every tiny config's BF16 logits against
the reference (prefill 10, decode kv 9), the attention and MoE values inside the program,
long grouped-query attention, and a model too large for the preset."""
import subprocess
import sys

import numpy as np
import pytest

from arch import load_arch
from compiler.frontend import Model
from compiler.frontend.decoder import DecoderConfig, RopeScaling
from compiler.ir import Graph
from compiler.passes.routing import Routing, route_graph, routing_feeds
from compiler.phase import decode, prefill
from compiler.reference import execute
from compiler.targets.data import read_value
from tessel.driver import compile_model_graph, model_feeds, run
from tessel.request import default_tokens, make_request
from tessel.targets import TARGETS
from tests.compiler.targets.pim_attention import attention_error, attention_graph
from tests.families.tiny import TINY

pytestmark = pytest.mark.slow   # end-to-end: compiles and simulates whole models

BF16_TOLERANCE = 3e-2          # docs/validation.md: bf16 storage, fp32 accumulation
PHASES = [prefill(10), decode(9)]


@pytest.mark.parametrize("phase", PHASES, ids=str)
@pytest.mark.parametrize("name", list(TINY))
def test_tiny_family_logits_match_reference(name, phase):
    outcome = run(make_request(Model(name, TINY[name]), "pim", load_arch("pim-gpt"), phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
    assert outcome.result.macs > 0


def _inside(name: str, phase, values: list[str], config: DecoderConfig | None = None) -> dict[str, float]:
    """Relative error of values inside the compiled program (read from simulated memory after
    the run) against the reference executor on the same routed graph and inputs."""
    model = Model(name, config or TINY[name])
    graph = model.graph(phase)
    feeds = model_feeds(model, phase, default_tokens(model, phase))
    choices: dict[str, np.ndarray] = {}
    execute(graph, model.weights, feeds, routing=choices)
    if choices:
        routing = Routing(choices, "router")
        feeds = {**feeds, **routing_feeds(graph, routing)}
        graph = route_graph(graph, routing)
    arch = load_arch("pim-gpt")
    lowered = compile_model_graph(model, graph, "pim", arch, feeds=feeds)
    sim = TARGETS["pim"].simulate(lowered.program, arch, functional=True)
    expected = execute(Graph(graph.name, graph.ops, values), model.weights, feeds)
    errors = {}
    for value in values:
        got = read_value(lambda s: sim.memory.read_symbol(lowered.program, s), lowered.plan, value)
        errors[value] = float(np.abs(got - expected[value]).max() / np.abs(expected[value]).max())
    return errors


@pytest.mark.parametrize("phase", PHASES, ids=str)
@pytest.mark.parametrize("name", ["tiny-llama3", "tiny-mistral", "tiny-qwen3"])
def test_grouped_query_attention_inside_the_program(name, phase):
    """Each layer's attention context (logits with small random weights barely depend on it)."""
    values = [f"layers.{i}.self_attn.context" for i in range(TINY[name].num_hidden_layers)]
    assert max(_inside(name, phase, values).values()) < BF16_TOLERANCE


@pytest.mark.parametrize("phase", PHASES, ids=str)
@pytest.mark.parametrize("name", ["tiny-mixtral", "tiny-qwen3-moe"])
def test_routed_experts_inside_the_program(name, phase):
    """The MoE block's output: gathers of computed values (picked probabilities, permuted
    tokens, unpermuted expert rows) read what the ops before them stored, the concat of the
    experts' outputs and the row-broadcast weighting, on the ASIC between expert GEMVs."""
    block = "block_sparse_moe" if TINY[name].family == "mixtral" else "mlp"
    values = [f"layers.{i}.{block}" for i in range(TINY[name].num_hidden_layers)]
    assert max(_inside(name, phase, values).values()) < BF16_TOLERANCE


@pytest.mark.parametrize("kv_heads, group, seq, cached, head_dim", [
    (2, 4, 257, 0, 64),      # prefill: the V cache in two chunks of 256 positions (gbuf / G)
    (2, 7, 1, 300, 64),      # decode: G = 7, chunks of 144 positions
    (2, 8, 1, 1000, 64),     # decode: a softmax row of 16 x 1001 bf16 takes both GEMV inputs
    (16, 8, 130, 0, 16),     # prefill, 128 query rows x 130 positions: attention in pieces (K: one
                             # lane group each; V: 64-position ranges in 128-position chunks)
])
def test_long_grouped_query_attention(kv_heads, group, seq, cached, head_dim):
    assert attention_error(attention_graph(kv_heads, group, seq, cached, head_dim)) < 2e-2


# 32 query heads over 8 KV heads of 16 (llama-3.2-1b's grouping at a small width): at kv 600
# the scores of every query head (32 x 601 fp32) outgrow the 64 KiB partial-sum buffer and
# the softmax row (32 x 601 bf16) the GEMV input buffers, so attention runs in pieces.
LONG_GQA = DecoderConfig("tiny-gqa-32x8", "llama", vocab_size=96, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=16, max_position_embeddings=1024, rope_theta=5e5)


def test_long_context_attention_in_pieces_matches_reference():
    """Decode at kv 600 (H x T = 19,232 > 16,384: the old limit refused it): the K and V GEMVs
    run in pieces, the logits and each layer's attention context within BF16 tolerance."""
    phase = decode(600)
    model = Model(LONG_GQA.name, LONG_GQA)
    lowered = compile_model_graph(model, model.graph(phase), "pim", load_arch("pim-gpt"))
    pieces = {m.kind: len(m.pieces) for m in lowered.matrices.values() if m.kind != "linear"}
    assert pieces == {"kcache": 2, "vcache": 3}        # K: 512 + 89 positions; V: 3 x 256
    outcome = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
    values = [f"layers.{i}.self_attn.context" for i in range(LONG_GQA.num_hidden_layers)]
    assert max(_inside(LONG_GQA.name, phase, values, LONG_GQA).values()) < BF16_TOLERANCE


def test_cli_model_too_large_is_one_line_with_sizes():
    proc = subprocess.run([sys.executable, "-m", "tessel.cli", "sim", "--model", "llama-3.1-8b",
                           "--target", "pim", "--phase", "decode", "--no-functional"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: llama-3.1-8b-decode needs ")
    assert "weights 16,06" in proc.stderr and "KV cache " in proc.stderr
    assert "pim-gpt has 4,294,967,296" in proc.stderr


def test_one_layer_at_llama_3_2_1b_widths_on_the_default_preset():
    """32 query heads / 8 KV heads of 64, an 8,192-wide MLP (the wide-row ASIC buffer layout:
    a gated row is 32 KiB per vp_in slot and 64 KiB of scratch), decode at kv 128."""
    config = DecoderConfig("llama-1b-one-layer", "llama", vocab_size=512, hidden_size=2048,
                           intermediate_size=8192, num_hidden_layers=1, num_attention_heads=32,
                           num_key_value_heads=8, max_position_embeddings=4096, rope_theta=5e5,
                           tie_word_embeddings=True, rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192))
    outcome = run(make_request(Model(config.name, config), "pim", load_arch("pim-gpt"), decode(128),
                               numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
