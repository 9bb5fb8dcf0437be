"""Emission for a three-tier dataflow accelerator (SN40L style): sections of fused ops.

Sections (sections.py) and the buffers' tiers and the staging rings (place.py) are decided
before. Each call is, on ctl0: `df.section` (configure), a go token per body queue, `df.run`
(stream the tiles; its duration is the section's pipeline, sim/machines/dataflow/pipeline.py), then one done
token per body queue. The body holds what every stage computes on its tiles, with the core
ISA: agcu0 loads off-chip tiles and streams PMU-resident values (df.stream) into staging
rings, pcu0 runs GEMMs (systolic mode), pcu1 the epilogues and vector ops (SIMD mode, the
shared VectorLowering), agcu1 stores (to HBM, or df.stream into a PMU-resident value), dma0
gathers embedding rows. docs/dataflow.md.
"""
from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Mapping

import isa
from isa import DType

from arch.dataflow import DataflowArch
from compiler.ir import Graph, Op, OpKind
from compiler.passes.quantised import SCALES_SUFFIX, StoredFormat, quant_assumption
from compiler.passes.quantised_values import mac_format
from compiler.passes.storage import StoragePlan
from compiler.targets.attention import FusedAttention, KernelQueues, Region
from compiler.targets.attention_blocks import instances, needs_mask, plan_blocks
from compiler.targets.attention_plan import AttentionPlan
from compiler.targets.base import GemmLowering, Lowered, lower_op
from compiler.targets.dataflow.emitter import TierEmitter
from compiler.targets.dataflow.place import ALIGN, Placement, pmu_area
from compiler.targets.dataflow.sections import Call, Sections
from compiler.targets.emit import Matrix, Ring, Tracked, symbol_name
from compiler.targets.layers import layer_key, sweep_layers
from compiler.targets.movement import lower_embedding, lower_kv_append
from compiler.targets.tiling import MAX_TILE, GemmSlots, GemmTile, gemm_tile
from compiler.targets.vector import VectorLowering

__all__ = ["DataflowLowering", "attention_regions"]


