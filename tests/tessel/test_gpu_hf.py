"""tessel/gpu_hf.py: the operators a Hugging Face eager generate step launches, counted against
the transformers source (GPT-2 of the 4.3x releases, Llama and greedy_search of 4.38), their
bytes, the V100 citation they are held to, and `--gpu-mode hf` on the command line (its
refusals are in the bad-input corpus, tests/test_bad_inputs.py)."""
from __future__ import annotations

import json

import pytest

from arch import load_arch
from compiler.frontend import PRESETS, DecoderConfig
from compiler.ir import GraphError
from compiler.phase import decode, prefill
from sim.gpu import CALIBRATION, CALIBRATION_TOLERANCE, floor_s, gpu_baseline
from tessel.cli import main
from tessel.gpu_hf import hf_kernels, hf_pass_cost
from tessel.gpu_kernels import HALF_BYTES, pass_cost, predict

GPT2 = PRESETS["gpt2"]
T4 = load_arch("gpu-t4")
# Llama-2-style fixtures transformers 4.38 loads: no rope scaling, head_dim = hidden / heads
LLAMA_GQA = DecoderConfig("llama-gqa", "llama", 512, 256, 688, 2, 8, 2, max_position_embeddings=512)
LLAMA_MHA = DecoderConfig("llama-mha", "llama", 512, 256, 688, 2, 8, 8, max_position_embeddings=512)

# GPT2Block.forward -> GPT2Attention.forward and ._attn (tuple past_key_values) -> GPT2MLP
GPT2_BLOCK = [
    "ln_1",                                  # self.ln_1(hidden_states)
    "attn.c_attn",                           # Conv1D.forward: torch.addmm
    "attn.cat_k", "attn.cat_v",              # torch.cat((past_key, key), dim=-2); values
    "attn.scores",                           # torch.matmul(query, key.transpose(-1, -2))
    "attn.scale_full", "attn.scale_div",     # attn_weights / torch.full([], size ** 0.5, device=)
    "attn.mask_value",                       # torch.full([], finfo.min, dtype=).to(device)
    "attn.causal_where",                     # torch.where(causal_mask, attn_weights, mask_value)
    "attn.mask_add",                         # attn_weights + attention_mask
    "attn.softmax",                          # nn.functional.softmax(attn_weights, dim=-1)
    "attn.context",                          # torch.matmul(attn_weights, value)
    "attn.c_proj", "attn.residual", "ln_2", "mlp.c_fc",
    # NewGELUActivation: 0.5 * input * (1.0 + tanh(sqrt(2 / pi) * (input + 0.044715 * pow(input, 3))))
    "mlp.act.mul_half", "mlp.act.pow", "mlp.act.mul_coef", "mlp.act.add_x", "mlp.act.mul_sqrt",
    "mlp.act.tanh", "mlp.act.add_one", "mlp.act.mul",
    "mlp.c_proj", "mlp.residual"]
RMS = ["to_fp32", "pow", "mean", "add_eps", "rsqrt", "mul", "to_dtype", "mul_weight"]   # LlamaRMSNorm
ROPE = ["mul_cos", "neg", "cat", "mul_sin", "add"]          # (x * cos) + (rotate_half(x) * sin)
# LlamaDecoderLayer.forward -> LlamaAttention.forward (eager) -> LlamaMLP
LLAMA_BLOCK = [
    *(f"input_layernorm.{op}" for op in RMS),
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
    # LlamaRotaryEmbedding.forward, called by every layer in 4.38
    *(f"self_attn.rotary_emb.{op}" for op in ("position_ids_float", "freqs", "cat", "cos", "sin",
                                               "cos_to", "sin_to")),
    *(f"self_attn.rope_q.{op}" for op in ROPE), *(f"self_attn.rope_k.{op}" for op in ROPE),
    "self_attn.cache_k_cat", "self_attn.cache_v_cat",        # DynamicCache.update: torch.cat
    "self_attn.repeat_kv_k", "self_attn.repeat_kv_v",        # repeat_kv: expand + reshape
    "self_attn.scores", "self_attn.scale_div",               # matmul(q, k^T) / math.sqrt(head_dim)
    "self_attn.mask_index", "self_attn.mask_add",            # attention_mask[:, :, cache_position, :kv]
    "self_attn.softmax", "self_attn.softmax_to",             # softmax(dtype=float32).to(q.dtype)
    "self_attn.context", "self_attn.o_proj", "residual_attn",
    *(f"post_attention_layernorm.{op}" for op in RMS),
    "mlp.gate_proj", "mlp.act_fn", "mlp.up_proj", "mlp.mul", "mlp.down_proj", "residual_mlp"]
