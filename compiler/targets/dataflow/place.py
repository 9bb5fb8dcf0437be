"""Where each buffer of a dataflow program lives: PMUs (sram), HBM or DDR.

- A value written and read only inside one section stays in PMUs (its section's share of the
  SRAM after the staging rings; sections run one at a time, so they reuse that space), unless
  it no longer fits there, or some op reaches it through a strided view (attention heads of a
  prefill): a PMU stream moves contiguous rows, so such values go through HBM like the rest.
- Every other activation (section inputs and outputs, graph outputs, KV caches, token ids)
  lives in HBM.
- Weights go to HBM by reuse (reads per pass, most first), then heat (rows through them per
  pass: the experts that got most tokens first), then first use, while HBM has room after the
  activations; the rest to DDR (cold experts, ones no token chose first), which the sections
  then stream at DDR bandwidth.
  Embedding tables come first in HBM, where a gather's 32-bit table address reaches them.
- The first `ring_bytes` of the PMUs hold the staging rings (two slots each, by share: B
  tiles twice A's, as the systolic target; the GEMM accumulator is a PMU buffer here) and,
  in the ring area's last 20 %, fp32 scratch for the SIMD stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from isa.fields import A32, A40

from arch.dataflow import DataflowArch
from compiler.errors import CompileError
from compiler.ir import Graph, OpKind
from compiler.passes.quantised import StoredFormat
from compiler.passes.storage import StoragePlan, View
from compiler.targets.dataflow.sections import Call
from compiler.targets.constants import constant_shapes
from compiler.targets.emit import RingSpec, ring_specs
from compiler.targets.movement import check_gather_reach, gather_tables

__all__ = ["Placement", "place", "pmu_area", "constant_bytes", "quantised_size", "ALIGN"]

ALIGN = 64
RING_SHARE = 0.25        # of the SRAM for staging rings; the rest holds section-resident values
RING_MAX_BYTES = 64 << 20  # staging rings beyond this gain nothing (tiles are whole matrices by then)
# On-chip operands are A32: 28-bit byte addresses (docs/isa.md), so a program reaches the
# first 256 MiB of the PMUs; a larger SRAM is used only up to there.
SRAM_REACH_BYTES = 1 << A32.addr_bits
# Shares of the ring area, two slots per ring; the rest of it is the SIMD stages' scratch.
_SHARES = {"mx_a": 0.06, "mx_b": 0.12, "acc": 0.06, "vp_in": 0.06, "vp_out": 0.06,
           "copy": 0.02, "gather": 0.02}
_RINGS = {"mx_a": ("agcu0", "pcu0"), "mx_b": ("agcu0", "pcu0"), "acc": ("pcu0", "pcu1"),
          "vp_in": ("agcu0", "pcu1"), "vp_out": ("pcu1", "agcu1"), "copy": ("agcu0", "agcu1"),
          "gather": ("dma0", "agcu1")}


def _up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class Placement:
    """buffer -> (space, byte address); `section_of` op -> index of its section; the rings."""

    where: dict[str, tuple[str, int]]
    section_of: dict[str, int]
    hbm_end: int                       # first free HBM byte (constants go after it)
    internal_peak_bytes: dict[int, int]  # section index -> PMU bytes of its resident values
    ring_bytes: int                    # PMU bytes of the staging rings and scratch
    rings: tuple[RingSpec, ...]
    scratch: tuple[int, int]           # (byte address, bytes) of the SIMD stages' scratch
    weight_tiers: dict[str, tuple[int, int]]  # hbm/ddr -> (weight bytes held, of them read this pass)

    def tier_note(self) -> str | None:
        """One line on the weights DDR holds (None when every weight is in HBM)."""
        (hbm, hbm_read), (ddr, ddr_read) = self.weight_tiers["hbm"], self.weight_tiers["ddr"]
        if not ddr:
            return None
        return (f"weights by tier, hottest in HBM (most reads, then most rows through them, e.g. "
                f"the experts with most tokens): HBM {hbm:,} bytes ({hbm_read:,} read this pass), "
                f"DDR {ddr:,} bytes ({ddr_read:,} read this pass, streamed at DDR bandwidth)")

    def dump(self) -> str:
        lines = [f"staging rings ({self.ring_bytes:,} PMU bytes):", *(f"  {r.dump()}" for r in self.rings),
                 f"  scratch: sram[{self.scratch[0]:#x}] {self.scratch[1]:,} bytes",
                 f"buffers ({len(self.where)}):"]
        lines += [f"  {name}: {space}[{addr:#x}]" for name, (space, addr) in self.where.items()]
        lines.append(f"hbm: {self.hbm_end:,} bytes before constants")
        lines += [f"section {s}: {peak:,} PMU bytes of resident values"
                  for s, peak in sorted(self.internal_peak_bytes.items())]
        return "\n".join(lines)


def pmu_area(arch: DataflowArch) -> tuple[int, int]:
    """(ring bytes, usable SRAM bytes): the staging rings' share of what a program can address."""
    sram = min(arch.sram_bytes, SRAM_REACH_BYTES)
    return min(int(sram * RING_SHARE), RING_MAX_BYTES) // ALIGN * ALIGN, sram


