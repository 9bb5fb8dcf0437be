"""The lowering contract every target implements, and what a target's compilation returns.

A target's lowering is a `TargetLowering`: one handler per compute op kind (`op_<kind>`).
Data movement and GEMMs differ per target, so those handlers are abstract and a target that
lacks one cannot be instantiated; element-wise ops, layer norm and softmax run on the shared
vector lowering unless a target overrides them. `lower_op` brackets each op with the
store/read ordering every target needs.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import isa
from isa import DType

from compiler.errors import CompileError
from compiler.ir import Graph, Op, OpKind
from compiler.passes.quantised import stored_bytes
from compiler.passes.storage import StoragePlan, View
from compiler.targets.data import program_data
from compiler.targets.emit import Emitter, Matrix, symbol_name, view_batches, view_matrix
from compiler.targets.layers import layer_key, sweep_layers
from compiler.targets.vector import VectorLowering

__all__ = ["Lowered", "TargetLowering", "GemmLowering", "lower_op", "HANDLERS"]

# compute op kind -> the TargetLowering method that lowers it (one per kind, none forgotten)
HANDLERS = {kind: f"op_{kind.value}" for kind in OpKind
            if not (kind.is_source or kind.is_layout or kind.is_routed or kind.is_collective)}
# collectives: one handler for all, `op_collective` (the link's `coll` of `OpKind.coll_kind`)


@dataclass(frozen=True)
class Lowered:
    """A compiled program and how the graph's values map onto its DRAM symbols."""

    program: isa.Program
    plan: StoragePlan
    dtype: DType
    constants: dict          # constant symbol -> fp32 array (causal masks)
    assumptions: tuple[str, ...]
    attention: tuple = field(default=(), kw_only=True)  # AttentionSite per attention chain (compiler/targets/attention_plan.py)
    quantised: Mapping = field(default_factory=dict, kw_only=True)  # weight -> StoredFormat

    def initial_data(self, graph: Graph, weights, feeds) -> dict:
        """Symbol -> initial contents (parameters, inputs, constants, the KV cache so far)."""
        return program_data(graph, self.plan, self.constants, weights, feeds, self.quantised)

    def quantised_bytes(self, layouts: tuple[str, ...] = ("weight", "planes")) -> int:
        """Bytes the quantised weights (or, layout "rows", the narrow KV caches) take in the
        program's memory: codes and scales."""
        return sum(stored_bytes(fmt) for fmt in self.quantised.values() if fmt.layout in layouts)

    def dump(self) -> str:
        """The program's shape: instructions per queue, its symbols and its assumptions."""
        p = self.program
        per_queue: dict[str, int] = {}
        for instr in p.instructions:
            per_queue[str(instr.queue)] = per_queue.get(str(instr.queue), 0) + 1
        lines = [f"program for {p.target}: {len(p.instructions):,} instructions, {len(p.ops)} ops, "
                 f"operand type {self.dtype.value}",
                 "instructions per queue: " + ", ".join(f"{q} {n:,}" for q, n in per_queue.items()),
                 f"symbols ({len(p.symbols)}):"]
        lines += [f"  {s.name}: {s.space}[{s.addr:#x}] {'x'.join(map(str, s.shape))} {s.dtype.value}"
                  for s in p.symbols]
        lines += [f"assumption: {a}" for a in self.assumptions]
        return "\n".join(lines)


