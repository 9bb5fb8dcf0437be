"""Compiler graphs as GPU kernel lists for the baseline model (sim.gpu reads no graphs).

One kernel per compute op of `compiler.cost.graph_cost`, unfused, in the order the graph
runs them. The GPU runs the model in half precision: every float tensor is 2 bytes, so the
compiler's fp32 byte counts are scaled by 2/4 (the int32 token ids of an embedding are
halved too, a few bytes per token). Layout ops, inputs and params launch nothing.

Each op kind maps to the kernel kind priced like it (`_KERNEL_KINDS`): RMSNorm and RoPE have
kinds of their own (the presets price them as Vidur measured them, tools/gpu_vector_fit.py);
SiLU and div are elementwise; a gather (the MoE permute and unpermute) is an embedding-style
row gather; concat is a copy. A RoPE kernel also reads its positions' cos/sin table rows.
Two fusions, as serving runtimes (vLLM, Sarathi-Serve) run them:
- always: silu(gate) * up is one "silu-gate" kernel (reads gate and up, writes the product);
- with attention="fused": each scores -> softmax -> context chain
  (compiler.passes.attention) is one FlashAttention-style "attention" kernel that reads Q, K
  and V once and writes O once (no S x T scores round trip); its FLOPs are the two matmuls'
  over the (query, key) pairs the causal or sliding-window mask leaves (FlashAttention skips
  fully masked key blocks).
A mixture-of-experts graph must be routed first (compiler.passes.routing): its experts run as
the ordinary GEMMs of the routed graph, so only experts that received tokens cost time, as on
the accelerators.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable

from arch import load_arch
from arch.gpu import GEMV_MAX_M, GpuArch
from compiler.cost import OpCost, graph_cost
from compiler.frontend import DecoderConfig, ModelConfig, build_graph
from compiler.frontend.gpt2 import PRESETS, GPT2Config
from compiler.ir import DType, Graph, GraphError, OpKind
from compiler.passes.attention import AttentionChain, find_attention
from compiler.phase import Phase, decode, prefill
from sim.gpu import CalibrationPoint, Kernel, gpu_baseline, kernel_time
from tessel.gpu_hf import hf_pass_cost

__all__ = ["graph_kernels", "graph_collectives", "rank_work", "model_kernels", "pass_cost", "generation", "Generation",
           "predict", "visible_pairs", "MODELS", "GEMV_MAX_M", "HALF_BYTES", "ATTENTION"]

HALF_BYTES = 2          # fp16 / bf16 element
# how the GPU runs attention (tessel sim --gpu-attention): three kernels, or one fused kernel
ATTENTION = ("unfused", "fused")
# op kind -> kernel kind (arch.gpu.KERNEL_KINDS) for every op that is not a GEMM or a view
_KERNEL_KINDS = {"add": "elementwise", "mul": "elementwise", "gelu": "elementwise",
                 "silu": "elementwise", "div": "elementwise", "rope": "rope",
                 "layernorm": "layernorm", "rmsnorm": "rmsnorm", "softmax": "softmax",
                 "embedding": "embedding", "gather": "embedding", "kv_append": "copy",
                 "concat": "copy"}
_VIEWS = {k.value for k in OpKind if k.is_layout}     # reshape / transpose / slice: no kernel
_COLLECTIVES = {k.value for k in OpKind if k.is_collective}   # NCCL's, on the link

# The FasterTransformer GPTs as GPT-2-architecture graphs (context 2048, vocab 50257).
# 1.3B and 6.7B: the published GPT-3 widths and depths (Brown et al. 2020, Table 2.1; 1.3B
# with 16 heads of 128 as the gpt3-xl preset). 20B: GPT-NeoX-20B's 44 layers of d 6144 with
# 64 heads, without its rotary embeddings and parallel residual (same weights to stream).
MODELS: dict[str, GPT2Config] = {
    **PRESETS,
    "gpt-1.3b": dataclasses.replace(PRESETS["gpt3-xl"], name="gpt-1.3b"),
    "gpt-6.7b": GPT2Config("gpt-6.7b", n_layer=32, n_head=32, n_embd=4096, n_positions=2048),
    "gpt-20b": GPT2Config("gpt-20b", n_layer=44, n_head=64, n_embd=6144, n_positions=2048),
}


def _half_bytes(op: OpCost) -> int:
    return round(op.bytes * HALF_BYTES / DType(op.dtype).itemsize)


def _kernel(op: OpCost) -> Kernel | None:
    n_bytes = _half_bytes(op)
    if op.kind in ("matmul", "linear"):
        a, b = op.inputs[0], op.inputs[1]
        k, n = a[-1], op.output[-1]
        if op.kind == "matmul" and len(b) > 2:          # batched: attention scores / context
            # grouped-query attention: the query heads sharing a KV head (b's batch dim 1
            # where a's is larger) are rows of one GEMM against it, as GQA kernels run them
            shared = math.prod(x for x, y in zip(a[:-2], b[:-2]) if y == 1)
            return Kernel(op.name, "attention-matmul", op.flops, n_bytes, m=a[-2] * shared, n=n,
                          k=k, batch=math.prod(a[:-2]) // shared)
        m = math.prod(a[:-1])
        return Kernel(op.name, "gemv" if m <= GEMV_MAX_M else "gemm", op.flops, n_bytes,
                      m=m, n=n, k=k)
    if op.kind == "rope":         # x [..., heads, S, D]: one table row of D cos/sin values per token
        n_bytes += math.prod(op.output[:-3]) * op.output[-2] * op.output[-1] * HALF_BYTES
    if op.kind in _KERNEL_KINDS:
        return Kernel(op.name, _KERNEL_KINDS[op.kind], op.flops, n_bytes)
    if op.kind in _VIEWS:
        return None
    raise GraphError(f"op '{op.name}' ({op.kind}): the GPU baseline has no kernel for it"
                     + (" (route the graph first: compiler.passes.routing)" if op.kind == "moe"
                        else " (a device of a parallel plan: tessel.baselines.compare_gpus_on_plan)"
                        if op.kind in _COLLECTIVES else ""))


def visible_pairs(s: int, t: int, causal: bool, window: int | None) -> int:
    """(query, key) pairs a mask leaves: query i, at position t - s + i, sees the keys up to
    its own position, and only the last `window` of them (compiler.reference.attention_mask)."""
    if not causal:
        return s * t
    lo, hi, cap = t - s + 1, t, window or t           # keys visible to the first, last query
    top = min(hi, cap)
    under = (lo + top) * (top - lo + 1) // 2 if top >= lo else 0
    return under + cap * max(0, hi - max(lo, cap + 1) + 1)


def _fused_attention(graph: Graph, chain: AttentionChain, scores: Kernel, context: Kernel) -> Kernel:
    """One FlashAttention-style kernel for a chain: Q, K, V read and O written once, in fp16;
    m, batch as the scores GEMM groups them (the query rows sharing a KV head, and the KV heads)."""
    n_bytes = HALF_BYTES * sum(graph[name].type.numel for name in (chain.q, chain.k, chain.v, chain.context))
    visible = visible_pairs(chain.s, chain.t, chain.causal, chain.window) / (chain.s * chain.t)
    return Kernel(chain.name, "attention", round((scores.flops + context.flops) * visible), n_bytes,
                  m=scores.m, n=chain.d, k=chain.t, batch=scores.batch)


def _kernels(graph: Graph, ops, attention: str) -> list[Kernel]:
    """The kernels of `ops` (compute ops of `graph`, in order) with the SiLU-gate fusion, and
    the attention fusion when `attention` is "fused"."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    kernels = {op.name: k for op, k in ((op, _kernel(op)) for op in ops) if k is not None}
    for silu in graph.of_kind(OpKind.SILU):
        users = graph.consumers(silu.name)
        if (silu.name in kernels and silu.name not in graph.outputs and len(users) == 1
                and users[0].kind is OpKind.MUL and users[0].name in kernels
                and users[0].inputs.count(silu.name) == 1):
            act, mul = kernels.pop(silu.name), kernels[users[0].name]
            kernels[mul.name] = Kernel(mul.name, "silu-gate", act.flops + mul.flops, mul.bytes)
    if attention == "fused":
        for chain in find_attention(graph):
            if chain.scores in kernels and chain.context in kernels:
                scores, _ = kernels.pop(chain.scores), kernels.pop(chain.probs)
                context = kernels[chain.context]
                kernels[chain.context] = _fused_attention(graph, chain, scores, context)
    return list(kernels.values())


