"""Sectioning for dataflow targets: which ops run together as one fused, pipelined section.

A section is a run of consecutive compute ops configured onto the chip at once: each op is a
stage on its own PCUs, the values it produces for later stages of the same section stay in
PMUs, and only the section's inputs and outputs cross HBM. Three kernel granularities:

- operator: one section per op (GPU-like: every intermediate round-trips HBM);
- layer:    one section per decoder layer, plus the prologue (embeddings) and epilogue
            (final norm, LM head); a group that does not fit the PMUs splits greedily;
- model:    as layer, and the decoder layers' sections become one looped call (kernel
            looping) when every layer is one section of the same configuration.

Capacity: a section holds at most `pcus` stages (and at most the 255 df.section encodes), and
the values written inside it (an upper bound on what stays in PMUs) fit the SRAM left after the
staging rings; a single value larger than that space is not counted, as placement puts it in
HBM. A gather of a value the section computes starts a new one (`_gathers_written`). An
all-reduce of tensor-parallel partial sums is a call of its own (the link runs it between calls,
compiler/targets/dataflow/lowering.py), since the ops after it need the reduced value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from isa.opcodes import OPCODES

from compiler.ir import Graph, Op, OpKind
from compiler.passes.storage import StoragePlan

__all__ = ["Section", "Call", "Sections", "partition", "layer_of", "template_of"]

# df.section's `stages` field (docs/isa.md): a section has at most this many stages, however
# many PCUs the chip has (a Qwen3-MoE prefill layer routes to 128 experts, 640 ops)
STAGES_MAX = (1 << OPCODES["df.section"].field("stages").kind.bits) - 1
_LAYER = re.compile(r"(h|layers)\.(\d+)\.")      # GPT-2's h.3.attn, Llama's layers.3.mlp


@dataclass(frozen=True, slots=True)
class Section:
    """Ops (names, program order) configured together; `config` names the configuration
    (equal for the same ops of different layers, so a repeated layer needs no reconfiguring)."""

    ops: tuple[str, ...]
    config: str
    group: str            # "prologue", "layer 3", "epilogue"


@dataclass(frozen=True, slots=True)
class Call:
    """One launch (df.run): `sections` run back to back as one looped pipeline of `loops`
    iterations (loops > 1 only for kernel looping; every section then has the same config)."""

    sections: tuple[Section, ...]
    loops: int


@dataclass(frozen=True)
class Sections:
    """The sectioning step's result: the calls in program order, and how they were cut."""

    calls: tuple[Call, ...]
    granularity: str
    pmu_budget_bytes: int

    def dump(self) -> str:
        sections = sum(len(c.sections) for c in self.calls)
        lines = [f"kernel granularity {self.granularity}: {len(self.calls)} calls, {sections} sections, "
                 f"{self.pmu_budget_bytes:,} PMU bytes for resident values"]
        for i, call in enumerate(self.calls):
            lines.append(f"call {i}: {call.loops} loop{'s' if call.loops > 1 else ''}")
            lines += [f"  section '{s.config}' ({s.group}): {', '.join(s.ops)}" for s in call.sections]
        return "\n".join(lines)


def layer_of(name: str) -> int | None:
    found = _LAYER.match(name)
    return int(found.group(2)) if found else None


def template_of(name: str) -> str:
    """The op's name with its layer index removed: the same op in every layer."""
    return _LAYER.sub(lambda m: f"{m.group(1)}.*.", name, count=1)


def _group(op: Op) -> str:
    layer = layer_of(op.name)
    if layer is not None:
        return f"layer {layer}"
    return "prologue" if op.name.startswith("embed") else "epilogue"


