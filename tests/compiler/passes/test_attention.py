"""The attention-chain analysis: scores -> softmax -> context found where the lowering may
fuse it (GPT-2's [B, H, S, Dh], Llama's grouped-query 5-D), and nowhere else."""
from __future__ import annotations

from compiler.builder import GraphBuilder
from compiler.frontend.decoder import build_graph as build_decoder
from compiler.frontend.gpt2 import GPT2Config, build_graph as build_gpt2
from compiler.ir import OpKind
from compiler.passes.attention import find_attention
from compiler.phase import decode, prefill
from tests.families.tiny import TINY

GPT2 = GPT2Config("g", n_layer=2, n_head=4, n_embd=64, vocab_size=128, n_positions=128)


def test_gpt2_has_one_causal_chain_per_layer():
    chains = find_attention(build_gpt2(GPT2, prefill(8)))
    assert [c.name for c in chains] == ["h.0.attn.attention", "h.1.attn.attention"]
    c = chains[0]
    assert (c.scores, c.probs, c.context) == ("h.0.attn.scores", "h.0.attn.probs", "h.0.attn.context")
    assert (c.batch, c.s, c.t, c.d, c.causal, c.window) == ((1, 4), 8, 8, 16, True, None)
    assert c.scale == 0.25 and c.instances == 4


def test_grouped_query_decode_and_a_sliding_window():
    config = TINY["tiny-mistral"]           # 4 query heads share 1 KV head, window 6
    (c, *_), = [find_attention(build_decoder(config, decode(9)))]
    assert (c.batch, c.s, c.t, c.window) == ((1, 1, 4), 1, 10, 6)


def test_a_scores_value_used_twice_is_not_a_chain():
    g = GraphBuilder("two-uses")
    q, k, v = (g.input(x, (1, 2, 4, 8)) for x in "qkv")
    s = g.op(OpKind.MATMUL, "scores", [q, k], transpose_b=True)
    p = g.op(OpKind.SOFTMAX, "probs", [s], causal=True)
    ctx = g.op(OpKind.MATMUL, "context", [p, v])
    graph = g.build([ctx, s])
    assert find_attention(graph) == ()
