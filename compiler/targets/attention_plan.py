"""Which attention chains a target fuses, with which blocks, and each chain's I/O lower bound.

`plan_attention` runs as a pipeline step after storage: for every scores -> softmax ->
context chain (compiler/passes/attention.py) it plans the fused kernel's blocks
(compiler/targets/attention.py) when the architecture's `attention` field is `fused` and the
operand type is a float; a chain whose blocks do not fit the on-chip memory, or any chain
with `attention = "unfused"`, is lowered op by op. The plan names the op marks each chain's
traffic is counted over, and the report sets that traffic beside the bound (docs/systolic.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from isa import DType

from compiler.ir import Graph
from compiler.passes.attention import AttentionChain, find_attention
from compiler.passes.storage import View
from compiler.targets.attention_blocks import AttentionBlocks, instances, needs_mask, plan_blocks

__all__ = ["AttentionSite", "AttentionPlan", "plan_attention"]


@dataclass(frozen=True, slots=True)
class AttentionSite:
    """One attention chain as compiled: the op marks that hold it, fused or not, and the
    figures of its I/O lower bound.

    bound = max(instances * S * T * d^2 / M, 2 d (instances * S + kv_instances * T)) elements:
    the first term is the I/O lower bound of exact attention with M elements on chip
    (reference/systolic.md, constant 1); the second the compulsory traffic (Q, K, V read
    and O written once), which is larger when M exceeds about S d. M = `onchip_elements`,
    the on-chip memory in operand-type elements."""

    name: str
    ops: tuple[str, ...]
    fused: bool
    instances: int              # (batch, query head) pairs
    kv_instances: int           # distinct K/V matrices
    s: int
    t: int
    d: int
    itemsize: int
    onchip_elements: int
    blocks: str = ""

    @property
    def quadratic_elements(self) -> float:
        return self.instances * self.s * self.t * self.d ** 2 / self.onchip_elements

    @property
    def compulsory_elements(self) -> int:
        return 2 * self.d * (self.instances * self.s + self.kv_instances * self.t)

    @property
    def bound_bytes(self) -> float:
        return max(self.quadratic_elements, self.compulsory_elements) * self.itemsize


@dataclass(frozen=True)
class AttentionPlan:
    """Every chain with its blocks (None: lowered op by op) and its report record."""

    mode: str
    chains: tuple[tuple[AttentionChain, AttentionBlocks | None], ...]
    sites: tuple[AttentionSite, ...]

    @property
    def fused(self) -> dict[str, tuple[AttentionChain, AttentionBlocks]]:
        """scores op name -> (chain, blocks) for the chains lowered as one kernel."""
        return {c.scores: (c, b) for c, b in self.chains if b is not None}

    def elided(self, views: Mapping[str, View]) -> frozenset[str]:
        """The buffers of the fused chains' scores and probabilities: never written, no place."""
        return frozenset(views[n].buffer for c, b in self.chains if b is not None
                         for n in (c.scores, c.probs))

    def assumption(self) -> str | None:
        """The line the report's assumptions show, or None for a graph without attention."""
        if not self.chains:
            return None
        fused = [b for _, b in self.chains if b is not None]
        n = len(self.chains)
        if not fused:
            why = "by --set attention=unfused" if self.mode == "unfused" else "the fused blocks do not fit on chip"
            return f"attention unfused: scores, softmax and context each round-trip off-chip memory ({why})"
        shapes = sorted({b.describe() for b in fused})
        return (f"attention fused (FlashAttention-style online softmax) for {len(fused)} of {n} chains: "
                + "; ".join(shapes))

    def dump(self) -> str:
        lines = [f"attention: {self.mode}, {len(self.chains)} chains"]
        lines += [f"  {c.name}: {'unfused' if b is None else b.describe()}" for c, b in self.chains]
        return "\n".join(lines)


def plan_attention(graph: Graph, views: Mapping[str, View], mode: str, dtype: DType,
                   sram_bytes: int, acc_bytes: int, onchip_bytes: int,
                   key_block_max: int | None = None) -> AttentionPlan:
    """Blocks for every chain (fused mode, float operands) and the sites the report reads."""
    chains, sites = [], []
    for chain in find_attention(graph):
        insts = instances(chain, views)
        rows = max(i.q.rows for i in insts)
        blocks = None
        if mode == "fused" and dtype is not DType.int8 and chain.d <= 65535 // 4:
            cap = {} if key_block_max is None else {"key_block_max": key_block_max}
            blocks = plan_blocks(rows, chain.t, chain.d, dtype.itemsize, sram_bytes, acc_bytes,
                                 needs_mask(chain), chain.window is not None, **cap)
        chains.append((chain, blocks))
        kv = len({(i.k.symbol, i.k.offset) for i in insts})
        sites.append(AttentionSite(
            chain.name, (chain.name,) if blocks else (chain.scores, chain.probs, chain.context),
            blocks is not None, chain.instances, kv, chain.s, chain.t, chain.d, dtype.itemsize,
            onchip_bytes // dtype.itemsize, blocks.describe() if blocks else ""))
    return AttentionPlan(mode, tuple(chains), tuple(sites))