class TargetLowering(abc.ABC):
    """Emits one target's program op by op; subclasses implement the abstract handlers.

    Built complete in one constructor: the graph, its storage plan, the emitter the program
    accumulates in and the vector lowering the shared handlers use."""

    def __init__(self, *, graph: Graph, plan: StoragePlan, em: Emitter, vector: VectorLowering) -> None:
        self.graph, self.plan, self.em, self.vector = graph, plan, em, vector

    matrix = staticmethod(view_matrix)
    batches = staticmethod(view_batches)

    def lower_ops(self, reader: str, writer: str, fused: Mapping[str, tuple] = MappingProxyType({})) -> None:
        """Every compute op of the graph in program order, each through `lower_op`; a chain in
        `fused` (scores op name -> (chain, blocks)) through `lower_attention` at its scores op."""
        skip: set[str] = set()

        def lower(op: Op) -> None:
            if op.name in skip:
                return
            if op.name in fused:
                chain, blocks = fused[op.name]
                self.lower_attention(chain, blocks, reader, writer)
                skip.update((chain.probs, chain.context))
            else:
                lower_op(self, op, reader, writer)

        def key(layer: list[Op]) -> tuple:
            return layer_key(self.graph, self.plan, self.em, layer,
                             lambda op: fused[op.name][1] if op.name in fused else None)

        ops = [op for op in self.graph.ops if not (op.kind.is_source or op.kind.is_layout)]
        sweep_layers(self.em, ops, lambda op: (op.name,), key, lower, uniform=True,
                     begin=self.align_layer)                 # layers alike: one loop body

    def align_layer(self) -> None:
        """At each layer's start: every ring on to its slot 0 (`Emitter.align_rings`), so that
        layer after layer emits alike (one layer a loop period). Targets with double buffers
        of their own align them too."""
        self.em.align_rings()

    def lower_attention(self, chain, blocks, reader: str, writer: str) -> None:
        """A scores -> softmax -> context chain as one kernel (compiler/targets/attention.py);
        only targets that plan fused chains implement it."""
        raise CompileError(f"attention '{chain.name}': this target has no fused attention kernel")

    @abc.abstractmethod
    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        """Place a read-only fp32 tensor the program needs (its values travel in the data blob)."""

    @abc.abstractmethod
    def op_linear(self, op: Op) -> None: ...

    @abc.abstractmethod
    def op_matmul(self, op: Op) -> None: ...

    @abc.abstractmethod
    def op_embedding(self, op: Op) -> None: ...

    @abc.abstractmethod
    def op_kv_append(self, op: Op) -> None: ...

    def op_add(self, op: Op) -> None:
        self.vector.elementwise(op)

    def op_mul(self, op: Op) -> None:
        self.vector.elementwise(op)

    def op_gelu(self, op: Op) -> None:
        self.vector.elementwise(op)

    def op_layernorm(self, op: Op) -> None:
        self.vector.layernorm(op)

    def op_softmax(self, op: Op) -> None:
        self.vector.softmax(op)

    def op_rmsnorm(self, op: Op) -> None:
        self.vector.rmsnorm(op)

    def op_rope(self, op: Op) -> None:
        self.vector.rope(op)

    def op_silu(self, op: Op) -> None:
        self.vector.elementwise(op)

    def op_div(self, op: Op) -> None:
        self.vector.elementwise(op)

    def op_gather(self, op: Op) -> None:
        """Rows of a computed value by index: the same movement as an embedding lookup."""
        self.op_embedding(op)

    def op_concat(self, op: Op) -> None:
        self.vector.concat(op)

    def op_quantize(self, op: Op) -> None:
        self.vector.quantize(op)

    def op_collective(self, op: Op, writer: str) -> None:
        """A collective of the plan's ranks, in place on its buffer by the link queue (`coll`,
        sim/multi.py; the storage plan gives an all-reduce or all-to-all its input's view and
        an all-gather's input its rank's rows of the result) once `writer` has stored this
        rank's part; whichever queue reads the result waits for the link there
        (`Emitter.link_collective`). Every target: values live in memory spaces."""
        em, view = self.em, self.plan.views[op.name]
        m = self.matrix(view)
        if m.rows > 1 and m.stride != m.cols:
            raise CompileError(f"op '{op.name}': a {op.kind.value} of a strided view of "
                               f"'{op.inputs[0]}'; it needs a dense buffer")
        dtype = self.plan.buffers[view.buffer].dtype
        em.link_collective(writer, symbol_name(view.buffer), kind=op.kind.coll_kind, dtype=dtype,
                       buf=em.dram(m), bytes=m.rows * m.cols * dtype.itemsize,
                       ranks=op.attr("ranks"), stride=1)


