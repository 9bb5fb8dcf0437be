"""Regenerate the tiny Hugging Face checkpoints of the Llama-style families under tests/fixtures/.

Dev-only.  Needs torch and transformers, which are NOT dependencies of Tessel (the project
never imports torch).  Each fixture is written by the transformers major version its entry
names, so both config.json styles are covered: 5.x (`rope_parameters`, `dtype`, MoE experts
either per expert or fused with `save_original_format=False`) and 4.x (`rope_theta`,
`rope_scaling`).  Run it once with each:

    /tmp/hfvenv/bin/python tools/make_hf_decoder_fixtures.py            # transformers 5.x
    PYTHONPATH=/tmp/tf4 /tmp/hfvenv/bin/python tools/make_hf_decoder_fixtures.py   # 4.x

(/tmp/tf4: `pip install --target /tmp/tf4 --no-deps transformers==4.57.1 huggingface_hub==0.36.0
tokenizers==0.22.1 requests`.)  Each run rewrites only the fixtures of its major version
(`--only NAME` limits it further).

What each fixture directory holds:

    config.json, model.safetensors (or model-0000k-of-0000n.safetensors + the index json)
                        -- save_pretrained of a model built with torch.manual_seed(seed), its
                           weights stored in the entry's dtype (bf16, f16 or f32)
    tokens.json         -- {"tokens": [13 ids]}
    expected_logits.npy -- float32 [12, vocab]: one prefill of the first 12 tokens
    expected_decode_logits.npy
                        -- float32 [1, vocab]: token 13 decoded against Hugging Face's
                           past_key_values of that prefill

The logits come from the model reloaded from the saved files (so they are the stored
weights' logits, bf16/f16 values included), run in float32 with eager attention.  Every
RMSNorm weight (input, post-attention, final, q/k norms) is 1 + 0.1 randn and every bias
0.05 randn, so a bug in a norm or a bias shows; linear weights keep transformers' init
(N(0, 0.02)) scaled to 0.1 so the logits are far from uniform.  Routers are checked to have
a clear top-k choice (a gap of at least MIN_ROUTER_GAP between the k-th and (k+1)-th
probability of every token), so float32 rounding cannot flip an expert choice.
"""
from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
N_PREFILL = 12
TOKEN_SEED = 7
MIN_ROUTER_GAP = 1e-3
MAX_FIXTURE_BYTES = 200 * 1024
KEEP_SUFFIXES = (".safetensors", ".json")
MAJOR = int(transformers.__version__.split(".")[0])

_SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=256)
_LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
               original_max_position_embeddings=16)


@dataclass(frozen=True)
class Fixture:
    name: str
    major: int                    # transformers major version that writes it
    arch: str                     # the *ForCausalLM class
    config: dict                  # config kwargs (rope given in 5.x style; converted for 4.x)
    dtype: torch.dtype = torch.bfloat16
    save: dict = field(default_factory=dict)   # extra save_pretrained arguments
    seed: int = 0


