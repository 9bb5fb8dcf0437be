"""Llama-family config.json: every field has one place (honoured, without effect, neutral),
and every refused value is one line naming the file, the field and the value."""
import json
import shutil
from pathlib import Path

import pytest

from compiler.frontend.hf import load_config
from compiler.frontend.hf_fields import NEUTRAL as COMMON_NEUTRAL
from compiler.frontend.hf_llama import ARCHITECTURES, HONOURED, NEUTRAL, WITHOUT_EFFECT
from tests.bad_input import refuses

FIXTURES = Path(__file__).parents[2] / "fixtures"
FIXTURE = {"llama": "tiny-llama3-tied", "llama5": "tiny-llama-sharded", "mistral": "tiny-mistral-swa",
           "qwen2": "tiny-qwen2-bias", "qwen3": "tiny-qwen3", "mixtral": "tiny-mixtral",
           "qwen3_moe": "tiny-qwen3-moe"}

# Fields each config class takes in transformers 4.57 and 5.x (to_dict of a default config)
# beyond PretrainedConfig's own, plus fields published checkpoints carry.
TRANSFORMERS_FIELDS = {
    "llama": {"attention_bias", "attention_dropout", "head_dim", "hidden_act", "hidden_size",
              "initializer_range", "intermediate_size", "max_position_embeddings", "mlp_bias",
              "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pretraining_tp",
              "rms_norm_eps", "rope_parameters", "rope_scaling", "rope_theta", "tie_word_embeddings",
              "use_cache", "vocab_size", "dtype", "torch_dtype"},
    "mistral": {"attention_dropout", "head_dim", "hidden_act", "hidden_size", "initializer_range",
                "intermediate_size", "max_position_embeddings", "num_attention_heads",
                "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_parameters",
                "rope_theta", "sliding_window", "tie_word_embeddings", "use_cache", "vocab_size"},
    "qwen2": {"attention_dropout", "hidden_act", "hidden_size", "initializer_range", "intermediate_size",
              "layer_types", "max_position_embeddings", "max_window_layers", "num_attention_heads",
              "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_parameters",
              "rope_scaling", "rope_theta", "sliding_window", "tie_word_embeddings", "use_cache",
              "use_sliding_window", "vocab_size", "use_mrope"},
    "qwen3": {"attention_bias", "attention_dropout", "head_dim", "hidden_act", "hidden_size",
              "initializer_range", "intermediate_size", "layer_types", "max_position_embeddings",
              "max_window_layers", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
              "rms_norm_eps", "rope_parameters", "rope_scaling", "rope_theta", "sliding_window",
              "tie_word_embeddings", "use_cache", "use_sliding_window", "vocab_size"},
    "mixtral": {"attention_dropout", "head_dim", "hidden_act", "hidden_size", "initializer_range",
                "intermediate_size", "max_position_embeddings", "num_attention_heads",
                "num_experts_per_tok", "num_hidden_layers", "num_key_value_heads", "num_local_experts",
                "output_router_logits", "rms_norm_eps", "rope_parameters", "rope_theta",
                "router_aux_loss_coef", "router_jitter_noise", "sliding_window", "tie_word_embeddings",
                "use_cache", "vocab_size"},
    "qwen3_moe": {"attention_bias", "attention_dropout", "decoder_sparse_step", "hidden_act",
                  "hidden_size", "initializer_range", "intermediate_size", "max_position_embeddings",
                  "mlp_only_layers", "moe_intermediate_size", "norm_topk_prob", "num_attention_heads",
                  "num_experts", "num_local_experts", "num_experts_per_tok", "num_hidden_layers",
                  "num_key_value_heads", "output_router_logits", "rms_norm_eps", "rope_parameters",
                  "rope_scaling", "rope_theta", "router_aux_loss_coef", "sliding_window",
                  "tie_word_embeddings", "use_cache", "use_sliding_window", "vocab_size",
                  "max_window_layers", "head_dim"},
}


def test_every_field_of_transformers_configs_has_exactly_one_place():
    for family, fields in TRANSFORMERS_FIELDS.items():
        honoured, ignored, neutral = set(HONOURED[family]), set(WITHOUT_EFFECT[family]), set(NEUTRAL[family])
        assert fields <= honoured | ignored | neutral, fields - honoured - ignored - neutral
        assert not honoured & ignored and not honoured & neutral and not ignored & neutral
        assert set(COMMON_NEUTRAL) <= neutral
    assert set(ARCHITECTURES.values()) == set(HONOURED)


