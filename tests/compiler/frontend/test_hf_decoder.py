"""Hugging Face checkpoints of the Llama-style families: the reference executor's logits equal
Hugging Face's (tools/make_hf_decoder_fixtures.py saved them: float32, eager attention) for a
prefill and a cached decode step of every fixture, and the config fields the fixtures
exercise are shown to matter."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import PRESETS, build_graph, load_model
from compiler.frontend.decoder import LINEAR_WEIGHT_SUFFIXES, DecoderConfig
from compiler.frontend.hf import load_config
from compiler.ir import OpKind
from compiler.phase import prefill
from tests.families.published import PUBLISHED
from tests.families.tiny import TINY

FIXTURES = Path(__file__).parents[2] / "fixtures"
N_PREFILL = 12
TOLERANCE = 1e-4      # max |ours - HF| / max |HF|, float32 against float32
# fixture -> what its config.json must say (so each fixture tests what it claims to)
FIXTURES_EXPECT = {
    "tiny-llama3-tied": dict(family="llama", tie_word_embeddings=True, num_key_value_heads=2,
                             rope_theta=5e5, dtype="bfloat16"),
    "tiny-llama-sharded": dict(family="llama", tie_word_embeddings=False, attention_bias=True,
                               o_proj_bias=True, mlp_bias=True, dtype="float16"),
    "tiny-mistral-swa": dict(family="mistral", sliding_window=5, num_key_value_heads=1),
    "tiny-qwen2-bias": dict(family="qwen2", attention_bias=True, o_proj_bias=False,
                            tie_word_embeddings=True, dtype="float32"),
    "tiny-qwen3": dict(family="qwen3", qk_norm=True, head_dim=32, hidden_size=64, num_attention_heads=4),
    "tiny-mixtral": dict(family="mixtral", num_experts=4, num_experts_per_tok=2, norm_topk_prob=True),
    "tiny-mixtral-fused": dict(family="mixtral", num_experts=4, num_experts_per_tok=2),
    "tiny-qwen3-moe": dict(family="qwen3_moe", num_experts=8, num_experts_per_tok=2,
                           norm_topk_prob=True, dense_layers=(1,)),
    "tiny-qwen3-moe-fused": dict(family="qwen3_moe", num_experts=6, num_experts_per_tok=3,
                                 norm_topk_prob=False, sliding_window=6, dense_layers=()),
}


def tokens(fixture: Path) -> list[int]:
    return json.loads((fixture / "tokens.json").read_text())["tokens"]


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def errors(directory: Path, expected: Path) -> tuple[float, float]:
    """Relative errors of prefill (first 12 tokens) and decode (token 13 on their cache)."""
    model, ids = load_model(str(directory)), tokens(expected)
    return (rel_err(prefill_logits(model, ids[:N_PREFILL], np.float32), np.load(expected / "expected_logits.npy")),
            rel_err(decode_logits(model, ids, np.float32), np.load(expected / "expected_decode_logits.npy")))


def test_every_fixture_directory_is_checked():
    made = {p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file() and "gpt2" not in p.name}
    assert made == set(FIXTURES_EXPECT)


@pytest.mark.parametrize("name", FIXTURES_EXPECT)
def test_reference_logits_equal_hugging_face(name):
    fixture = FIXTURES / name
    config = load_model(str(fixture)).config
    assert isinstance(config, DecoderConfig)
    for field, value in FIXTURES_EXPECT[name].items():
        assert getattr(config, field) == value, field
    assert np.load(fixture / "expected_logits.npy").shape == (N_PREFILL, config.vocab_size)
    assert len(tokens(fixture)) == N_PREFILL + 1
    prefill_err, decode_err = errors(fixture, fixture)
    assert prefill_err < TOLERANCE and decode_err < TOLERANCE, (prefill_err, decode_err)


def test_fixtures_store_what_they_claim():
    """Shards with an index, fused experts, BF16/F16/F32 storage, per-expert keys (4.x)."""
    def header_keys(path):
        from compiler.frontend.safetensors_file import read_header
        return {k: t.dtype for k, t in read_header(path).items()}

    sharded = FIXTURES / "tiny-llama-sharded"
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) >= 2 and not (sharded / "model.safetensors").exists()
    assert set(header_keys(next(sharded.glob("model-*.safetensors"))).values()) == {"F16"}
    fused = header_keys(FIXTURES / "tiny-mixtral-fused/model.safetensors")
    assert "model.layers.0.mlp.experts.gate_up_proj" in fused and "model.layers.0.mlp.gate.weight" in fused
    assert "model.layers.0.mlp.experts.down_proj" in header_keys(FIXTURES / "tiny-qwen3-moe-fused/model.safetensors")
    per_expert = header_keys(FIXTURES / "tiny-mixtral/model.safetensors")
    assert "model.layers.1.block_sparse_moe.experts.3.w2.weight" in per_expert
    assert set(per_expert.values()) == {"BF16"}
    assert set(header_keys(FIXTURES / "tiny-qwen2-bias/model.safetensors").values()) == {"F32"}
    qwen3_moe = header_keys(FIXTURES / "tiny-qwen3-moe/model.safetensors")
    assert "model.layers.0.mlp.experts.7.down_proj.weight" in qwen3_moe
    assert "model.layers.1.mlp.gate_proj.weight" in qwen3_moe         # the dense layer
    assert "lm_head.weight" not in header_keys(FIXTURES / "tiny-llama3-tied/model.safetensors")
    raw = json.loads((FIXTURES / "tiny-llama3-tied/config.json").read_text())
    assert raw["rope_scaling"]["rope_type"] == "llama3" and "rope_parameters" not in raw   # 4.x style
    raw = json.loads((FIXTURES / "tiny-llama-sharded/config.json").read_text())
    assert raw["rope_parameters"]["rope_type"] == "llama3" and "rope_theta" not in raw    # 5.x style


def _edited(tmp_path: Path, name: str, edit) -> Path:
    directory = tmp_path / name
    shutil.copytree(FIXTURES / name, directory)
    raw = json.loads((directory / "config.json").read_text())
    edit(raw)
    (directory / "config.json").write_text(json.dumps(raw))
    return directory


@pytest.mark.parametrize("name, edit", [
    ("tiny-mistral-swa", lambda c: c.update(sliding_window=None)),
    ("tiny-llama3-tied", lambda c: c.pop("rope_scaling")),
    ("tiny-llama3-tied", lambda c: c["rope_scaling"].update(original_max_position_embeddings=64)),
    ("tiny-llama-sharded", lambda c: c["rope_parameters"].update(factor=2.0)),
    ("tiny-qwen2-bias", lambda c: c["rope_parameters"].update(rope_theta=10000.0)),
    ("tiny-qwen3", lambda c: c.update(rms_norm_eps=0.1)),
    ("tiny-mixtral", lambda c: c.update(num_experts_per_tok=1)),
    ("tiny-qwen3-moe", lambda c: c.update(norm_topk_prob=False)),
    ("tiny-qwen3-moe-fused", lambda c: c.update(norm_topk_prob=True)),
    ("tiny-qwen3-moe-fused", lambda c: c.update(use_sliding_window=False)),
], ids=["window", "llama3", "llama3-original", "rope-factor", "theta", "eps", "top-k",
        "norm-topk", "norm-topk-fused", "qwen-window"])
def test_each_honoured_field_changes_the_logits(tmp_path, name, edit):
    """So the matches above cannot come from ignoring a field."""
    assert min(errors(_edited(tmp_path, name, edit), FIXTURES / name)) > 100 * TOLERANCE


def test_linear_weight_suffixes_name_exactly_the_linear_weights():
    """The loader transposes parameters named by decoder.LINEAR_WEIGHT_SUFFIXES from nn.Linear's
    [out, in]: they must be exactly the weights the graph multiplies as [in, out] (linear
    weights and expert matrices), in every family's graph (the presets' names are these)."""
    fixtures = (load_config(FIXTURES / name) for name in FIXTURES_EXPECT)    # biases, fused experts
    for config in (*TINY.values(), *fixtures):
        graph = build_graph(config, prefill(1))
        linear = {op.inputs[1] for op in graph.ops if op.kind is OpKind.LINEAR}
        linear |= {w for op in graph.ops if op.kind is OpKind.MOE for w in op.inputs[2:]}
        named = {p.name for p in graph.params if p.name.endswith(LINEAR_WEIGHT_SUFFIXES)}
        assert named == linear, config.name


def _to_5x(raw: dict) -> dict:
    """The same config as transformers 5.x writes it: rope_parameters, dtype."""
    out = {k: v for k, v in raw.items() if k not in ("rope_theta", "rope_scaling", "torch_dtype")}
    out["rope_parameters"] = {"rope_theta": raw["rope_theta"], "rope_type": "default",
                              **(raw.get("rope_scaling") or {})}
    out["dtype"] = raw["torch_dtype"]
    if raw["model_type"] in ("mixtral", "qwen3_moe"):
        out["num_local_experts"] = out.pop("num_local_experts", None) or out.pop("num_experts")
    return out


@pytest.mark.parametrize("preset", PUBLISHED)
@pytest.mark.parametrize("style", ["4.x", "5.x"])
def test_published_configs_give_the_presets(tmp_path, preset, style):
    raw = PUBLISHED[preset] if style == "4.x" else _to_5x(PUBLISHED[preset])
    directory = tmp_path / preset
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(raw))
    assert load_config(directory) == dataclasses.replace(PRESETS[preset], name=preset)


def test_sharded_tensors_are_read_from_their_shard(tmp_path):
    """The same weights in one file or three shards give the same logits."""
    from safetensors.numpy import load_file, save_file
    sharded = FIXTURES / "tiny-llama-sharded"
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(sharded / "config.json", single)
    tensors = {}
    for shard in sharded.glob("model-*.safetensors"):
        tensors.update(load_file(str(shard)))
    save_file(tensors, str(single / "model.safetensors"))
    ids = tokens(sharded)[:N_PREFILL]
    assert np.array_equal(prefill_logits(load_model(str(single)), ids, np.float32),
                          prefill_logits(load_model(str(sharded)), ids, np.float32))
