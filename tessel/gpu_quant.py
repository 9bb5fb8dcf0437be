"""A quantisation recipe on the GPU baseline: the formats of compiler.quant's plan applied to
the kernels tessel.gpu_kernels builds (issue 20; docs/validation.md, Quantised GEMMs).

Per matrix kernel, from its operands' formats (weights, the matmul's input, the KV cache):
- both operands quantised: the MACs run in the one tensor-core format both fit (integers of
  at most 4 bits: int4; up to 8 bits: int8; fp8 x fp8: fp8) at the preset's `tensor_tops`
  rate, on the FP16 efficiency curve; an operand narrower than that format is widened on
  the CUDA cores, each element once (W4A8's weights). A pair no tensor core multiplies (an
  integer by an fp8, MX, block floating point) is refused, naming the tensor.
- one operand quantised (weight-only W4A16, Marlin-style; an attention matmul reading a
  narrow KV cache): FP16 MACs; the narrow operand is dequantised to FP16 on the CUDA cores,
  each element once (its scale applied in the same instruction).
- scales in groups along the contracted axis (w4a4:g128) under integer MACs: each group's
  int32 partial sums are scaled and accumulated, one FMA per output per group and batch.
- bytes: a quantised operand moves bits_per_element / 8 bytes per element instead of 2
  (isa.formats: the scales' share included); a KV append writes the new token at its width.
An unquantised kernel is the one tessel.gpu_kernels builds, unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from arch.gpu import GpuArch
from compiler.ir import Graph, OpKind
from compiler.quant import QuantPlan, Recipe, RecipeError, TensorQuant, plan, resolve_recipe
from compiler.quant.plan import KVWrite, layer_of, scale_group
from isa.formats import bits_per_element
from sim.gpu import Kernel, peak_ops_per_s
from tessel.gpu_kernels import GEMV_MAX_M, HALF_BYTES

__all__ = ["Operand", "Narrowing", "narrowing", "narrow_kernel", "mma_format", "check_gpus",
           "resident_bytes", "linear_kernel", "DEQUANT_OPS_PER_ELEMENT", "RESCALE_OPS_PER_PARTIAL"]

HALF_BITS = 16
# Assumption (no measured figure in reference/): one CUDA-core instruction per narrow element
# to unpack it and apply its scale, e.g. a bit-mask then a fused multiply-add on a pair of
# FP16 values packed in one register (half2) is two instructions per two elements.
DEQUANT_OPS_PER_ELEMENT = 1
# One FMA (scale x int32 partial sum + accumulator) per output, per group along K.
RESCALE_OPS_PER_PARTIAL = 1
_MMA_BITS = {"int4": 4, "int8": 8, "fp8": 8}


@dataclass(frozen=True, slots=True)
class Operand:
    """One quantised operand of a kernel: its elements, its format, and the length of the axis
    its scale groups run along (the contracted axis; a KV write's channels)."""

    elements: int
    quant: TensorQuant
    length: int
    head_dim: int | None = None

    @property
    def bits(self) -> float:
        q = self.quant
        return bits_per_element(q.format, scale_group(q, self.length, self.head_dim), self.elements)

    @property
    def saved_bytes(self) -> float:
        return self.elements * (HALF_BITS - self.bits) / 8


def mma_format(weights: TensorQuant, activations: TensorQuant, tensor: str, recipe: str) -> str:
    """The tensor-core format that multiplies both operands of `tensor`; a pair no tensor core
    multiplies is refused."""
    w, a = weights.format, activations.format
    if w.kind == a.kind == "int":
        return "int4" if max(w.bits, a.bits) <= 4 else "int8"
    if w.kind == a.kind == "fp8":
        return "fp8"
    raise RecipeError(f"recipe {recipe!r}: '{tensor}': no GPU tensor core multiplies weights "
                      f"{weights} by activations {activations} (tensor_tops has fp8, int8 and "
                      "int4; the GPU model has no MX or block floating point MACs)")


def narrow_kernel(kernel: Kernel, a: Operand | None, b: Operand | None, recipe: str = "") -> Kernel:
    """`kernel` (its fp16 form) with operand a (the input) and b (the weight or the KV cache)
    in their formats; either may be None (kept in FP16)."""
    quantised = [x for x in (a, b) if x is not None]
    if not quantised:
        return kernel
    n_bytes = round(kernel.bytes - sum(x.saved_bytes for x in quantised))
    if len(quantised) == 1:
        return dataclasses.replace(kernel, bytes=n_bytes,
                                   dequant_ops=quantised[0].elements * DEQUANT_OPS_PER_ELEMENT)
    mma = mma_format(b.quant, a.quant, kernel.name, recipe)
    widened = sum(x.elements for x in quantised if x.quant.format.bits < _MMA_BITS[mma])
    groups = [x.quant.group for x in quantised if x.quant.scale == "group"]
    rescale = kernel.batch * kernel.m * kernel.n * (kernel.k // min(groups)) if groups else 0
    return dataclasses.replace(kernel, bytes=n_bytes, mma=mma,
                               dequant_ops=widened * DEQUANT_OPS_PER_ELEMENT
                               + rescale * RESCALE_OPS_PER_PARTIAL)


class Narrowing:
    """A recipe's plan on one graph, as the operands each op's kernel reads narrow."""

    def __init__(self, graph: Graph, recipe: Recipe, n_layers: int,
                 routers: frozenset[str] = frozenset()) -> None:
        self.graph, self.recipe = graph, recipe
        self.plan: QuantPlan = plan(graph, recipe, n_layers, routers)
        self.kv: dict[str, KVWrite] = {}       # KV value (a graph output) -> its write
        for name in graph.outputs[1:]:
            op = graph[name]
            self.kv[name] = self.plan.kv[op.inputs[1] if op.kind is OpKind.KV_APPEND else name]

    def __call__(self, kernel: Kernel) -> Kernel:
        """The kernel of the op of the same name, its operands narrowed as the plan says."""
        g, op = self.graph, self.graph[kernel.name]
        if op.kind is OpKind.KV_APPEND:
            write = self.kv.get(op.name)
            new = g[op.inputs[1]]
            return narrow_kernel(kernel, None, self._kv(write, new.type.numel))
        if op.kind is OpKind.EMBEDDING:
            use = self.plan.weights.get(op.inputs[0])
            rows = None if use is None or use.quant is None else Operand(
                op.type.numel, use.quant, op.type.shape[-1])
            return narrow_kernel(kernel, None, rows)
        if op.kind not in (OpKind.LINEAR, OpKind.MATMUL):
            return kernel
        a_type, b_type = g[op.inputs[0]].type, g[op.inputs[1]].type
        contracted = a_type.shape[-1]
        if op.name in self.plan.activations:
            use = self.plan.weights[op.inputs[1]]
            a_quant = self.plan.activations[op.name]
            a = None if a_quant is None else Operand(a_type.numel, a_quant, contracted)
            b = None if use.quant is None else Operand(b_type.numel, use.quant, contracted)
            return narrow_kernel(kernel, a, b, self.recipe.name)
        source = op.inputs[1]
        while g[source].kind.is_layout:
            source = g[source].inputs[0]
        return narrow_kernel(kernel, None, self._kv(self.kv.get(source), b_type.numel))

    @staticmethod
    def _kv(write: KVWrite | None, elements: int) -> Operand | None:
        if write is None or write.quant is None:
            return None
        return Operand(elements, write.quant, write.heads * write.head_dim, write.head_dim)


def narrowing(graph: Graph, recipe: str | Recipe, n_layers: int | None = None,
              routers: frozenset[str] = frozenset()) -> Narrowing:
    """`recipe` (a name, a .toml file or a Recipe) planned on `graph`, a model of `n_layers`
    layers (default: one more than the highest layer index in the graph's op names);
    `routers`: a routed graph's router linears, kept at full precision (plan's)."""
    if n_layers is None:
        n_layers = 1 + max((layer_of(op.name) for op in graph.ops if layer_of(op.name) is not None),
                           default=-1)
    return Narrowing(graph, resolve_recipe(recipe), n_layers, routers)


def check_gpus(narrow: Narrowing, gpus: Sequence[GpuArch]) -> None:
    """Refuse, before anything runs, a recipe whose GEMMs need a tensor-core format a GPU lacks
    (or that no tensor core has), naming the GPU, the tensor and the field."""
    plan_ = narrow.plan
    for op_name, a in plan_.activations.items():
        w = plan_.weights[narrow.graph[op_name].inputs[1]].quant
        if a is None or w is None:
            continue
        mma = mma_format(w, a, op_name, narrow.recipe.name)
        for gpu in gpus:
            peak_ops_per_s(gpu, "gemm", mma, f"'{op_name}' (weights {w}, activations {a})")


def resident_bytes(narrow: Narrowing) -> int:
    """What must sit in GPU memory for one pass under the recipe: every parameter and KV cache
    at its format's width (with its scales), every other input in fp16."""
    g, plan_ = narrow.graph, narrow.plan
    caches = {g[name].inputs[0]: write for name, write in narrow.kv.items()
              if g[name].kind is OpKind.KV_APPEND}
    total = 0.0
    for op in g.ops:
        if not op.kind.is_source:
            continue
        n, half = op.type.numel, op.type.numel * min(op.type.dtype.itemsize, 2)
        use = plan_.weights.get(op.name)
        shape = op.type.shape
        if use is not None and use.quant is not None:
            length = shape[-1] if use.contracted_last else shape[-2]
            total += half - Operand(n, use.quant, length).saved_bytes
        elif op.name in caches:
            kv = Narrowing._kv(caches[op.name], n)
            total += half - (kv.saved_bytes if kv else 0)
        else:
            total += half
    return round(total)


def linear_kernel(m: int, n: int, k: int, recipe: str | Recipe) -> Kernel:
    """One linear layer without bias, m x k . k x n, in the formats `recipe` gives a decoder
    layer's weights and activations (its per-layer exceptions do not apply)."""
    r = resolve_recipe(recipe)
    for role, quant in (("weights", r.weights), ("activations", r.activations)):
        if quant is not None and quant.scale == "group" and k % quant.group:
            raise RecipeError(f"recipe {r.name!r}: {role}: group {quant.group} does not divide "
                              f"the {k} input channels")
    base = Kernel(f"linear {m}x{n}x{k}", "gemv" if m <= GEMV_MAX_M else "gemm", 2 * m * n * k,
                  HALF_BYTES * (m * k + k * n + m * n), m, n, k)
    return narrow_kernel(base, r.activations and Operand(m * k, r.activations, k),
                         r.weights and Operand(k * n, r.weights, k), r.name)