class GemmLowering(TargetLowering):
    """A target whose linears and matmuls are all tiled GEMMs on dense matrices in memory:
    it implements `gemm`, this class splits batched matmuls into one GEMM per matrix."""

    @abc.abstractmethod
    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """out = a @ b (b transposed when `transpose_b`) + bias (one row, broadcast)."""

    def op_linear(self, op: Op) -> None:
        a, b = (self.matrix(self.plan.views[n]) for n in op.inputs[:2])
        bias = self.matrix(self.plan.views[op.inputs[2]]) if len(op.inputs) == 3 else None
        self.gemm(op, a, b, self.matrix(self.plan.views[op.name]), False, bias)

    def op_matmul(self, op: Op) -> None:
        """One GEMM per matrix of a batched matmul. Where b's batch axes are 1 (grouped-query
        attention: one KV head for a group of query heads), every a batch pairs with the one
        b matrix in place, and the broadcast axes nearest the matrix join a's rows when a and
        the output both merge them (decode: a group's queries are one GEMM, K read once)."""
        av, bv, ov = (self.plan.views[n] for n in (*op.inputs, op.name))
        tb = bool(op.attr("transpose_b", False))
        if len(bv.shape) == 2:
            self.gemm(op, self.matrix(av), self.matrix(bv), self.matrix(ov), tb, None)
            return
        batch = av.shape[:-2]
        inner = 0          # trailing batch axes where b broadcasts
        while inner < len(batch) and bv.shape[-3 - inner] == 1 < batch[-1 - inner]:
            inner += 1
        keep, outer = 2 + inner, len(batch) - inner
        # b with its outer broadcast axes repeated by stride 0: one b batch per a batch
        bv = View(bv.buffer, batch[:outer] + bv.shape[outer:],
                  tuple(0 if d == 1 else s for d, s in zip(bv.shape[:outer], bv.strides)) + bv.strides[outer:],
                  bv.offset)
        for a, b, o in zip(self.batches(av, keep), self.batches(bv, keep), self.batches(ov, keep)):
            b_m = self.matrix(b)
            if inner and (a.rows() is None or o.rows() is None):
                for a_part, o_part in zip(self.batches(a, 2), self.batches(o, 2)):
                    self.gemm(op, self.matrix(a_part), b_m, self.matrix(o_part), tb, None)
            else:
                self.gemm(op, self.matrix(a), b_m, self.matrix(o), tb, None)


def lower_op(low: TargetLowering, op: Op, reader: str, writer: str) -> None:
    """One graph op on any target: mark it, make `reader` wait for the stores of its computed
    inputs, lower it with the target's handler, and count its result's store on `writer` when
    the result is a dense buffer (a target may hold some values elsewhere, e.g. PIM matrices).
    A collective is the link's: `writer` starts it, and its readers wait for the link."""
    em, plan = low.em, low.plan
    em.begin_op(op.name)
    if op.kind.is_collective:
        low.op_collective(op, writer)
        return
    for name in op.inputs:
        if low.graph[name].kind is OpKind.INPUT or not low.graph[name].kind.is_source:
            em.before_read(reader, symbol_name(plan.views[name].buffer))
    handler = HANDLERS.get(op.kind)
    if op.kind.is_routed:
        raise CompileError(f"op '{op.name}': a {op.kind.value} op must be routed before lowering "
                           "(compiler.passes.routing.route_graph)")
    if handler is None:
        raise CompileError(f"op '{op.name}': op kind '{op.kind.value}' has no lowering (not a compute op)")
    getattr(low, handler)(op)
    produced = symbol_name(plan.views[op.name].buffer)
    if produced in em.addresses:
        em.stored(writer, produced)