def graph_kernels(graph: Graph, narrowing: Callable[[Kernel], Kernel] | None = None,
                  attention: str = "unfused") -> list[Kernel]:
    """The kernels a GPU launches for one pass of `graph`, in execution order; each narrowed
    by a quantisation recipe planned on the graph when one is given (tessel.gpu_quant.narrowing);
    attention as ATTENTION says (a recipe narrows the unfused kernels only)."""
    if narrowing is not None and attention == "fused":
        raise GraphError("fused attention is priced in fp16: not with a quantisation recipe")
    kernels = _kernels(graph, graph_cost(graph).ops, attention)
    return kernels if narrowing is None else [narrowing(k) for k in kernels]


def rank_work(graph: Graph, attention: str = "unfused") -> tuple[list[Kernel], list[tuple[str, int, int]]]:
    """One device's graph of a parallel plan: its kernels, and its collectives as (kind, bytes
    in fp16, ranks), which NCCL runs (priced on the GPU's link by sim/collectives.py)."""
    ops = [op for op in graph_cost(graph).ops if op.kind not in _COLLECTIVES]
    return _kernels(graph, ops, attention), [c[1:] for c in graph_collectives(graph)]


def graph_collectives(graph: Graph) -> list[tuple[str, str, int, int]]:
    """The collectives of one device's graph as (op name, kind, bytes in fp16, ranks), bytes
    as nccl-tests count them: the result's."""
    return [(op.name, OpKind(op.kind).coll_kind, math.prod(op.output) * HALF_BYTES,
             graph[op.name].attr("ranks")) for op in graph_cost(graph).ops if op.kind in _COLLECTIVES]