def constant_bytes(graph: Graph) -> int:
    """HBM bytes of the fp32 constants the vector lowering will add (masks, rope tables)."""
    return sum(-(-s * t * 4 // ALIGN) * ALIGN for s, t in constant_shapes(graph).values())


def _dense(view: View) -> bool:
    """Whether the view's rows are contiguous in its buffer (one stream per tile, not per row)."""
    shape = view.rows()
    return shape is not None and (shape[0] == 1 or shape[2] == shape[1])


def _readers_writers(graph: Graph, plan: StoragePlan) -> tuple[dict[str, set[str]], dict[str, set[str]], set[str]]:
    """Per buffer: the compute ops reading it and writing it; and the buffers some op reads or
    writes through a strided view."""
    readers: dict[str, set[str]] = {}
    writers: dict[str, set[str]] = {}
    strided: set[str] = set()
    for op in graph.ops:
        if op.kind.is_source or op.kind.is_layout:
            continue
        for name in (op.name, *op.inputs):
            view = plan.views[name]
            (writers if name == op.name else readers).setdefault(view.buffer, set()).add(op.name)
            if not _dense(view):
                strided.add(view.buffer)
    return readers, writers, strided


def place(graph: Graph, plan: StoragePlan, calls: tuple[Call, ...], arch, ring_bytes: int,
          sram_bytes: int, constant_bytes: int, elided: frozenset[str] = frozenset(),
          quantised: Mapping[str, StoredFormat] = MappingProxyType({})) -> Placement:
    """Tiers and addresses: PMU values in [ring_bytes, sram_bytes); `constant_bytes` of HBM
    stay free for the program's constants; the buffers in `elided` (a fused attention's
    scores and probabilities, never written) get no place. A weight in `quantised` takes its
    codes' bytes and then its scales' (`quantised_size`), both in its tier."""
    sections = [s for call in calls for s in call.sections]
    section_of = {name: i for i, s in enumerate(sections) for name in s.ops}
    readers, writers, strided = _readers_writers(graph, plan)
    pinned = {plan.views[o].buffer for o in graph.outputs}
    pinned |= {plan.views[op.name].buffer for op in graph.of_kind(OpKind.KV_APPEND, OpKind.INPUT)}
    tables = gather_tables(graph, plan)       # a gather reads its table off-chip
    pinned |= set(tables)
    where: dict[str, tuple[str, int]] = {}
    internal_at: dict[int, int] = {}
    activations, weights = [], []
    for name, buf in plan.buffers.items():
        if name in elided:
            continue
        size = (quantised_size(quantised[name]) if name in quantised
                else _up(buf.numel * buf.dtype.itemsize))
        if buf.role == "param":
            weights.append((name, size))
            continue
        users = {section_of[o] for o in readers.get(name, set()) | writers.get(name, set())}
        at = internal_at.get(next(iter(users)), ring_bytes) if len(users) == 1 else 0
        resident = name not in pinned and name not in strided and len(users) == 1 and readers.get(name)
        if resident and at + size <= sram_bytes:
            where[name] = ("sram", at)
            internal_at[users.pop()] = at + size
        else:           # crosses sections, leaves the chip, is strided, or overflows the PMUs
            activations.append((name, size))
    act_bytes = sum(size for _, size in activations) + constant_bytes
    weight_bytes = sum(size for _, size in weights)
    if act_bytes + weight_bytes > arch.hbm_bytes + arch.ddr_bytes:
        raise CompileError(f"{graph.name}: weights ({weight_bytes:,} bytes) and activations "
                           f"({act_bytes:,} bytes) exceed {arch.name}'s HBM ({arch.hbm_bytes:,} bytes) "
                           f"+ DDR ({arch.ddr_bytes:,} bytes) = {arch.hbm_bytes + arch.ddr_bytes:,} bytes")
    if act_bytes > arch.hbm_bytes:
        raise CompileError(f"{graph.name}: activations and KV caches ({act_bytes:,} bytes) exceed "
                           f"{arch.name}'s HBM ({arch.hbm_bytes:,} bytes)")
    hbm = 0
    # Gather tables first, smallest first (computed MoE tables, then the embedding): a gather
    # addresses its table with 32 bits (docs/isa.md, gather).
    for name in tables:
        check_gather_reach(name, "hbm", hbm)
        where[name] = ("hbm", hbm)
        hbm += _up(plan.buffers[name].numel * plan.buffers[name].dtype.itemsize)
    weights = [w for w in weights if w[0] not in tables]
    for name, size in activations:
        if name not in where:
            where[name] = ("hbm", hbm)
            hbm += size
    first_use = {name: min((section_of[o] for o in readers.get(name, ())), default=len(sections))
                 for name, _ in weights}
    heat = {name: sum(_rows(graph[o]) for o in readers.get(name, ())) for name, _ in weights}
    ddr = 0
    tiers = {"hbm": [0, 0], "ddr": [0, 0]}
    for name, size in sorted(weights, key=lambda w: (-len(readers.get(w[0], ())), -heat[w[0]],
                                                     first_use[w[0]])):
        if hbm + size + constant_bytes <= arch.hbm_bytes:
            where[name] = ("hbm", hbm)
            hbm += size
        else:
            where[name] = ("ddr", ddr)
            ddr += size
        tiers[where[name][0]][0] += size
        tiers[where[name][0]][1] += size if readers.get(name) else 0
    if max(hbm, ddr) > A40.reach:
        tier, used = ("DDR", ddr) if ddr > hbm else ("HBM", hbm)
        raise CompileError(f"{graph.name}: {used:,} bytes of {tier} would be addressed, but off-chip "
                           f"operands are A40 and reach {A40.reach:,} bytes of a tier "
                           f"(weights {weight_bytes:,} bytes; {arch.name}'s HBM holds {arch.hbm_bytes:,})")
    peaks = {s: end - ring_bytes for s, end in internal_at.items()}
    rings, end = ring_specs("sram", ring_bytes, _SHARES, _RINGS, ALIGN)
    return Placement(where, section_of, hbm, peaks, ring_bytes, rings, (end, ring_bytes - end),
                     {t: (held, read) for t, (held, read) in tiers.items()})


def quantised_size(fmt: StoredFormat) -> int:
    """A quantised weight's place: its packed codes, then (aligned) its scales."""
    return _up(math.prod(fmt.code_shape)) + _up(fmt.code.scale_bytes * math.prod(fmt.scale_shape))


def _rows(op) -> int:
    """Rows an op produces (tokens, for a linear): how many rows pass through its weight."""
    return op.type.numel // op.type.shape[-1] if op.type.shape and op.type.shape[-1] else 1
