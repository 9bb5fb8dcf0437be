"""Collective communication timed on a link (arch/links.py) by an alpha-beta model:

    time = start-up + steps x step latency + bytes on a device's links / its bandwidth

B is what one device sends per second over the links an algorithm uses (links x line rate x
efficiency). `nbytes` follows nccl-tests: the buffer per rank (all_reduce: the whole vector;
all_gather: its output; reduce_scatter: its input). Without an `algorithm`, the cheapest valid
one is taken, as NCCL's tuner does (it estimates every algorithm's time and runs the fastest,
NVIDIA/nccl src/graph/tuning.cc). Formulas and their sources: docs/links.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from arch.links import LinkArch

__all__ = ["CollectiveCost", "CollectiveError", "collective_cost", "coll_price", "KINDS",
           "ALGORITHMS", "ALGORITHMS_OF"]

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "broadcast")
ALGORITHMS_OF = {"all_reduce": ("ring", "tree", "nvls"), "all_gather": ("ring",),
                 "reduce_scatter": ("ring",), "broadcast": ("ring",), "all_to_all": ("direct",),
                 "send_recv": ("direct",)}
# nccl-tests' bus bandwidth factor per kind (doc/PERFORMANCE.md; reference/parallel.md)
BUS_FACTOR: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n,
    "send_recv": lambda n: 1.0, "broadcast": lambda n: 1.0}


class CollectiveError(ValueError):
    """A collective the model cannot price: bad kind, algorithm, size or group."""


@dataclass(frozen=True, slots=True)
class CollectiveCost:
    """One collective's time and traffic. `bytes_per_rank` is the mean over ranks of the bytes a
    rank puts on its links (forwarded bytes included), rounded up; `algbw_gbps` and `busbw_gbps`
    are what nccl-tests would print for the same call."""

    seconds: float
    algorithm: str
    bytes_per_rank: int
    energy_j: float
    algbw_gbps: float
    busbw_gbps: float


@dataclass(frozen=True, slots=True)
class _Group:
    """`n` ranks on a link, as the rings their data circulates on: (chips, links per device)."""

    link: LinkArch
    n: int
    rings: tuple[tuple[int, int], ...]

    def bytes_per_s(self, links: float) -> float:
        return links * self.link.link_bw_gbps * 1e9 * self.link.efficiency

    @property
    def ring_bytes_per_s(self) -> float:
        return self.bytes_per_s(sum(links for _, links in self.rings))

    def latency_s(self, steps: int) -> float:
        return self.link.base_latency_us * 1e-6 + steps * self.link.step_latency_ns * 1e-9


def _group(link: LinkArch, n: int) -> _Group:
    """Ring, switch, and a group short of the whole torus: one ring of n over (the group's share
    of) a device's links; the whole torus: one bidirectional ring per dimension, 2 links each."""
    if link.topology != "torus":
        return _Group(link, n, ((n, link.links_per_device),))
    dims = tuple(link.torus_dims.values())
    if n > link.devices:
        shape = "x".join(map(str, dims))
        raise CollectiveError(f"link '{link.name}' is a {shape} torus of {link.devices} chips, "
                              f"got ranks={n}")
    return _Group(link, n, tuple((d, 2) for d in dims) if n == link.devices else ((n, 2),))


def _ring(g: _Group, kind: str, nbytes: int) -> tuple[float, int]:
    """Reduce-scatter and all-gather: each rank passes (n-1)/n of the buffer to its neighbour in
    s steps (s = n-1; on a whole torus, dimension by dimension: s = sum(d-1), the data split so
    every dimension's links work at once); all_reduce is both: twice the steps and the bytes.
    Broadcast: a pipelined chain, n-1 steps, the whole buffer over every link used."""
    n = g.n
    if kind == "broadcast":
        return g.latency_s(n - 1) + nbytes / g.ring_bytes_per_s, (n - 1) * nbytes
    phases = 2 if kind == "all_reduce" else 1
    steps = phases * sum(d - 1 for d, _ in g.rings)
    wire = phases * (n - 1) / n * nbytes
    return g.latency_s(steps) + wire / g.ring_bytes_per_s, phases * (n - 1) * nbytes


def _tree(g: _Group, kind: str, nbytes: int) -> tuple[float, int]:
    """NCCL's double binary tree: half the buffer reduced up and broadcast down each tree; a
    rank inside one tree is a leaf of the other, so it sends 2 x nbytes (NCCL's tree algbw is
    half its bus bandwidth, tuning.cc) in 2 ceil(log2 n) steps."""
    n = g.n
    steps = 2 * math.ceil(math.log2(n))
    return g.latency_s(steps) + 2 * nbytes / g.ring_bytes_per_s, 2 * (n - 1) * nbytes


def _nvls(g: _Group, kind: str, nbytes: int) -> tuple[float, int]:
    """NVLink SHARP: the switch reduces each rank's 1/n (it reads every rank's copy: nbytes out
    of each rank) and multicasts the result (nbytes into each): (n+1)/n x nbytes each way per
    rank; start-up is NCCL's NVLS latency alone (tuning.cc)."""
    n = g.n
    wire = (n + 1) / n * nbytes
    return g.link.reduction_latency_us * 1e-6 + wire / g.ring_bytes_per_s, (n + 1) * nbytes


