"""Tiny configs of every Llama-style family, for tests that compile and simulate whole models:
the presets' structure (GQA, llama3 rope scaling, sliding window, q/k/v biases, q/k norms,
head_dim != hidden/heads, tied and untied heads, both MoE styles) at sizes that run in seconds."""
from __future__ import annotations

from compiler.frontend.decoder import DecoderConfig, RopeScaling

_SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)

TINY: dict[str, DecoderConfig] = {c.name: c for c in (
    DecoderConfig("tiny-llama3", "llama", **_SMALL, rope_theta=5e5, tie_word_embeddings=True,
                  rope_scaling=RopeScaling(8.0, 1.0, 4.0, 32)),
    DecoderConfig("tiny-mistral", "mistral", **{**_SMALL, "num_key_value_heads": 1},
                  sliding_window=6),
    DecoderConfig("tiny-qwen2", "qwen2", **_SMALL, rms_norm_eps=1e-6, rope_theta=1e6,
                  attention_bias=True, tie_word_embeddings=True),
    DecoderConfig("tiny-qwen3", "qwen3", **_SMALL, head_dim=32, rms_norm_eps=1e-6,
                  rope_theta=1e6, qk_norm=True),
    DecoderConfig("tiny-mixtral", "mixtral", **_SMALL, rope_theta=1e6, num_experts=4,
                  num_experts_per_tok=2, moe_intermediate_size=96),
    DecoderConfig("tiny-qwen3-moe", "qwen3_moe", **_SMALL, head_dim=32, rms_norm_eps=1e-6,
                  rope_theta=1e6, qk_norm=True, num_experts=8, num_experts_per_tok=3,
                  moe_intermediate_size=32, norm_topk_prob=False),
)}
