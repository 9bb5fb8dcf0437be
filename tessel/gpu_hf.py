"""What a Hugging Face eager forward and one greedy `generate` step launch on a GPU, as the
operators of `sim.gpu` (tessel sim --gpu-mode hf).

One `Kernel` per tensor operator the Python runs, in order, with its own FLOPs and bytes.
Counted line by line from the transformers source:
- GPT-2: src/transformers/models/gpt2/modeling_gpt2.py of the 4.3x releases (the search index's
  stored commit 0010f60): GPT2Attention.forward/_attn with tuple past_key_values, GPT2Block,
  GPT2Model.forward, GPT2LMHeadModel.prepare_inputs_for_generation; activations.py
  NewGELUActivation (gelu_new, eight elementwise ops); pytorch_utils.Conv1D (one addmm); its loop
  is GenerationMixin.greedy_search of v4.38 (argmax, the pad arithmetic, the input_ids and
  attention_mask cats, the eos check, `unfinished_sequences.max() == 0`, a host sync);
  MaxLengthCriteria returns a Python bool there (no kernel).
- Llama, Mistral, Qwen2, Qwen3: transformers 4.51.3 (its PyPI wheel; the first release with
  Qwen3, and Llama 3's llama3 rope scaling loads since 4.43) with attn_implementation="eager":
  models/{llama,mistral,qwen2,qwen3}/modeling_*.py (RMSNorm, the rotary table once per forward in
  XModel.forward, apply_rotary_pos_emb, eager_attention_forward, the MLP, the causal mask, lm_head
  on the last position), cache_utils.DynamicCache.update (torch.cat per layer, so each step
  copies the whole cache), and the loop of generation/utils.py and stopping_criteria.py
  (prepare_inputs_for_generation, _sample with do_sample=False, stopping criteria that return
  device tensors). llama3 scaling only changes inv_freq at init
  (modeling_rope_utils._compute_llama3_parameters): no operator per step.
Views (view, permute, transpose, slicing, unsqueeze, expand), dropout in eval mode and casts
to a tensor's own dtype launch nothing; `.contiguous()` copies only when the tensor is not
contiguous (merging heads of one new token is free). The model runs in fp16
(from_pretrained(torch_dtype=float16); HF's default is fp32: `itemsize=4`, for the memory-bound
decode only, since fp32 GEMMs are still priced on the fp16 tensor-core curve); HF's own upcasts
are fp32 (RMSNorm's variance, softmax, rotary tables, 4.51.3's next-token logits), ids and
masks int64, causal-mask comparisons bool. One iteration of the loop is priced: a prefill is
the prompt's forward plus the first greedy step; generate's set-up before the loop is not.
Each operator is priced as the kernel kind it is like (the eager per-operator costs of
sim/gpu.py): linears and matmuls by shape; fills (torch.full, new_ones, arange), casts,
cats, clones, contiguous/repeat copies and host<->device copies as `copy`; reductions (argmax,
max, prod, mean, cumsum) as `softmax` (the measured row reduction); index gathers as
`embedding`. Not modelled: ATen matmul's reshape copies of non-contiguous batched operands
(prefill at batch > 1), and the host syncs' stalls beyond their copies (the model already runs
host and device in series). Families and configs this code cannot run as written are refused.
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


def _pad_next_tokens(b: int) -> list[Kernel]:
    """next_tokens * unfinished_sequences + pad_token_id * (1 - unfinished_sequences), with a
    stopping criterion on eos (pad_token_id is a device tensor)."""
    return [_ew("generate.pad.mul", b, ID_BYTES, 2), _ew("generate.pad.rsub", b, ID_BYTES),
            _ew("generate.pad.mul_pad", b, ID_BYTES), _ew("generate.pad.add", b, ID_BYTES, 2)]


def _cat_ids(name: str, phase: Phase) -> Kernel:
    """torch.cat of a [batch, total_len] int64 tensor and one new column."""
    ids, tok = phase.batch * phase.total_len * ID_BYTES, phase.batch * ID_BYTES
    return _op(name, "copy", read=ids + tok, write=ids + tok)


def _stop_sync(b: int) -> list[Kernel]:
    """`unfinished_sequences.max() == 0`, which the loop's `if` takes to the host."""
    return [_op("generate.stop.max", "softmax", read=b * ID_BYTES, write=ID_BYTES, flops=b),
            _op("generate.stop.eq", "elementwise", read=ID_BYTES, write=BOOL_BYTES, flops=1),
            _op("generate.stop.item", "copy", read=BOOL_BYTES, write=BOOL_BYTES)]


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


