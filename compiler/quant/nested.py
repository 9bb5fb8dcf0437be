"""Matryoshka (bit-nested) expert weights (D2MoE, MobiCom 2025, arXiv 2504.15299: bit-nested
expert weights read at the width each expert is given; reference/quant.md).

An int<W> weight is stored offset-binary, u = q + 2^(W-1) in [1, 2^W - 1], in bit planes from
the most significant, so the top b bits of every element, u >> (W - b), are its b-bit version,
and reading b of the W planes reads b/W of the element bytes (the scales, one per channel or
group, are read whole). A b-bit read stands for the 2^k codes (k = W - b) its top bits cover
and reconstructs at their middle:

    q_b = (u >> k) * 2^k + 2^(k-1) - 2^(W-1)      (k >= 1; q_W = q)

times the W-bit scale, so |q_b - q| <= 2^(k-1): one b-bit step at most half off.

Which width each expert is read at (`ExpertBits`, `tessel run --expert-bits`):
    B              every expert at B bits
    b0,b1,...      expert e at b_e bits, in every layer (one width per expert)
    hot:K:HI:LO    in each layer the K experts the calibration tokens route to most at HI bits,
                   the rest at LO (D2MoE's hottest-expert-bit-first, as a fixed policy)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
import numpy as np

from isa.formats import Quantized

from compiler.quant.recipe import RecipeError

__all__ = ["ExpertBits", "parse_expert_bits", "nested_read"]

FLAG = "--expert-bits"


def nested_read(quantized: Quantized, width: int, bits: int) -> Quantized:
    """The b-bit read of a `width`-bit integer weight: its codes' top `bits` bits, at the
    middle of the codes they stand for (module docstring), with the same scales."""
    k = width - bits
    if k == 0:
        return quantized
    u = quantized.codes.astype(np.int64) + (1 << (width - 1))
    q = ((u >> k) << k) + (1 << (k - 1)) - (1 << (width - 1))
    return replace(quantized, codes=q.astype(quantized.codes.dtype))


@dataclass(frozen=True, slots=True)
class ExpertBits:
    """A width policy: `uniform` bits, a per-expert `listed` tuple, or `hot` (K, HI, LO)."""

    text: str
    uniform: int | None = None
    listed: tuple[int, ...] = ()
    hot: tuple[int, int, int] | None = None

    def widths(self, width: int, experts: int, routed: np.ndarray | None) -> tuple[int, ...]:
        """The width of each of a layer's `experts` (stored at `width` bits); `routed`: how
        many calibration tokens chose each expert (for `hot`)."""
        for b in ([self.uniform] if self.uniform is not None else list(self.listed)
                  or list(self.hot[1:])):
            if not 2 <= b <= width:
                raise RecipeError(f"{FLAG} {self.text}: {b} bits: a nested read takes 2 to "
                                  f"{width} bits (the weights are stored at {width})")
        if self.uniform is not None:
            return (self.uniform,) * experts
        if self.listed:
            if len(self.listed) != experts:
                raise RecipeError(f"{FLAG} {self.text}: {len(self.listed)} widths for "
                                  f"{experts} experts: give one per expert")
            return self.listed
        k, hi, lo = self.hot
        if k > experts:
            raise RecipeError(f"{FLAG} {self.text}: {k} hot experts of {experts}")
        hottest = np.argsort(-routed, kind="stable")[:k]      # ties: the lower expert
        return tuple(hi if e in hottest else lo for e in range(experts))


def parse_expert_bits(text: str) -> ExpertBits:
    """`B`, `b0,b1,...` or `hot:K:HI:LO` (module docstring); anything else is one line."""
    if re.fullmatch(r"\d+", text):
        return ExpertBits(text, uniform=int(text))
    if re.fullmatch(r"\d+(,\d+)+", text):
        return ExpertBits(text, listed=tuple(int(b) for b in text.split(",")))
    if m := re.fullmatch(r"hot:(\d+):(\d+):(\d+)", text):
        k, hi, lo = map(int, m.groups())
        if k < 1:
            raise RecipeError(f"{FLAG} {text}: at least one hot expert")
        return ExpertBits(text, hot=(k, hi, lo))
    raise RecipeError(f"{FLAG} {text!r}: expected B (every expert), b0,b1,... (one width per "
                      "expert) or hot:K:HI:LO")

