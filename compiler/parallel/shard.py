"""What one device builds of a model, and which slice of each full parameter it holds.

The frontends build every graph through `PartBuilder`. With the whole model's `Shard()` no
parameter is sliced and no collective is added, so single-device graphs are unchanged. A
tensor-parallel rank's parameters keep the full model's names; the `Part` recorded beside each
sliced one says which columns or rows of the full tensor it is, so a device's weights are read
from the full checkpoint or seeded weights (`ShardGraph.weights`), never generated per rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterator, Literal, Mapping, Sequence

import numpy as np

from compiler.builder import GraphBuilder
from compiler.ir import DType, Graph, GraphError, OpKind
from compiler.phase import Group

__all__ = ["Part", "Shard", "PartBuilder", "ShardGraph"]


@dataclass(frozen=True, slots=True)
class Part:
    """Index ranges [start, stop) along `axis` of a full parameter, concatenated in order: one
    range for a column or row split, three for GPT-2's fused q|k|v projection."""

    axis: int
    ranges: tuple[tuple[int, int], ...]

    def shape(self, full: Sequence[int]) -> tuple[int, ...]:
        shape = list(full)
        shape[self.axis] = sum(stop - start for start, stop in self.ranges)
        return tuple(shape)

    def take(self, full: np.ndarray) -> np.ndarray:
        pieces = [np.take(full, range(start, stop), axis=self.axis) for start, stop in self.ranges]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=self.axis)


@dataclass(frozen=True, slots=True)
class Shard:
    """Tensor-parallel rank `rank` of `tp` in pipeline stage `stage` of `pp`; Shard() is the
    whole model on one device."""

    tp: int = 1
    rank: int = 0
    pp: int = 1
    stage: int = 0
    spread_experts: bool = False      # expert parallelism: whole experts per rank, not columns
    split_tokens: bool = False        # ... and MoE layers on 1/tp of the tokens, by all-to-all

    def __post_init__(self) -> None:
        for name, count, index in (("tp", self.tp, self.rank), ("pp", self.pp, self.stage)):
            if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
                which = "rank" if name == "tp" else "stage"
                raise GraphError(f"shard: {which} {index!r} of {name} {count!r} must be an "
                                 f"integer from 0 to {name} - 1")

    @property
    def suffix(self) -> str:
        """What the graph name gains: '.stage1of2', '.rank0of2', both, or nothing."""
        stage = f".stage{self.stage}of{self.pp}" if self.pp > 1 else ""
        return stage + (f".rank{self.rank}of{self.tp}" if self.tp > 1 else "")

    def layers(self, n_layer: int) -> range:
        """The consecutive layers of this stage: n_layer / pp of them."""
        if n_layer % self.pp:
            raise GraphError(f"shard: {n_layer} layers cannot be split into {self.pp} equal stages")
        per_stage = n_layer // self.pp
        return range(self.stage * per_stage, (self.stage + 1) * per_stage)

    def experts(self, count: int) -> range:
        """The experts of a MoE layer this rank holds whole: its 1/tp of them, consecutive,
        under expert parallelism; every one (each split by columns) otherwise."""
        if not self.spread_experts:
            return range(count)
        per = self.split(count)
        return range(self.rank * per, (self.rank + 1) * per)

    def split(self, count: int) -> int:
        """How many of `count` heads (or columns) this rank holds."""
        if count % self.tp:
            raise GraphError(f"shard: {count} cannot be split over {self.tp} ranks")
        return count // self.tp

    def columns(self, width: int, blocks: int = 1) -> Part | None:
        """This rank's share of a last axis of `width`: its piece of each of `blocks` equal
        blocks (GPT-2's c_attn: q, k and v); None for a single rank (nothing sliced)."""
        if self.tp == 1:
            return None
        block = width // blocks
        piece = self.split(block)
        return Part(-1, tuple((b * block + self.rank * piece, b * block + (self.rank + 1) * piece)
                              for b in range(blocks)))

    def rows(self, width: int) -> Part | None:
        """This rank's share of a first axis of `width` (a row-parallel weight)."""
        if self.tp == 1:
            return None
        piece = self.split(width)
        return Part(0, ((self.rank * piece, (self.rank + 1) * piece),))