# GenerationMixin.greedy_search (4.38) after each forward
GREEDY = ["argmax", "pad.mul", "pad.rsub", "pad.mul_pad", "pad.add", "cat_input_ids",
          "mask_new_ones", "cat_attention_mask", "eos.tile", "eos.ne", "eos.prod", "eos.mul",
          "stop.max", "stop.eq", "stop.item"]


def block(config, phase, prefix: str) -> list[str]:
    return [k.name.removeprefix(prefix) for k in hf_kernels(config, phase) if k.name.startswith(prefix)]


def by_name(config, phase) -> dict:
    return {k.name: k for k in hf_kernels(config, phase)}


def test_gpt2_block_runs_the_operators_of_the_transformers_source():
    assert block(GPT2, decode(128), "h.5.") == GPT2_BLOCK and len(GPT2_BLOCK) == 26
    # a prompt has no past to concatenate; merging its heads is a real copy
    fresh = [n for n in GPT2_BLOCK if n not in ("attn.cat_k", "attn.cat_v")]
    fresh.insert(fresh.index("attn.context") + 1, "attn.merge_heads")
    assert block(GPT2, prefill(16), "h.0.") == fresh


def test_llama_block_runs_the_operators_of_the_transformers_source():
    assert block(LLAMA_GQA, decode(64), "layers.1.") == LLAMA_BLOCK and len(LLAMA_BLOCK) == 55
    mha = [n for n in LLAMA_BLOCK if "repeat_kv" not in n]        # n_rep == 1: returned as is
    assert block(LLAMA_MHA, decode(64), "layers.1.") == mha
    fresh = [n for n in LLAMA_BLOCK if "cache_" not in n]         # the first update appends
    fresh.insert(fresh.index("self_attn.context") + 1, "self_attn.transpose_contiguous")
    assert block(LLAMA_GQA, prefill(16), "layers.0.") == fresh


def test_each_forward_and_greedy_step_around_the_blocks():
    names = [k.name for k in hf_kernels(GPT2, decode(128))]
    assert len(names) == 12 * 26 + 12 + 15
    assert names[:10] == ["prepare.position_ids.cumsum", "prepare.position_ids.sub",
                          "prepare.position_ids.eq", "prepare.position_ids.masked_fill",
                          "mask.to_dtype", "mask.rsub", "mask.mul_min", "wte", "wpe", "embed.add"]
    assert names[-17:] == ["ln_f", "lm_head", *(f"generate.{n}" for n in GREEDY)]
    llama = [k.name for k in hf_kernels(LLAMA_GQA, decode(64))]
    assert llama[-(8 + 2 + 15):] == [*(f"norm.{op}" for op in RMS), "lm_head", "logits_float",
                                     *(f"generate.{n}" for n in GREEDY)]
    assert "causal_mask.repeat" in llama and "prepare.cache_position" in llama
    # at batch > 1 the sliced input_ids and position_ids are made contiguous (copies)
    batched = [k.name for k in hf_kernels(LLAMA_GQA, decode(64, 4))]
    assert len(batched) == len(llama) + 2 and "prepare.input_ids_contiguous" in batched


def test_the_cache_copies_grow_with_the_kv_length():
    short, long = by_name(GPT2, decode(128)), by_name(GPT2, decode(384))
    for kv in ("k", "v"):           # the whole cache read and written again each step
        grown = long[f"h.0.attn.cat_{kv}"].bytes - short[f"h.0.attn.cat_{kv}"].bytes
        assert grown == 2 * 256 * 12 * 64 * HALF_BYTES
    assert long["generate.cat_input_ids"].bytes - short["generate.cat_input_ids"].bytes == 2 * 256 * 8
    short, long = by_name(LLAMA_GQA, decode(64)), by_name(LLAMA_GQA, decode(192))
    kv_heads, head_dim, group = 2, 32, 4
    step = 128 * kv_heads * head_dim * HALF_BYTES
    assert long["layers.0.self_attn.cache_k_cat"].bytes - short["layers.0.self_attn.cache_k_cat"].bytes == 2 * step
    assert (long["layers.0.self_attn.repeat_kv_v"].bytes
            - short["layers.0.self_attn.repeat_kv_v"].bytes) == (1 + group) * step
    # the mask is built from the max_position_embeddings^2 buffer whatever the length
    assert long["causal_mask.repeat"].bytes == short["causal_mask.repeat"].bytes == 2 * 512 * 512