FIXTURES_ALL = (
    # Llama 3.2 shape: llama3 rope scaling, GQA (4 query heads on 2 KV heads), tied LM head
    Fixture("tiny-llama3-tied", 4, "LlamaForCausalLM",
            dict(_SMALL, intermediate_size=96, num_key_value_heads=2, rms_norm_eps=1e-5,
                 tie_word_embeddings=True, rope=dict(_LLAMA3, rope_theta=500000.0))),
    # untied head, q/k/v/o and MLP biases (attention_bias, mlp_bias), 5.x rope_parameters,
    # sharded into three files with an index
    Fixture("tiny-llama-sharded", 5, "LlamaForCausalLM",
            dict(_SMALL, intermediate_size=96, num_key_value_heads=2, rms_norm_eps=1e-5,
                 attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                 rope=dict(_LLAMA3, factor=4.0, high_freq_factor=2.0, rope_theta=10000.0,
                           original_max_position_embeddings=32)),
            dtype=torch.float16, save=dict(max_shard_size="60KB"), seed=1),
    # a sliding window of 5 keys, which the 12-token prefill and the decode step exceed;
    # one KV head for 4 query heads
    Fixture("tiny-mistral-swa", 5, "MistralForCausalLM",
            dict(_SMALL, intermediate_size=96, num_key_value_heads=1, sliding_window=5,
                 rms_norm_eps=1e-5, tie_word_embeddings=False, rope=dict(rope_theta=10000.0)),
            seed=2),
    # q/k/v biases (o_proj none), tied head, float32 storage
    Fixture("tiny-qwen2-bias", 5, "Qwen2ForCausalLM",
            dict(_SMALL, intermediate_size=40, num_key_value_heads=1, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, rope=dict(rope_theta=1000000.0)),
            dtype=torch.float32, seed=3),
    # per-head q/k RMSNorm, head_dim 32 != hidden 64 / 4 heads
    Fixture("tiny-qwen3", 5, "Qwen3ForCausalLM",
            dict(_SMALL, intermediate_size=64, num_key_value_heads=2, head_dim=32,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, rope=dict(rope_theta=1000000.0)),
            seed=4),
    # 4 experts, top-2; transformers 4.x writes one key per expert (w1/w3/w2)
    Fixture("tiny-mixtral", 4, "MixtralForCausalLM",
            dict(_SMALL, intermediate_size=32, num_key_value_heads=2, num_local_experts=4,
                 num_experts_per_tok=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 rope=dict(rope_theta=1000000.0)),
            seed=5),
    # the same family as 5.x keeps it in memory: experts fused (gate_up_proj, down_proj)
    # under `mlp.` (save_original_format=False)
    Fixture("tiny-mixtral-fused", 5, "MixtralForCausalLM",
            dict(_SMALL, intermediate_size=32, num_key_value_heads=2, num_local_experts=4,
                 num_experts_per_tok=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 rope=dict(rope_theta=1000000.0)),
            save=dict(save_original_format=False), seed=6),
    # Qwen3-MoE: top-2 of 8 renormalised, layer 1 a dense MLP (mlp_only_layers), per expert keys
    Fixture("tiny-qwen3-moe", 5, "Qwen3MoeForCausalLM",
            dict(_SMALL, intermediate_size=64, moe_intermediate_size=16, num_key_value_heads=2,
                 head_dim=16, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                 mlp_only_layers=[1], rms_norm_eps=1e-6, tie_word_embeddings=False,
                 rope=dict(rope_theta=1000000.0)),
            seed=7),
    # top-3 of 6 not renormalised (norm_topk_prob false), every layer sliding (window 6),
    # experts fused
    Fixture("tiny-qwen3-moe-fused", 5, "Qwen3MoeForCausalLM",
            dict(_SMALL, intermediate_size=64, moe_intermediate_size=16, num_key_value_heads=2,
                 head_dim=16, num_experts=6, num_experts_per_tok=3, norm_topk_prob=False,
                 use_sliding_window=True, sliding_window=6, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, rope=dict(rope_theta=1000000.0)),
            save=dict(save_original_format=False), seed=8),
)


def make_config(fx: Fixture):
    kwargs = dict(fx.config)
    rope = kwargs.pop("rope")
    if MAJOR >= 5:
        kwargs["rope_parameters"] = dict(rope, rope_type=rope.get("rope_type", "default"))
    else:
        kwargs["rope_theta"] = rope["rope_theta"]
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling:
            kwargs["rope_scaling"] = scaling
    config_class = transformers.AutoConfig.for_model(
        {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
         "Qwen3ForCausalLM": "qwen3", "MixtralForCausalLM": "mixtral",
         "Qwen3MoeForCausalLM": "qwen3_moe"}[fx.arch]).__class__
    return config_class(**kwargs)


