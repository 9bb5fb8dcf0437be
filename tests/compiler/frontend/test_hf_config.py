"""Hugging Face GPT-2 configs: every config.json field honoured (checked against an independent
numpy GPT-2) or refused with one line naming the file, the field and the value."""
import json
import math

import numpy as np
import pytest
from safetensors.numpy import save_file

from compiler.driver import prefill_logits
from compiler.frontend import PRESETS, build_graph, load_model
from compiler.frontend.hf_config import HONOURED, KNOWN_FIELDS, NEUTRAL, WITHOUT_EFFECT
from compiler.phase import prefill
from tests.bad_input import refuses

SMALL = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 16, "vocab_size": 40,
         "n_positions": 12}
TOKENS = [3, 17, 5, 39, 0, 22, 8]


def shapes(config: dict) -> dict[str, tuple[int, ...]]:
    d, v, p = config["n_embd"], config["vocab_size"], config["n_positions"]
    m = config.get("n_inner") or 4 * d
    out = {"wte.weight": (v, d), "wpe.weight": (p, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for i in range(config["n_layer"]):
        h = f"h.{i}."
        out.update({h + "ln_1.weight": (d,), h + "ln_1.bias": (d,), h + "ln_2.weight": (d,),
                    h + "ln_2.bias": (d,), h + "attn.c_attn.weight": (d, 3 * d),
                    h + "attn.c_attn.bias": (3 * d,), h + "attn.c_proj.weight": (d, d),
                    h + "attn.c_proj.bias": (d,), h + "mlp.c_fc.weight": (d, m),
                    h + "mlp.c_fc.bias": (m,), h + "mlp.c_proj.weight": (m, d),
                    h + "mlp.c_proj.bias": (d,)})
    return out


def checkpoint(path, config: dict, lm_head: bool = False, seed: int = 0,
               raw_config: str | bytes | None = None) -> dict[str, np.ndarray]:
    """Write config.json and model.safetensors (GPT2LMHeadModel's key names) under `path`."""
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * 0.4 + name.endswith("ln_1.weight")).astype(np.float32)
               for name, shape in shapes(config).items()}
    tensors = {f"transformer.{k}": v for k, v in weights.items()}
    if lm_head:
        weights["lm_head.weight"] = tensors["lm_head.weight"] = rng.standard_normal(
            (config["vocab_size"], config["n_embd"])).astype(np.float32)
    path.mkdir(exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    text = raw_config if raw_config is not None else json.dumps(config)
    (path / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return weights


def numpy_gpt2(w: dict[str, np.ndarray], config: dict, tokens: list[int]) -> np.ndarray:
    """GPT-2 written out from modeling_gpt2.py, in float64, independent of compiler/."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    d, heads = config["n_embd"], config["n_head"]
    hd, s = d // heads, len(tokens)

    def norm(x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + config.get("layer_norm_epsilon", 1e-5)) * w[name + ".weight"] + w[name + ".bias"]

    x = w["wte.weight"][tokens] + w["wpe.weight"][:s]
    for i in range(config["n_layer"]):
        h = f"h.{i}."
        q, k, v = np.split(norm(x, h + "ln_1") @ w[h + "attn.c_attn.weight"] + w[h + "attn.c_attn.bias"], 3, -1)
        q, k, v = (t.reshape(s, heads, hd).transpose(1, 0, 2) for t in (q, k, v))
        scores = q @ k.transpose(0, 2, 1)
        if config.get("scale_attn_weights", True):
            scores = scores / math.sqrt(hd)
        if config.get("scale_attn_by_inverse_layer_idx", False):
            scores = scores / (i + 1)
        scores = np.where(np.tril(np.ones((s, s), bool)), scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (p / p.sum(-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(s, d)
        x = x + ctx @ w[h + "attn.c_proj.weight"] + w[h + "attn.c_proj.bias"]
        f = norm(x, h + "ln_2") @ w[h + "mlp.c_fc.weight"] + w[h + "mlp.c_fc.bias"]
        f = 0.5 * f * (1 + np.tanh(0.7978845608028654 * (f + 0.044715 * f ** 3)))
        x = x + f @ w[h + "mlp.c_proj.weight"] + w[h + "mlp.c_proj.bias"]
    head = w["lm_head.weight"] if "lm_head.weight" in w and not config.get("tie_word_embeddings", True) else w["wte.weight"]
    return norm(x, "ln_f") @ head.T


@pytest.mark.parametrize("fields, lm_head", [
    ({}, False),
    ({"tie_word_embeddings": False}, True),
    ({"tie_word_embeddings": True}, True),               # HF ties: the stored head is ignored
    ({"scale_attn_weights": False}, False),
    ({"scale_attn_by_inverse_layer_idx": True}, False),
    ({"scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": True}, False),
    ({"n_inner": 24}, False),
    ({"n_inner": None, "activation_function": "gelu_pytorch_tanh", "reorder_and_upcast_attn": True}, False),
    ({"layer_norm_epsilon": 0.25, "activation_function": "gelu_fast"}, False),
], ids=["defaults", "untied", "tied-with-head", "no-scale", "inverse-layer", "inverse-only",
        "n_inner", "pytorch-tanh", "epsilon"])
def test_honoured_fields_give_the_logits_of_hugging_faces_semantics(tmp_path, fields, lm_head):
    config = SMALL | fields
    weights = checkpoint(tmp_path / "ckpt", config, lm_head=lm_head)
    logits = prefill_logits(load_model(str(tmp_path / "ckpt")), TOKENS)
    expected = numpy_gpt2(weights, config, TOKENS)
    assert np.abs(logits - expected).max() <= 1e-9 * np.abs(expected).max()


def test_each_honoured_field_changes_the_logits(tmp_path):
    """So the checks above cannot pass by ignoring a field."""
    base = numpy_gpt2(checkpoint(tmp_path / "a", SMALL), SMALL, TOKENS)
    for fields in ({"scale_attn_weights": False}, {"scale_attn_by_inverse_layer_idx": True},
                   {"layer_norm_epsilon": 0.25}):
        assert not np.allclose(prefill_logits(load_model(str(tmp_path / "a")), TOKENS),
                               numpy_gpt2(checkpoint(tmp_path / "b", SMALL | fields), SMALL | fields, TOKENS))
    untied = SMALL | {"tie_word_embeddings": False}
    assert not np.allclose(numpy_gpt2(checkpoint(tmp_path / "c", untied, lm_head=True), untied, TOKENS), base)


def test_aliases_and_legacy_n_ctx_are_read(tmp_path):
    config = {"model_type": "gpt2", "num_hidden_layers": 2, "num_attention_heads": 2,
              "hidden_size": 16, "n_embd": 16, "vocab_size": 40, "n_ctx": 12}
    checkpoint(tmp_path / "ckpt", SMALL, raw_config=json.dumps(config))
    model = load_model(str(tmp_path / "ckpt"))
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd, model.config.n_positions) == (2, 2, 16, 12)


def test_presets_keep_their_tied_graph():
    graph = build_graph(PRESETS["gpt2"], prefill(4))
    assert "lm_head.weight" not in graph and graph["lm_head"].inputs == ("ln_f", "wte.weight")
    assert {graph[f"h.{i}.attn.probs"].attr("scale") for i in range(12)} == {0.125}


def test_every_field_of_transformers_gpt2_config_has_a_place():
    """Each field GPT2Config.__init__ takes (transformers 4.x) is honoured, inert or neutral-only."""
    gpt2_config_fields = {
        "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
        "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
        "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
        "summary_first_dropout", "scale_attn_weights", "use_cache", "bos_token_id", "eos_token_id",
        "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "tie_word_embeddings",
        "add_cross_attention"}
    assert gpt2_config_fields <= KNOWN_FIELDS
    assert not set(HONOURED) & set(WITHOUT_EFFECT) and not set(NEUTRAL) & set(WITHOUT_EFFECT)


def nan_at(weights_of: str, value: float):
    def corrupt(path):
        from safetensors.numpy import load_file
        tensors = load_file(str(path / "model.safetensors"))
        tensors[weights_of].reshape(-1)[3] = value
        save_file(tensors, str(path / "model.safetensors"))
    return corrupt


BAD_CONFIGS = [
    ({"tie_word_embeddings": False}, r"missing tensor 'lm_head.weight' \(config.json unties the LM head\)"),
    ({"activation_function": "gelu"}, r"field 'activation_function' = 'gelu' is not supported"),
    ({"activation_function": "relu"}, r"field 'activation_function' = 'relu' is not supported"),
    ({"activation_function": 3}, r"field 'activation_function' = 3 is not supported"),
    ({"layer_norm_epsilon": math.inf}, r"field 'layer_norm_epsilon' must be a positive finite number, got inf"),
    ({"layer_norm_epsilon": math.nan}, r"field 'layer_norm_epsilon' must be a positive finite number, got nan"),
    ({"layer_norm_epsilon": 0}, r"field 'layer_norm_epsilon' must be a positive finite number, got 0"),
    ({"layer_norm_epsilon": "1e-5"}, r"field 'layer_norm_epsilon' must be a positive finite number, got '1e-5'"),
    ({"n_inner": 0}, r"field 'n_inner' must be null or an integer from 1 to 262144, got 0"),
    ({"n_inner": 2.5}, r"field 'n_inner' must be null or an integer .*, got 2.5"),
    ({"n_inner": 10 ** 9}, r"field 'n_inner' must be null or an integer .*, got 1000000000"),
    ({"scale_attn_weights": "yes"}, r"field 'scale_attn_weights' must be true or false, got 'yes'"),
    ({"scale_attn_by_inverse_layer_idx": 1}, r"field 'scale_attn_by_inverse_layer_idx' must be true or false, got 1"),
    ({"tie_word_embeddings": None}, r"field 'tie_word_embeddings' must be true or false, got None"),
    ({"reorder_and_upcast_attn": "no"}, r"field 'reorder_and_upcast_attn' must be true or false"),
    ({"rope_theta": 10000}, r"field 'rope_theta' is not a GPT-2 config field Tessel knows .*got 10000"),
    ({"add_cross_attention": True}, r"field 'add_cross_attention' = True: cross-attention layers are not supported"),
    ({"pruned_heads": {"0": [1]}}, r"field 'pruned_heads' = \{'0': \[1\]\}: pruned attention heads"),
    ({"quantization_config": {"bits": 4}}, r"field 'quantization_config' = .*quantised checkpoints"),
    ({"is_encoder_decoder": True}, r"field 'is_encoder_decoder' = True: encoder-decoder"),
    ({"auto_map": {"AutoModel": "x.Y"}}, r"field 'auto_map' = .*custom modelling code"),
    ({"model_type": "llama", "architectures": ["GPT2LMHeadModel"]}, r"model_type 'llama' is not gpt2"),
    ({"model_type": "llama"}, r"field 'n_embd' is not a LlamaForCausalLM config field Tessel knows"),
    ({"architectures": ["LlamaForCausalLM"]},
     r"model_type 'gpt2' does not match architectures LlamaForCausalLM \(expected 'llama'\)"),
    ({"architectures": ["PhiForCausalLM"]}, r"field 'architectures' = \['PhiForCausalLM'\] is not "
     r"supported \(supported: GPT2LMHeadModel \(or another GPT2\* class\), LlamaForCausalLM, "
     r"MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM\)"),
    ({"architectures": "GPT2LMHeadModel"}, r"field 'architectures' must be a list of class names"),
    ({"n_layer": 2.0}, r"field 'n_layer' must be an integer from 1 to 1024, got 2.0"),
    ({"n_layer": 10 ** 9}, r"field 'n_layer' must be an integer from 1 to 1024, got 1000000000"),
    ({"vocab_size": True}, r"field 'vocab_size' must be an integer .*, got True"),
    ({"n_head": 3}, r"n_embd 16 is not divisible by n_head 3"),
    ({"hidden_size": 32}, r"fields n_embd and hidden_size disagree: n_embd = 16, hidden_size = 32"),
]


@pytest.mark.parametrize("fields, message", BAD_CONFIGS, ids=[m[:40] for _, m in BAD_CONFIGS])
def test_refused_config_values_are_one_line_errors(tmp_path, capsys, fields, message):
    checkpoint(tmp_path / "ckpt", SMALL, raw_config=json.dumps(SMALL | fields))
    refuses(capsys, ["run", "--model", tmp_path / "ckpt", "--tokens", "1,2", "--logits", tmp_path / "o.npy"],
            r"ckpt/(config.json|model.safetensors)(:\d+:\d+)?: " + message)
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("raw, message", [
    (b'{"n_layer": 2, "n_layer": 3}', r"config.json: field 'n_layer' appears twice"),
    (b'{"n_layer": 2, \xff}', r"config.json: not UTF-8 text \(byte 15\)"),
    (b'[1, 2]', r"config.json: expected a JSON object"),
    (b'{"n_layer": Infinity, "n_head": 2, "n_embd": 16, "vocab_size": 40, "n_positions": 12}',
     r"config.json: field 'n_layer' must be an integer from 1 to 1024, got inf"),
])
def test_malformed_config_files_are_one_line_errors(tmp_path, capsys, raw, message):
    checkpoint(tmp_path / "ckpt", SMALL, raw_config=raw)
    refuses(capsys, ["graph", "--model", tmp_path / "ckpt"], message)


@pytest.mark.parametrize("tensor, value", [("transformer.h.1.mlp.c_fc.weight", np.nan),
                                           ("transformer.wpe.weight", -np.inf),
                                           ("transformer.ln_f.bias", np.inf)])
def test_non_finite_weights_are_an_error_naming_the_tensor(tmp_path, capsys, tensor, value):
    checkpoint(tmp_path / "ckpt", SMALL)
    nan_at(tensor, value)(tmp_path / "ckpt")
    refuses(capsys, ["run", "--model", tmp_path / "ckpt", "--tokens", "1,2", "--logits", tmp_path / "o.npy"],
            rf"model.safetensors: tensor '{tensor}' holds NaN or infinite values")
    assert not (tmp_path / "o.npy").exists()


def test_integer_tensors_are_refused_naming_the_tensor(tmp_path, capsys):
    checkpoint(tmp_path / "ckpt", SMALL)
    from safetensors.numpy import load_file
    tensors = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"].astype(np.int32)
    save_file(tensors, str(tmp_path / "ckpt" / "model.safetensors"))
    refuses(capsys, ["graph", "--model", tmp_path / "ckpt"],
            r"tensor 'transformer.wte.weight' has dtype I32, expected one of F16, BF16, F32, F64")