def _write(tmp_path: Path, which: str, edit) -> Path:
    directory = Path(shutil.copytree(FIXTURES / FIXTURE[which], tmp_path / "ckpt"))
    raw = json.loads((directory / "config.json").read_text())
    edit(raw)
    (directory / "config.json").write_text(json.dumps(raw))
    return directory


def _set(**fields):
    return lambda raw: raw.update(fields)


def _drop(field):
    return lambda raw: raw.pop(field)


def _rope(**fields):
    def edit(raw):
        key = "rope_scaling" if "rope_scaling" in raw else "rope_parameters"
        raw[key] = {k: v for k, v in {**raw[key], **fields}.items() if v is not None}
    return edit


BAD = [
    # sizes and heads
    ("llama", _drop("vocab_size"), r"missing field 'vocab_size'"),
    ("llama", _set(hidden_size="64"), r"field 'hidden_size' must be an integer from 1 to 65536, got '64'"),
    ("llama", _set(num_hidden_layers=0), r"field 'num_hidden_layers' must be an integer from 1 to 1024, got 0"),
    ("llama", _set(intermediate_size=96.0), r"field 'intermediate_size' must be an integer .*, got 96.0"),
    ("llama", _set(num_key_value_heads=3), r"num_attention_heads 4 is not a multiple of num_key_value_heads 3"),
    ("llama", _set(hidden_size=66, head_dim=None),
     r"hidden_size 66 is not divisible by num_attention_heads 4 \(and head_dim is not given\)"),
    ("llama", _set(head_dim=15), r"field 'head_dim' must be even \(the rotary embedding rotates pairs\), got 15"),
    ("llama", _set(hidden_size=36, head_dim=None), r"head_dim hidden_size / num_attention_heads = 9 is odd"),
    ("mistral", _drop("num_key_value_heads"), r"missing field 'num_key_value_heads'"),
    ("qwen3", _drop("head_dim"), r"missing field 'head_dim'"),
    # kind
    ("llama", _set(model_type="mistral"),
     r"model_type 'mistral' does not match architectures LlamaForCausalLM \(expected 'llama'\)"),
    ("llama", _set(architectures=["LlamaForCausalLM", "MistralForCausalLM"]),
     r"field 'architectures' = \['LlamaForCausalLM', 'MistralForCausalLM'\] is not supported \(supported: "),
    ("llama", _set(architectures=["LlamaModel"]), r"field 'architectures' = \['LlamaModel'\] is not supported"),
    ("llama", _set(rotary_dim=8), r"field 'rotary_dim' is not a LlamaForCausalLM config field Tessel knows "
                                  r"\(it might change the model\), got 8"),
    ("llama", _set(sliding_window=4), r"field 'sliding_window' is not a LlamaForCausalLM config field"),
    ("qwen2", _set(attention_bias=False), r"field 'attention_bias' is not a Qwen2ForCausalLM config field"),
    ("llama", _set(hidden_act="gelu"), r"field 'hidden_act' = 'gelu' is not supported \(the MLP's activation is silu\)"),
    ("llama", _set(quantization_config={"bits": 4}), r"field 'quantization_config' = .*quantised checkpoints"),
    ("qwen2", _set(use_mrope=True), r"field 'use_mrope' = True: multimodal rotary embedding is not supported"),
    ("llama", _set(dtype="int8"), r"field 'dtype' must be one of float32, float16, bfloat16, got 'int8'"),
    ("llama", _set(torch_dtype="float16"), r"fields dtype and torch_dtype disagree: 'bfloat16', 'float16'"),
    # flags and numbers
    ("llama", _set(tie_word_embeddings="yes"), r"field 'tie_word_embeddings' must be true or false, got 'yes'"),
    ("llama", _set(attention_bias=1), r"field 'attention_bias' must be true or false, got 1"),
    ("llama", _set(rms_norm_eps=0), r"field 'rms_norm_eps' must be a positive finite number, got 0"),
    ("llama", _set(rms_norm_eps=float("inf")), r"field 'rms_norm_eps' must be a positive finite number, got inf"),
    # rope, 4.x style
    ("llama", _set(rope_theta=-1), r"field 'rope_theta' must be a positive finite number, got -1"),
    ("llama", _rope(rope_type="yarn"), r"field 'rope_scaling.rope_type' = 'yarn' is not supported \(default, llama3\)"),
    ("llama", _rope(rope_type=None, type="linear"), r"field 'rope_scaling.rope_type' = 'linear' is not supported"),
    ("llama", _rope(type="default"), r"fields rope_scaling.rope_type and rope_scaling.type disagree: 'llama3', 'default'"),
    ("llama", _rope(factor=None), r"rope_type 'llama3' needs field 'rope_scaling.factor'"),
    ("llama", _rope(factor=0.5), r"field 'rope_scaling.factor' must be at least 1 .*got 0.5"),
    ("llama", _rope(factor="8"), r"field 'rope_scaling.factor' must be a positive finite number, got '8'"),
    ("llama", _rope(high_freq_factor=1.0),
     r"field 'rope_scaling.high_freq_factor' \(1.0\) must be above rope_scaling.low_freq_factor \(1.0\)"),
    ("llama", _rope(original_max_position_embeddings=16.5),
     r"field 'rope_scaling.original_max_position_embeddings' must be an integer .*got 16.5"),
    ("llama", _rope(beta_fast=32), r"field 'rope_scaling.beta_fast' is not a rope parameter Tessel knows"),
    ("llama", _rope(partial_rotary_factor=0.5), r"field 'rope_scaling.partial_rotary_factor' = 0.5: a rotary "
                                                r"embedding of part of each head is not supported"),
    ("llama", _set(rope_scaling="llama3"), r"field 'rope_scaling' must be an object or null, got 'llama3'"),
    ("llama", _set(rope_parameters={"rope_type": "default"}),
     r"fields rope_parameters and rope_scaling are both given"),
    # rope, 5.x style
    ("llama5", _set(rope_theta=500000.0),
     r"fields rope_theta and rope_parameters.rope_theta disagree: 500000.0, 10000.0"),
    ("qwen2", _rope(factor=2.0), r"field 'rope_parameters.factor' does not apply to rope_type 'default', got 2.0"),
    ("qwen2", _rope(rope_type="dynamic", factor=2.0), r"field 'rope_parameters.rope_type' = 'dynamic' is not supported"),
    ("qwen2", _set(partial_rotary_factor=0.5), r"field 'partial_rotary_factor' = 0.5: a rotary embedding of part"),
    # windows
    ("mistral", _set(sliding_window=0), r"field 'sliding_window' must be an integer from 1 to 16777216, got 0"),
    ("qwen2", _set(use_sliding_window=True, sliding_window=4, layer_types=None, max_window_layers=1),
     r"use_sliding_window with max_window_layers 1 slides layers \[1\] of 2 only: a window on some layers "
     r"is not supported"),
    ("qwen2", _set(use_sliding_window=True, sliding_window=4, layer_types=["full_attention", "sliding_attention"]),
     r"use_sliding_window with layer_types slides layers \[1\] of 2 only"),
    ("qwen2", _set(layer_types=["full_attention"]),
     r"field 'layer_types' must list 'full_attention' or 'sliding_attention' for each of the 2 layers"),
    ("qwen2", _set(use_sliding_window="no"), r"field 'use_sliding_window' must be true or false, got 'no'"),
    ("qwen2", _set(max_window_layers=-1), r"field 'max_window_layers' must be an integer from 0 to 65536, got -1"),
    # experts
    ("mixtral", _set(num_experts=8), r"fields num_local_experts and num_experts disagree: num_local_experts = 4, "
                                     r"num_experts = 8"),
    ("mixtral", _drop("num_local_experts"), r"missing field 'num_local_experts'"),
    ("mixtral", _set(num_experts_per_tok=5), r"field 'num_experts_per_tok' must be an integer from 1 to 4, got 5"),
    ("mixtral", _set(num_local_experts=0), r"field 'num_local_experts' must be an integer from 1 to 4096, got 0"),
    ("qwen3_moe", _drop("moe_intermediate_size"), r"missing field 'moe_intermediate_size'"),
    ("qwen3_moe", _set(norm_topk_prob="true"), r"field 'norm_topk_prob' must be true or false, got 'true'"),
    ("qwen3_moe", _set(decoder_sparse_step=0), r"field 'decoder_sparse_step' must be an integer from 1 to 1024, got 0"),
    ("qwen3_moe", _set(mlp_only_layers=[2]),
     r"field 'mlp_only_layers' must be a list of layer numbers from 0 to 1, got \[2\]"),
    ("qwen3_moe", _set(mlp_only_layers=[]), r"unexpected tensor 'model.layers.1.mlp.down_proj.weight'"),
    ("qwen3_moe", _set(decoder_sparse_step=2, mlp_only_layers=[]),
     r"unexpected tensor 'model.layers.0.mlp.experts.0.down_proj.weight'"),
    # config against the checkpoint
    ("llama", _set(tie_word_embeddings=False), r"missing tensor 'lm_head.weight' \(config.json unties the LM head\)"),
    ("llama", _set(attention_bias=True), r"missing tensor 'model.layers.0.self_attn.k_proj.bias'"),
    ("llama", _set(intermediate_size=95),
     r"tensor 'model.layers.0.mlp.down_proj.weight' has shape \[64, 96\], config.json implies \[64, 95\]"),
    ("llama5", _set(mlp_bias=False), r"unexpected tensor 'model.layers.0.mlp.\w+.bias'"),
    ("mixtral", _set(num_local_experts=5),
     r"tensor 'model.layers.0.block_sparse_moe.gate.weight' has shape \[4, 64\], config.json implies \[5, 64\]"),
]


