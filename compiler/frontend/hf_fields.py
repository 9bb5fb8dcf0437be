"""Reading a Hugging Face JSON file (config.json, the shard index) and checking its fields:
the one place both model families' config parsers take their typed fields from.

Also the groups of PretrainedConfig fields every family shares: the ones that cannot change
the logits (`COMMON_WITHOUT_EFFECT`) and the ones accepted at their neutral value only
(`NEUTRAL`). Every error is one line naming the file, the field and the value.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from isa.jsontext import RepeatedKey, no_repeats

from compiler.ir import GraphError

__all__ = ["read_json", "is_int", "is_number", "flag", "integer", "positive_number",
           "COMMON_WITHOUT_EFFECT", "OTHER_HEADS", "NEUTRAL", "check_neutral"]

_BOOKKEEPING = "a record of where the file came from"
_TOKENS = "tokenizer or generation setting: logits do not depend on it"
_OUTPUTS = "what Hugging Face returns or how it schedules the same computation"
OTHER_HEADS = ("id2label", "label2id", "num_labels", "_num_labels", "problem_type",
               "finetuning_task", "tf_legacy_loss")
# PretrainedConfig's own fields, the same for every model family
COMMON_WITHOUT_EFFECT: dict[str, str] = {
    **dict.fromkeys(("_name_or_path", "_commit_hash", "transformers_version"), _BOOKKEEPING),
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


def read_json(path: Path) -> dict:
    """The JSON object in `path`: UTF-8, valid JSON, no key given twice."""
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
    except RecursionError:
        raise GraphError(f"{path}: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise GraphError(f"{path}: expected a JSON object")
    return raw


def check_neutral(path: Path, raw: dict, neutral: dict[str, tuple[Any, str]]) -> None:
    for field, (value, why) in neutral.items():
        if field in raw and raw[field] != value:
            raise GraphError(f"{path}: field '{field}' = {raw[field]!r}: {why}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flag(path: Path, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise GraphError(f"{path}: field '{field}' must be true or false, got {value!r}")
    return value


def integer(path: Path, field: str, value: Any, low: int, high: int) -> int:
    if not (is_int(value) and low <= value <= high):
        raise GraphError(f"{path}: field '{field}' must be an integer from {low} to {high}, got {value!r}")
    return value


def positive_number(path: Path, field: str, value: Any) -> float:
    if not is_number(value) or not 0 < value < math.inf:
        raise GraphError(f"{path}: field '{field}' must be a positive finite number, got {value!r}")
    return float(value)
