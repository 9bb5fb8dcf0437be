"""What a Hugging Face eager forward and one greedy `generate` step launch on a GPU, as the
operators of `sim.gpu` (tessel sim --gpu-mode hf).

One `Kernel` per tensor operator the Python runs, in order, with its own FLOPs and bytes.
Counted line by line from the transformers source (the search index's stored copies):
- GPT-2: src/transformers/models/gpt2/modeling_gpt2.py of the 4.3x releases (stored commit
  0010f60): GPT2Attention.forward/_attn with tuple past_key_values, GPT2Block, GPT2Model.forward,
  GPT2LMHeadModel.prepare_inputs_for_generation; activations.py NewGELUActivation (gelu_new,
  eight elementwise ops); pytorch_utils.Conv1D (one addmm).
- Llama: src/transformers/models/llama/modeling_llama.py of v4.38 (stored commit 0022728, its
  deprecation notes name 4.38): LlamaRMSNorm, LlamaRotaryEmbedding.forward (run in every
  layer), rotate_half/apply_rotary_pos_emb, repeat_kv, LlamaAttention.forward (eager),
  LlamaMLP, LlamaModel._update_causal_mask (from the max_position_embeddings^2 bool buffer),
  LlamaForCausalLM (logits.float()) and its prepare_inputs_for_generation; DynamicCache.update
  (cache_utils.py: torch.cat per layer, so each step copies the whole cache).
- generate: GenerationMixin.greedy_search of v4.38 (generation/utils.py: argmax, the pad
  arithmetic, the input_ids and attention_mask cats, the eos check, `unfinished_sequences.max()
  == 0`, which syncs with the host); MaxLengthCriteria returns a Python bool (no kernel).
Views (view, permute, transpose, slicing, unsqueeze, expand), dropout in eval mode and casts
to a tensor's own dtype launch nothing; `.contiguous()` copies only when the tensor is not
contiguous (merging heads of one new token is free). The model runs in fp16
(from_pretrained(torch_dtype=float16); HF's default is fp32: `itemsize=4`, for the memory-bound
decode only, since fp32 GEMMs are still priced on the fp16 tensor-core curve); HF's own upcasts
are fp32 (RMSNorm's variance, Llama's softmax, rotary tables, logits), ids and masks int64,
causal masks bool. A prefill is the prompt's forward plus the first greedy step.
Each operator is priced as the kernel kind it is like (the eager per-operator costs of
sim/gpu.py): linears and matmuls by shape; fills (torch.full, new_ones, arange), casts,
cats, contiguous/repeat copies and host<->device copies as `copy`; reductions (argmax, max,
prod, mean, cumsum) as `softmax` (the measured row reduction); index gathers as `embedding`.
Not modelled: ATen matmul's reshape copies of non-contiguous batched operands (prefill at
batch > 1), and the host syncs' stalls beyond their copies (the model already runs host and
device in series). Families and configs this code cannot run as written are refused.
"""
from __future__ import annotations

import functools

from arch.gpu import GEMV_MAX_M, GpuArch
from compiler.frontend import DecoderConfig, GPT2Config, ModelConfig
from compiler.ir import GraphError
from compiler.phase import Phase
from sim.gpu import Kernel, gpu_baseline

__all__ = ["hf_kernels", "hf_pass_cost", "check_hf", "ID_BYTES", "FP32_BYTES"]

ID_BYTES = 8        # int64 token ids, attention masks, positions
FP32_BYTES = 4
BOOL_BYTES = 1


def _op(name: str, kind: str, *, read: int = 0, write: int = 0, flops: int = 0) -> Kernel:
    return Kernel(name, kind, flops, read + write)


def _ew(name: str, elements: int, size: int, inputs: int = 1, extra: int = 0) -> Kernel:
    """An elementwise operator over `elements` values of `size` bytes: `inputs` full-size
    operands read (plus `extra` bytes of broadcast ones), the result written."""
    return _op(name, "elementwise", read=inputs * elements * size + extra,
               write=elements * size, flops=elements)


