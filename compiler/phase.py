"""Phase: which pass of an autoregressive model a graph computes.

prefill: S prompt tokens at once, no cache.  decode: one new token against a KV cache of
L earlier tokens.  Both for a batch of B sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from compiler.ir import GraphError

__all__ = ["Phase", "prefill", "decode"]


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
