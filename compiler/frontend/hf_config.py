"""config.json of a Hugging Face GPT-2 directory -> GPT2Config, every field honoured or refused.

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

import json
import math
from pathlib import Path
from typing import Any

from isa.jsontext import RepeatedKey, no_repeats

from compiler.ir import GraphError

from compiler.frontend.gpt2 import GPT2Config

__all__ = ["load_config", "ACTIVATIONS", "HONOURED", "WITHOUT_EFFECT", "NEUTRAL", "KNOWN_FIELDS"]

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

_BOOKKEEPING = "a record of where the file came from"
_DROPOUT = "dropout: inactive at inference"
_OTHER_HEADS = "used only by other heads (GPT2DoubleHeadsModel, classification), not the LM head"
_TOKENS = "tokenizer or generation setting: logits do not depend on it"
_OUTPUTS = "what Hugging Face returns or how it schedules the same computation"
_STORAGE = "storage type of the weights: Tessel reads them as stored and computes in float32/float64"
WITHOUT_EFFECT: dict[str, str] = {
    **dict.fromkeys(("_name_or_path", "_commit_hash", "transformers_version"), _BOOKKEEPING),
    **dict.fromkeys(("attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout"), _DROPOUT),
    "initializer_range": "initialisation only: the checkpoint's weights are used",
    **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation",
                     "summary_proj_to_labels", "id2label", "label2id", "num_labels", "_num_labels",
                     "problem_type", "finetuning_task", "tf_legacy_loss"), _OTHER_HEADS),
    **dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
                     "decoder_start_token_id", "tokenizer_class", "prefix", "task_specific_params",
                     "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
                     "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
                     "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
                     "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
                     "output_scores", "return_dict_in_generate", "forced_bos_token_id",
                     "forced_eos_token_id", "remove_invalid_values",
                     "exponential_decay_length_penalty", "suppress_tokens",
                     "begin_suppress_tokens"), _TOKENS),
    **dict.fromkeys(("use_cache", "output_past", "output_attentions", "output_hidden_states",
                     "return_dict", "use_return_dict", "torchscript", "gradient_checkpointing",
                     "chunk_size_feed_forward", "attn_implementation", "_attn_implementation",
                     "_attn_implementation_autoset", "is_decoder"), _OUTPUTS),
    **dict.fromkeys(("torch_dtype", "dtype", "use_bfloat16"), _STORAGE),
}
# Accepted at these values only; anything else changes the model.
NEUTRAL: dict[str, tuple[Any, str]] = {
    "add_cross_attention": (False, "cross-attention layers are not supported"),
    "cross_attention_hidden_size": (None, "cross-attention layers are not supported"),
    "is_encoder_decoder": (False, "encoder-decoder models are not supported"),
    "tie_encoder_decoder": (False, "encoder-decoder models are not supported"),
    "pruned_heads": ({}, "pruned attention heads are not supported"),
    "quantization_config": (None, "quantised checkpoints are not supported"),
    "auto_map": (None, "custom modelling code is not supported"),
}
KNOWN_FIELDS = set(_SIZES) | set(_ALIASES) | set(HONOURED) | set(WITHOUT_EFFECT) | set(NEUTRAL)


def load_config(directory: Path) -> GPT2Config:
    """GPT2Config from config.json; errors name the file, the field and the value."""
    path = directory / "config.json"
    if not path.is_file():
        raise GraphError(f"{directory}: no config.json (expected a Hugging Face GPT-2 directory)")
    raw = _read_json(path)
    unknown = sorted(set(raw) - KNOWN_FIELDS)
    if unknown:
        raise GraphError(f"{path}: field '{unknown[0]}' is not a GPT-2 config field Tessel knows "
                         f"(it might change the model), got {raw[unknown[0]]!r}")
    for field, (neutral, why) in NEUTRAL.items():
        if field in raw and raw[field] != neutral:
            raise GraphError(f"{path}: field '{field}' = {raw[field]!r}: {why}")
    _check_kind(path, raw)
    sizes = _sizes(path, raw)
    act = raw.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise GraphError(f"{path}: field 'activation_function' = {act!r} is not supported "
                         f"(the graph's gelu is the tanh form: {', '.join(ACTIVATIONS)})")
    eps = raw.get("layer_norm_epsilon", 1e-5)
    if not _is_number(eps) or not 0 < eps < math.inf:
        raise GraphError(f"{path}: field 'layer_norm_epsilon' must be a positive finite number, got {eps!r}")
    n_inner = raw.get("n_inner")
    if n_inner is not None and not (_is_int(n_inner) and 1 <= n_inner <= 1 << 18):
        raise GraphError(f"{path}: field 'n_inner' must be null or an integer from 1 to {1 << 18}, "
                         f"got {n_inner!r}")
    flags = {f: _flag(path, raw, f, default) for f, default in (
        ("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
        ("tie_word_embeddings", True), ("reorder_and_upcast_attn", False))}
    if sizes["n_embd"] % sizes["n_head"]:
        raise GraphError(f"{path}: n_embd {sizes['n_embd']} is not divisible by n_head {sizes['n_head']}")
    del flags["reorder_and_upcast_attn"]    # only the precision HF computes in; ours is float64
    return GPT2Config(name=directory.name, layer_norm_epsilon=float(eps), n_inner=n_inner,
                      **sizes, **flags)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise GraphError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        raw = json.loads(text, object_pairs_hook=no_repeats)
    except RepeatedKey as e:
        raise GraphError(f"{path}: field '{e.key}' appears twice") from None
    except json.JSONDecodeError as e:
        raise GraphError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(raw, dict):
        raise GraphError(f"{path}: expected a JSON object")
    return raw


def _check_kind(path: Path, raw: dict) -> None:
    if raw.get("model_type", "gpt2") != "gpt2":
        raise GraphError(f"{path}: model_type '{raw['model_type']}' is not gpt2")
    classes = raw.get("architectures")
    if classes is not None and not (isinstance(classes, list) and classes and all(
            isinstance(c, str) and c.startswith("GPT2") for c in classes)):
        raise GraphError(f"{path}: field 'architectures' must list GPT-2 classes "
                         f"(GPT2LMHeadModel, GPT2Model, ...), got {classes!r}")


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
        if not (_is_int(value) and 1 <= value <= _SIZES[field]):
            raise GraphError(f"{path}: field '{name}' must be an integer from 1 to {_SIZES[field]}, "
                             f"got {value!r}")
        sizes[field] = value
    return sizes


def _flag(path: Path, raw: dict, field: str, default: bool) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise GraphError(f"{path}: field '{field}' must be true or false, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