class PartBuilder(GraphBuilder):
    """A GraphBuilder for one Shard: records the Part of every sliced parameter and adds the
    tensor-parallel linears and their all-reduces."""

    def __init__(self, name: str, shard: Shard) -> None:
        super().__init__(name + shard.suffix)
        self.shard = shard
        self._parts: dict[str, Part] = {}

    def param(self, name: str, shape: Sequence[int], dtype: DType = DType.fp32,
              part: Part | None = None) -> str:
        """A parameter of the full model's `shape`, or this device's `part` of it."""
        if part is not None:
            self._parts[name] = part
            shape = part.shape(shape)
        return super().param(name, shape, dtype)

    def linear(self, name: str, src: str, n_in: int, n_out: int, *, bias: bool,
               split: Literal["columns", "rows"] | None = None, blocks: int = 1) -> str:
        """x @ w (+ b). split 'columns': this rank's output columns (of each of `blocks`), the
        bias sliced alike; 'rows': its input rows, the partial products summed by an all-reduce
        and the bias added once after it (Megatron's row-parallel linear)."""
        if split == "rows" and self.shard.tp > 1:
            w = self.param(f"{name}.weight", (n_in, n_out), part=self.shard.rows(n_in))
            total = self.allreduce(self.op(OpKind.LINEAR, name, [src, w]))
            if not bias:
                return total
            return self.op(OpKind.ADD, f"{name}.add_bias", [total, self.param(f"{name}.bias", (n_out,))])
        part = self.shard.columns(n_out, blocks) if split == "columns" else None
        w = self.param(f"{name}.weight", (n_in, n_out), part=part)
        b = [self.param(f"{name}.bias", (n_out,), part=part)] if bias else []
        return self.op(OpKind.LINEAR, name, [src, w, *b])

    def allreduce(self, src: str) -> str:
        """The sum of `src` over the stage's tp ranks (on one rank: `src` itself, no op)."""
        if self.shard.tp == 1:
            return src
        return self.op(OpKind.ALLREDUCE, f"{src}.allreduce", [src], ranks=self.shard.tp,
                       rank=self.shard.rank)

    def last_tokens(self, name: str, src: str, parts: Sequence[Group], width: int) -> str:
        """Each request's last token of a serving step's [1, T, width] value, as
        [1, requests, width] (the LM head runs on those only, as serving engines sample them)."""
        pieces = []
        for part in parts:
            end = part.start + part.batch * part.seq
            if part.seq == 1:           # decodes: every row is a last token
                pieces.append(self.op(OpKind.SLICE, f"{name}{part.tag}", [src], axis=1,
                                      start=part.start, stop=end))
                continue
            rows = self.op(OpKind.SLICE, f"{name}{part.tag}.rows", [src], axis=1,
                           start=part.start, stop=end)
            each = self.op(OpKind.RESHAPE, f"{name}{part.tag}.each", [rows],
                           shape=(part.batch, part.seq, width))
            last = self.op(OpKind.SLICE, f"{name}{part.tag}.final", [each], axis=1,
                           start=part.seq - 1, stop=part.seq)
            pieces.append(self.op(OpKind.RESHAPE, f"{name}{part.tag}", [last],
                                  shape=(1, part.batch, width)))
        return pieces[0] if len(pieces) == 1 else self.op(OpKind.CONCAT, name, pieces, axis=1)

    def build_part(self, outputs: Sequence[str]) -> ShardGraph:
        return ShardGraph(self.build(outputs), self.shard, MappingProxyType(dict(self._parts)))


@dataclass(frozen=True)
class ShardGraph:
    """One device's graph, its Shard and the Part of each sliced parameter (the others are
    the full model's tensors, replicated)."""

    graph: Graph
    shard: Shard
    parts: Mapping[str, Part]

    def weights(self, full: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """This device's parameters, read from the full model's weights by name and sliced."""
        return _ShardWeights(full, self)


class _ShardWeights(Mapping[str, np.ndarray]):
    def __init__(self, full: Mapping[str, np.ndarray], part: ShardGraph) -> None:
        self._full, self._part = full, part
        self._types = {p.name: p.type for p in part.graph.params}

    def __getitem__(self, name: str) -> np.ndarray:
        expected = self._types[name].shape
        value = np.asarray(self._full[name])
        if name in self._part.parts:
            value = self._part.parts[name].take(value)
        if value.shape != expected:
            raise GraphError(f"parameter '{name}' of {self._part.graph.name}: the full model's "
                             f"tensor gives {list(value.shape)}, the graph expects {list(expected)}")
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)