def _cast(name: str, elements: int, src: int, dst: int) -> list[Kernel]:
    """`.to(dtype)`: a copy kernel, none when the float tensor has that dtype already."""
    return [] if src == dst else [_op(name, "copy", read=elements * src, write=elements * dst)]


def _linear(name: str, rows: int, n: int, k: int, size: int, bias: bool) -> Kernel:
    """nn.Linear / Conv1D's addmm: [rows, k] x [k, n] (+ bias)."""
    flops = 2 * rows * n * k + (rows * n if bias else 0)
    n_bytes = size * (rows * k + k * n + rows * n + (n if bias else 0))
    return Kernel(name, "gemv" if rows <= GEMV_MAX_M else "gemm", flops, n_bytes, m=rows, n=n, k=k)


def _bmm(name: str, batch: int, m: int, n: int, k: int, size: int, out_size: int = 0) -> Kernel:
    """torch.matmul of `batch` [m, k] x [k, n] products."""
    out = out_size or size
    return Kernel(name, "attention-matmul", 2 * batch * m * n * k,
                  batch * (size * (m * k + k * n) + out * m * n), m=m, n=n, k=k, batch=batch)


def _position_ids(phase: Phase) -> list[Kernel]:
    """prepare_inputs_for_generation: attention_mask.long().cumsum(-1) - 1, then
    .masked_fill_(attention_mask == 0, 1) (`.long()` of an int64 mask is free)."""
    n = phase.batch * phase.total_len
    ids = n * ID_BYTES
    return [_op("prepare.position_ids.cumsum", "softmax", read=ids, write=ids, flops=n),
            _ew("prepare.position_ids.sub", n, ID_BYTES),
            _op("prepare.position_ids.eq", "elementwise", read=ids, write=n * BOOL_BYTES, flops=n),
            _op("prepare.position_ids.masked_fill", "elementwise", read=ids + n * BOOL_BYTES,
                write=ids, flops=n)]


def _greedy_step(phase: Phase, vocab: int, logit_size: int) -> list[Kernel]:
    """greedy_search's work after each forward (one eos id; ids and mask of total_len grow by one)."""
    b, n = phase.batch, phase.total_len
    tok, ids = b * ID_BYTES, b * n * ID_BYTES
    return [_op("generate.argmax", "softmax", read=b * vocab * logit_size, write=tok, flops=b * vocab),
            _ew("generate.pad.mul", b, ID_BYTES, 2),         # next_tokens * unfinished_sequences
            _ew("generate.pad.rsub", b, ID_BYTES),           # 1 - unfinished_sequences
            _ew("generate.pad.mul_pad", b, ID_BYTES),        # pad_token_id * (...)
            _ew("generate.pad.add", b, ID_BYTES, 2),
            _op("generate.cat_input_ids", "copy", read=ids + tok, write=ids + tok),
            _op("generate.mask_new_ones", "copy", write=tok),      # attention_mask.new_ones((b, 1))
            _op("generate.cat_attention_mask", "copy", read=ids + tok, write=ids + tok),
            _op("generate.eos.tile", "copy", read=tok, write=tok),
            _op("generate.eos.ne", "elementwise", read=tok + ID_BYTES, write=b * BOOL_BYTES, flops=b),
            _op("generate.eos.prod", "softmax", read=b * BOOL_BYTES, write=tok, flops=b),
            _ew("generate.eos.mul", b, ID_BYTES, 2),          # unfinished_sequences.mul(...)
            _op("generate.stop.max", "softmax", read=tok, write=ID_BYTES, flops=b),
            _op("generate.stop.eq", "elementwise", read=ID_BYTES, write=BOOL_BYTES, flops=1),
            _op("generate.stop.item", "copy", read=BOOL_BYTES, write=BOOL_BYTES)]   # `if`: to the host