def test_the_hf_gpt2_v100_citation_is_met_in_hf_mode():
    point = next(p for p in CALIBRATION if p.key == "hf-gpt2-v100")
    assert point.mode == "hf" and not point.known_miss
    predicted = predict(point)
    assert abs(point.error(predicted)) <= CALIBRATION_TOLERANCE
    v100 = load_arch("gpu-v100")
    eager = pass_cost(GPT2, decode(128), v100, "eager")[0]     # the graph's 14 kernels a block
    assert predicted > 1.5 * eager
    result = gpu_baseline(hf_kernels(GPT2, decode(128)), v100, "hf")
    assert result.mode == "hf" and "Hugging Face" in result.assumptions[1]
    assert sum(k.overhead_s for k in result.kernels) > 0.8 * result.time_s     # host-bound


@pytest.mark.parametrize("config", [GPT2, LLAMA_GQA], ids=["gpt2", "llama"])
def test_prefill_and_decode_both_run_and_no_operator_beats_its_floor(config):
    first, step = hf_kernels(config, prefill(64)), hf_kernels(config, decode(64))
    head = {k.name: k for k in first}["lm_head"]
    assert (head.kind, head.m) == ("gemm", 64)       # HF computes every prompt position's logits
    assert first[-1].name == step[-1].name == "generate.stop.item"
    assert hf_pass_cost(config, prefill(64), T4)[0] > hf_pass_cost(config, decode(64), T4)[0] > 0
    for kernels in (first, step):
        for k, t in zip(kernels, gpu_baseline(kernels, T4, "hf").kernels):
            assert t.time_s >= floor_s(k, T4) and t.overhead_s == T4.eager_overhead_us[k.kind] * 1e-6
    assert pass_cost(config, decode(64), T4, "hf") == hf_pass_cost(config, decode(64), T4)


def test_fp32_weights_double_the_streamed_bytes():
    half, full = by_name(GPT2, decode(128)), {k.name: k for k in hf_kernels(GPT2, decode(128), 4)}
    assert full["lm_head"].bytes == 2 * half["lm_head"].bytes
    assert hf_pass_cost(GPT2, decode(128), T4, 4)[0] > hf_pass_cost(GPT2, decode(128), T4)[0]
    with pytest.raises(ValueError, match="itemsize must be 2 .fp16. or 4 .fp32., got 1"):
        hf_kernels(GPT2, decode(128), 1)


def test_what_the_modelled_code_cannot_run_is_refused():
    with pytest.raises(GraphError, match=r"^--gpu-mode hf: model 'mixtral-8x7b' is not modelled: "
                                         r"a mixture-of-experts model"):
        hf_kernels(PRESETS["mixtral-8x7b"], decode(8))
    with pytest.raises(GraphError, match=r"^--gpu-mode hf: model 'qwen3-8b' is not modelled: family qwen3"):
        pass_cost(PRESETS["qwen3-8b"], decode(8), T4, "hf")
    with pytest.raises(GraphError, match="Hugging Face's eager attention is unfused"):
        pass_cost(GPT2, decode(8), T4, "hf", "fused")


def test_the_reports_say_the_mode(capsys, tmp_path, tiny_hf):
    out = tmp_path / "r.json"
    argv = ["--model", str(tiny_hf), "--phase", "decode", "--kv", "8", "--gpu-mode", "hf", "--no-functional"]
    assert main(["sim", "--target", "pim", "--gpu", "t4", "--json", str(out), *argv]) == 0
    text = capsys.readouterr().out
    assert "GPU baselines (Hugging Face eager generate, transformers' own operators in fp16, hf mode" in text
    assert json.loads(out.read_text())["gpu"]["gpu-t4"]["mode"] == "hf"
    assert main(["compare", "--targets", "pim", *argv]) == 0
    assert capsys.readouterr().out.startswith("tessel compare: tiny-gpt2, decode kv=8 batch=1, GPU hf mode")
