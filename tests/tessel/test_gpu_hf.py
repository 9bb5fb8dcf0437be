"""tessel/gpu_hf.py: the operators a Hugging Face eager generate step launches, counted against
the transformers source (GPT-2 of the 4.3x releases with greedy_search of 4.38; Llama, Mistral,
Qwen2 and Qwen3 with the generate loop of 4.51.3), their bytes, the V100 citation they are held
to, and `--gpu-mode hf` on the command line (its refusals are in the bad-input corpus,
tests/test_bad_inputs.py)."""
from __future__ import annotations

import dataclasses
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
LLAMA3 = PRESETS["llama-3.2-1b"]          # llama3 rope scaling, GQA 32/8, head_dim 64, tied
T4 = load_arch("gpu-t4")
# a Llama-2-style config (no rope scaling) with one KV head per query head: repeat_kv returns it
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
# GenerationMixin.greedy_search (4.38) after each forward: GPT-2's loop
GREEDY = ["argmax", "pad.mul", "pad.rsub", "pad.mul_pad", "pad.add", "cat_input_ids",
          "mask_new_ones", "cat_attention_mask", "eos.tile", "eos.ne", "eos.prod", "eos.mul",
          "stop.max", "stop.eq", "stop.item"]

# transformers 4.51.3, attn_implementation="eager"
RMS = ["to_fp32", "pow", "mean", "add_eps", "rsqrt", "mul", "to_dtype", "mul_weight"]   # LlamaRMSNorm
ROPE = ["mul_cos", "neg", "cat", "mul_sin", "add"]          # (x * cos) + (rotate_half(x) * sin)
# LlamaDecoderLayer.forward -> LlamaAttention.forward -> eager_attention_forward -> LlamaMLP
LLAMA3_BLOCK = [
    *(f"input_layernorm.{op}" for op in RMS),
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",     # .view().transpose(): free
    # apply_rotary_pos_emb(q, k, cos, sin): the table comes from LlamaModel, once per forward
    *(f"self_attn.rope_q.{op}" for op in ROPE), *(f"self_attn.rope_k.{op}" for op in ROPE),
    "self_attn.cache_k_cat", "self_attn.cache_v_cat",        # DynamicCache.update: torch.cat
    "self_attn.repeat_kv_k", "self_attn.repeat_kv_v",        # repeat_kv: expand + reshape
    "self_attn.scores", "self_attn.scale_mul",               # torch.matmul(q, k^T) * self.scaling
    "self_attn.mask_add",                                    # + attention_mask[:, :, :, :kv] (a view)
    "self_attn.softmax", "self_attn.softmax_to",             # softmax(dtype=float32).to(q.dtype)
    "self_attn.context",                                     # dropout(p=0.0) launches nothing
    "self_attn.o_proj", "residual_attn",                     # reshape().contiguous(): free for 1 token
    *(f"post_attention_layernorm.{op}" for op in RMS),
    "mlp.gate_proj", "mlp.act_fn", "mlp.up_proj", "mlp.mul", "mlp.down_proj", "residual_mlp"]
# Qwen3Attention: q_norm(q_proj(x).view(...)), then k_norm(k_proj(x).view(...)), then v_proj
QWEN3_BLOCK = [*LLAMA3_BLOCK[:9], *(f"self_attn.q_norm.{op}" for op in RMS), "self_attn.k_proj",
               *(f"self_attn.k_norm.{op}" for op in RMS), *LLAMA3_BLOCK[10:]]
# prepare_inputs_for_generation, then LlamaModel.forward up to the first layer
PREPARE = ["prepare.cache_position_ge", "prepare.cache_position_item",   # cache_position[-1] >= len: bool()
           "prepare.input_ids_index",                # input_ids[:, cache_position]
           "prepare.input_ids_clone",                # input_ids.clone(memory_format=contiguous_format)
           "prepare.position_ids.cumsum", "prepare.position_ids.sub",    # attention_mask.long().cumsum(-1) - 1
           "prepare.position_ids.eq", "prepare.position_ids.masked_fill",  # .masked_fill_(mask == 0, 1)
           "prepare.position_ids_clone",             # position_ids[:, -len:].clone(...)
           "embed_tokens"]
# _prepare_4d_causal_attention_mask_with_cache_position
MASK = ["causal_mask.full",                          # torch.full((S, T), min_dtype)
        "causal_mask.arange", "causal_mask.gt",      # torch.arange(T) > cache_position.reshape(-1, 1)
        "causal_mask.mul",                           # causal_mask *= ...
        "causal_mask.clone",                         # [None, None].expand(batch, 1, -1, -1).clone()
        "causal_mask.padding_add", "causal_mask.padding_eq",    # (mask + attention_mask) == 0
        "causal_mask.masked_fill", "causal_mask.setitem"]       # mask[..., :L] = mask[..., :L].masked_fill()