@pytest.mark.parametrize("which, edit, message", BAD, ids=[f"{w}:{m[:50]}" for w, _, m in BAD])
def test_refused_values_are_one_line_errors_naming_file_field_and_value(tmp_path, capsys, which, edit, message):
    directory = _write(tmp_path, which, edit)
    refuses(capsys, ["run", "--model", directory, "--tokens", "1,2", "--logits", tmp_path / "o.npy"],
            r"ckpt/(config.json|model.safetensors|model-0000\d-of-00003.safetensors)(:\d+:\d+)?: " + message)
    assert not (tmp_path / "o.npy").exists()


def _config(tmp_path: Path, which: str, edit):
    return load_config(_write(tmp_path, which, edit))


def test_defaults_are_hugging_faces(tmp_path):
    """A field left out takes the default of the family's configuration class."""
    def without(*fields):
        return lambda raw: [raw.pop(f, None) for f in fields]

    mistral = _config(tmp_path / "m", "mistral", without("sliding_window", "rms_norm_eps", "rope_parameters",
                                                         "tie_word_embeddings", "head_dim", "dtype"))
    assert (mistral.sliding_window, mistral.rms_norm_eps, mistral.rope_theta, mistral.tie_word_embeddings,
            mistral.head_dim_, mistral.dtype) == (4096, 1e-6, 10000.0, False, 16, "float32")
    mixtral = _config(tmp_path / "x", "mixtral", without("sliding_window", "rms_norm_eps", "rope_theta"))
    assert (mixtral.sliding_window, mixtral.rms_norm_eps, mixtral.rope_theta) == (None, 1e-5, 1e6)
    qwen = _config(tmp_path / "q", "qwen3_moe", without("norm_topk_prob", "decoder_sparse_step", "mlp_only_layers"))
    assert (qwen.norm_topk_prob, qwen.dense_layers) == (False, ())
    llama = _config(tmp_path / "l", "llama", without("num_key_value_heads", "attention_bias", "mlp_bias"))
    assert (llama.num_key_value_heads, llama.attention_bias, llama.o_proj_bias, llama.mlp_bias) == (4, False, False, False)


