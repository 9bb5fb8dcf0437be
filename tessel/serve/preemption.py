"""What happens to a running request when the KV cache cannot hold every running request's
next tokens (vLLM, docs: Optimization and Tuning): the most recently admitted is preempted,
by one of two modes.

- `Recompute()`: its KV blocks are dropped; it goes back to the front of the waiting queue
  and later prefills its prompt and every token it has generated so far (vLLM V1's default).
- `Swap(bytes_per_token, bw_bytes_per_s)`: its blocks are copied to host memory and back
  before it runs again; each copy takes blocks x block_size x bytes_per_token / bandwidth,
  added to the step during which it happens. Host memory is not bounded, and the copies
  cost no energy here (the caller's cost model prices steps only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tessel.serve.errors import ServeError

__all__ = ["Recompute", "Swap", "Preemption"]


@dataclass(frozen=True, slots=True)
class Recompute:
    """Drop the KV cache of a preempted request and prefill it again later."""

    name = "recompute"

    def seconds(self, blocks: int, block_size: int) -> float:
        return 0.0

    def describe(self) -> dict[str, object]:
        return {"mode": self.name}


@dataclass(frozen=True, slots=True)
class Swap:
    """Copy a preempted request's KV blocks to host memory and back; both are the caller's:
    `bytes_per_token` of KV over all layers, `bw_bytes_per_s` of the host link."""

    bytes_per_token: float
    bw_bytes_per_s: float

    name = "swap"

    def __post_init__(self) -> None:
        for field in ("bytes_per_token", "bw_bytes_per_s"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value > 0):
                raise ServeError(f"swap preemption: {field} must be a finite number > 0, got {value!r}")

    def seconds(self, blocks: int, block_size: int) -> float:
        """Time to copy `blocks` blocks one way."""
        return blocks * block_size * self.bytes_per_token / self.bw_bytes_per_s

    def describe(self) -> dict[str, object]:
        return {"mode": self.name, "bytes_per_token": self.bytes_per_token,
                "bw_bytes_per_s": self.bw_bytes_per_s}


Preemption = Recompute | Swap