# Mistral and Qwen2: arange(T) <= cache_position.reshape(-1, 1) - sliding_window, or'ed in
WINDOW = ["causal_mask.window_arange", "causal_mask.window_sub", "causal_mask.window_le", "causal_mask.window_or"]
# LlamaRotaryEmbedding.forward: positions to float, inv_freq @ positions, cat, cos and sin each
# times attention_scaling, both to the model's dtype
ROTARY = [f"rotary_emb.{op}" for op in ("position_ids_float", "freqs", "cat", "cos", "cos_scaling",
                                         "sin", "sin_scaling", "cos_to", "sin_to")]
# GenerationMixin._sample (do_sample=False) after each forward
SAMPLE = ["mask_new_ones", "cat_attention_mask", "cache_position_add",   # _update_model_kwargs_...
          "logits_to_fp32",                          # logits[:, -1, :].to(copy=True, dtype=float32)
          "argmax", "pad.mul", "pad.rsub", "pad.mul_pad", "pad.add", "cat_input_ids",
          "criteria.full",                           # StoppingCriteriaList: torch.full(False)
          "criteria.max_length", "criteria.or_max_length",   # MaxLengthCriteria: torch.full(is_done)
          "criteria.eos_isin_fill", "criteria.eos_isin", "criteria.or_eos",   # EosTokenCriteria: isin
          "unfinished.not", "unfinished.and",        # unfinished_sequences & ~is_done
          "stop.max", "stop.eq", "stop.item"]        # max() == 0, then the loop's `if` on the host


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


def test_llama3_block_runs_the_operators_of_transformers_4_51():
    assert block(LLAMA3, decode(64), "layers.1.") == LLAMA3_BLOCK and len(LLAMA3_BLOCK) == 47
    mha = [n for n in LLAMA3_BLOCK if "repeat_kv" not in n]        # n_rep == 1: returned as is
    assert block(LLAMA_MHA, decode(64), "layers.1.") == mha and len(mha) == 45
    fresh = [n for n in LLAMA3_BLOCK if "cache_" not in n]          # the first update appends
    fresh.insert(fresh.index("self_attn.context") + 1, "self_attn.transpose_contiguous")
    assert block(LLAMA3, prefill(16), "layers.0.") == fresh and len(fresh) == 46
    # every layer runs the same operators; the rotary table is not among them
    assert all(block(LLAMA3, decode(64), f"layers.{i}.") == LLAMA3_BLOCK for i in (0, 15))


def test_mistral_and_qwen_blocks_differ_from_llama_only_where_their_modules_do():
    assert block(PRESETS["mistral-7b"], decode(64), "layers.3.") == LLAMA3_BLOCK
    qwen2 = by_name(PRESETS["qwen2.5-0.5b"], decode(64))
    assert block(PRESETS["qwen2.5-0.5b"], decode(64), "layers.3.") == LLAMA3_BLOCK
    # Qwen2Attention: q, k, v with bias=True (in the addmm), o_proj without
    d, hd = 896, 64
    assert qwen2["layers.0.self_attn.q_proj"].flops == 2 * 14 * hd * d + 14 * hd
    assert qwen2["layers.0.self_attn.o_proj"].flops == 2 * d * 14 * hd
    assert block(PRESETS["qwen3-8b"], decode(64), "layers.3.") == QWEN3_BLOCK and len(QWEN3_BLOCK) == 63
    q_norm = by_name(PRESETS["qwen3-8b"], decode(64))["layers.0.self_attn.q_norm.mean"]
    assert q_norm.flops == 32 * 128                    # over head_dim, for each of the 32 heads


def test_each_forward_and_greedy_step_around_the_blocks():
    names = [k.name for k in hf_kernels(GPT2, decode(128))]
    assert len(names) == 12 * 26 + 12 + 15
    assert names[:10] == ["prepare.position_ids.cumsum", "prepare.position_ids.sub",
                          "prepare.position_ids.eq", "prepare.position_ids.masked_fill",
                          "mask.to_dtype", "mask.rsub", "mask.mul_min", "wte", "wpe", "embed.add"]
    assert names[-17:] == ["ln_f", "lm_head", *(f"generate.{n}" for n in GREEDY)]
    llama = [k.name for k in hf_kernels(LLAMA3, decode(64))]
    assert llama[:28] == [*PREPARE, *MASK, *ROTARY]
    assert llama[-(8 + 1 + 21):] == [*(f"norm.{op}" for op in RMS), "lm_head",
                                     *(f"generate.{n}" for n in SAMPLE)]
    assert len(llama) == 28 + 16 * 47 + 9 + 21 == 810
    # a prompt: nothing to index, Llama takes the mask's upper triangle
    first = [k.name for k in hf_kernels(LLAMA3, prefill(16))]
    mask = MASK[:1] + ["causal_mask.triu"] + MASK[1:]
    assert first[:28] == [n for n in PREPARE if n != "prepare.input_ids_index"] + mask + ROTARY
    # Mistral (sliding_window 4096) and Qwen2 (config.sliding_window kept whatever
    # use_sliding_window says) also mask by the window; Qwen3-8B's is null; no triangle
    windowed = MASK[:3] + WINDOW + MASK[3:]
    for name, mask in (("mistral-7b", windowed), ("qwen2.5-7b", windowed), ("qwen3-8b", MASK)):
        kernels = [k.name for k in hf_kernels(PRESETS[name], prefill(16))]
        assert [n for n in kernels if n.startswith("causal_mask.")] == mask