def test_window_and_dense_layer_rules(tmp_path):
    """Qwen2/Qwen3 slide only layers layer_types (or max_window_layers) marks: none or all is
    honoured; Qwen3-MoE slides every layer with use_sliding_window; decoder_sparse_step makes
    layers whose number + 1 is not a multiple of it dense."""
    def qwen2(**fields):
        return _config(tmp_path / str(len(list(tmp_path.iterdir()))), "qwen2", _set(**fields)).sliding_window
    assert qwen2(use_sliding_window=True, sliding_window=4, layer_types=None, max_window_layers=2) is None
    assert qwen2(use_sliding_window=True, sliding_window=4, layer_types=None, max_window_layers=0) == 4
    assert qwen2(use_sliding_window=True, sliding_window=4, layer_types=["sliding_attention"] * 2) == 4
    assert qwen2(use_sliding_window=True, sliding_window=None, layer_types=["sliding_attention"] * 2) is None
    assert qwen2(use_sliding_window=False, sliding_window=4, layer_types=["sliding_attention"] * 2) is None
    moe = _config(tmp_path / "moe", "qwen3_moe", _set(use_sliding_window=True, sliding_window=3,
                                                      max_window_layers=1, decoder_sparse_step=2,
                                                      mlp_only_layers=[]))
    assert (moe.sliding_window, moe.dense_layers) == (3, (0,))
    assert _config(tmp_path / "q3", "qwen3", _set(attention_bias=True)).o_proj_bias is True
