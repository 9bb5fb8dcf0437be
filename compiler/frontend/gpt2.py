"""GPT-2-architecture models: presets and the graph of one prefill or decode pass.

The graph follows Hugging Face's GPT2LMHeadModel op for op: token + position embeddings,
pre-LN decoder blocks (fused qkv projection, scaled causal attention, gelu_new MLP), final
layer norm and an LM head tied to the token embedding (or its own `lm_head.weight` when
`tie_word_embeddings` is false). Attention scores are scaled by 1/sqrt(head_dim) unless
`scale_attn_weights` is false, and further by 1/(layer index + 1) with
`scale_attn_by_inverse_layer_idx`; the MLP is `n_inner` wide (4 x n_embd when None), as in
Hugging Face's GPT2Attention and GPT2Block. Parameter names are Hugging Face's keys without
the `transformer.` prefix, so checkpoints load by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.ir import DType, Graph, GraphError, OpKind
from compiler.parallel.shard import PartBuilder, Shard, ShardGraph
from compiler.phase import Group, Phase, Step, group_rows, groups

__all__ = ["GPT2Config", "PRESETS", "build_graph", "build_part"]


@dataclass(frozen=True, slots=True)
class GPT2Config:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int = 50257
    n_positions: int = 1024
    layer_norm_epsilon: float = 1e-5
    n_inner: int | None = None                     # MLP width; None: 4 x n_embd
    scale_attn_weights: bool = True                # scores / sqrt(head_dim)
    scale_attn_by_inverse_layer_idx: bool = False  # scores also / (layer index + 1)
    tie_word_embeddings: bool = True               # LM head = wte.weight

    def __post_init__(self) -> None:
        for f in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise GraphError(f"{self.name}: {f} must be a positive integer, got {getattr(self, f)!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner < 1):
            raise GraphError(f"{self.name}: n_inner must be a positive integer or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise GraphError(f"{self.name}: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0 < self.layer_norm_epsilon < math.inf:
            raise GraphError(f"{self.name}: layer_norm_epsilon must be positive and finite, "
                             f"got {self.layer_norm_epsilon!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_dim(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    def attention_scale(self, layer: int) -> float:
        """The factor of layer `layer`'s attention scores before the softmax (HF's _attn)."""
        scale = 1.0 / math.sqrt(self.head_dim) if self.scale_attn_weights else 1.0
        return scale / (layer + 1) if self.scale_attn_by_inverse_layer_idx else scale

    @property
    def n_params(self) -> int:
        """Parameter count (the published model sizes count the tied LM head once)."""
        d, m = self.n_embd, self.mlp_dim
        per_layer = 4 * d * d + 2 * d * m + 9 * d + m   # qkv, proj, fc, fc-proj weights and biases, 2 LNs
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return (self.vocab_size + self.n_positions) * d + self.n_layer * per_layer + 2 * d + head


PRESETS: dict[str, GPT2Config] = {c.name: c for c in (
    # GPT-2 (Radford et al. 2019, Table 2; Hugging Face configs): context 1024, vocab 50257
    GPT2Config("gpt2", n_layer=12, n_head=12, n_embd=768),
    GPT2Config("gpt2-medium", n_layer=24, n_head=16, n_embd=1024),
    GPT2Config("gpt2-large", n_layer=36, n_head=20, n_embd=1280),
    GPT2Config("gpt2-xl", n_layer=48, n_head=25, n_embd=1600),
    # GPT-3 shapes (Brown et al. 2020, Table 2.1) as evaluated by PIM-GPT: context 2048,
    # dense attention in the GPT-2 architecture
    GPT2Config("gpt3-small", n_layer=12, n_head=12, n_embd=768, n_positions=2048),
    GPT2Config("gpt3-medium", n_layer=24, n_head=16, n_embd=1024, n_positions=2048),
    GPT2Config("gpt3-large", n_layer=24, n_head=16, n_embd=1536, n_positions=2048),
    # Table 2.1 lists GPT-3 XL with 24 heads of 128, which cannot tile d_model = 2048; we keep
    # d_model and d_head (16 heads), which gives the published 1.3 B parameters.
    GPT2Config("gpt3-xl", n_layer=24, n_head=16, n_embd=2048, n_positions=2048),
)}


def build_graph(config: GPT2Config, phase: Phase) -> Graph:
    """The graph of one pass; inputs `tokens` [B,S] and, for decode, the KV caches."""
    return build_part(config, phase, Shard()).graph


def build_part(config: GPT2Config, phase: Phase | Step, shard: Shard) -> ShardGraph:
    """One device's graph of a pass (compiler.parallel, docs/parallel.md): its pipeline stage's
    layers (stage 0 embeds `tokens`, later stages read `hidden` [B,S,D]; the last ends with the
    LM head, earlier ones output the hidden state) and its tensor-parallel rank's heads and MLP
    columns. Shard() gives the whole model, exactly as on one device. A serving `Step`: every
    request's tokens through the token-wise ops at once, each request attending to its own
    cache at its own positions, the LM head on each request's last token (as decoder.py)."""
    if phase.total_len > config.n_positions:
        raise GraphError(f"{config.name}: {phase.total_len} positions exceed the context "
                         f"of {config.n_positions}")
    B, S, D = phase.batch, phase.seq, config.n_embd
    H, Dh, M = shard.split(config.n_head), config.head_dim, config.mlp_dim
    layers = shard.layers(config.n_layer)
    parts = groups(phase)
    g = PartBuilder(f"{config.name}-{phase.kind}", shard)
    if layers.start == 0:
        tokens = g.input("tokens", (B, S), DType.int32)
        wte = g.param("wte.weight", (config.vocab_size, D))
        wpe = g.param("wpe.weight", (config.n_positions, D))
        tok = g.op(OpKind.EMBEDDING, "embed.tokens", [wte, tokens])
        pos = [g.op(OpKind.SLICE, f"embed.positions{part.tag}", [wpe], axis=0, start=part.kv,
                    stop=part.kv + part.seq) for part in parts]
        if not isinstance(phase, Step) or len(parts) == 1 and parts[0].batch == 1:
            (pos,) = pos                # one position range for every sequence
        elif len(parts) == 1 and parts[0].seq == 1:     # decodes alike: one position, [D]
            pos = g.op(OpKind.RESHAPE, "embed.position", pos, shape=(D,))
        else:                           # every request's positions, in token order
            pos = g.op(OpKind.CONCAT, "embed.positions",
                       [p for part, p in zip(parts, pos) for _ in range(part.batch)], axis=0)
        x = g.op(OpKind.ADD, "embed", [tok, pos])
    else:
        x = g.input("hidden", (B, S, D))
    outputs = []

    def layernorm(name: str, src: str) -> str:
        gain, bias = g.param(f"{name}.weight", (D,)), g.param(f"{name}.bias", (D,))
        return g.op(OpKind.LAYERNORM, name, [src, gain, bias], eps=config.layer_norm_epsilon)

    def heads(name: str, src: str, part: int, group: Group) -> str:
        tag = group.tag
        if len(parts) > 1:          # the group's rows of every token's projection
            src = g.op(OpKind.SLICE, f"{name}.rows{tag}", [src], axis=1, start=group.start,
                       stop=group.start + group.batch * group.seq)
        piece = g.op(OpKind.SLICE, f"{name}{tag}", [src], axis=2, start=part * H * Dh,
                     stop=(part + 1) * H * Dh)
        split = g.op(OpKind.RESHAPE, f"{name}.split{tag}", [piece], shape=(group.batch, group.seq, H, Dh))
        return g.op(OpKind.TRANSPOSE, f"{name}.heads{tag}", [split], perm=(0, 2, 1, 3))

    def attend(p: str, i: int, qkv: str, group: Group) -> str:
        """One group's attention, its caches appended; the context as [b, s, H*Dh]."""
        b, L, tag = group.batch, group.kv, group.tag
        q, k, v = (heads(f"{p}.attn.{n}", qkv, j, group) for j, n in enumerate("qkv"))
        if L:
            k_cache = g.input(f"{p}{tag}.k_cache", (b, H, L, Dh))
            v_cache = g.input(f"{p}{tag}.v_cache", (b, H, L, Dh))
            k = g.op(OpKind.KV_APPEND, f"{p}.attn.k_all{tag}", [k_cache, k])
            v = g.op(OpKind.KV_APPEND, f"{p}.attn.v_all{tag}", [v_cache, v])
        outputs.extend((k, v))
        scores = g.op(OpKind.MATMUL, f"{p}.attn.scores{tag}", [q, k], transpose_b=True)
        probs = g.op(OpKind.SOFTMAX, f"{p}.attn.probs{tag}", [scores],
                     scale=config.attention_scale(i), causal=True)
        ctx = g.op(OpKind.MATMUL, f"{p}.attn.context{tag}", [probs, v])
        merged = g.op(OpKind.TRANSPOSE, f"{p}.attn.merge{tag}", [ctx], perm=(0, 2, 1, 3))
        return g.op(OpKind.RESHAPE, f"{p}.attn.flat{tag}", [merged],
                    shape=group_rows(phase, group, H * Dh))

    for i in layers:
        p = f"h.{i}"
        ln1 = layernorm(f"{p}.ln_1", x)
        qkv = g.linear(f"{p}.attn.c_attn", ln1, D, 3 * D, bias=True, split="columns", blocks=3)
        flats = [attend(p, i, qkv, group) for group in parts]
        flat = flats[0] if len(flats) == 1 else g.op(OpKind.CONCAT, f"{p}.attn.flat", flats, axis=1)
        attn = g.linear(f"{p}.attn.c_proj", flat, D, D, bias=True, split="rows")
        x = g.op(OpKind.ADD, f"{p}.attn.residual", [x, attn])
        ln2 = layernorm(f"{p}.ln_2", x)
        fc = g.linear(f"{p}.mlp.c_fc", ln2, D, M, bias=True, split="columns")
        act = g.op(OpKind.GELU, f"{p}.mlp.act", [fc])
        x = g.op(OpKind.ADD, f"{p}.mlp.residual",
                 [x, g.linear(f"{p}.mlp.c_proj", act, M, D, bias=True, split="rows")])
    if layers.stop < config.n_layer:
        return g.build_part([x, *outputs])
    final = layernorm("ln_f", x)
    if isinstance(phase, Step):     # each request's last token only
        final = g.last_tokens("ln_f.last", final, parts, D)
    if not config.tie_word_embeddings:
        head = g.param("lm_head.weight", (config.vocab_size, D))
    else:   # a later stage than the embedding's holds its own copy of the tied table
        head = wte if layers.start == 0 else g.param("wte.weight", (config.vocab_size, D))
    logits = g.op(OpKind.MATMUL, "lm_head", [final, head], transpose_b=True)
    return g.build_part([logits, *outputs])