def build(fx: Fixture, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(transformers, fx.arch)(make_config(fx)).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif p.dim() >= 2:
                p.copy_(0.1 * torch.randn_like(p))
            p.copy_(p.to(fx.dtype).to(torch.float32))   # the values the checkpoint will hold
    return model


def cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def router_gap(model, ids: torch.Tensor, top_k: int) -> float:
    """Smallest gap between the k-th and (k+1)-th router probability over tokens and layers."""
    gaps = []

    def hook(_module, _inputs, output):
        logits = output[0] if isinstance(output, tuple) else output
        probs = torch.softmax(logits.float().reshape(-1, logits.shape[-1]), dim=-1)
        top = torch.topk(probs, top_k + 1, dim=-1).values
        gaps.append(float((top[:, top_k - 1] - top[:, top_k]).min()))

    routers = [m for n, m in model.named_modules() if n.endswith((".gate", ".router"))
               and not isinstance(m, torch.nn.ModuleList)]
    handles = [m.register_forward_hook(hook) for m in routers]
    with torch.no_grad():
        model(ids, use_cache=False)
    for h in handles:
        h.remove()
    assert gaps, "no router found"
    return min(gaps)


def choose_seed(fx: Fixture) -> tuple[torch.nn.Module, np.ndarray]:
    """The model and tokens of the first seed (fx.seed, + 1000, + 2000, ...) whose routers
    choose with a clear margin (dense models: fx.seed)."""
    for attempt in range(100):
        seed = fx.seed + 1000 * attempt
        model = build(fx, seed)
        tokens = np.random.default_rng(TOKEN_SEED + seed).integers(0, model.config.vocab_size,
                                                                   N_PREFILL + 1)
        if "num_experts_per_tok" not in fx.config:
            return model, tokens
        gap = router_gap(model, torch.from_numpy(tokens).unsqueeze(0), fx.config["num_experts_per_tok"])
        if gap >= MIN_ROUTER_GAP:
            print(f"  seed {seed}: smallest router top-k gap {gap:.3e}")
            return model, tokens
    raise SystemExit(f"{fx.name}: no seed gives a router gap of {MIN_ROUTER_GAP}")


def write(fx: Fixture) -> None:
    out = FIXTURES / fx.name
    model, tokens = choose_seed(fx)
    ids = torch.from_numpy(tokens).unsqueeze(0)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(fx.dtype).save_pretrained(str(out), **fx.save)
    for f in out.iterdir():
        if not f.name.endswith(KEEP_SUFFIXES) or f.name == "generation_config.json":
            f.unlink()
    # the stored values, run in float32 with eager attention
    hf = getattr(transformers, fx.arch).from_pretrained(str(out), attn_implementation="eager",
                                                        dtype=torch.float32).eval()
    if "num_experts_per_tok" in fx.config:
        gap = router_gap(hf, ids, fx.config["num_experts_per_tok"])
        assert gap >= MIN_ROUTER_GAP, f"{fx.name}: stored router gap {gap:.2e}, change the seed"
    ck = cache_kwarg(hf)
    with torch.no_grad():
        full = hf(ids, use_cache=False).logits[0].numpy()
        pre = hf(ids[:, :N_PREFILL], use_cache=True)
        step = hf(ids[:, N_PREFILL:], use_cache=True, **{ck: out_cache(pre)}).logits[0].numpy()
    prefill = pre.logits[0].numpy()
    d_prefill = float(np.abs(prefill - full[:N_PREFILL]).max())
    d_decode = float(np.abs(step[0] - full[N_PREFILL]).max())
    assert d_prefill < 1e-5 and d_decode < 1e-5, (d_prefill, d_decode)
    np.save(out / "expected_logits.npy", prefill.astype(np.float32))
    np.save(out / "expected_decode_logits.npy", step.astype(np.float32))
    (out / "tokens.json").write_text(json.dumps({"tokens": [int(t) for t in tokens]}) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    names = sorted(f.name for f in out.iterdir())
    print(f"  {size} bytes: {', '.join(names)}")
    print(f"  logits std {prefill.std():.3f}; cached decode vs full forward {d_decode:.1e}")
    assert size < MAX_FIXTURE_BYTES, f"{fx.name}: {size} bytes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="fixture name (repeatable)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    todo = [fx for fx in FIXTURES_ALL if fx.major == MAJOR and (not args.only or fx.name in args.only)]
    if not todo:
        print(f"no fixture is written by transformers {MAJOR}.x", file=sys.stderr)
        return 1
    for fx in todo:
        print(fx.name)
        write(fx)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