# --- GPT-2 (modeling_gpt2.py, 4.3x) ------------------------------------------------------------

def _gelu_new(p: str, n: int, z: int) -> list[Kernel]:
    """NewGELUActivation: 0.5 * x * (1.0 + tanh(sqrt(2 / pi) * (x + 0.044715 * pow(x, 3.0)))),
    in Python's evaluation order."""
    return [_ew(f"{p}.mul_half", n, z), _ew(f"{p}.pow", n, z), _ew(f"{p}.mul_coef", n, z),
            _ew(f"{p}.add_x", n, z, 2), _ew(f"{p}.mul_sqrt", n, z), _ew(f"{p}.tanh", n, z),
            _ew(f"{p}.add_one", n, z), _ew(f"{p}.mul", n, z, 2)]


def _layernorm(name: str, rows: int, d: int, z: int) -> Kernel:
    return _op(name, "layernorm", read=rows * d * z + 2 * d * z, write=rows * d * z, flops=7 * rows * d)


def _gpt2_block(c: GPT2Config, phase: Phase, z: int, i: int) -> list[Kernel]:
    p, b, s, t, rows = f"h.{i}.", phase.batch, phase.seq, phase.total_len, phase.batch * phase.seq
    d, h, hd = c.n_embd, c.n_head, c.head_dim
    act, n_scores = rows * d * z, b * h * s * t
    ops = [_layernorm(p + "ln_1", rows, d, z), _linear(p + "attn.c_attn", rows, 3 * d, d, z, True)]
    if phase.kv:       # layer_past: torch.cat((past_key, key)), then values: the cache copied
        cache = b * h * phase.kv * hd * z
        ops += [_op(p + f"attn.cat_{kv}", "copy", read=cache + act, write=cache + act) for kv in "kv"]
    ops.append(_bmm(p + "attn.scores", b * h, s, t, hd, z))            # matmul(query, key^T)
    if c.scale_attn_weights:   # attn_weights / torch.full([], sqrt(head_dim), device=...)
        ops += [_op(p + "attn.scale_full", "copy", write=z), _ew(p + "attn.scale_div", n_scores, z, 1, z)]
    if c.scale_attn_by_inverse_layer_idx:
        ops.append(_ew(p + "attn.layer_div", n_scores, z))
    ops += [_op(p + "attn.mask_value", "copy", read=z, write=z),   # torch.full([], min).to(device)
            _ew(p + "attn.causal_where", n_scores, z, 1, s * t * BOOL_BYTES + z),   # torch.where
            _ew(p + "attn.mask_add", n_scores, z, 1, b * t * z),    # + attention_mask
            _op(p + "attn.softmax", "softmax", read=n_scores * z, write=n_scores * z, flops=5 * n_scores),
            _bmm(p + "attn.context", b * h, s, hd, t, z)]
    if s > 1:          # _merge_heads: permute(0, 2, 1, 3).contiguous()
        ops.append(_op(p + "attn.merge_heads", "copy", read=act, write=act))
    return ops + [_linear(p + "attn.c_proj", rows, d, d, z, True), _ew(p + "attn.residual", rows * d, z, 2),
                  _layernorm(p + "ln_2", rows, d, z), _linear(p + "mlp.c_fc", rows, c.mlp_dim, d, z, True),
                  *_gelu_new(p + "mlp.act", rows * c.mlp_dim, z),
                  _linear(p + "mlp.c_proj", rows, d, c.mlp_dim, z, True),
                  _ew(p + "mlp.residual", rows * d, z, 2)]


