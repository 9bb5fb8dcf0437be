"""One engine step and what it costs.

A step runs several requests at once, each either a prefill chunk or one decode token.
`StepShape` is all the cost may depend on: the sorted (kind, tokens, context) of its
entries, request ids dropped, contexts optionally rounded up to a multiple of `kv_bucket` so
that steps differing only by a few KV tokens share one cost. A `CostModel` prices a shape;
`Memo` asks the model once per distinct shape.

The cost model itself is the caller's (the simulator's: tessel/serve/simulated.py); nothing
here invents one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from tessel.serve.errors import ServeError

__all__ = ["StepEntry", "Step", "StepShape", "StepCost", "CostModel", "Memo", "KINDS"]

Kind = Literal["prefill", "decode"]
KINDS = ("prefill", "decode")


@dataclass(frozen=True, slots=True)
class StepEntry:
    """One request's part of a step: `tokens` new tokens on top of `context` already in its KV
    cache (a prefill chunk at offset `context`; a decode: tokens=1 at KV length `context`)."""

    request_id: int
    kind: Kind
    tokens: int
    context: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ServeError(f"step entry of request {self.request_id}: kind must be prefill or decode, "
                             f"got {self.kind!r}")
        if self.tokens < 1 or self.context < 0 or (self.kind == "decode" and self.tokens != 1):
            raise ServeError(f"step entry of request {self.request_id}: a {self.kind} of {self.tokens} "
                             f"tokens at context {self.context} (tokens >= 1, a decode 1; context >= 0)")


@dataclass(frozen=True, slots=True)
class Step:
    """The entries of one step, at most one per request."""

    entries: tuple[StepEntry, ...]

    def __post_init__(self) -> None:
        ids = [e.request_id for e in self.entries]
        if len(set(ids)) != len(ids):
            raise ServeError(f"a step holds a request twice: {sorted(ids)}")

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.entries)


@dataclass(frozen=True, slots=True)
class StepShape:
    """What a step's cost depends on: sorted (kind, tokens, context) triples; hashable."""

    entries: tuple[tuple[Kind, int, int], ...]

    @classmethod
    def of(cls, step: Step, kv_bucket: int | None = None) -> StepShape:
        """The shape of `step`; contexts rounded up to a multiple of `kv_bucket` (None: exact)."""
        return cls(tuple(sorted((e.kind, e.tokens, e.context) for e in step.entries))).bucketed(kv_bucket)

    def bucketed(self, kv_bucket: int | None) -> StepShape:
        """This shape with its contexts rounded up to a multiple of `kv_bucket` (None: itself)."""
        if kv_bucket is None:
            return self
        return StepShape(tuple(sorted((kind, tokens, -(-context // kv_bucket) * kv_bucket)
                                      for kind, tokens, context in self.entries)))

    @property
    def batch(self) -> int:
        return len(self.entries)

    @property
    def tokens(self) -> int:
        return sum(tokens for _, tokens, _ in self.entries)

    @property
    def prefill_tokens(self) -> int:
        return sum(tokens for kind, tokens, _ in self.entries if kind == "prefill")

    @property
    def decodes(self) -> int:
        return sum(1 for kind, _, _ in self.entries if kind == "decode")


@dataclass(frozen=True, slots=True)
class StepCost:
    """A step's duration (> 0, so token times strictly increase) and energy on the target."""

    seconds: float
    energy_j: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ServeError(f"step cost: seconds must be a finite number > 0, got {self.seconds!r}")
        if not (math.isfinite(self.energy_j) and self.energy_j >= 0):
            raise ServeError(f"step cost: energy_j must be a finite number >= 0, got {self.energy_j!r}")


class CostModel(Protocol):
    """Prices one step on a target."""

    def cost(self, shape: StepShape) -> StepCost: ...


class Memo:
    """A cost model asked at most once per distinct shape; `calls` asked, `hits` answered from memory."""

    __slots__ = ("model", "calls", "hits", "_costs")

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self.calls = 0
        self.hits = 0
        self._costs: dict[StepShape, StepCost] = {}

    def cost(self, shape: StepShape) -> StepCost:
        known = self._costs.get(shape)
        if known is not None:
            self.hits += 1
            return known
        self.calls += 1
        cost = self.model.cost(shape)
        if not isinstance(cost, StepCost):
            raise TypeError(f"{type(self.model).__name__}.cost returned {type(cost).__name__}, expected StepCost")
        self._costs[shape] = cost
        return cost
