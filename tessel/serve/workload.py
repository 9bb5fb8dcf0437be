"""Requests to serve: the `Request` record and seeded synthetic workloads.

A synthetic workload has Poisson arrivals (exponential gaps at `rate` requests/s) and prompt
and output lengths drawn from a length spec, all from one `numpy.random.default_rng(seed)`,
so the same arguments give the same requests on every machine. Length specs:

    fixed:N                       every request N tokens
    uniform:LO,HI                 integers LO..HI, both included
    lognormal:MEDIAN,SIGMA[,MAX]  round(exp(N(ln MEDIAN, SIGMA))), at least 1, at most MAX
                                  (the third value may be written max=MAX)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from tessel.serve.errors import ServeError

__all__ = ["Request", "Lengths", "parse_lengths", "synthetic"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request: it arrives at `arrival_s`, brings `prompt_tokens` and wants `output_tokens`."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool) or self.id < 0:
            raise ServeError(f"request id must be an integer >= 0, got {self.id!r}")
        if not (isinstance(self.arrival_s, (int, float)) and math.isfinite(self.arrival_s)
                and self.arrival_s >= 0):
            raise ServeError(f"request {self.id}: arrival_s must be a finite number >= 0, got {self.arrival_s!r}")
        for name in ("prompt_tokens", "output_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServeError(f"request {self.id}: {name} must be an integer >= 1, got {value!r}")

    @property
    def kv_tokens_max(self) -> int:
        """The most tokens it ever holds in the KV cache: the prompt and every output token
        but the last, which is emitted and never fed back."""
        return self.prompt_tokens + self.output_tokens - 1


_DIGITS = re.compile(r"[0-9]+")
_KINDS = {"fixed": (1, 1), "uniform": (2, 2), "lognormal": (2, 3)}   # values: (fewest, most)


@dataclass(frozen=True, slots=True)
class Lengths:
    """A distribution of token counts, parsed from a spec by `parse_lengths`."""

    kind: str                         # fixed, uniform or lognormal
    values: tuple[float, ...]         # fixed: (N,); uniform: (LO, HI); lognormal: (MEDIAN, SIGMA)
    max_tokens: int | None = None     # lognormal: the clip, None for none

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` integer lengths, each >= 1."""
        if self.kind == "fixed":
            return np.full(n, int(self.values[0]), dtype=np.int64)
        if self.kind == "uniform":
            low, high = (int(v) for v in self.values)
            return rng.integers(low, high, endpoint=True, size=n)
        median, sigma = self.values
        drawn = np.rint(rng.lognormal(math.log(median), sigma, size=n))
        return np.clip(drawn, 1, self.max_tokens or np.inf).astype(np.int64)

    def __str__(self) -> str:
        text = f"{self.kind}:{','.join(f'{v:g}' for v in self.values)}"
        return text + (f",max={self.max_tokens}" if self.max_tokens is not None else "")


def parse_lengths(spec: str, *, what: str = "lengths") -> Lengths:
    """The distribution a spec names; a bad spec is refused in one line naming `what` and the spec."""
    def refuse(why: str) -> ServeError:
        return ServeError(f"{what} '{spec}': {why} (expected fixed:N, uniform:LO,HI or "
                          "lognormal:MEDIAN,SIGMA[,MAX])")

    kind, colon, rest = spec.strip().partition(":")
    if kind not in _KINDS:
        raise refuse(f"unknown distribution '{kind}'")
    parts = [p.strip() for p in rest.split(",")] if colon and rest.strip() else []
    fewest, most = _KINDS[kind]
    if not fewest <= len(parts) <= most:
        counts = str(fewest) if fewest == most else f"{fewest} or {most}"
        raise refuse(f"{kind} takes {counts} value{'s' if most > 1 else ''}, got {len(parts)}")
    if kind == "lognormal":
        median = _number(parts[0], refuse, "the median", positive=True)
        sigma = _number(parts[1], refuse, "sigma", positive=False)
        clip = _integer(parts[2].removeprefix("max=").strip(), refuse, "the max") if len(parts) == 3 else None
        return Lengths(kind, (median, sigma), clip)
    names = ("the low end", "the high end") if kind == "uniform" else ("N",)
    numbers = tuple(_integer(p, refuse, name) for p, name in zip(parts, names))
    if kind == "uniform" and numbers[0] > numbers[1]:
        raise refuse(f"the low end {numbers[0]} is above the high end {numbers[1]}")
    return Lengths(kind, tuple(float(n) for n in numbers))


def _integer(text: str, refuse, name: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) < 1:
        raise refuse(f"{name} '{text}' is not an integer >= 1")
    return int(text)


def _number(text: str, refuse, name: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise refuse(f"{name} '{text}' is not a finite number {'> 0' if positive else '>= 0'}")
    return value


def synthetic(n: int, rate: float, prompt: str | Lengths, output: str | Lengths, seed: int = 0) -> list[Request]:
    """`n` requests with Poisson arrivals at `rate` requests/s (the first after one gap),
    arrival times rounded to the microsecond so a written trace reads back exactly."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ServeError(f"synthetic: n must be an integer >= 1, got {n!r}")
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ServeError(f"synthetic: rate must be a finite number of requests/s > 0, got {rate!r}")
    prompts = prompt if isinstance(prompt, Lengths) else parse_lengths(prompt, what="prompt lengths")
    outputs = output if isinstance(output, Lengths) else parse_lengths(output, what="output lengths")
    rng = np.random.default_rng(seed)
    arrivals_s = np.round(np.cumsum(rng.exponential(1.0 / rate, size=n)), 6)
    prompt_tokens = prompts.sample(rng, n)
    output_tokens = outputs.sample(rng, n)
    return [Request(i, float(a), int(p), int(o))
            for i, (a, p, o) in enumerate(zip(arrivals_s, prompt_tokens, output_tokens))]
