"""config.json of the Llama-style families -> DecoderConfig, every field honoured or refused.

Families, by `architectures` (Hugging Face's class) and `model_type`: LlamaForCausalLM (llama),
MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2), Qwen3ForCausalLM (qwen3),
MixtralForCausalLM (mixtral), Qwen3MoeForCausalLM (qwen3_moe). Both styles transformers
writes are read: 4.x (`rope_theta`, `rope_scaling`, `torch_dtype`) and 5.x (`rope_parameters`,
`dtype`); the semantics are those of modeling_<family>.py, identical in 4.57 and 5.x for every
field honoured here.

Each field is in one place: honoured (`HONOURED[family]`, read below), without effect
(`WITHOUT_EFFECT[family]`, each with the reason it cannot change the logits) or accepted at
its neutral value only (`NEUTRAL`); any other field is refused. A field left out takes
Hugging Face's default when that default is a plain constant (rms_norm_eps, rope_theta,
biases, tie_word_embeddings, Mistral's sliding_window 4096, ...); the sizes, and the KV heads,
experts and Qwen3's head_dim whose defaults are some particular model's, are required.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler.ir import GraphError

from compiler.frontend.decoder import DecoderConfig, RopeScaling
from compiler.frontend.hf_fields import (COMMON_WITHOUT_EFFECT, NEUTRAL as COMMON_NEUTRAL,
                                         OTHER_HEADS, check_neutral, flag, integer, is_int,
                                         positive_number)

__all__ = ["ARCHITECTURES", "HONOURED", "WITHOUT_EFFECT", "NEUTRAL", "ROPE_TYPES", "decoder_config"]

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                 "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
                 "MixtralForCausalLM": "mixtral", "Qwen3MoeForCausalLM": "qwen3_moe"}
_MOE = ("mixtral", "qwen3_moe")
_QWEN = ("qwen2", "qwen3", "qwen3_moe")
ROPE_TYPES = ("default", "llama3")
# sizes every config must give, with the bounds of a model Tessel could build a graph for
_SIZES = {"vocab_size": 1 << 22, "hidden_size": 1 << 16, "intermediate_size": 1 << 18,
          "num_hidden_layers": 1024, "num_attention_heads": 1024, "max_position_embeddings": 1 << 24}
_COMMON = (*_SIZES, "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta",
           "rope_scaling", "rope_parameters", "tie_word_embeddings", "dtype", "torch_dtype",
           "model_type", "architectures")
_SLIDING = ("use_sliding_window", "sliding_window")
HONOURED: dict[str, tuple[str, ...]] = {
    "llama": (*_COMMON, "attention_bias", "mlp_bias"),
    "mistral": (*_COMMON, "sliding_window"),
    "qwen2": (*_COMMON, *_SLIDING, "max_window_layers", "layer_types"),
    "qwen3": (*_COMMON, "attention_bias", *_SLIDING, "max_window_layers", "layer_types"),
    "mixtral": (*_COMMON, "sliding_window", "num_local_experts", "num_experts", "num_experts_per_tok"),
    "qwen3_moe": (*_COMMON, "attention_bias", *_SLIDING, "num_experts", "num_local_experts",
                  "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                  "decoder_sparse_step", "mlp_only_layers"),
}
_ROUTER_TRAINING = "router load-balancing loss and its output: training only"
_COMMON_IGNORED = {
    **COMMON_WITHOUT_EFFECT,
    **dict.fromkeys(OTHER_HEADS, "used only by other heads (classification), not the LM head"),
    "attention_dropout": "dropout: inactive at inference",
    "initializer_range": "initialisation only: the checkpoint's weights are used",
    "use_bfloat16": "storage type of the weights: Tessel reads them as stored",
}
WITHOUT_EFFECT: dict[str, dict[str, str]] = {
    "llama": {**_COMMON_IGNORED, "pretraining_tp": "tensor-parallel slicing of the same matmuls "
              "during pre-training; the modelling code computes the whole products"},
    "mistral": _COMMON_IGNORED,
    "qwen2": _COMMON_IGNORED,
    "qwen3": _COMMON_IGNORED,
    "mixtral": {**_COMMON_IGNORED,
                **dict.fromkeys(("router_aux_loss_coef", "output_router_logits"), _ROUTER_TRAINING),
                "router_jitter_noise": "multiplies the router input by noise in training only "
                                       "(`if self.training and self.jitter_noise > 0`)"},
    "qwen3_moe": {**_COMMON_IGNORED,
                  **dict.fromkeys(("router_aux_loss_coef", "output_router_logits"), _ROUTER_TRAINING),
                  "max_window_layers": "not read by Qwen3MoeForCausalLM: with use_sliding_window "
                                       "every layer slides"},
}
NEUTRAL: dict[str, dict[str, tuple[Any, str]]] = {
    family: {**COMMON_NEUTRAL,
             "partial_rotary_factor": (1.0, "a rotary embedding of part of each head is not supported"),
             **({"use_mrope": (False, "multimodal rotary embedding is not supported")}
                if family == "qwen2" else {})}
    for family in HONOURED}
# Hugging Face's defaults (configuration_<family>.py, 4.57 and 5.x alike)
_RMS_NORM_EPS = {"mixtral": 1e-5}                      # others 1e-6
_ROPE_THETA = {"mixtral": 1e6}                         # others 1e4
_SLIDING_WINDOW = {"mistral": 4096, "mixtral": None}   # Qwen: 4096, active with use_sliding_window
_MAX_WINDOW_LAYERS = 28


def decoder_config(path: Path, raw: dict, architecture: str, name: str) -> DecoderConfig:
    """DecoderConfig from the fields of config.json (`path`); `architecture` is one of
    ARCHITECTURES (from the file's `architectures`). Errors name the file, field and value."""
    family = ARCHITECTURES[architecture]
    if raw.get("model_type") != family:
        raise GraphError(f"{path}: model_type {raw.get('model_type')!r} does not match "
                         f"architectures {architecture} (expected '{family}')")
    known = set(HONOURED[family]) | set(WITHOUT_EFFECT[family]) | set(NEUTRAL[family])
    unknown = sorted(set(raw) - known)
    if unknown:
        raise GraphError(f"{path}: field '{unknown[0]}' is not a {architecture} config field Tessel "
                         f"knows (it might change the model), got {raw[unknown[0]]!r}")
    check_neutral(path, raw, NEUTRAL[family])
    sizes = {f: integer(path, f, _required(path, raw, f), 1, high) for f, high in _SIZES.items()}
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise GraphError(f"{path}: field 'hidden_act' = {act!r} is not supported (the MLP's "
                         "activation is silu)")
    theta, scaling = _rope(path, raw, family, sizes["max_position_embeddings"])
    bias = flag(path, "attention_bias", raw.get("attention_bias", False))
    return DecoderConfig(
        name=name, family=family, **sizes, **_heads(path, raw, family, sizes),
        rms_norm_eps=positive_number(path, "rms_norm_eps", raw.get("rms_norm_eps", _RMS_NORM_EPS.get(family, 1e-6))),
        rope_theta=theta, rope_scaling=scaling,
        tie_word_embeddings=flag(path, "tie_word_embeddings", raw.get("tie_word_embeddings", False)),
        attention_bias=True if family == "qwen2" else bias,   # Qwen2: q, k, v biases, always
        o_proj_bias=bias and family != "qwen2",
        mlp_bias=flag(path, "mlp_bias", raw.get("mlp_bias", False)),
        qk_norm=family in ("qwen3", "qwen3_moe"),
        sliding_window=_window(path, raw, family, sizes["num_hidden_layers"]),
        **_experts(path, raw, family, sizes), dtype=_dtype(path, raw))


def _required(path: Path, raw: dict, field: str) -> Any:
    if field not in raw:
        raise GraphError(f"{path}: missing field '{field}'")
    return raw[field]


def _aliased(path: Path, raw: dict, names: tuple[str, ...]) -> tuple[str, Any]:
    """The one value given under any of `names` (Hugging Face's attribute_map aliases)."""
    given = {n: raw[n] for n in names if n in raw}
    if len(set(map(repr, given.values()))) > 1:
        raise GraphError(f"{path}: fields {' and '.join(given)} disagree: "
                         + ", ".join(f"{n} = {v!r}" for n, v in given.items()))
    if not given:
        raise GraphError(f"{path}: missing field '{names[0]}'")
    return next(iter(given.items()))


def _heads(path: Path, raw: dict, family: str, sizes: dict[str, int]) -> dict[str, int]:
    """num_key_value_heads (null: one per query head; Llama may leave it out) and head_dim
    (null or left out: hidden_size / num_attention_heads; Qwen3 must give it)."""
    heads, hidden = sizes["num_attention_heads"], sizes["hidden_size"]
    if family == "llama" and "num_key_value_heads" not in raw:
        kv = heads
    else:
        kv = _required(path, raw, "num_key_value_heads")
        kv = heads if kv is None else integer(path, "num_key_value_heads", kv, 1, 1024)
    if heads % kv:
        raise GraphError(f"{path}: num_attention_heads {heads} is not a multiple of "
                         f"num_key_value_heads {kv}")
    head_dim = _required(path, raw, "head_dim") if family == "qwen3" else raw.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise GraphError(f"{path}: hidden_size {hidden} is not divisible by num_attention_heads "
                             f"{heads} (and head_dim is not given)")
        if hidden // heads % 2:
            raise GraphError(f"{path}: head_dim hidden_size / num_attention_heads = {hidden // heads} "
                             "is odd (the rotary embedding needs an even head_dim)")
        head_dim = 0    # DecoderConfig's "hidden_size / num_attention_heads", as the presets say it
    elif integer(path, "head_dim", head_dim, 2, 4096) % 2:
        raise GraphError(f"{path}: field 'head_dim' must be even (the rotary embedding rotates "
                         f"pairs), got {head_dim}")
    return {"num_key_value_heads": kv, "head_dim": head_dim}


_ROPE_KEYS = ("rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
              "original_max_position_embeddings", "partial_rotary_factor")
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _rope(path: Path, raw: dict, family: str, max_positions: int) -> tuple[float, RopeScaling | None]:
    """rope_theta and the llama3 scaling, from 5.x's `rope_parameters` or 4.x's `rope_theta` +
    `rope_scaling` (Hugging Face's standardize_rope_params reads both the same way)."""
    params, scaling = raw.get("rope_parameters"), raw.get("rope_scaling")
    if params is not None and scaling is not None:
        raise GraphError(f"{path}: fields rope_parameters and rope_scaling are both given "
                         f"({params!r}, {scaling!r}): give one")
    where = "rope_parameters" if params is not None else "rope_scaling"
    rope = params if params is not None else (scaling if scaling is not None else {})
    if not isinstance(rope, dict):
        raise GraphError(f"{path}: field '{where}' must be an object or null, got {rope!r}")
    for key, value in rope.items():
        if key not in _ROPE_KEYS:
            raise GraphError(f"{path}: field '{where}.{key}' is not a rope parameter Tessel knows "
                             f"(it might change the model), got {value!r}")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise GraphError(f"{path}: field '{where}.partial_rotary_factor' = "
                         f"{rope['partial_rotary_factor']!r}: a rotary embedding of part of each "
                         "head is not supported")
    if "rope_type" in rope and "type" in rope and rope["rope_type"] != rope["type"]:
        raise GraphError(f"{path}: fields {where}.rope_type and {where}.type disagree: "
                         f"{rope['rope_type']!r}, {rope['type']!r}")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise GraphError(f"{path}: field '{where}.rope_type' = {kind!r} is not supported "
                         f"({', '.join(ROPE_TYPES)})")
    inner, outer = rope.get("rope_theta"), raw.get("rope_theta")
    if inner is not None and outer is not None and inner != outer:
        raise GraphError(f"{path}: fields rope_theta and {where}.rope_theta disagree: "
                         f"{outer!r}, {inner!r}")
    theta_field = f"{where}.rope_theta" if inner is not None else "rope_theta"
    theta = inner if inner is not None else outer if outer is not None else _ROPE_THETA.get(family, 1e4)
    theta = positive_number(path, theta_field, theta)
    if kind == "default":
        extra = [k for k in _LLAMA3_KEYS if k in rope]
        if extra:
            raise GraphError(f"{path}: field '{where}.{extra[0]}' does not apply to rope_type "
                             f"'default', got {rope[extra[0]]!r}")
        return theta, None
    factors = {}
    for key in ("factor", "low_freq_factor", "high_freq_factor"):
        if key not in rope:
            raise GraphError(f"{path}: rope_type 'llama3' needs field '{where}.{key}'")
        factors[key] = positive_number(path, f"{where}.{key}", rope[key])
    if factors["factor"] < 1:
        raise GraphError(f"{path}: field '{where}.factor' must be at least 1 (it divides the "
                         f"low frequencies), got {rope['factor']!r}")
    if factors["high_freq_factor"] <= factors["low_freq_factor"]:
        raise GraphError(f"{path}: field '{where}.high_freq_factor' ({rope['high_freq_factor']!r}) "
                         f"must be above {where}.low_freq_factor ({rope['low_freq_factor']!r})")
    original = integer(path, f"{where}.original_max_position_embeddings",
                       rope.get("original_max_position_embeddings", max_positions), 1, 1 << 24)
    return theta, RopeScaling(original_max_position_embeddings=original, **factors)


def _window(path: Path, raw: dict, family: str, layers: int) -> int | None:
    """Keys a query sees (None: all). Mistral and Mixtral slide every layer by sliding_window;
    Qwen only with use_sliding_window, and Qwen2/Qwen3 only the layers layer_types (or
    max_window_layers: layers from it on) marks. A window on some layers only is refused."""
    if family == "llama":
        return None
    default = _SLIDING_WINDOW.get(family, 4096)
    window = raw.get("sliding_window", default)
    if window is not None:
        window = integer(path, "sliding_window", window, 1, 1 << 24)
    if family not in _QWEN:
        return window
    use = flag(path, "use_sliding_window", raw.get("use_sliding_window", False))
    if family == "qwen3_moe":
        return window if use else None
    types = raw.get("layer_types")
    if types is not None and not (isinstance(types, list) and len(types) == layers and all(
            t in ("full_attention", "sliding_attention") for t in types)):
        raise GraphError(f"{path}: field 'layer_types' must list 'full_attention' or "
                         f"'sliding_attention' for each of the {layers} layers, got {types!r}")
    first = integer(path, "max_window_layers", raw.get("max_window_layers", _MAX_WINDOW_LAYERS), 0, 1 << 16)
    if not use or window is None:
        return None
    if types is not None:
        sliding, why = [i for i, t in enumerate(types) if t == "sliding_attention"], "layer_types"
    else:
        sliding, why = list(range(first, layers)), f"max_window_layers {first}"
    if 0 < len(sliding) < layers:
        raise GraphError(f"{path}: use_sliding_window with {why} slides layers {sliding} of "
                         f"{layers} only: a window on some layers is not supported")
    return window if sliding else None


def _experts(path: Path, raw: dict, family: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Mixtral: every layer routes num_experts_per_tok of num_local_experts experts of width
    intermediate_size, renormalised. Qwen3-MoE: experts of moe_intermediate_size, renormalised
    when norm_topk_prob; layer i is a dense MLP (intermediate_size) when listed in
    mlp_only_layers or when (i + 1) is not a multiple of decoder_sparse_step."""
    if family not in _MOE:
        return {}
    layers = sizes["num_hidden_layers"]
    names = ("num_local_experts", "num_experts") if family == "mixtral" else ("num_experts", "num_local_experts")
    field, experts = _aliased(path, raw, names)
    experts = integer(path, field, experts, 1, 4096)
    top_k = integer(path, "num_experts_per_tok", _required(path, raw, "num_experts_per_tok"), 1, experts)
    if family == "mixtral":
        return dict(num_experts=experts, num_experts_per_tok=top_k,
                    moe_intermediate_size=sizes["intermediate_size"], norm_topk_prob=True)
    width = integer(path, "moe_intermediate_size", _required(path, raw, "moe_intermediate_size"), 1, 1 << 18)
    step = integer(path, "decoder_sparse_step", raw.get("decoder_sparse_step", 1), 1, 1024)
    only = raw.get("mlp_only_layers")
    only = [] if only is None else only
    if not (isinstance(only, list) and all(is_int(i) and 0 <= i < layers for i in only)):
        raise GraphError(f"{path}: field 'mlp_only_layers' must be a list of layer numbers from 0 "
                         f"to {layers - 1}, got {raw['mlp_only_layers']!r}")
    dense = tuple(i for i in range(layers) if i in only or (i + 1) % step)
    return dict(num_experts=experts, num_experts_per_tok=top_k, moe_intermediate_size=width,
                norm_topk_prob=flag(path, "norm_topk_prob", raw.get("norm_topk_prob", False)),
                dense_layers=dense)


_DTYPES = ("float32", "float16", "bfloat16")


def _dtype(path: Path, raw: dict) -> str:
    """The storage type the checkpoint declares (informational: weights are read as stored)."""
    given = {f: raw[f] for f in ("dtype", "torch_dtype") if f in raw}
    for field, value in given.items():
        if value not in _DTYPES:
            raise GraphError(f"{path}: field '{field}' must be one of {', '.join(_DTYPES)}, got {value!r}")
    if len(set(given.values())) > 1:
        raise GraphError(f"{path}: fields dtype and torch_dtype disagree: {given['dtype']!r}, "
                         f"{given['torch_dtype']!r}")
    return next(iter(given.values()), "float32")
