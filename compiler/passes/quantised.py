"""Which parameters a program stores quantised, in which layout: the weights a recipe's plan
(compiler/quant/plan.py) gives a code format, as a target's memory holds them and `loadq` (or,
on the PIM target, its narrow MAC lanes) reads them (docs/isa.md, "Quantised loads").

A linear's weight [in, out] = [K, N] is stored as K rows of N packed codes (isa/packing.py) and
its scales (fp16 for integers, fp32 for fp8, e8m0 for MX: isa/qformats.py) as [K / group, N]:
one row of N scales per `group` input channels (the recipe's group, an MX block's 32, or all K
for one scale per output channel), or a single scale for the whole tensor. The scale groups
run along K, the axis a GEMM contracts, so a tile of rows inside one group shares one row of
scales, and a `loadq` over several groups steps to the next scale row every `group` rows (its
qcfg's group and pitch); the emitter splits a tile only at its first group boundary.

Built here: integer (int2..int8, per channel, group or tensor), fp8, MX and bfp (2..8-bit
mantissas, any block) weights, read whole;
bit-nested integer weights (D2MoE) as bit planes, read at their expert's width (`loadp`).
(Quantised matmul inputs and KV writes are quantize ops in the graph: quantised_values.py.)
What a target cannot run yet is refused in one line naming the tensor and the field: bfp
weights with wider mantissas, a weight a matmul reads transposed, and quantised embedding tables
(a gather copies rows, it does not dequantise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np

from isa import DType
from isa.packing import pack_patterns, pack_planes, packed_row_bytes
from isa.qformats import CodeFormat, code_format, code_patterns, formats_args, scale_patterns

from compiler.errors import CompileError
from compiler.ir import Graph, OpKind
from compiler.passes.quantised_values import (check_quantised_graph, code_name, mac_formats_for,
                                              rounding_assumption)

if TYPE_CHECKING:            # compiler.quant imports ml_dtypes (0.6 s): only runs with a recipe
    from compiler.quant.plan import QuantPlan
    from compiler.quant.tensors import StoredWeight

__all__ = ["StoredFormat", "stored_formats", "stored_weight", "stored_codes", "stored_scales",
           "stored_data", "rows_data", "stored_bytes", "quant_assumption", "narrow_caches",
           "SCALES_SUFFIX", "NOT_ON_TARGETS"]

SCALES_SUFFIX = ".qscales"          # the scales' symbol: the codes' symbol + this
NOT_ON_TARGETS = ("the simulated targets store integer, fp8, MX and bfp weights (w8a16, w4a16:g128, "
                  "w8a8, mxfp4, ...)")


@dataclass(frozen=True, slots=True)
class StoredFormat:
    """One tensor as stored: `lead` x [rows, cols] codes of `format` (isa/qformats.py), each
    row packed on its own bytes, and scales of the format's type. A weight (`layout`
    "weight"): scales [lead..., rows / group, cols], one row of scales per `group` rows (an MX
    block: 32), or one scale for the whole tensor (`per_tensor`). A KV cache (`layout` "rows":
    compiler/passes/quantised_values.py): scales [lead..., rows, cols / group], one per
    `group` columns of each row (a token's channels of one head, or a block of them)."""

    format: str                 # a code format of isa/qformats.py: int4, fp8_e4m3, mxfp4, ...
    shape: tuple[int, ...]      # the tensor's logical shape, [..., K, N]
    group: int                  # rows one scale row covers (K: one per output channel); "rows":
                                # columns one scale covers
    per_tensor: bool
    layout: str = "weight"      # weight | rows | planes (a bit-nested weight: bit planes)
    read_bits: int = 0          # planes: the top bits a program reads of each code (0: all)

    @property
    def code(self) -> CodeFormat:
        return code_format(self.format)

    @property
    def bits(self) -> int:
        return self.code.bits

    @property
    def rows(self) -> int:
        return self.shape[-2]

    @property
    def cols(self) -> int:
        return self.shape[-1]

    @property
    def scale_dtype(self) -> DType:
        """The scales' symbol type: fp16, fp32, or bytes (e8m0 exponents)."""
        return {"fp16": DType.fp16, "fp32": DType.fp32, "e8m0": DType.int8}[self.code.scale]

    @property
    def row_bytes(self) -> int:
        """Bytes of a row of codes: packed, or (bit-nested) its `bits` planes of a bit a code."""
        if self.layout == "planes":
            return self.bits * -(-self.cols // 8)
        return packed_row_bytes(self.cols, self.bits)

    @property
    def code_shape(self) -> tuple[int, ...]:
        """The codes' buffer, in bytes: each row of codes packed."""
        return (*self.shape[:-1], self.row_bytes)

    @property
    def scale_shape(self) -> tuple[int, ...]:
        if self.layout == "rows":
            return (*self.shape[:-1], self.cols // self.group)
        if self.per_tensor:
            return (1,)
        return (*self.shape[:-2], self.rows // self.group, self.cols)

    def describe(self) -> str:
        if self.layout == "planes":
            return (f"{self.format} in bit planes, read at {self.read_bits or self.bits} bits, "
                    f"a scale per {'output channel' if self.group == self.rows else f'{self.group} input channels'}")
        if self.layout == "rows":
            return f"{self.format}, a scale per {self.group} channels of each token"
        scale = "one scale" if self.per_tensor else (
            "a scale per output channel" if self.group == self.rows else f"a scale per {self.group} input channels")
        return f"{self.format}, {scale}"


def stored_formats(graph: Graph, plan: "QuantPlan | None") -> Mapping[str, StoredFormat]:
    """Parameter -> its stored format, for every weight `plan` quantises (none without a plan);
    CompileError (RecipeError's parent) for what the targets cannot run yet."""
    if plan is None:
        return MappingProxyType({})
    check_quantised_graph(graph, plan)       # its matmul inputs and KV writes: quantize ops
    name = plan.recipe.name
    out: dict[str, StoredFormat] = {}
    for param, use in plan.weights.items():
        quant = use.quant
        if quant is None:
            continue
        where = f"recipe {name!r}: {use.role} '{param}'"
        if use.role != "weights":
            raise CompileError(f"{where} in {quant}: quantised embedding tables are not built "
                               f"on the targets yet; {NOT_ON_TARGETS}")
        code = code_name(name, f"{use.role} '{param}'", quant)    # bfp<N>:b<B>: bfp<N>
        if use.contracted_last:
            raise CompileError(f"{where}: a matmul reads it transposed, which the targets' "
                               f"quantised loads do not do yet; {NOT_ON_TARGETS}")
        shape = tuple(graph[param].type.shape)
        group = {"tensor": shape[-2], "channel": shape[-2], "group": quant.group,
                 "block": quant.format.block}[quant.scale]
        if quant.nested:                # read at the width its expert is given (plan.widths)
            out[param] = StoredFormat(code, shape, group, quant.scale == "tensor", "planes",
                                      plan.widths.get(param, quant.format.bits))
        else:
            out[param] = StoredFormat(code, shape, group, quant.scale == "tensor")
    return MappingProxyType(out)


def narrow_caches(graph: Graph) -> dict[str, "StoredFormat"]:
    """The KV caches a program can hold in their narrow format: each append whose new rows are
    rounded with scales per group of a row's channels (per head, groups of a head, an MX block)
    stores its whole cache as codes with a scale per group of each token's channels, and writes
    the new rows with storeq (the append's buffer is the cache: compiler/passes/storage.py).
    One scale for a whole write (group 0: fp8, or scale "tensor") keeps the operand type."""
    out = {}
    for op in graph.of_kind(OpKind.KV_APPEND):
        new = graph[op.inputs[1]]
        if new.kind is OpKind.QUANTIZE and new.attr("group"):
            out[op.name] = StoredFormat(new.attr("format"), op.type.shape, new.attr("group"),
                                        False, "rows")
    return out


def stored_weight(weights, name: str, fmt: StoredFormat) -> "StoredWeight":
    """The codes and scales `weights` keeps for `name` (a recipe's compiler.quant.weights
    QuantizedWeights), checked against the planned format; CompileError without them."""
    stored = getattr(weights, "stored", {}).get(name)
    if stored is None:
        raise CompileError(f"'{name}' is planned quantised, and the weights given hold no codes "
                           "for it: pass the recipe's quantised weights")
    q = stored.quantized
    held = f"bfp{q.format.bits}" if q.format.kind == "bfp" else q.format.name   # its block: group
    if held != fmt.format or not stored.swapped:
        raise CompileError(f"stored weight in {q.format.name} does not match its planned {fmt.format}")
    return stored


def stored_codes(stored: "StoredWeight") -> np.ndarray:
    """The weight's codes in its own [..., K, N] layout (compiler/quant/tensors.py holds them
    with the contracted axis last, [..., N, K])."""
    return np.swapaxes(stored.quantized.codes, -1, -2)


def stored_scales(stored: "StoredWeight", fmt: StoredFormat) -> np.ndarray:
    """The weight's scales as float64, `fmt.scale_shape`: [..., K/g, N], or (1,) per tensor."""
    scales = np.asarray(stored.quantized.scales, dtype=np.float64)
    if fmt.per_tensor:
        return scales.reshape(1)
    return np.swapaxes(scales.reshape(*fmt.shape[:-2], fmt.cols, fmt.rows // fmt.group), -1, -2)


def stored_data(stored: "StoredWeight", fmt: StoredFormat) -> tuple[np.ndarray, np.ndarray]:
    """The codes and scales of a weight quantised at compile time, as the program stores them
    (`_storage`)."""
    return _storage(stored_codes(stored), stored_scales(stored, fmt), fmt)


def rows_data(values: np.ndarray, fmt: StoredFormat) -> tuple[np.ndarray, np.ndarray]:
    """A "rows" tensor (a KV cache) as stored: `values` quantised along each row in groups of
    `fmt.group` columns (isa.formats, as storeq writes them), then `_storage`."""
    from isa.formats import quantize           # ml_dtypes: only programs with a narrow cache
    q = quantize(np.asarray(values, np.float64).reshape(fmt.shape),
                 *formats_args(fmt.format, fmt.group))
    return _storage(q.codes, np.asarray(q.scales, np.float64).reshape(fmt.scale_shape), fmt)


def _storage(codes: np.ndarray, scales: np.ndarray, fmt: StoredFormat) -> tuple[np.ndarray, np.ndarray]:
    """Codes as int8 bytes of their rows, `fmt.code_shape` (packed, isa/packing.py; a bit-nested
    weight's rows as bit planes of its offset-binary codes), and scales in their storage type
    (`fmt.scale_dtype`: e8m0 exponents as bytes)."""
    if fmt.layout == "planes":
        offset = np.asarray(codes, np.int64) + (1 << (fmt.bits - 1))
        packed = pack_planes(offset.astype(np.uint8), fmt.bits)
    else:
        packed = pack_patterns(code_patterns(codes, fmt.code), fmt.bits)
    stored = scale_patterns(scales, fmt.code)
    if fmt.code.scale == "e8m0":
        stored = stored.view(np.int8)
    return packed.view(np.int8).reshape(fmt.code_shape), stored


def stored_bytes(fmt: StoredFormat) -> int:
    """Bytes the weight takes in memory: packed codes and scales."""
    return math.prod(fmt.code_shape) + fmt.code.scale_bytes * math.prod(fmt.scale_shape)


def quant_assumption(quantised: Mapping[str, StoredFormat], how: str, graph: Graph,
                     narrow_macs: bool = False) -> tuple[str, ...]:
    """The report's lines for a program that stores weights quantised (`how` says where the
    target dequantises them), that stores KV caches narrow, that rounds values as it runs
    (quantize ops), and (a target without narrow MACs: not `narrow_macs`) that multiplies
    two quantised operands at the operand type; none otherwise."""
    weights = [fmt for fmt in quantised.values() if fmt.layout in ("weight", "planes")]
    caches = [fmt for fmt in quantised.values() if fmt.layout == "rows"]
    lines = []
    if weights:
        kinds = sorted({f"{fmt.format} codes with {fmt.code.scale} scales"
                        + (" in bit planes" if fmt.layout == "planes" else "") for fmt in weights})
        lines.append(f"{len(weights)} weights stored as {' / '.join(kinds)}; {how}")
    if caches:
        kinds = sorted({fmt.describe() for fmt in caches})
        lines.append(f"{len(caches)} KV caches stored as codes ({' / '.join(kinds)}): the new "
                     "rows written by storeq, the cache read back by loadq")
    if not narrow_macs:
        both = [op for op in graph.of_kind(OpKind.LINEAR, OpKind.MATMUL) if len(op.inputs) > 1
                and mac_formats_for(graph, op, getattr(quantised.get(op.inputs[1]), "format", None))]
        if both:
            lines.append(f"{len(both)} matmuls of two quantised operands multiply their values at "
                         "the operand type (this target has no narrow MACs)")
    return tuple(lines) + rounding_assumption(graph)