def _gpt2_ends(c: GPT2Config, phase: Phase, z: int) -> tuple[list[Kernel], list[Kernel]]:
    """(before the blocks, after them)."""
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
    return head, tail


def _greedy_search_step(phase: Phase, vocab: int, z: int) -> list[Kernel]:
    """greedy_search's work after each forward (4.38; one eos id; ids and mask grow by one)."""
    b, tok = phase.batch, phase.batch * ID_BYTES
    return [_op("generate.argmax", "softmax", read=b * vocab * z, write=tok, flops=b * vocab),
            *_pad_next_tokens(b), _cat_ids("generate.cat_input_ids", phase),
            _op("generate.mask_new_ones", "copy", write=tok),      # attention_mask.new_ones((b, 1))
            _cat_ids("generate.cat_attention_mask", phase),
            _op("generate.eos.tile", "copy", read=tok, write=tok),
            _op("generate.eos.ne", "elementwise", read=tok + ID_BYTES, write=b * BOOL_BYTES, flops=b),
            _op("generate.eos.prod", "softmax", read=b * BOOL_BYTES, write=tok, flops=b),
            _ew("generate.eos.mul", b, ID_BYTES, 2),          # unfinished_sequences.mul(...)
            *_stop_sync(b)]


# --- Llama, Mistral, Qwen2, Qwen3 (transformers 4.51.3) -------------------------------------------

_CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def _layout(c: DecoderConfig) -> tuple[bool, bool, bool, bool]:
    """(q/k/v bias, o_proj bias, MLP bias, per-head q/k RMSNorm) as the family's 4.51.3 module
    builds them: Llama from attention_bias and mlp_bias, Mistral none, Qwen2 q/k/v bias=True
    hard-coded, Qwen3 attention_bias plus q_norm/k_norm."""
    ab = c.attention_bias
    return {"llama": (ab, ab, c.mlp_bias, False), "mistral": (False, False, False, False),
            "qwen2": (True, False, False, False), "qwen3": (ab, ab, False, True)}[c.family]


def _rms_norm(p: str, rows: int, d: int, z: int) -> list[Kernel]:
    """RMSNorm: to fp32, pow(2), mean(-1), + eps, rsqrt, x * that, to the input dtype, weight * x."""
    n, f32 = rows * d, FP32_BYTES
    return [*_cast(f"{p}.to_fp32", n, z, f32), _ew(f"{p}.pow", n, f32),
            _op(f"{p}.mean", "softmax", read=n * f32, write=rows * f32, flops=n),
            _ew(f"{p}.add_eps", rows, f32), _ew(f"{p}.rsqrt", rows, f32),
            _ew(f"{p}.mul", n, f32, 1, rows * f32), *_cast(f"{p}.to_dtype", n, f32, z),
            _ew(f"{p}.mul_weight", n, z, 1, d * z)]