class DataflowLowering(GemmLowering, Tracked):
    """Emits the program for planned sections and placement."""

    def __init__(self, graph: Graph, arch: DataflowArch, dtype: DType, plan: StoragePlan,
                 sections: Sections, placement: Placement, attention: AttentionPlan,
                 quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> None:
        self.arch, self.dtype, self.quantised = arch, dtype, quantised
        self.calls, self.placement = sections.calls, placement
        # the body queues: every queue but the controller's, in the machine's order
        self.body_queues = tuple(q for q in arch.queues if q != "ctl0")
        em = TierEmitter()
        em.link_reader = "ctl0"   # a call's queues (its gathers' dma0 too) read after ctl0 starts it
        self.symbols: list[isa.Symbol] = []
        for name, (space, addr) in placement.where.items():
            buf, fmt = plan.buffers[name], quantised.get(name)
            if fmt is None:
                self._symbol(em, isa.Symbol(symbol_name(name), space, addr, buf.shape, buf.dtype))
                continue
            codes = isa.Symbol(symbol_name(name), space, addr, fmt.code_shape, DType.int8)
            scales = isa.Symbol(codes.name + SCALES_SUFFIX, space,
                                addr + -(-codes.size_bytes // ALIGN) * ALIGN, fmt.scale_shape,
                                fmt.scale_dtype)
            self._symbol(em, codes)
            self._symbol(em, scales)
            em.place_quantised(codes, scales, fmt, dtype)     # its loads dequantise (loadq)
        self._hbm_end = placement.hbm_end
        self.rings = {spec.name: Ring(em, spec) for spec in placement.rings}
        vector = VectorLowering(em, self.rings["vp_in"], self.rings["vp_out"], placement.scratch, dtype,
                                plan.views, self.add_constant)
        super().__init__(graph=graph, plan=plan, em=em, vector=vector)
        self._mcfg: tuple | None = None
        self._mac = "none"              # pcu0's mfmt: reset state
        self._go = {q: em.semaphore() for q in self.body_queues}
        self._done = em.semaphore()
        self._configs: dict[str, int] = {}
        self.attention, self.fused = attention, attention.fused
        self.kernel = FusedAttention(em, vector, KernelQueues("agcu0", "pcu0", "pcu1", "agcu1"), dtype,
                                     self.add_constant)
        self._blocks: dict[str, object] = {}
        em.track(self)

    def sweep_key(self) -> object:
        return self._mcfg, self._mac, len(self._configs)

    def _layer_key(self, calls) -> tuple:
        """What a layer's calls read (compiler/targets/layers.py), with their sections'
        configurations and resident bytes."""
        return tuple((call.loops, tuple(self._section_key(s) for s in call.sections))
                     for call in calls)

    def _section_key(self, section) -> tuple:
        placement = self.placement
        return (section.config, placement.internal_peak_bytes.get(placement.section_of[section.ops[0]], 0),
                layer_key(self.graph, self.plan, self.em, [self.graph[n] for n in section.ops],
                          lambda op: self.fused[op.name][1] if op.name in self.fused else None))

    # -- memory ------------------------------------------------------------------------
    def _symbol(self, em: TierEmitter, symbol: isa.Symbol) -> None:
        """Off-chip buffers become program symbols; a PMU-resident value is only an address
        (sections run one at a time and reuse the same PMU space, so such values overlap)."""
        em.place(symbol)
        if symbol.space != "sram":
            self.symbols.append(symbol)

    def add_constant(self, name: str, shape: tuple[int, ...]) -> None:
        """A read-only fp32 tensor in HBM (its values travel in the data blob)."""
        self._symbol(self.em, isa.Symbol(name, "hbm", self._hbm_end, shape, DType.fp32))
        self._hbm_end += -(-math.prod(shape) * 4 // ALIGN) * ALIGN

    # -- calls -------------------------------------------------------------------------
    def lower(self) -> Lowered:
        sweep_layers(self.em, self.calls, _call_ops, self._layer_key, self.call)   # layers alike
        for chain, blocks in self.fused.values():    # the chains of layers a loop stands for
            if chain.scores not in self._blocks:
                self._blocks[chain.scores] = self._kernel_plan(chain, blocks)[0]
        spaces = ("sram", "hbm", "ddr")
        program = self.em.program(spaces, tuple(self.symbols), self.arch.queues)
        granularity = self.arch.kernel_granularity
        tiers = self.placement.tier_note()
        chains = tuple((c, self._blocks.get(c.scores)) for c, _ in self.attention.chains)
        sites = tuple(dataclasses.replace(site, blocks=b.describe()) if b else site
                      for site, (_, b) in zip(self.attention.sites, chains))
        note = AttentionPlan(self.attention.mode, chains, sites).assumption()
        return Lowered(program, self.plan, self.dtype, dict(self.vector.constants),
                       (f"kernel granularity '{granularity}': a value used only inside one section "
                        "stays in the PMUs, the rest goes through HBM; weights in HBM, then DDR",
                        *([tiers] if tiers else []), *([note] if note else []),
                        *quant_assumption(self.quantised, f"dequantised to {self.dtype.value} by the "
                                          "AGCUs as they load them, at the tier's rate (loadq)", self.graph,
                                          narrow_macs=True)),
                       attention=sites, quantised=self.quantised)

    def call(self, call: Call) -> None:
        em, first = self.em, call.sections[0]
        if len(first.ops) == 1 and self.graph[first.ops[0]].kind.is_collective:
            self._collective(self.graph[first.ops[0]])
            return
        for name in _call_ops(call):      # a collective's result: ctl0 starts the call after it
            for src in self.graph[name].inputs:
                if src in self.plan.views:
                    em.link_wait("ctl0", symbol_name(self.plan.views[src].buffer))
        config = self._configs.setdefault(first.config, len(self._configs))
        stages = len(first.ops)
        resident = max(self.placement.internal_peak_bytes.get(self.placement.section_of[s.ops[0]], 0)
                       for s in call.sections)
        pmus = min(self.arch.pmus, -(-(self.placement.ring_bytes + resident) // self.arch.pmu_bytes))
        em.emit("ctl0", "df.section", id=config, stages=stages, pcus=self.arch.pcus, pmus=pmus)
        for q in self.body_queues:
            em.emit("ctl0", "signal", sem=self._go[q])
        em.emit("ctl0", "df.run", id=config, tiles=self._tiles(first), loops=call.loops)
        for q in self.body_queues:
            em.emit(q, "wait", sem=self._go[q])
        sweep_layers(em, call.sections, lambda section: section.ops,     # a looped kernel's
                     lambda layer: tuple(map(self._section_key, layer)), self.section)  # layers
        for q in self.body_queues:
            em.emit(q, "signal", sem=self._done)
        for _ in self.body_queues:
            em.emit("ctl0", "wait", sem=self._done)

    def _collective(self, op: Op) -> None:
        """Between calls: the call before has stored this rank's part (ctl0 waited for its
        body), so ctl0 starts the link's collective; ctl0 starts a later call that reads the
        result once the link is done (every queue of a call may read it, a gather's dma0 too),
        and calls that do not read it run meanwhile."""
        self.em.begin_op(op.name)
        self.op_collective(op, "ctl0")

    def section(self, section) -> None:
        """A section's ops, a fused attention chain as one kernel."""
        skip: set[str] = set()
        for name in section.ops:
            if name in self.fused:
                self.lower_attention(*self.fused[name], "agcu0", "agcu1")
                skip |= {self.fused[name][0].probs, self.fused[name][0].context}
            elif name not in skip:
                self.op(self.graph[name])

    def _tiles(self, section) -> int:
        """Pipeline steps of one iteration: the largest operand streamed, in PMU-sized tiles."""
        largest = max(_streamed_bytes(self.graph, self.graph[name]) for name in section.ops)
        return max(1, min(-(-largest // self.arch.pmu_bytes), (1 << 32) - 1))

    def op(self, op: Op) -> None:
        lower_op(self, op, "agcu0", "agcu1")

    # -- ops ---------------------------------------------------------------------------
    def gemm(self, op: Op, a: Matrix, b: Matrix, out: Matrix, transpose_b: bool,
             bias: Matrix | None) -> None:
        """C = A @ B (+ bias): A, B tiles agcu0 -> pcu0 (into a PMU accumulator) -> pcu1 -> agcu1."""
        m, k = a.rows, a.cols
        n = b.rows if transpose_b else b.cols
        ra, rb, acc = (self.rings[r] for r in ("mx_a", "mx_b", "acc"))
        slots = self._slots(transpose_b)
        t = self._resident_tile(m, n, k, slots, self.em.space[a.symbol] == "sram",
                                self.em.space[out.symbol] == "sram")
        fmt = mac_format(self.graph, op, self.quantised, self.arch)   # narrow MACs (mfmt)
        if fmt != self._mac:
            self._mac = fmt
            self.em.emit("pcu0", "mfmt", fmt=fmt)
        if t is None or not slots.fits(t):
            t = gemm_tile(op.name, m, n, k, self.arch.pcu_rows, self.arch.pcu_cols, "ws", slots.fits)
        em = self.em
        for m0 in em.sweep(range(0, m, t.m)):
            tm = min(t.m, m - m0)
            for n0 in em.sweep(range(0, n, t.n)):
                tn = min(t.n, n - n0)
                c = acc.acquire()
                for k0 in em.sweep(range(0, k, t.k)):
                    tk = min(t.k, k - k0)
                    a_slot, b_slot = ra.acquire(), rb.acquire()
                    self.em.load("agcu0", a_slot, a.block(m0, tm, k0, tk))
                    ra.filled()
                    self.em.load("agcu0", b_slot, b.block(n0, tn, k0, tk) if transpose_b else b.block(k0, tk, n0, tn))
                    rb.filled()
                    ra.take()
                    rb.take()
                    if self._mcfg != (tm, tn, tk):
                        self._mcfg = (tm, tn, tk)
                        self.em.emit("pcu0", "mcfg", m=tm, n=tn, k=tk, dtype=self.dtype, acc=DType.fp32)
                    self.em.emit("pcu0", "gemm", c=c, a=a_slot, b=b_slot, accumulate=int(k0 > 0),
                                 transpose_b=int(transpose_b), stream=0, preloaded=0)
                    ra.release()
                    rb.release()
                acc.filled()
                self.vector.epilogue(c, DType.fp32, tm, tn, bias.block(0, 1, n0, tn) if bias else None,
                                     out.block(m0, tm, n0, tn), acc)

    def _slots(self, transpose_b: bool) -> GemmSlots:
        r = self.rings
        return GemmSlots(r["mx_a"].slot_bytes, r["mx_b"].slot_bytes, r["acc"].slot_bytes,
                         r["vp_in"].slot_bytes, r["vp_out"].slot_bytes, self.dtype.itemsize, transpose_b)

    def _resident_tile(self, m: int, n: int, k: int, slots: GemmSlots, a_resident: bool,
                       c_resident: bool) -> GemmTile | None:
        """A tile that keeps PMU-resident windows contiguous where it can: whole K for a
        resident A, whole N for a resident C (these split last), then as many rows as the A,
        accumulator and output slots take. None when nothing is resident or nothing fits."""
        if not (a_resident or c_resident):
            return None
        isz = slots.itemsize
        unit = {"n": self.arch.pcu_cols, "k": self.arch.pcu_rows}
        dims = {"n": min(n, MAX_TILE), "k": min(k, MAX_TILE)}
        kept = {"n": c_resident, "k": a_resident}

        def halve(d: str) -> None:
            dims[d] = max(unit[d], -(-(-(-dims[d] // 2)) // unit[d]) * unit[d])

        # a row of K over the ISA's count limit splits K whatever N is (Qwen2.5-7B's 18,944
        # intermediate): halving N for it first would shrink N to one PCU width for nothing
        while dims["k"] * isz > MAX_TILE and dims["k"] > unit["k"]:
            halve("k")
        for d in sorted(("n", "k"), key=kept.get):
            while not slots.b_fits(dims["n"], dims["k"]) and dims[d] > unit[d]:
                halve(d)
        tn, tk = dims["n"], dims["k"]
        tm = min(m, MAX_TILE, slots.a // (tk * isz), slots.acc // (tn * 4), slots.out // (tn * isz))
        return GemmTile(tm, tn, tk) if slots.b_fits(tn, tk) and tm >= 1 else None

    def lower_attention(self, chain, blocks, reader: str, writer: str) -> None:
        """The fused kernel (compiler/targets/attention.py), fenced by barriers of the body
        queues, in the PMUs its section leaves free (or the staging-ring area, if larger) with
        its S and PV tiles in the ring area's first quarter."""
        em = self.em
        blocks, sram, acc = self._kernel_plan(chain, blocks)
        self._blocks[chain.scores] = blocks
        em.begin_op(chain.name)
        for name in (chain.q, chain.k, chain.v):
            em.before_read(reader, symbol_name(self.plan.views[name].buffer))
        if self._mac != "none":             # attention multiplies at the operand type
            self._mac = "none"
            em.emit("pcu0", "mfmt", fmt="none")
        em.barrier(self.body_queues)
        self.kernel.lower(chain, self.plan.views, blocks, sram, acc)
        em.barrier(self.body_queues)
        self._mcfg = None
        produced = symbol_name(self.plan.views[chain.context].buffer)
        if produced in em.addresses:
            em.stored(writer, produced)

    def _kernel_plan(self, chain, blocks):
        """(blocks, tile region, accumulator region) of a fused chain in its section's free
        PMUs (`attention_regions`); a pure function of the chain, so a chain in a layer that a
        loop stands for gets the plan its lowering would have made."""
        placement = self.placement
        peak = placement.internal_peak_bytes.get(placement.section_of[chain.scores], 0)
        ring = placement.ring_bytes
        _, sram_end = pmu_area(self.arch)
        sram, acc = attention_regions(ring, ring + peak, max(0, sram_end - ring - peak))
        rows = max(i.q.rows for i in instances(chain, self.plan.views))
        blocks = plan_blocks(rows, chain.t, chain.d, self.dtype.itemsize, sram[2], acc[2],
                             needs_mask(chain), chain.window is not None) or blocks
        return blocks, sram, acc

    def op_embedding(self, op: Op) -> None:
        lower_embedding(self.em, op, self.plan.views, self.rings["gather"], self.dtype.itemsize, ALIGN)

    def op_kv_append(self, op: Op) -> None:
        lower_kv_append(self.em, op, self.plan.views, self.rings["copy"], self.dtype.itemsize)


def _call_ops(call: Call) -> tuple[str, ...]:
    return tuple(name for section in call.sections for name in section.ops)


def _streamed_bytes(graph: Graph, op: Op) -> int:
    """The largest operand an op streams; a gather reads only the rows it picks."""
    if op.kind in (OpKind.EMBEDDING, OpKind.GATHER):
        return op.type.size_bytes
    return max(graph[name].type.size_bytes for name in op.inputs)


def attention_regions(ring_bytes: int, free_base: int, free_bytes: int) -> tuple[Region, Region]:
    """A fused attention's (tile region, accumulator region): the PMUs free after the
    section's resident values (`free_base`, `free_bytes`) with the whole staging-ring area as
    accumulator when they are larger than 3/4 of that area; else the ring area alone, its
    first quarter the accumulator."""
    acc = ring_bytes // 4 // ALIGN * ALIGN
    if free_bytes > ring_bytes - acc:
        return ("sram", free_base, free_bytes), ("sram", 0, ring_bytes)
    return ("sram", acc, ring_bytes - acc), ("sram", 0, acc)
