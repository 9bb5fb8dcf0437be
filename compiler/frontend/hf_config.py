"""config.json of a Hugging Face GPT-2 directory -> GPT2Config, every field honoured or refused.
(hf.load_config sends a directory here when its `architectures` are GPT2* classes, or when it
names no class and its model_type is not one of the Llama-style families'.)

Each field of the file is in exactly one of three places here:
- `_SIZES` and `HONOURED`: read into the GPT2Config the graph is built from (semantics of
  Hugging Face's GPT2Config and modeling_gpt2.py);
- `WITHOUT_EFFECT`: accepted and ignored, each with the reason it cannot change the logits;
- `NEUTRAL`: accepted only at the value that leaves the model alone (a cross-attention
  layer, pruned heads or a quantised checkpoint would change the numbers: refused).
Anything else is refused, so a field Tessel does not know can never be silently dropped.
Every error is one line naming the file, the field and the value.
"""
from __future__ import annotations

import math
from pathlib import Path

from compiler.ir import GraphError

from compiler.frontend.gpt2 import GPT2Config
from compiler.frontend.hf_fields import (COMMON_WITHOUT_EFFECT, NEUTRAL, OTHER_HEADS, check_neutral,
                                         flag, is_int, is_number)

__all__ = ["gpt2_config", "ACTIVATIONS", "HONOURED", "WITHOUT_EFFECT", "NEUTRAL", "KNOWN_FIELDS"]

# Positive integers, each with an upper bound a GPT-2-shaped model could have (the graph is
# built before the checkpoint is read, so an absurd size must not get that far).
_SIZES = {
    "n_layer": 1024,        # GPT-3 175B has 96 layers
    "n_head": 1024,
    "n_embd": 1 << 16,      # GPT-3 175B: 12288
    "vocab_size": 1 << 22,  # GPT-2: 50257
    "n_positions": 1 << 20,
}
# Hugging Face's GPT2Config.attribute_map: these names set the field beside them.
_ALIASES = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
            "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}
# Activations the graph's gelu computes: the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
# gelu_fast writes sqrt(2/pi) as 0.7978845608 (a relative difference of 4e-12).
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
HONOURED = ("activation_function", "layer_norm_epsilon", "n_inner", "scale_attn_weights",
             "scale_attn_by_inverse_layer_idx", "tie_word_embeddings", "reorder_and_upcast_attn",
             "model_type", "architectures", "n_ctx")

_DROPOUT = "dropout: inactive at inference"
_OTHER_HEADS = "used only by other heads (GPT2DoubleHeadsModel, classification), not the LM head"
_STORAGE = "storage type of the weights: Tessel reads them as stored and computes in float32/float64"
WITHOUT_EFFECT: dict[str, str] = {
    **COMMON_WITHOUT_EFFECT,
    **dict.fromkeys(("attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout"), _DROPOUT),
    "initializer_range": "initialisation only: the checkpoint's weights are used",
    **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation",
                     "summary_proj_to_labels", *OTHER_HEADS), _OTHER_HEADS),
    **dict.fromkeys(("torch_dtype", "dtype", "use_bfloat16"), _STORAGE),
}
KNOWN_FIELDS = set(_SIZES) | set(_ALIASES) | set(HONOURED) | set(WITHOUT_EFFECT) | set(NEUTRAL)


def gpt2_config(path: Path, raw: dict, name: str) -> GPT2Config:
    """GPT2Config from the fields of config.json (`path`, read by hf_fields.read_json);
    errors name the file, the field and the value."""
    unknown = sorted(set(raw) - KNOWN_FIELDS)
    if unknown:
        raise GraphError(f"{path}: field '{unknown[0]}' is not a GPT-2 config field Tessel knows "
                         f"(it might change the model), got {raw[unknown[0]]!r}")
    check_neutral(path, raw, NEUTRAL)
    if raw.get("model_type", "gpt2") != "gpt2":
        raise GraphError(f"{path}: model_type '{raw['model_type']}' is not gpt2")
    sizes = _sizes(path, raw)
    act = raw.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise GraphError(f"{path}: field 'activation_function' = {act!r} is not supported "
                         f"(the graph's gelu is the tanh form: {', '.join(ACTIVATIONS)})")
    eps = raw.get("layer_norm_epsilon", 1e-5)
    if not is_number(eps) or not 0 < eps < math.inf:
        raise GraphError(f"{path}: field 'layer_norm_epsilon' must be a positive finite number, got {eps!r}")
    n_inner = raw.get("n_inner")
    if n_inner is not None and not (is_int(n_inner) and 1 <= n_inner <= 1 << 18):
        raise GraphError(f"{path}: field 'n_inner' must be null or an integer from 1 to {1 << 18}, "
                         f"got {n_inner!r}")
    flags = {f: flag(path, f, raw.get(f, default)) for f, default in (
        ("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
        ("tie_word_embeddings", True), ("reorder_and_upcast_attn", False))}
    if sizes["n_embd"] % sizes["n_head"]:
        raise GraphError(f"{path}: n_embd {sizes['n_embd']} is not divisible by n_head {sizes['n_head']}")
    del flags["reorder_and_upcast_attn"]    # only the precision HF computes in; ours is float64
    return GPT2Config(name=name, layer_norm_epsilon=float(eps), n_inner=n_inner,
                      **sizes, **flags)


def _sizes(path: Path, raw: dict) -> dict[str, int]:
    """The five sizes, from their names or Hugging Face's aliases (n_ctx: legacy n_positions)."""
    sizes = {}
    for field in _SIZES:
        names = [field] + [a for a, f in _ALIASES.items() if f == field]
        given = {n: raw[n] for n in names if n in raw}
        if len(set(map(repr, given.values()))) > 1:
            raise GraphError(f"{path}: fields {' and '.join(given)} disagree: "
                             + ", ".join(f"{n} = {v!r}" for n, v in given.items()))
        if not given and field == "n_positions" and "n_ctx" in raw:
            given = {"n_ctx": raw["n_ctx"]}
        if not given:
            raise GraphError(f"{path}: missing field '{field}'")
        name, value = next(iter(given.items()))
        if not (is_int(value) and 1 <= value <= _SIZES[field]):
            raise GraphError(f"{path}: field '{name}' must be an integer from 1 to {_SIZES[field]}, "
                             f"got {value!r}")
        sizes[field] = value
    return sizes