def _direct(g: _Group, kind: str, nbytes: int) -> tuple[float, int]:
    """all_to_all: nbytes/n to every other rank at once; through a switch one hop each, on rings
    each chunk travels its shortest way round, so a dimension of d chips with hop sum
    D = sum_k min(k, d-k) carries nbytes x D/d per rank and the busiest dimension sets the time.
    send_recv: nbytes one way to a neighbour over the links that reach it."""
    link, n = g.link, g.n
    if kind == "send_recv":
        links = link.links_per_device if link.topology == "switch" else g.rings[0][1] / 2
        return g.latency_s(1) + nbytes / g.bytes_per_s(links), nbytes
    if link.topology == "switch":
        wire = (n - 1) / n * nbytes
        return g.latency_s(1) + wire / g.ring_bytes_per_s, (n - 1) * nbytes
    hop_sums = [sum(min(k, d - k) for k in range(d)) for d, _ in g.rings]
    seconds = max(nbytes * hops / d / g.bytes_per_s(links)
                  for hops, (d, links) in zip(hop_sums, g.rings))
    link_bytes = nbytes * sum(n // d * hops for hops, (d, _) in zip(hop_sums, g.rings))
    return g.latency_s(sum(d // 2 for d, _ in g.rings)) + seconds, link_bytes


ALGORITHMS: dict[str, Callable[[_Group, str, int], tuple[float, int]]] = {
    "ring": _ring, "tree": _tree, "nvls": _nvls, "direct": _direct}


def _unusable(link: LinkArch, algorithm: str) -> str | None:
    """Why `algorithm` cannot run on `link`, or None."""
    if algorithm == "tree" and link.topology != "switch":
        return f"a switch (link '{link.name}' is a {link.topology}: tree edges would span hops)"
    if algorithm == "nvls" and not link.in_network_reduction:
        return f"in_network_reduction, which link '{link.name}' lacks"
    return None


def _check(link: LinkArch, kind: str, nbytes: int, ranks: int, algorithm: str | None) -> None:
    if kind not in KINDS:
        raise CollectiveError(f"unknown collective '{kind}' (one of {', '.join(KINDS)})")
    if algorithm is not None:
        if algorithm not in ALGORITHMS:
            raise CollectiveError(f"unknown algorithm '{algorithm}' "
                                  f"(one of {', '.join(ALGORITHMS)})")
        if algorithm not in ALGORITHMS_OF[kind]:
            raise CollectiveError(f"algorithm '{algorithm}' does not do {kind} "
                                  f"({kind}: {', '.join(ALGORITHMS_OF[kind])})")
        reason = _unusable(link, algorithm)
        if reason:
            raise CollectiveError(f"algorithm '{algorithm}' needs {reason}")
    if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
        raise CollectiveError(f"nbytes must be a whole number of bytes >= 0, got {nbytes!r}")
    if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1:
        raise CollectiveError(f"ranks must be an integer >= 1, got {ranks!r}")
    if kind == "send_recv" and ranks > 2:
        raise CollectiveError(f"send_recv is between two ranks, got ranks={ranks}")


def collective_cost(link: LinkArch, kind: str, nbytes: int, ranks: int,
                    algorithm: str | None = None) -> CollectiveCost:
    """Time, traffic and energy of one collective of `nbytes` (per rank, nccl-tests' convention)
    over `ranks` devices joined by `link`; `algorithm` None takes the fastest that applies."""
    _check(link, kind, nbytes, ranks, algorithm)
    if ranks == 1:
        return CollectiveCost(0.0, algorithm or "none", 0, 0.0, 0.0, 0.0)
    group = _group(link, ranks)
    options = ([algorithm] if algorithm
               else [a for a in ALGORITHMS_OF[kind] if not _unusable(link, a)])
    costs = {a: ALGORITHMS[a](group, kind, nbytes) for a in options}
    best = min(options, key=lambda a: costs[a][0])     # ties go to the first listed (ring)
    seconds, link_bytes = costs[best]
    algbw = nbytes / seconds / 1e9 if seconds else 0.0
    return CollectiveCost(seconds, best, -(-link_bytes // ranks),
                          link_bytes * 8 * link.energy_pj_per_bit * 1e-12,
                          algbw, algbw * BUS_FACTOR[kind](ranks))


def coll_price(instr, link: LinkArch, clock_hz: float) -> tuple[int, CollectiveCost]:
    """A `coll` instruction (docs/isa.md) on `link`: its cycles at `clock_hz` and its cost (a
    send or a receive is one side of a two-rank `send_recv`)."""
    kind = instr["kind"]
    pair = kind in ("send", "recv")
    cost = collective_cost(link, "send_recv" if pair else kind, instr["bytes"],
                           2 if pair else instr["ranks"])
    return math.ceil(cost.seconds * clock_hz - 1e-9), cost
