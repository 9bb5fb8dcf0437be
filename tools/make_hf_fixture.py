"""Regenerate the tiny Hugging Face GPT-2 fixture under tests/fixtures/.

Dev-only.  Needs torch and transformers (plus safetensors and numpy), which
are NOT dependencies of Tessel; install them into a throwaway venv outside
the repository, e.g.

    python3 -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install torch==2.13.0 transformers safetensors numpy

Usage (from anywhere):

    /tmp/hfvenv/bin/python tools/make_hf_fixture.py

What it writes (the directories are replaced wholesale):

    tests/fixtures/tiny-gpt2/
        config.json, model.safetensors   -- GPT2LMHeadModel.save_pretrained
                                            (keys carry the "transformer." prefix)
        tokens.json                       -- {"tokens": [24 ids]}
        expected_logits.npy               -- float32 [24, 512], one full forward
        expected_decode_logits.npy        -- float32 [1, 512], last token decoded
                                             against HF's KV cache of the first 23
    tests/fixtures/tiny-gpt2-noprefix/
        config.json, model.safetensors   -- same tensors, keys without the
                                            "transformer." prefix, no lm_head
                                            (tied), plus the legacy buffers
                                            h.{i}.attn.bias / h.{i}.attn.masked_bias
                                            as in the original OpenAI checkpoints

The model is GPT-2 with n_layer=2, n_head=4, n_embd=64, vocab_size=512,
n_positions=128, built with torch.manual_seed(0); every LayerNorm weight is
set to 1 + 0.1*randn and every LayerNorm / Conv1D / Linear bias to
0.05*randn, so that a numerics bug in a bias or a layer norm shows up in the
logits.  The expected logits use HF's eager attention path; a numpy
reference forward inside this script re-derives them from the no-prefix
checkpoint as a self-check.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors.numpy
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
OUT = FIXTURES / "tiny-gpt2"
OUT_NOPREFIX = FIXTURES / "tiny-gpt2-noprefix"

N_TOKENS = 24
TOKEN_SEED = 1
KEEP = ("config.json", "model.safetensors")
CACHE_TOL = 1e-5


def build_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_head=4,
        n_embd=64,
        vocab_size=512,
        n_positions=128,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
    )
    model = GPT2LMHeadModel(config).to(torch.float32).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))
                module.bias.copy_(0.05 * torch.randn_like(module.bias))
            elif isinstance(module, (torch.nn.Linear, Conv1D)):
                if module.bias is not None:
                    module.bias.copy_(0.05 * torch.randn_like(module.bias))
    # Eager attention: the plain matmul/mask/softmax path (sdpa is cross-checked below).
    model.set_attn_implementation("eager")
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "lm_head not tied"
    return model


def _cache_kwarg(model) -> str:
    """transformers >= 5.x names the KV-cache argument `cache`; older ones `past_key_values`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def prune(path: Path) -> None:
    for entry in path.iterdir():
        if entry.name not in KEEP:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def write_noprefix(src: Path, dst: Path, n_layer: int, n_positions: int) -> dict[str, np.ndarray]:
    tensors = safetensors.numpy.load_file(str(src / "model.safetensors"))
    out: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key.startswith("lm_head."):
            continue  # tied to wte
        assert key.startswith("transformer."), key
        out[key[len("transformer."):]] = np.ascontiguousarray(value, dtype=np.float32)
    tril = np.tril(np.ones((n_positions, n_positions), dtype=np.float32)).reshape(1, 1, n_positions, n_positions)
    for i in range(n_layer):
        out[f"h.{i}.attn.bias"] = tril.copy()
        out[f"h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    safetensors.numpy.save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(src / "config.json", dst / "config.json")
    return out


def numpy_reference(w: dict[str, np.ndarray], cfg: dict, tokens: np.ndarray) -> np.ndarray:
    """Independent float64 forward from the no-prefix tensors (self-check of the math notes)."""
    eps = cfg["layer_norm_epsilon"]
    n_head = cfg["n_head"]

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased variance
        return (x - mu) / np.sqrt(var + eps) * g + b

    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    W = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(tokens)
    x = W["wte.weight"][tokens] + W["wpe.weight"][np.arange(T)]
    D = x.shape[-1]
    hd = D // n_head
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        h = ln(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"])
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: [in, out]
        q, k, v = (qkv[:, j * D:(j + 1) * D].reshape(T, n_head, hd).transpose(1, 0, 2) for j in range(3))
        s = (q @ k.transpose(0, 2, 1)) / math.sqrt(hd)
        s = np.where(causal, s, np.finfo(np.float32).min)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(1, 0, 2).reshape(T, D)
        x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = ln(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"])
        h = gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + h @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = ln(x, W["ln_f.weight"], W["ln_f.bias"])
    return x @ W["wte.weight"].T


def main() -> int:
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")
    model = build_model()
    cfg = model.config

    # --- checkpoint with the "transformer." prefix, via save_pretrained ---
    reset_dir(OUT)
    model.save_pretrained(str(OUT), safe_serialization=True)
    prune(OUT)

    # --- legacy-style checkpoint without the prefix ---
    reset_dir(OUT_NOPREFIX)
    noprefix = write_noprefix(OUT, OUT_NOPREFIX, cfg.n_layer, cfg.n_positions)

    # --- tokens and expected logits ---
    tokens = np.random.default_rng(TOKEN_SEED).integers(0, cfg.vocab_size, size=N_TOKENS).astype(np.int64)
    ids = torch.from_numpy(tokens).unsqueeze(0)
    ck = _cache_kwarg(model)
    with torch.no_grad():
        full = model(ids, use_cache=False).logits[0].float().numpy()
        prefill = model(ids[:, :-1], use_cache=True)
        decode = model(ids[:, -1:], use_cache=True, **{ck: _out_cache(prefill)}).logits[0].float().numpy()
        model.set_attn_implementation("sdpa")
        full_sdpa = model(ids, use_cache=False).logits[0].float().numpy()
        model.set_attn_implementation("eager")
    prefill_logits = prefill.logits[0].float().numpy()
    assert full.shape == (N_TOKENS, cfg.vocab_size) and decode.shape == (1, cfg.vocab_size)

    np.save(OUT / "expected_logits.npy", full.astype(np.float32))
    np.save(OUT / "expected_decode_logits.npy", decode.astype(np.float32))
    (OUT / "tokens.json").write_text(json.dumps({"tokens": [int(t) for t in tokens]}) + "\n")

    # --- checks ---
    d_decode = float(np.abs(decode[0] - full[-1]).max())
    d_prefill = float(np.abs(prefill_logits - full[:-1]).max())
    d_sdpa = float(np.abs(full_sdpa - full).max())
    ref = numpy_reference(noprefix, json.loads((OUT / "config.json").read_text()), tokens)
    d_numpy = float(np.abs(ref - full).max())
    reloaded = {}
    for path in (OUT, OUT_NOPREFIX):
        m = GPT2LMHeadModel.from_pretrained(str(path), attn_implementation="eager").eval()
        with torch.no_grad():
            reloaded[path.name] = float(np.abs(m(ids, use_cache=False).logits[0].numpy() - full).max())

    print(f"tokens: {tokens.tolist()}")
    print(f"logits range [{full.min():.4f}, {full.max():.4f}], std {full.std():.4f}")
    print(f"max|decode(cached) - full[23]|       = {d_decode:.3e}")
    print(f"max|prefill(first 23) - full[:23]|   = {d_prefill:.3e}")
    print(f"max|sdpa - eager| (full sequence)    = {d_sdpa:.3e}")
    print(f"max|numpy float64 reference - HF|    = {d_numpy:.3e}")
    for name, d in reloaded.items():
        print(f"max|from_pretrained({name}) - HF| = {d:.3e}")
    ok = d_decode <= CACHE_TOL and d_prefill <= CACHE_TOL and d_numpy <= 1e-4
    ok = ok and all(d <= 1e-6 for d in reloaded.values())

    for path in (OUT, OUT_NOPREFIX):
        st = safetensors.numpy.load_file(str(path / "model.safetensors"))
        print(f"\n{path.relative_to(REPO)}/model.safetensors keys:")
        for key in sorted(st):
            print(f"  {key:34s} {str(st[key].dtype):8s} {list(st[key].shape)}")

    total = 0
    print("\nfiles:")
    for path in (OUT, OUT_NOPREFIX):
        for f in sorted(path.iterdir()):
            size = f.stat().st_size
            total += size
            print(f"  {str(f.relative_to(REPO)):55s} {size:>9d} B")
    print(f"  total {total} B ({total / 1024:.1f} KiB)")

    if not ok:
        print("FAILED: a consistency check is out of tolerance", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
