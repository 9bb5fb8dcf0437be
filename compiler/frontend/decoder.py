"""Llama-style decoders (Llama 3, Mistral, Qwen2/2.5, Qwen3) and their mixture-of-experts
variants (Mixtral, Qwen3-MoE): one config, one graph builder, the presets as data.

The graph follows Hugging Face's LlamaForCausalLM op for op: token embedding, pre-norm blocks
(RMSNorm; separate q/k/v projections, optional q/k/v biases (Qwen2) and per-head q/k RMSNorm
(Qwen3); rotary embedding with Llama 3 frequency scaling; grouped-query attention; o_proj),
a SwiGLU MLP down(silu(gate(x)) * up(x)) or routed experts, final RMSNorm and an LM head that
is its own `lm_head.weight` or tied to the embedding.

Grouped-query attention keeps each KV head once: the query heads of a group are one batch
entry [B, Hkv, G, S, Dh] and multiply their KV head [B, Hkv, 1, T, Dh] by broadcasting, so the
cache is [B, Hkv, L, Dh] and is never repeated per query head (HF's repeat_kv is a copy we do
not make). Parameter names are Hugging Face's keys without the `model.` prefix; nn.Linear
stores [out, in], our linears take [in, out], so the weight loader transposes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

from compiler.ir import DType, Graph, GraphError, OpKind
from compiler.parallel.shard import PartBuilder, Shard, ShardGraph
from compiler.phase import Group, Phase, Step, group_rows, groups

__all__ = ["RopeScaling", "DecoderConfig", "PRESETS", "build_graph", "build_part",
           "LINEAR_WEIGHT_SUFFIXES"]

# parameters stored [out, in] by nn.Linear (transposed on load); embeddings and the LM head
# are [vocab, hidden] in both
LINEAR_WEIGHT_SUFFIXES = ("_proj.weight", ".w1.weight", ".w2.weight", ".w3.weight", "gate.weight")


@dataclass(frozen=True, slots=True)
class RopeScaling:
    """Llama 3's rope frequency scaling (rope_type 'llama3')."""

    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """The fields of a Llama-family config.json that change the computation."""

    name: str
    family: str                   # llama, mistral, qwen2, qwen3, mixtral, qwen3_moe
    vocab_size: int
    hidden_size: int
    intermediate_size: int        # dense MLP width (unused by MoE layers)
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int = 0             # 0: hidden_size / num_attention_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q, k, v biases (Qwen2); o_proj too when o_proj_bias
    o_proj_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False         # Qwen3: per-head RMSNorm of q and k before RoPE
    sliding_window: int | None = None   # Mistral: keys visible to a query
    num_experts: int = 0          # 0: dense MLPs
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = True   # renormalise the top-k weights (Mixtral always does)
    dense_layers: tuple[int, ...] = field(default=())   # MoE models: layers with a dense MLP
    dtype: str = "bfloat16"       # the checkpoint's (torch_dtype / dtype); informational

    def __post_init__(self) -> None:
        for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "max_position_embeddings"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise GraphError(f"{self.name}: {f} must be a positive integer, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise GraphError(f"{self.name}: num_attention_heads {self.num_attention_heads} is not a "
                             f"multiple of num_key_value_heads {self.num_key_value_heads}")
        if not self.head_dim and self.hidden_size % self.num_attention_heads:
            raise GraphError(f"{self.name}: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads} (and no head_dim)")
        if self.head_dim_ % 2:
            raise GraphError(f"{self.name}: head_dim {self.head_dim_} must be even for rotary embedding")
        if self.num_experts and not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise GraphError(f"{self.name}: num_experts_per_tok {self.num_experts_per_tok} must be "
                             f"from 1 to num_experts {self.num_experts}")

    # -- derived sizes -----------------------------------------------------------------
    @property
    def head_dim_(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.num_attention_heads // self.num_key_value_heads

    def is_moe_layer(self, layer: int) -> bool:
        return self.num_experts > 0 and layer not in self.dense_layers

    def kv_bytes(self, itemsize: int = 2) -> int:
        """K and V of one token over all layers, at `itemsize` bytes per value (BF16: 2)."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim_ * itemsize

    @property
    def kv_bytes_per_token(self) -> int:
        """In BF16, as the presets' tables quote it."""
        return self.kv_bytes()

    # the names the rest of the tool reads from any model config
    @property
    def n_layer(self) -> int:
        return self.num_hidden_layers

    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def n_positions(self) -> int:
        return self.max_position_embeddings

    def _attention_params(self) -> int:
        d, h, kv, dh = self.hidden_size, self.num_attention_heads, self.num_key_value_heads, self.head_dim_
        n = d * h * dh + 2 * d * kv * dh + h * dh * d
        if self.attention_bias:
            n += h * dh + 2 * kv * dh
        if self.o_proj_bias:
            n += d
        return n + (2 * dh if self.qk_norm else 0)

    def _mlp_params(self, width: int) -> int:
        return 3 * self.hidden_size * width + (2 * width + self.hidden_size if self.mlp_bias else 0)

    def _layer_params(self, layer: int, experts: int) -> int:
        d = self.hidden_size
        if self.is_moe_layer(layer):
            mlp = d * self.num_experts + experts * self._mlp_params(self.moe_intermediate_size)
        else:
            mlp = self._mlp_params(self.intermediate_size)
        return self._attention_params() + mlp + 2 * d

    def _params(self, experts: int) -> int:
        d = self.hidden_size
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return (self.vocab_size * d + d + head
                + sum(self._layer_params(i, experts) for i in range(self.num_hidden_layers)))

    @property
    def n_params(self) -> int:
        """Every parameter (a tied LM head counted once), as Hugging Face's num_parameters()."""
        return self._params(self.num_experts)

    @property
    def active_params(self) -> int:
        """Parameters one token uses: the router's chosen experts only (= n_params when dense)."""
        return self._params(self.num_experts_per_tok) if self.num_experts else self.n_params


_LLAMA3_8 = RopeScaling(8.0)
_LLAMA3_32 = RopeScaling(32.0)
PRESETS: dict[str, DecoderConfig] = {c.name: c for c in (
    # ../shared/reference/models.md (Hugging Face config.json of each model)
    DecoderConfig("llama-3.2-1b", "llama", 128256, 2048, 8192, 16, 32, 8, head_dim=64,
                  rope_theta=5e5, rope_scaling=_LLAMA3_32, max_position_embeddings=131072,
                  tie_word_embeddings=True),
    DecoderConfig("llama-3.2-3b", "llama", 128256, 3072, 8192, 28, 24, 8, head_dim=128,
                  rope_theta=5e5, rope_scaling=_LLAMA3_32, max_position_embeddings=131072,
                  tie_word_embeddings=True),
    DecoderConfig("llama-3.1-8b", "llama", 128256, 4096, 14336, 32, 32, 8, rope_theta=5e5,
                  rope_scaling=_LLAMA3_8, max_position_embeddings=131072),
    DecoderConfig("llama-3.1-70b", "llama", 128256, 8192, 28672, 80, 64, 8, rope_theta=5e5,
                  rope_scaling=_LLAMA3_8, max_position_embeddings=131072),
    DecoderConfig("mistral-7b", "mistral", 32000, 4096, 14336, 32, 32, 8,
                  max_position_embeddings=32768, sliding_window=4096),
    DecoderConfig("qwen2.5-0.5b", "qwen2", 151936, 896, 4864, 24, 14, 2, rms_norm_eps=1e-6,
                  rope_theta=1e6, max_position_embeddings=32768, tie_word_embeddings=True,
                  attention_bias=True),
    DecoderConfig("qwen2.5-7b", "qwen2", 152064, 3584, 18944, 28, 28, 4, rms_norm_eps=1e-6,
                  rope_theta=1e6, max_position_embeddings=131072, attention_bias=True),
    DecoderConfig("qwen3-8b", "qwen3", 151936, 4096, 12288, 36, 32, 8, head_dim=128,
                  rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=40960, qk_norm=True),
    DecoderConfig("mixtral-8x7b", "mixtral", 32000, 4096, 14336, 32, 32, 8, rope_theta=1e6,
                  max_position_embeddings=32768, num_experts=8, num_experts_per_tok=2,
                  moe_intermediate_size=14336),
    DecoderConfig("qwen3-30b-a3b", "qwen3_moe", 151936, 2048, 6144, 48, 32, 4, head_dim=128,
                  rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=40960, qk_norm=True,
                  num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768,
                  norm_topk_prob=True),
)}

# Hugging Face's module names per family: (attention norm, MLP norm) are shared; the MLP
# and expert names differ
_MOE_NAMES = {"mixtral": ("block_sparse_moe", "w1", "w3", "w2"),
              "qwen3_moe": ("mlp", "gate_proj", "up_proj", "down_proj")}


def build_graph(config: DecoderConfig, phase: Phase) -> Graph:
    """The graph of one pass; inputs `tokens` [B,S] and, for decode, each layer's KV caches
    `layers.{i}.k_cache` / `v_cache` [B, Hkv, L, Dh]. MoE layers are one `moe` op each,
    routed (compiler.passes.routing) before lowering."""
    return build_part(config, phase, Shard()).graph


def build_part(config: DecoderConfig, phase: Phase | Step, shard: Shard) -> ShardGraph:
    """One device's graph of a pass (compiler.parallel, docs/parallel.md): its pipeline stage's
    layers (stage 0 embeds `tokens`, later stages read `hidden` [B,S,D]; the last ends with the
    LM head, earlier ones output the hidden state) and its tensor-parallel rank's KV heads (with
    their query heads) and MLP or expert columns. Shard() gives the whole model, exactly as on
    one device. A serving `Step` runs every request's tokens through the token-wise ops at once
    ([1, T, D]); each request attends to its own cache (`<layer>.seg<r>.k_cache`) with its own
    positions, and the LM head reads each request's last token only."""
    if phase.total_len > config.max_position_embeddings:
        raise GraphError(f"{config.name}: {phase.total_len} positions exceed the context "
                         f"of {config.max_position_embeddings}")
    B, S, D = phase.batch, phase.seq, config.hidden_size
    token_rows = partial(group_rows, phase)
    H, Hkv = shard.split(config.num_attention_heads), shard.split(config.num_key_value_heads)
    Dh, G = config.head_dim_, config.group
    layers = shard.layers(config.num_hidden_layers)
    parts = groups(phase)
    g = PartBuilder(f"{config.name}-{phase.kind}", shard)
    if layers.start == 0:
        tokens = g.input("tokens", (B, S), DType.int32)
        embed = g.param("embed_tokens.weight", (config.vocab_size, D))
        x = g.op(OpKind.EMBEDDING, "embed", [embed, tokens])
    else:
        x = g.input("hidden", (B, S, D))
    rope_attrs = dict(theta=float(config.rope_theta))
    if config.rope_scaling is not None:
        r = config.rope_scaling
        rope_attrs.update(factor=float(r.factor), low_freq_factor=float(r.low_freq_factor),
                          high_freq_factor=float(r.high_freq_factor),
                          original_max_position=r.original_max_position_embeddings)
    outputs = []

    def rmsnorm(name: str, src: str, width: int, gain: str | None = None) -> str:
        """RMSNorm with the gain `<name>.weight`, or the existing `gain`."""
        gain = gain or g.param(f"{name}.weight", (width,))
        return g.op(OpKind.RMSNORM, name, [src, gain], eps=float(config.rms_norm_eps))

    def heads(p: str, which: str, src: str, n: int, part: Group) -> str:
        """[b, s, n*Dh] -> [b, n, s, Dh], with Qwen3's per-head norm (one gain for every
        group) and the rotary embedding (for q and k) at the group's positions."""
        a, b, s, tag = f"{p}.self_attn", part.batch, part.seq, part.tag
        split = g.op(OpKind.RESHAPE, f"{a}.{which}.split{tag}", [src], shape=(b, s, n, Dh))
        if config.qk_norm and which in ("q", "k"):
            gain = f"{a}.{which}_norm.weight"
            if gain not in g:
                g.param(gain, (Dh,))
            split = rmsnorm(f"{a}.{which}_norm{tag}", split, Dh, gain)
        t = g.op(OpKind.TRANSPOSE, f"{a}.{which}.heads{tag}", [split], perm=(0, 2, 1, 3))
        if which in ("q", "k"):
            t = g.op(OpKind.ROPE, f"{a}.{which}.rope{tag}", [t], start=part.kv, **rope_attrs)
        return t

    def rows(src: str, name: str, part: Group) -> str:
        """The group's rows of a [1, T, ...] value (the whole value for one group)."""
        if len(parts) == 1:
            return src
        return g.op(OpKind.SLICE, f"{name}{part.tag}", [src], axis=1, start=part.start,
                    stop=part.start + part.batch * part.seq)

    def attend(p: str, qkv: dict[str, str], part: Group) -> str:
        """One group's attention: its caches appended, causal softmax over its own keys;
        the context as [b, s, H*Dh]."""
        a, b, s, L, tag = f"{p}.self_attn", part.batch, part.seq, part.kv, part.tag
        q, k, v = qkv["q"], qkv["k"], qkv["v"]
        T = L + s
        if L:
            k = g.op(OpKind.KV_APPEND, f"{a}.k_all{tag}", [g.input(f"{p}{tag}.k_cache", (b, Hkv, L, Dh)), k])
            v = g.op(OpKind.KV_APPEND, f"{a}.v_all{tag}", [g.input(f"{p}{tag}.v_cache", (b, Hkv, L, Dh)), v])
        outputs.extend((k, v))
        if G > 1:   # the query heads of a group share their KV head: one batch entry each
            q = g.op(OpKind.RESHAPE, f"{a}.q.groups{tag}", [q], shape=(b, Hkv, G, s, Dh))
            k = g.op(OpKind.RESHAPE, f"{a}.k.groups{tag}", [k], shape=(b, Hkv, 1, T, Dh))
            v = g.op(OpKind.RESHAPE, f"{a}.v.groups{tag}", [v], shape=(b, Hkv, 1, T, Dh))
        softmax_attrs = dict(scale=1.0 / math.sqrt(Dh), causal=True)
        if config.sliding_window is not None and config.sliding_window < T:
            softmax_attrs["window"] = config.sliding_window
        scores = g.op(OpKind.MATMUL, f"{a}.scores{tag}", [q, k], transpose_b=True)
        probs = g.op(OpKind.SOFTMAX, f"{a}.probs{tag}", [scores], **softmax_attrs)
        ctx = g.op(OpKind.MATMUL, f"{a}.context{tag}", [probs, v])
        if G > 1:
            ctx = g.op(OpKind.RESHAPE, f"{a}.context.heads{tag}", [ctx], shape=(b, H, s, Dh))
        merged = g.op(OpKind.TRANSPOSE, f"{a}.merge{tag}", [ctx], perm=(0, 2, 1, 3))
        return g.op(OpKind.RESHAPE, f"{a}.flat{tag}", [merged], shape=token_rows(part, H * Dh))

    def mlp(p: str, src: str) -> str:
        F, bias = config.intermediate_size, config.mlp_bias
        gate = g.linear(f"{p}.mlp.gate_proj", src, D, F, bias=bias, split="columns")
        act = g.op(OpKind.SILU, f"{p}.mlp.act", [gate])
        up = g.linear(f"{p}.mlp.up_proj", src, D, F, bias=bias, split="columns")
        gated = g.op(OpKind.MUL, f"{p}.mlp.gated", [act, up])
        return g.linear(f"{p}.mlp.down_proj", gated, F, D, bias=bias, split="rows")

    def experts(p: str, src: str) -> str:
        block, w_gate, w_up, w_down = _MOE_NAMES[config.family]
        E, F = config.num_experts, config.moe_intermediate_size
        flat = g.op(OpKind.RESHAPE, f"{p}.{block}.tokens", [src], shape=(B * S, D))
        split = shard.split_tokens              # all-to-all dispatch: this rank's tokens only
        if split:
            if B * S % shard.tp:
                raise GraphError(f"--ep-dispatch all_to_all: the {B * S} tokens of the pass do "
                                 f"not split over {shard.tp} ranks (use --ep-dispatch replicated)")
            own = B * S // shard.tp
            flat = g.op(OpKind.SLICE, f"{p}.{block}.own_tokens", [flat], axis=0,
                        start=shard.rank * own, stop=(shard.rank + 1) * own)
        logits = g.linear(f"{p}.{block}.gate", flat, D, E, bias=False)
        spread = shard.spread_experts           # expert parallelism: whole experts, no columns
        columns, weight_rows = (None, None) if spread else (shard.columns(F), shard.rows(F))
        local = shard.experts(E)
        weights = []
        for e in local:
            q = f"{p}.{block}.experts.{e}"
            weights += [g.param(f"{q}.{w_gate}.weight", (D, F), part=columns),
                        g.param(f"{q}.{w_up}.weight", (D, F), part=columns),
                        g.param(f"{q}.{w_down}.weight", (F, D), part=weight_rows)]
        out = g.op(OpKind.MOE, f"{p}.{block}", [flat, logits, *weights],
                   top_k=config.num_experts_per_tok, norm_topk_prob=config.norm_topk_prob,
                   **({"first_expert": local.start} if spread else {}),
                   **({"ranks": shard.tp, "rank": shard.rank} if split else {}))
        if split:   # each rank has its tokens' whole outputs: every rank gets all of them
            whole = g.op(OpKind.ALL_GATHER, f"{p}.{block}.gathered", [out], ranks=shard.tp,
                         rank=shard.rank)
        else:       # the router is replicated, so every rank routes alike and sums its experts
            whole = g.allreduce(out)    # (or its columns of every expert): partial outputs
        return g.op(OpKind.RESHAPE, f"{p}.{block}.out", [whole], shape=(B, S, D))

    for i in layers:
        p = f"layers.{i}"
        a = f"{p}.self_attn"
        h = rmsnorm(f"{p}.input_layernorm", x, D)
        qkv: list[dict[str, str]] = [{} for _ in parts]
        for which, n_full in (("q", config.num_attention_heads), ("k", config.num_key_value_heads),
                              ("v", config.num_key_value_heads)):
            # this rank's columns of the projection of all n_full heads (the query heads of a
            # rank's KV heads are the rank's query heads: both split alike)
            y = g.linear(f"{a}.{which}_proj", h, D, n_full * Dh, bias=config.attention_bias,
                         split="columns")
            for part, found in zip(parts, qkv):
                found[which] = heads(p, which, rows(y, f"{a}.{which}.rows", part),
                                     shard.split(n_full), part)
        flats = [attend(p, found, part) for part, found in zip(parts, qkv)]
        flat = flats[0] if len(flats) == 1 else g.op(OpKind.CONCAT, f"{a}.flat", flats, axis=1)
        attn = g.linear(f"{a}.o_proj", flat, config.num_attention_heads * Dh, D,
                        bias=config.o_proj_bias, split="rows")
        x = g.op(OpKind.ADD, f"{p}.attn.residual", [x, attn])
        h = rmsnorm(f"{p}.post_attention_layernorm", x, D)
        y = experts(p, h) if config.is_moe_layer(i) else mlp(p, h)
        x = g.op(OpKind.ADD, f"{p}.mlp.residual", [x, y])
    if layers.stop < config.num_hidden_layers:
        return g.build_part([x, *outputs])
    final = rmsnorm("norm", x, D)
    if isinstance(phase, Step):     # each request's last token only
        final = g.last_tokens("norm.last", final, parts, D)
    if not config.tie_word_embeddings:
        head = g.param("lm_head.weight", (config.vocab_size, D))
    else:   # a later stage than the embedding's holds its own copy of the tied table
        head = embed if layers.start == 0 else g.param("embed_tokens.weight", (config.vocab_size, D))
    logits = g.op(OpKind.MATMUL, "lm_head", [final, head], transpose_b=True)
    return g.build_part([logits, *outputs])