def _one_block(config: ModelConfig) -> tuple[ModelConfig, str]:
    """The config cut to one decoder block, and the name prefix of its blocks' ops (the one
    place that knows each family's field and names). A mixture-of-experts model has no fixed
    kernel list (it depends on the routing): model_kernels refuses it."""
    if isinstance(config, DecoderConfig):
        if config.num_experts:
            raise GraphError(f"{config.name}: a mixture-of-experts model's kernels depend on its "
                             "routing: route its graph (compiler.passes.routing) and use graph_kernels")
        return dataclasses.replace(config, num_hidden_layers=1), "layers."
    return dataclasses.replace(config, n_layer=1), "h."


@functools.lru_cache(maxsize=1024)
def _split(config: ModelConfig, phase: Phase, attention: str = "unfused"
           ) -> tuple[tuple[Kernel, ...], tuple[Kernel, ...], int, str]:
    """Kernels of a one-layer graph: (outside the blocks, block 0, where the blocks go, the
    blocks' name prefix)."""
    one_layer, prefix = _one_block(config)
    one = graph_kernels(build_graph(one_layer, phase), attention=attention)
    first = next(i for i, k in enumerate(one) if k.name.startswith(f"{prefix}0."))
    return (tuple(k for k in one if not k.name.startswith(prefix)),
            tuple(k for k in one if k.name.startswith(f"{prefix}0.")), first, prefix)


def model_kernels(config: ModelConfig, phase: Phase, attention: str = "unfused") -> list[Kernel]:
    """`graph_kernels(build_graph(config, phase), attention=attention)` without building the
    whole graph: every decoder block has the same kernels, so block 0's repeat n_layer times."""
    rest, block, first, prefix = _split(config, phase, attention)
    cut = len(prefix) + 2                                  # "<prefix>0."
    layers = [Kernel(f"{prefix}{i}.{k.name[cut:]}", k.kind, k.flops, k.bytes, k.m, k.n, k.k, k.batch)
              for i in range(config.n_layer) for k in block]
    return [*rest[:first], *layers, *rest[first:]]


def pass_cost(config: ModelConfig, phase: Phase, gpu: GpuArch, mode: str,
              attention: str = "unfused") -> tuple[float, float]:
    """(time_s, energy_j) of one pass: equal to gpu_baseline(model_kernels(...)), but each
    block kernel is evaluated once and counted n_layer times. Mode "hf": one Hugging Face
    generate iteration instead (tessel/gpu_hf.py; its attention is unfused)."""
    if mode == "hf":
        if attention != "unfused":
            raise GraphError("--gpu-mode hf: Hugging Face's eager attention is unfused")
        return hf_pass_cost(config, phase, gpu)
    rest, block, _, _ = _split(config, phase, attention)
    rest_r, block_r = gpu_baseline(rest, gpu, mode), gpu_baseline(block, gpu, mode)
    return (rest_r.time_s + config.n_layer * block_r.time_s,
            rest_r.energy_j + config.n_layer * block_r.energy_j)


@dataclass(frozen=True, slots=True)
class Generation:
    """A prefill of `prompt` tokens then `new_tokens` decode steps at a growing KV cache."""

    prompt: int
    new_tokens: int
    prefill_s: float
    decode_s: tuple[float, ...]
    energy_j: float

    @property
    def time_s(self) -> float:
        return self.prefill_s + sum(self.decode_s)


def generation(config: ModelConfig, prompt: int, new_tokens: int, gpu: GpuArch,
               mode: str = "graph", batch: int = 1, attention: str = "unfused") -> Generation:
    """One prefill of `prompt`, then decode steps at KV prompt .. prompt + new_tokens - 1."""
    first = pass_cost(config, prefill(prompt, batch), gpu, mode, attention)
    steps = [pass_cost(config, decode(kv, batch), gpu, mode, attention)
             for kv in range(prompt, prompt + new_tokens)]
    return Generation(prompt, new_tokens, first[0], tuple(t for t, _ in steps),
                      first[1] + sum(e for _, e in steps))


def predict(point: CalibrationPoint, gpu: GpuArch | None = None) -> float | None:
    """The model's time for a cited measurement (None when it names no workload)."""
    if not point.workload:
        return None
    gpu = gpu or load_arch(point.gpu)
    what, *args = point.workload
    mode = "graph" if point.mode == "device" else point.mode
    if what in ("gemm", "copy"):
        if what == "gemm":
            m, n, k = args
            kernel = Kernel(point.key, "gemv" if m <= GEMV_MAX_M else "gemm", 2 * m * n * k,
                            HALF_BYTES * (m * k + k * n + m * n), m, n, k)
        else:
            kernel = Kernel(point.key, "copy", 0, args[0])
        timed = kernel_time(kernel, gpu, mode)
        return timed.time_s - (timed.overhead_s if point.mode == "device" else 0.0)
    config = MODELS[args[0]]
    if what == "decode":
        return pass_cost(config, decode(args[1]), gpu, mode)[0]
    return generation(config, args[1], args[2], gpu, mode).time_s