def _rotary(phase: Phase, hd: int, z: int) -> list[Kernel]:
    """XRotaryEmbedding.forward, once per forward, in fp32: position_ids.float(), inv_freq @
    positions, cat((freqs, freqs)), cos() * attention_scaling, sin() * attention_scaling, each
    to the model's dtype."""
    b, s, f32 = phase.batch, phase.seq, FP32_BYTES
    emb, p = b * s * hd, "rotary_emb"
    return [_op(f"{p}.position_ids_float", "copy", read=b * s * ID_BYTES, write=b * s * f32),
            _bmm(f"{p}.freqs", b, hd // 2, s, 1, f32),
            _op(f"{p}.cat", "copy", read=emb * f32, write=emb * f32),
            _ew(f"{p}.cos", emb, f32), _ew(f"{p}.cos_scaling", emb, f32),
            _ew(f"{p}.sin", emb, f32), _ew(f"{p}.sin_scaling", emb, f32),
            *_cast(f"{p}.cos_to", emb, f32, z), *_cast(f"{p}.sin_to", emb, f32, z)]


def _rope(p: str, heads: int, phase: Phase, hd: int, z: int) -> list[Kernel]:
    """(x * cos) + (rotate_half(x) * sin), rotate_half = cat((-x2, x1), -1): five operators."""
    n, table = phase.batch * heads * phase.seq * hd, phase.batch * phase.seq * hd * z
    return [_ew(f"{p}.mul_cos", n, z, 1, table), _ew(f"{p}.neg", n // 2, z),
            _op(f"{p}.cat", "copy", read=n * z, write=n * z),
            _ew(f"{p}.mul_sin", n, z, 1, table), _ew(f"{p}.add", n, z, 2)]


def _decoder_block(c: DecoderConfig, phase: Phase, z: int, i: int) -> list[Kernel]:
    """XDecoderLayer.forward -> XAttention.forward with eager_attention_forward -> XMLP."""
    p, b, s, t, rows = f"layers.{i}.", phase.batch, phase.seq, phase.total_len, phase.batch * phase.seq
    d, h, kvh, hd, f = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim_, c.intermediate_size
    qkv_bias, o_bias, mlp_bias, qk_norm = _layout(c)
    n_scores, a = b * h * s * t, p + "self_attn."
    # Qwen3: q_norm(q_proj(x).view(..., heads, head_dim)), then k's, before v_proj
    q_norm = _rms_norm(a + "q_norm", rows * h, hd, z) if qk_norm else []
    k_norm = _rms_norm(a + "k_norm", rows * kvh, hd, z) if qk_norm else []
    ops = [*_rms_norm(p + "input_layernorm", rows, d, z),
           _linear(a + "q_proj", rows, h * hd, d, z, qkv_bias), *q_norm,
           _linear(a + "k_proj", rows, kvh * hd, d, z, qkv_bias), *k_norm,
           _linear(a + "v_proj", rows, kvh * hd, d, z, qkv_bias),
           *_rope(a + "rope_q", h, phase, hd, z), *_rope(a + "rope_k", kvh, phase, hd, z)]
    if phase.kv:       # DynamicCache.update: torch.cat of the layer's cache and the new keys, values
        new, cache = b * kvh * s * hd * z, b * kvh * phase.kv * hd * z
        ops += [_op(a + f"cache_{kv}_cat", "copy", read=cache + new, write=cache + new) for kv in "kv"]
    if c.group > 1:    # repeat_kv: expand (a view), then reshape (a copy) to every query head
        kv_all = b * kvh * t * hd * z
        ops += [_op(a + f"repeat_kv_{kv}", "copy", read=kv_all, write=c.group * kv_all) for kv in "kv"]
    ops += [_bmm(a + "scores", b * h, s, t, hd, z), _ew(a + "scale_mul", n_scores, z),  # * head_dim**-0.5
            _ew(a + "mask_add", n_scores, z, 1, b * s * t * z),   # + attention_mask[:, :, :, :kv] (a view)
            # softmax(dtype=float32) reads fp16 and writes fp32 in one kernel, then .to(fp16)
            _op(a + "softmax", "softmax", read=n_scores * z, write=n_scores * FP32_BYTES, flops=5 * n_scores),
            *_cast(a + "softmax_to", n_scores, FP32_BYTES, z), _bmm(a + "context", b * h, s, hd, t, z)]
    if s > 1:          # attn_output.transpose(1, 2).contiguous()
        ops.append(_op(a + "transpose_contiguous", "copy", read=rows * h * hd * z, write=rows * h * hd * z))
    return ops + [_linear(a + "o_proj", rows, d, h * hd, z, o_bias), _ew(p + "residual_attn", rows * d, z, 2),
                  *_rms_norm(p + "post_attention_layernorm", rows, d, z),
                  _linear(p + "mlp.gate_proj", rows, f, d, z, mlp_bias), _ew(p + "mlp.act_fn", rows * f, z),
                  _linear(p + "mlp.up_proj", rows, f, d, z, mlp_bias), _ew(p + "mlp.mul", rows * f, z, 2),
                  _linear(p + "mlp.down_proj", rows, d, f, z, mlp_bias), _ew(p + "residual_mlp", rows * d, z, 2)]


def _windowed_mask(c: DecoderConfig) -> bool:
    """Whether the mask ANDs in a sliding window: Mistral, Qwen2 and Qwen3 test config.sliding_window
    alone. Qwen2Config keeps it whatever use_sliding_window says, and the Qwen2.5 config.json files
    set it (131072 or 32768), so Qwen2 always pays it; Mistral and Qwen3 when a window is in force."""
    return c.family != "llama" and (c.family == "qwen2" or c.sliding_window is not None)


def _causal_mask(c: DecoderConfig, phase: Phase, z: int) -> list[Kernel]:
    """_prepare_4d_causal_attention_mask_with_cache_position, from generate's 2-D mask: a [S, T]
    fill of finfo.min (Llama takes its upper triangle for a prompt), times arange(T) >
    cache_position (or'ed with the window's arange(T) <= cache_position - window), expanded over
    the batch and cloned, then the padding filled: + mask, == 0, masked_fill, setitem."""
    b, s, t = phase.batch, phase.seq, phase.total_len
    sq, full, pos = s * t, b * s * t, t * ID_BYTES
    ops = [_op("causal_mask.full", "copy", write=sq * z)]
    if c.family == "llama" and s > 1:
        ops.append(_op("causal_mask.triu", "elementwise", read=sq * z, write=sq * z, flops=sq))
    def compare(name: str) -> Kernel:     # arange(T) against cache_position.reshape(-1, 1): [S, T] bool
        return _op(name, "elementwise", read=pos + s * ID_BYTES, write=sq * BOOL_BYTES, flops=sq)
    ops += [_op("causal_mask.arange", "copy", write=pos), compare("causal_mask.gt")]
    if _windowed_mask(c):
        ops += [_op("causal_mask.window_arange", "copy", write=pos), _ew("causal_mask.window_sub", s, ID_BYTES),
                compare("causal_mask.window_le"), _ew("causal_mask.window_or", sq, BOOL_BYTES, 2)]
    return ops + [_ew("causal_mask.mul", sq, z, 1, sq * BOOL_BYTES),
                  _op("causal_mask.clone", "copy", read=sq * z, write=full * z),
                  _ew("causal_mask.padding_add", full, z, 1, b * t * ID_BYTES),
                  _op("causal_mask.padding_eq", "elementwise", read=full * z, write=full * BOOL_BYTES, flops=full),
                  _ew("causal_mask.masked_fill", full, z, 1, full * BOOL_BYTES),
                  _op("causal_mask.setitem", "copy", read=full * z, write=full * z)]


def _prepare_inputs(phase: Phase) -> list[Kernel]:
    """GenerationMixin.prepare_inputs_for_generation with generate's DynamicCache: the
    `cache_position[-1] >= input_ids.shape[1]` test (a kernel, then `bool()` on the host),
    input_ids[:, cache_position] past the prompt, the ids cloned contiguous, the position ids
    from the mask, sliced to the new tokens and cloned."""
    b, s = phase.batch, phase.seq
    new = b * s * ID_BYTES
    ops = [_op("prepare.cache_position_ge", "elementwise", read=ID_BYTES, write=BOOL_BYTES, flops=1),
           _op("prepare.cache_position_item", "copy", read=BOOL_BYTES, write=BOOL_BYTES)]
    if phase.kv:
        ops.append(_op("prepare.input_ids_index", "embedding", read=s * ID_BYTES + new, write=new))
    return [*ops, _op("prepare.input_ids_clone", "copy", read=new, write=new), *_position_ids(phase),
            _op("prepare.position_ids_clone", "copy", read=new, write=new)]


def _decoder_ends(c: DecoderConfig, phase: Phase, z: int) -> tuple[list[Kernel], list[Kernel]]:
    b, rows, d = phase.batch, phase.batch * phase.seq, c.hidden_size
    act = rows * d * z
    head = [*_prepare_inputs(phase), _op("embed_tokens", "embedding", read=rows * ID_BYTES + act, write=act),
            *_causal_mask(c, phase, z), *_rotary(phase, c.head_dim_, z)]
    # lm_head(hidden_states[:, -1:, :]): generate passes logits_to_keep=1
    tail = [*_rms_norm("norm", rows, d, z), _linear("lm_head", b, c.vocab_size, d, z, False)]
    return head, tail


def _sample_step(phase: Phase, vocab: int, z: int) -> list[Kernel]:
    """_sample's work after each forward (do_sample=False, no logits processor, one eos id):
    _update_model_kwargs_for_generation, the logits copied to fp32, argmax, the pad arithmetic,
    the ids' cat, the stopping criteria's tensors, unfinished &= ~done, and the stop check."""
    b, tok, bools = phase.batch, phase.batch * ID_BYTES, phase.batch * BOOL_BYTES
    return [_op("generate.mask_new_ones", "copy", write=tok), _cat_ids("generate.cat_attention_mask", phase),
            _ew("generate.cache_position_add", 1, ID_BYTES),        # cache_position[-1:] + 1
            # outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            _op("generate.logits_to_fp32", "copy", read=b * vocab * z, write=b * vocab * FP32_BYTES),
            _op("generate.argmax", "softmax", read=b * vocab * FP32_BYTES, write=tok, flops=b * vocab),
            *_pad_next_tokens(b), _cat_ids("generate.cat_input_ids", phase),
            _op("generate.criteria.full", "copy", write=bools),          # is_done = torch.full(False)
            _op("generate.criteria.max_length", "copy", write=bools),    # MaxLengthCriteria: torch.full
            _ew("generate.criteria.or_max_length", b, BOOL_BYTES, 2),
            _op("generate.criteria.eos_isin_fill", "copy", write=bools),  # EosTokenCriteria: torch.isin
            _op("generate.criteria.eos_isin", "elementwise", read=tok + ID_BYTES, write=bools, flops=b),
            _ew("generate.criteria.or_eos", b, BOOL_BYTES, 2),
            _ew("generate.unfinished.not", b, BOOL_BYTES),               # unfinished & ~is_done
            _op("generate.unfinished.and", "elementwise", read=tok + bools, write=tok, flops=b),
            *_stop_sync(b)]


# --- the families ---------------------------------------------------------------------------------

def _decoder_refusal(c: DecoderConfig) -> str:
    """Why transformers 4.51.3 cannot run `c` as written in its family's module ('' when it can)."""
    if c.num_experts:
        return "a mixture-of-experts model (its experts depend on the routing)"
    if c.family not in _CLASSES:
        return (f"family {c.family}: its Hugging Face module (modeling_{c.family}) is not modelled, "
                "only Llama's, Mistral's, Qwen2's and Qwen3's (transformers 4.51.3)")
    if (c.attention_bias, c.o_proj_bias, c.mlp_bias, c.qk_norm) != _layout(c):
        return f"biases or q/k norms other than transformers 4.51.3's {_CLASSES[c.family]} builds"
    if c.family == "llama" and c.sliding_window is not None:
        return "a sliding window: transformers 4.51.3's LlamaForCausalLM has none"
    return ""


def check_hf(config: ModelConfig | None, name: str = "") -> None:
    """Refuse, in one line naming the model and the mode, what the modelled code cannot run."""
    if config is None:
        raise GraphError(f"--gpu-mode hf: model '{name}' is a .graph file; the Hugging Face "
                         "operator list needs a model config")
    if isinstance(config, DecoderConfig) and _decoder_refusal(config):
        raise GraphError(f"--gpu-mode hf: model '{config.name}' is not modelled: {_decoder_refusal(config)}")


# per config type: (the operators before the blocks and after them, a block, the loop's step)
_FAMILIES = {GPT2Config: (_gpt2_ends, _gpt2_block, _greedy_search_step),
             DecoderConfig: (_decoder_ends, _decoder_block, _sample_step)}


@functools.lru_cache(maxsize=256)
def hf_kernels(config: ModelConfig, phase: Phase, itemsize: int = 2) -> tuple[Kernel, ...]:
    """The operators of one `generate` iteration: the forward of `phase` (a prompt, or one
    token against a cache of phase.kv), then the greedy step; model values `itemsize` bytes."""
    check_hf(config)
    if itemsize not in (2, FP32_BYTES):
        raise ValueError(f"itemsize must be 2 (fp16) or 4 (fp32), got {itemsize!r}")
    ends, block, step = _FAMILIES[type(config)]
    head, tail = ends(config, phase, itemsize)
    blocks = [k for i in range(config.n_layer) for k in block(config, phase, itemsize, i)]
    return (*head, *blocks, *tail, *step(phase, config.vocab_size, itemsize))


def hf_pass_cost(config: ModelConfig, phase: Phase, gpu: GpuArch, itemsize: int = 2) -> tuple[float, float]:
    """(time_s, energy_j) of one generate iteration at the eager per-operator costs."""
    result = gpu_baseline(hf_kernels(config, phase, itemsize), gpu, "hf")
    return result.time_s, result.energy_j