def _gpt2_ends(c: GPT2Config, phase: Phase, z: int) -> tuple[list[Kernel], list[Kernel], int]:
    """(before the blocks, after them, the logits' bytes per value)."""
    n_mask, rows, d = phase.batch * phase.total_len, phase.batch * phase.seq, c.n_embd
    act = rows * d * z
    head = [*_position_ids(phase),
            _op("mask.to_dtype", "copy", read=n_mask * ID_BYTES, write=n_mask * z),
            _ew("mask.rsub", n_mask, z),                          # 1.0 - attention_mask
            _ew("mask.mul_min", n_mask, z),                       # * torch.finfo(dtype).min
            _op("wte", "embedding", read=rows * ID_BYTES + act, write=act),
            _op("wpe", "embedding", read=rows * ID_BYTES + act, write=act),
            _ew("embed.add", rows * d, z, 2)]
    tail = [_layernorm("ln_f", rows, d, z), _linear("lm_head", rows, c.vocab_size, d, z, False)]
    return head, tail, z


# --- Llama (modeling_llama.py, v4.38) ----------------------------------------------------------

def _rms_norm(p: str, rows: int, d: int, z: int) -> list[Kernel]:
    """LlamaRMSNorm: to fp32, pow(2), mean(-1), + eps, rsqrt, x * that, to the input dtype,
    weight * x."""
    n, f32 = rows * d, FP32_BYTES
    return [*_cast(f"{p}.to_fp32", n, z, f32), _ew(f"{p}.pow", n, f32),
            _op(f"{p}.mean", "softmax", read=n * f32, write=rows * f32, flops=n),
            _ew(f"{p}.add_eps", rows, f32), _ew(f"{p}.rsqrt", rows, f32),
            _ew(f"{p}.mul", n, f32, 1, rows * f32), *_cast(f"{p}.to_dtype", n, f32, z),
            _ew(f"{p}.mul_weight", n, z, 1, d * z)]