def test_the_cache_copies_grow_with_the_kv_length():
    short, long = by_name(GPT2, decode(128)), by_name(GPT2, decode(384))
    for kv in ("k", "v"):           # the whole cache read and written again each step
        grown = long[f"h.0.attn.cat_{kv}"].bytes - short[f"h.0.attn.cat_{kv}"].bytes
        assert grown == 2 * 256 * 12 * 64 * HALF_BYTES
    assert long["generate.cat_input_ids"].bytes - short["generate.cat_input_ids"].bytes == 2 * 256 * 8
    short, long = by_name(LLAMA3, decode(64)), by_name(LLAMA3, decode(192))
    kv_heads, head_dim, group = 8, 64, 4
    step = 128 * kv_heads * head_dim * HALF_BYTES
    for kv in ("k", "v"):
        name = f"layers.0.self_attn.cache_{kv}_cat"
        assert long[name].bytes - short[name].bytes == 2 * step
    assert (long["layers.0.self_attn.repeat_kv_v"].bytes
            - short["layers.0.self_attn.repeat_kv_v"].bytes) == (1 + group) * step
    # 4.51.3's mask is [1, kv + 1] per sequence, not 4.38's 131072^2 buffer
    assert long["causal_mask.full"].bytes - short["causal_mask.full"].bytes == 128 * HALF_BYTES
    assert long["causal_mask.setitem"].bytes == 2 * 193 * HALF_BYTES


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


@pytest.mark.parametrize("config", [GPT2, LLAMA_MHA], ids=["gpt2", "llama"])
def test_prefill_and_decode_both_run_and_no_operator_beats_its_floor(config):
    first, step = hf_kernels(config, prefill(64)), hf_kernels(config, decode(64))
    head = {k.name: k for k in first}["lm_head"]
    # GPT-2 of 4.3x computes every prompt position's logits; 4.51.3 the last (logits_to_keep=1)
    assert (head.kind, head.m) == (("gemm", 64) if config is GPT2 else ("gemv", 1))
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
    for moe in ("mixtral-8x7b", "qwen3-30b-a3b"):
        with pytest.raises(GraphError, match=rf"^--gpu-mode hf: model '{moe}' is not modelled: "
                                             r"a mixture-of-experts model"):
            hf_kernels(PRESETS[moe], decode(8))
    gemma = dataclasses.replace(PRESETS["llama-3.2-1b"], name="gemma-ish", family="gemma")
    with pytest.raises(GraphError, match=r"^--gpu-mode hf: model 'gemma-ish' is not modelled: family gemma: "
                                         r"its Hugging Face module \(modeling_gemma\) is not modelled"):
        pass_cost(gemma, decode(8), T4, "hf")
    no_bias = dataclasses.replace(PRESETS["qwen2.5-0.5b"], name="qwen2-no-bias", attention_bias=False)
    with pytest.raises(GraphError, match=r"'qwen2-no-bias' is not modelled: biases or q/k norms other "
                                         r"than transformers 4.51.3's Qwen2ForCausalLM builds"):
        hf_kernels(no_bias, decode(8))
    windowed = dataclasses.replace(LLAMA3, name="llama-swa", sliding_window=4096)
    with pytest.raises(GraphError, match="'llama-swa' is not modelled: a sliding window: "
                                         "transformers 4.51.3's LlamaForCausalLM has none"):
        hf_kernels(windowed, decode(8))
    with pytest.raises(GraphError, match="Hugging Face's eager attention is unfused"):
        pass_cost(GPT2, decode(8), T4, "hf", "fused")


def test_llama3_runs_in_hf_mode_on_the_command_line(capsys):
    argv = ["sim", "--model", "llama-3.2-1b", "--target", "systolic", "--phase", "decode", "--kv", "64",
            "--no-functional", "--gpu-mode", "hf", "--gpu", "a100-80gb"]
    assert main(argv) == 0
    assert "GPU baselines (Hugging Face eager generate" in capsys.readouterr().out


def test_the_reports_say_the_mode(capsys, tmp_path, tiny_hf):
    out = tmp_path / "r.json"
    argv = ["--model", str(tiny_hf), "--phase", "decode", "--kv", "8", "--gpu-mode", "hf", "--no-functional"]
    assert main(["sim", "--target", "pim", "--gpu", "t4", "--json", str(out), *argv]) == 0
    text = capsys.readouterr().out
    assert "GPU baselines (Hugging Face eager generate, transformers' own operators in fp16, hf mode" in text
    assert json.loads(out.read_text())["gpu"]["gpu-t4"]["mode"] == "hf"
    assert main(["compare", "--targets", "pim", *argv]) == 0
    assert capsys.readouterr().out.startswith("tessel compare: tiny-gpt2, decode kv=8 batch=1, GPU hf mode")