def partition(graph: Graph, plan: StoragePlan, granularity: str, pcus: int,
              pmu_budget_bytes: int, fused: tuple[tuple[str, ...], ...] = ()) -> tuple[Call, ...]:
    """The calls (and their sections) that run `graph`, in program order. Each op tuple of
    `fused` (a fused attention's scores, softmax and context) shares one section, and only
    its last op's result is written."""
    ops = [op for op in graph.ops if not (op.kind.is_source or op.kind.is_layout)]
    inner = {name for chain in fused for name in chain[1:]}
    unwritten = {name for chain in fused for name in chain[:-1]}
    if granularity == "operator":
        parts: list[list[Op]] = []
        for op in ops:
            if op.name in inner:
                parts[-1].append(op)
            else:
                parts.append([op])
        sections = [Section(tuple(o.name for o in part), template_of(part[0].name), _group(part[0]))
                    for part in parts]
        return tuple(Call((s,), 1) for s in sections)
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(_group(op), []).append(op)
    sections = []
    for name, members in groups.items():
        sections += _split(plan, name, members, pcus, pmu_budget_bytes, inner, unwritten,
                           {chain[0]: len(chain) for chain in fused})
    calls = tuple(Call((s,), 1) for s in sections)
    return _loop(calls) if granularity == "model" else calls


def _written_bytes(plan: StoragePlan, op: Op) -> int:
    if op.kind is OpKind.KV_APPEND:
        return 0                  # writes into the cache, which lives in HBM
    buf = plan.buffers.get(plan.views[op.name].buffer)
    return buf.numel * buf.dtype.itemsize if buf is not None else 0


def _gathers_written(plan: StoragePlan, op: Op, written: set[str]) -> bool:
    """Whether `op` gathers rows of a buffer an earlier op of the section writes. A gather
    runs on dma0, which the section's store tokens do not order (they order agcu0's reads),
    so it waits for the section barrier instead: it starts a new section."""
    return (op.kind in (OpKind.EMBEDDING, OpKind.GATHER)
            and any(plan.views[name].buffer in written for name in op.inputs))


def _split(plan: StoragePlan, group: str, members: list[Op], pcus: int, budget: int,
           inner: set[str] = frozenset(), unwritten: set[str] = frozenset(),
           chains: dict[str, int] | None = None) -> list[Section]:
    """Greedy: add ops to the current section until stages or PMU bytes would overflow, or
    a gather reads what the section computes; never before an `inner` op (a fused chain
    stays whole: `chains` gives the stages of each chain by its first op, so a section
    starts anew before a chain that would take it past its stages), and the ops in
    `unwritten` need no PMU bytes."""
    chains = chains or {}
    out, current, used, written = [], [], 0, set()
    stages = min(pcus, STAGES_MAX)
    for op in members:
        if op.kind.is_collective:                # a call of its own: the ops after it wait for
            out += [current] if current else []  # its result (docs/parallel.md)
            out.append([op])
            current, used, written = [], 0, set()
            continue
        need = 0 if op.name in unwritten else _written_bytes(plan, op)
        need = need if need <= budget else 0       # larger than the PMUs: it will live in HBM
        if current and op.name not in inner and (len(current) + chains.get(op.name, 1) > stages
                                                 or used + need > budget
                                                 or _gathers_written(plan, op, written)):
            out.append(current)
            current, used, written = [], 0, set()
        current.append(op)
        used += need
        written.add(plan.views[op.name].buffer)
    out += [current] if current else []
    parts = len(out)
    return [Section(tuple(o.name for o in part),
                    template_of(part[0].name) + (f" ({i + 1}/{parts})" if parts > 1 else ""),
                    group) for i, part in enumerate(out)]


def _loop(calls: tuple[Call, ...]) -> tuple[Call, ...]:
    """Kernel looping: the decoder layers' calls become one call when each is one section of
    the same configuration; otherwise (a layer split over sections) they stay per layer."""
    layers = [c for c in calls if c.sections[0].group.startswith("layer ")]
    if not layers:
        return calls
    per_layer: dict[str, int] = {}
    for c in layers:
        per_layer[c.sections[0].group] = per_layer.get(c.sections[0].group, 0) + 1
    if max(per_layer.values()) > 1 or len({c.sections[0].config for c in layers}) != 1:
        return calls
    first = calls.index(layers[0])
    looped = Call(tuple(c.sections[0] for c in layers), len(layers))
    return calls[:first] + (looped,) + calls[first + len(layers):]