def _rotary(p: str, phase: Phase, hd: int, z: int) -> list[Kernel]:
    """LlamaRotaryEmbedding.forward, in fp32: position_ids.float(), inv_freq @ positions,
    cat((freqs, freqs)), cos, sin, each to the model's dtype."""
    b, s, f32 = phase.batch, phase.seq, FP32_BYTES
    emb = b * s * hd
    return [_op(f"{p}.position_ids_float", "copy", read=b * s * ID_BYTES, write=b * s * f32),
            _bmm(f"{p}.freqs", b, hd // 2, s, 1, f32),
            _op(f"{p}.cat", "copy", read=emb * f32, write=emb * f32),
            _ew(f"{p}.cos", emb, f32), _ew(f"{p}.sin", emb, f32),
            *_cast(f"{p}.cos_to", emb, f32, z), *_cast(f"{p}.sin_to", emb, f32, z)]


def _rope(p: str, heads: int, phase: Phase, hd: int, z: int) -> list[Kernel]:
    """(x * cos) + (rotate_half(x) * sin), rotate_half = cat((-x2, x1), -1): five operators."""
    n, table = phase.batch * heads * phase.seq * hd, phase.batch * phase.seq * hd * z
    return [_ew(f"{p}.mul_cos", n, z, 1, table), _ew(f"{p}.neg", n // 2, z),
            _op(f"{p}.cat", "copy", read=n * z, write=n * z),
            _ew(f"{p}.mul_sin", n, z, 1, table), _ew(f"{p}.add", n, z, 2)]


def _llama_block(c: DecoderConfig, phase: Phase, z: int, i: int) -> list[Kernel]:
    p, b, s, t, rows = f"layers.{i}.", phase.batch, phase.seq, phase.total_len, phase.batch * phase.seq
    d, h, kvh, hd, f = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim_, c.intermediate_size
    bias, n_scores, n_mask = c.attention_bias, b * h * s * t, b * s * t
    a = p + "self_attn."
    ops = [*_rms_norm(p + "input_layernorm", rows, d, z),
           _linear(a + "q_proj", rows, h * hd, d, z, bias), _linear(a + "k_proj", rows, kvh * hd, d, z, bias),
           _linear(a + "v_proj", rows, kvh * hd, d, z, bias), *_rotary(a + "rotary_emb", phase, hd, z),
           *_rope(a + "rope_q", h, phase, hd, z), *_rope(a + "rope_k", kvh, phase, hd, z)]
    if phase.kv:       # DynamicCache.update: torch.cat of the layer's cache and the new keys, values
        new, cache = b * kvh * s * hd * z, b * kvh * phase.kv * hd * z
        ops += [_op(a + f"cache_{kv}_cat", "copy", read=cache + new, write=cache + new) for kv in "kv"]
    if c.group > 1:    # repeat_kv: expand (a view), then reshape (a copy) to every query head
        kv_all = b * kvh * t * hd * z
        ops += [_op(a + f"repeat_kv_{kv}", "copy", read=kv_all, write=c.group * kv_all) for kv in "kv"]
    ops += [_bmm(a + "scores", b * h, s, t, hd, z), _ew(a + "scale_div", n_scores, z),  # / sqrt(head_dim)
            # attention_mask[:, :, cache_position, :kv_len]: a gather, then the add
            _op(a + "mask_index", "embedding", read=n_mask * z + s * ID_BYTES, write=n_mask * z),
            _ew(a + "mask_add", n_scores, z, 1, n_mask * z),
            # softmax(dtype=float32) reads fp16 and writes fp32 in one kernel, then .to(fp16)
            _op(a + "softmax", "softmax", read=n_scores * z, write=n_scores * FP32_BYTES, flops=5 * n_scores),
            *_cast(a + "softmax_to", n_scores, FP32_BYTES, z), _bmm(a + "context", b * h, s, hd, t, z)]
    if s > 1:          # attn_output.transpose(1, 2).contiguous()
        ops.append(_op(a + "transpose_contiguous", "copy", read=rows * h * hd * z, write=rows * h * hd * z))
    return ops + [_linear(a + "o_proj", rows, d, h * hd, z, bias), _ew(p + "residual_attn", rows * d, z, 2),
                  *_rms_norm(p + "post_attention_layernorm", rows, d, z),
                  _linear(p + "mlp.gate_proj", rows, f, d, z, False), _ew(p + "mlp.act_fn", rows * f, z),
                  _linear(p + "mlp.up_proj", rows, f, d, z, False), _ew(p + "mlp.mul", rows * f, z, 2),
                  _linear(p + "mlp.down_proj", rows, d, f, z, False), _ew(p + "residual_mlp", rows * d, z, 2)]


def _causal_mask(c: DecoderConfig, phase: Phase, z: int) -> list[Kernel]:
    """_update_causal_mask (eager, 2-D attention mask): the [P, P] bool buffer repeated over the
    batch, cast, scaled by finfo.min, then the padding of its first L columns filled."""
    p, b, n = c.max_position_embeddings, phase.batch, phase.total_len
    full, part = b * p * p, b * p * n
    return [_op("causal_mask.repeat", "copy", read=p * p * BOOL_BYTES, write=full * BOOL_BYTES),
            _op("causal_mask.to_dtype", "copy", read=full * BOOL_BYTES, write=full * z),
            _ew("causal_mask.mul_min", full, z),
            _op("causal_mask.eq", "elementwise", read=part * z, write=part * BOOL_BYTES, flops=part),
            _op("causal_mask.mask_eq", "elementwise", read=b * n * ID_BYTES, write=b * n * BOOL_BYTES, flops=b * n),
            _ew("causal_mask.padding_mul", part, BOOL_BYTES, 1, b * n * BOOL_BYTES),
            _ew("causal_mask.masked_fill", part, z, 1, part * BOOL_BYTES),
            _op("causal_mask.setitem", "copy", read=part * z, write=part * z)]


def _llama_ends(c: DecoderConfig, phase: Phase, z: int) -> tuple[list[Kernel], list[Kernel], int]:
    b, s, rows, d, vocab = phase.batch, phase.seq, phase.batch * phase.seq, c.hidden_size, c.vocab_size
    act = rows * d * z
    # past: input_ids[:, -1:] and position_ids[:, -1:] made contiguous (copies at batch > 1)
    sliced = [_op(f"prepare.{x}_contiguous", "copy", read=rows * ID_BYTES, write=rows * ID_BYTES)
              for x in ("position_ids", "input_ids")] if phase.kv and b > 1 else []
    head = [*_position_ids(phase), _op("prepare.cache_position", "copy", write=s * ID_BYTES),   # arange
            *sliced, _op("embed_tokens", "embedding", read=rows * ID_BYTES + act, write=act),
            *_causal_mask(c, phase, z)]
    tail = [*_rms_norm("norm", rows, d, z), _linear("lm_head", rows, vocab, d, z, False),
            *_cast("logits_float", rows * vocab, z, FP32_BYTES)]
    return head, tail, FP32_BYTES


# --- the families ---------------------------------------------------------------------------------

def _llama_refusal(c: DecoderConfig) -> str:
    """Why transformers 4.38's LlamaForCausalLM cannot run `c` as written ('' when it can)."""
    if c.num_experts:
        return "a mixture-of-experts model (its experts depend on the routing)"
    if c.family != "llama":
        return (f"family {c.family}: its Hugging Face module (modeling_{c.family}) is not modelled, "
                "only Llama's (transformers 4.38)")
    if c.rope_scaling is not None:
        return ("llama3 rope scaling: transformers 4.38's Llama cannot load it (it came with 4.43, "
                "whose Llama code is not modelled)")
    if c.head_dim and c.head_dim != c.hidden_size // c.num_attention_heads:
        return "an explicit head_dim: transformers 4.38's Llama takes hidden_size / heads"
    if c.mlp_bias or c.o_proj_bias != c.attention_bias or c.qk_norm or c.sliding_window:
        return "biases, q/k norms or a sliding window transformers 4.38's Llama does not have"
    return ""


def check_hf(config: ModelConfig | None, name: str = "") -> None:
    """Refuse, in one line naming the model and the mode, what the modelled code cannot run."""
    if config is None:
        raise GraphError(f"--gpu-mode hf: model '{name}' is a .graph file; the Hugging Face "
                         "operator list needs a model config")
    if isinstance(config, DecoderConfig) and _llama_refusal(config):
        raise GraphError(f"--gpu-mode hf: model '{config.name}' is not modelled: {_llama_refusal(config)}")


_FAMILIES = {GPT2Config: (_gpt2_ends, _gpt2_block), DecoderConfig: (_llama_ends, _llama_block)}


@functools.lru_cache(maxsize=256)
def hf_kernels(config: ModelConfig, phase: Phase, itemsize: int = 2) -> tuple[Kernel, ...]:
    """The operators of one `generate` iteration: the forward of `phase` (a prompt, or one
    token against a cache of phase.kv), then the greedy step; model values `itemsize` bytes."""
    check_hf(config)
    if itemsize not in (2, FP32_BYTES):
        raise ValueError(f"itemsize must be 2 (fp16) or 4 (fp32), got {itemsize!r}")
    ends, block = _FAMILIES[type(config)]
    head, tail, logit_size = ends(config, phase, itemsize)
    blocks = [k for i in range(config.n_layer) for k in block(config, phase, itemsize, i)]
    return (*head, *blocks, *tail, *_greedy_step(phase, config.vocab_size, logit_size))


def hf_pass_cost(config: ModelConfig, phase: Phase, gpu: GpuArch, itemsize: int = 2) -> tuple[float, float]:
    """(time_s, energy_j) of one generate iteration at the eager per-operator costs."""
    result = gpu_baseline(hf_kernels(config, phase, itemsize), gpu, "hf")
    return result.time_s, result.energy_j
