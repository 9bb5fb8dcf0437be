"""Phase: which pass of an autoregressive model a graph computes.

prefill: S prompt tokens at once, no cache.  decode: one new token against a KV cache of
L earlier tokens.  Both for a batch of B sequences.

Step: a serving step (Orca's selective batching, Sarathi's chunked prefill): several requests
in one pass, each a `Segment` of its own new tokens after its own cached context (a prefill
chunk at offset `context`, a decode of one token). The token-wise ops run over every token of
the step at once; each request attends to its own cache only, without padding to the longest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from compiler.ir import GraphError

__all__ = ["Phase", "prefill", "decode", "Segment", "Step", "Group", "groups", "group_rows"]


@dataclass(frozen=True, slots=True)
class Phase:
    kind: Literal["prefill", "decode"]
    seq: int          # new tokens per sequence (1 for decode)
    kv: int           # tokens already in the cache (0 for prefill)
    batch: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("prefill", "decode"):
            raise GraphError(f"phase must be prefill or decode, got '{self.kind}'")
        for name in ("seq", "batch"):
            if getattr(self, name) < 1:
                raise GraphError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.kind == "prefill" and self.kv != 0:
            raise GraphError(f"prefill has no KV cache, got kv={self.kv}")
        if self.kind == "decode" and (self.seq != 1 or self.kv < 1):
            raise GraphError(f"decode takes 1 token against kv >= 1, got seq={self.seq} kv={self.kv}")

    @property
    def total_len(self) -> int:
        return self.kv + self.seq

    def __str__(self) -> str:
        extra = f" kv={self.kv}" if self.kind == "decode" else f" seq={self.seq}"
        return f"{self.kind}{extra} batch={self.batch}"


def prefill(seq: int, batch: int = 1) -> Phase:
    return Phase("prefill", seq, 0, batch)


def decode(kv: int, batch: int = 1) -> Phase:
    return Phase("decode", 1, kv, batch)


@dataclass(frozen=True, slots=True)
class Segment:
    """One request's part of a serving step: `tokens` new tokens after `context` tokens
    already in its KV cache."""

    tokens: int
    context: int = 0

    def __post_init__(self) -> None:
        for name, low in (("tokens", 1), ("context", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise GraphError(f"segment {name} must be an integer >= {low}, got {v!r}")


@dataclass(frozen=True, slots=True)
class Step:
    """A serving step: the segments of several requests, their tokens consecutive in one
    sequence of `seq` tokens (batch 1)."""

    segments: tuple[Segment, ...]
    batched: bool = True      # requests alike attend as one batch (False: each on its own,
    kind = "step"             # for a target whose attention takes one sequence, PIM's)
    batch = 1

    def __post_init__(self) -> None:
        if not self.segments:
            raise GraphError("a step needs at least one segment")
        for i, s in enumerate(self.segments):
            if not isinstance(s, Segment):
                raise GraphError(f"step segment {i}: {s!r} is not a Segment")

    @property
    def seq(self) -> int:
        return sum(s.tokens for s in self.segments)

    @property
    def total_len(self) -> int:
        """The longest position any request reaches."""
        return max(s.context + s.tokens for s in self.segments)

    def __str__(self) -> str:
        return "step " + " ".join(f"{s.tokens}@{s.context}" for s in self.segments)


@dataclass(frozen=True, slots=True)
class Group:
    """Sequences that attend alike: `batch` x `seq` new tokens after `kv` cached ones, rows
    [start, start + batch x seq) of the pass's tokens; `tag` marks its ops' and caches'
    names."""

    start: int
    batch: int
    seq: int
    kv: int
    tag: str = ""


def groups(phase: Phase | Step) -> tuple[Group, ...]:
    """A phase's one group (every sequence alike), or a step's groups: consecutive requests
    with the same tokens and context attend as one batch (a step of B equal decodes is a
    decode of batch B; unless the step is not `batched`), each other request on its own."""
    if not isinstance(phase, Step):
        return (Group(0, phase.batch, phase.seq, phase.kv),)
    out, at = [], 0
    for s in phase.segments:
        last = out[-1] if out else None
        if phase.batched and last is not None and (last.seq, last.kv) == (s.tokens, s.context):
            out[-1] = Group(last.start, last.batch + 1, last.seq, last.kv, last.tag)
        else:
            out.append(Group(at, 1, s.tokens, s.context, f".seg{len(out)}"))
        at += s.tokens
    return tuple(out)


def group_rows(phase: Phase | Step, part: Group, width: int) -> tuple[int, int, int]:
    """The shape of a group's token-wise value of `width`: [batch, seq, width] for a phase,
    its rows of the step's one sequence, [1, batch x seq, width], for a step."""
    if isinstance(phase, Step):
        return (1, part.batch * part.seq, width)
    return (part.batch, part.seq, width)

