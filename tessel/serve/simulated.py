"""Step costs from the simulator, and the KV-cache capacity a target leaves after the weights.

`SimulatedCosts` prices a step shape by building the serving step's graph (compiler.phase.Step:
every request's tokens through the token-wise ops at once, attention per request on its own
cache), compiling it for the target and simulating it timing only; `SimulatedParts` prices it
by its parts (token-wise ops, each attention group, the LM head), each simulated on its own,
a few thousand times cheaper per step and within a measured error of the whole; `GpuCosts`
prices the same graph with the GPU baseline's per-kernel model, by parts (exact there). All
are `CostModel`s for `Memo`, which asks once per distinct shape. A mixture of experts is
routed by a routing policy (timing only).

`kv_capacity_tokens`: the device's off-chip memory less the weights, in tokens of KV cache at
the storage type (what the serving layer allocates in blocks, tessel/serve/kv.py).
"""
from __future__ import annotations

import dataclasses
import math
import re
from functools import partial

from compiler.frontend import Model
from compiler.frontend.gpt2 import GPT2Config
from compiler.ir import subgraph
from compiler.passes.routing import moe_ops, policy_routing, route_graph
from compiler.phase import Segment, Step, decode, groups
from compiler.targets.layers import layer_of
from sim.gpu import gpu_baseline
from arch.links import load_link
from sim.collectives import collective_cost
from tessel.gpu_kernels import graph_collectives, rank_work
from tessel.serve.placement import ONE_DEVICE, Placement
from tessel.serve.errors import ServeError
from tessel.serve.step import StepCost, StepShape
from tessel.targets import target

__all__ = ["SimulatedCosts", "SimulatedParts", "GpuCosts", "step_graph", "device_memory_bytes", "kv_capacity_tokens",
           "kv_bytes_per_token"]


def step_graph(model: Model, shape: StepShape, batched: bool = True, routing: str = "uniform",
               placement: Placement = ONE_DEVICE):
    """The graph one device runs for a serving step of `shape` (its entries' order: alike
    requests adjacent, so they attend as one batch where `batched`), a mixture of experts
    routed by `routing`. A context that bucketing rounded past the model's context stops at
    it."""
    return _routed(placement.graph(model, _step(model, shape, batched)), routing)


class SimulatedCosts:
    """A step's time and energy as the target's simulator gives them (timing only)."""

    def __init__(self, model: Model, target_name: str, arch, dtype=None,
                 routing: str = "uniform", placement: Placement = ONE_DEVICE) -> None:
        self.model, self.spec, self.arch, self.dtype = model, target(target_name), arch, dtype
        self.routing, self.placement = routing, placement

    def cost(self, shape: StepShape) -> StepCost:
        graph = step_graph(self.model, shape, not self.spec.one_sequence, self.routing,
                           self.placement)
        return StepCost(*self.placement.simulated(self.spec, self.arch, graph, self.dtype))


# A token-grid segment is interpolated when the price at its middle is within this share of
# the line through its ends (SimulatedParts._gridded).
LINEAR = 0.005


class SimulatedParts:
    """A step's time and energy as the sum of its parts, each simulated on its own (timing
    only): a few thousand simulations price a 1,000-request run whose steps nearly all differ.

    A step runs its T tokens through the token-wise ops, each attention group on its own
    requests' caches, and the LM head on its requests' last tokens, so its parts depend on T,
    on each group (batch, tokens, context) and on the number of requests alone. Each part is
    the step graph's ops of that part (compiler.ir.subgraph), simulated as a program:
    - token-wise: a one-layer and a two-layer model's, the layers' cost extrapolated linearly
      to the model's (a mixture of experts routes each layer its own way: all its layers);
    - a group: what it adds to a reference group's attention (one decode at one cached token)
      on one layer, times the layers. Alone, a part would also pay the start and drain that
      the whole step pays once; as a marginal it does not;
    - the LM head of n requests' last tokens: what it adds to their token-wise ops.
    The sum differs from the whole step's simulation because parts overlap in the whole step
    and not alone: `serve_on` measures that error on a sample of the run's steps and reports
    it (docs/serving.md has figures: within 0.4 % on systolic and PIM, 0.5-2.2 % on dataflow)."""

    def __init__(self, model: Model, target_name: str, arch, dtype=None,
                 routing: str = "uniform", placement: Placement = ONE_DEVICE,
                 token_grid: int | None = None) -> None:
        self.spec, self.arch, self.dtype = target(target_name), arch, dtype
        self.probes = _Probes(model, routing, batched=not target(target_name).one_sequence)
        self.placement, self.token_grid = placement, token_grid
        self.parts = 0                                  # parts simulated so far
        self._tokenwise: dict[int, tuple[float, float]] = {}
        self._heads: dict[int, tuple[float, float]] = {}
        self._groups: dict[tuple[int, int, int], tuple[float, float]] = {}
        self._references: dict[Segment, tuple[float, float]] = {}

    def cost(self, shape: StepShape) -> StepCost:
        step = _step(self.probes.model, shape, self.probes.batched)
        limit = self.probes.model.config.n_positions
        figures = [self._gridded(shape.tokens, self._tokenwise_part, limit),
                   self._head_part(shape.batch),
                   *(self._gridded(p.seq, partial(self._group_part, p.batch, kv=p.kv), limit - p.kv)
                     if p.seq > 1 else self._group_part(p.batch, p.seq, p.kv)
                     for p in groups(step))]
        return StepCost(*map(sum, zip(*figures)))

    def _gridded(self, tokens: int, price, most: int) -> tuple[float, float]:
        """`price(tokens)`, or with `token_grid` g, interpolated linearly between the prices
        at the multiples of g around `tokens` (exact below g, on a multiple, or where the
        next multiple passes `most`): a run's token counts then need only the multiples'
        parts (Vidur interpolates profiled operators the same way). Prices step where a
        token count passes a tile or a buffer (llama-3.1-8b's token-wise layer on sn40l: +27 %
        from 140 to 148 tokens), so a segment is interpolated only where the price at its
        middle lies on the line through its ends within LINEAR; else the half holding
        `tokens` is taken, down to exact prices."""
        g = self.token_grid
        low = tokens // g * g if g else 0
        if not g or low in (0, tokens) or low + g > most:
            return price(tokens)
        high = low + g
        while True:
            a, b = price(low), price(high)
            if high - low == 1:
                return price(tokens)
            middle = (low + high) // 2
            m = price(middle)
            line = a[0] + (b[0] - a[0]) * (middle - low) / (high - low)
            if abs(m[0] - line) <= LINEAR * m[0]:
                weight = (tokens - low) / (high - low)
                return tuple(x + weight * (y - x) for x, y in zip(a, b))
            if tokens == middle:
                return m
            low, high = (low, middle) if tokens < middle else (middle, high)

    def _tokenwise_part(self, tokens: int) -> tuple[float, float]:
        if tokens not in self._tokenwise:
            probe = self.probes.tokenwise_step(tokens)
            if self.probes.layers == 1:
                self._tokenwise[tokens] = self._simulated(self.probes.model, probe, _tokenwise)
            else:
                one = self._simulated(self.probes.with_layers(1), probe, _tokenwise)
                two = self._simulated(self.probes.with_layers(2), probe, _tokenwise)
                self._tokenwise[tokens] = tuple(a + (self.probes.layers - 1) * (b - a)
                                                for a, b in zip(one, two))
        return self._tokenwise[tokens]

    def _head_part(self, requests: int) -> tuple[float, float]:
        if requests not in self._heads:
            one, probe = self.probes.with_layers(1), self.probes.head_step(requests)
            alone = self._simulated(one, probe, _tokenwise)
            both = self._simulated(one, probe, lambda name: _tokenwise(name) or _head(name))
            self._heads[requests] = tuple(b - a for a, b in zip(alone, both))
        return self._heads[requests]

    def _group_part(self, batch: int, seq: int, kv: int) -> tuple[float, float]:
        key = (batch, seq, kv)
        if key not in self._groups:
            one = self.probes.with_layers(1)
            reference = Segment(1, 2) if key == (1, 1, 1) else Segment(1, 1)
            if reference not in self._references:
                self._references[reference] = self._simulated(
                    one, Step((reference,), self.probes.batched), _group)
            alone = self._references[reference]
            both = self._simulated(one, Step((reference, *(Segment(seq, kv),) * batch),
                                             self.probes.batched), _group)
            self._groups[key] = tuple(self.probes.all_layers * (b - a) for a, b in zip(alone, both))
        return self._groups[key]

    def _simulated(self, model: Model, step: Step, keep) -> tuple[float, float]:
        """Seconds and joules of the ops of `step`'s graph that `keep` (by name), simulated
        on their own."""
        graph = subgraph(_routed(self.placement.graph(model, step), self.probes.routing),
                         lambda op: keep(op.name))
        self.parts += 1
        return self.placement.simulated(self.spec, self.arch, graph, self.dtype)


class _Probes:
    """The small steps a step's parts are priced on, and the models they run on: a dense
    model's layers cost alike, so its parts run on one or two layers; a mixture of experts
    routes each layer its own way, so its token-wise part runs on all of them."""

    def __init__(self, model: Model, routing: str, batched: bool) -> None:
        self.model, self.routing, self.batched = model, routing, batched
        config = model.config
        self._field = "n_layer" if isinstance(config, GPT2Config) else "num_hidden_layers"
        self.all_layers = getattr(config, self._field)
        # how many layers the token-wise part's price counts per probe layer
        self.layers = 1 if getattr(config, "num_experts", 0) else self.all_layers

    def with_layers(self, layers: int) -> Model:
        config = self.model.config
        return dataclasses.replace(self.model,
                                   config=dataclasses.replace(config, **{self._field: layers}))

    def tokenwise_step(self, tokens: int) -> Step:
        """A step of `tokens` tokens in two groups (a prefill and a decode), whose token-wise
        ops are any such step's: the same joins of the groups' outputs (one token: a decode)."""
        if tokens == 1:
            return Step((Segment(1, 1),), self.batched)
        return Step((Segment(tokens - 1, 0), Segment(1, 1)), self.batched)

    def head_step(self, requests: int) -> Step:
        """A step of `requests` requests of one token each, in two groups where there are two."""
        return Step((Segment(1, 0), *(Segment(1, 1),) * (requests - 1)), self.batched)


class GpuCosts:
    """A step's time and energy on a GPU preset by the per-kernel baseline (sim/gpu.py).

    The baseline runs kernels one after another and sums their times, so a step's price is
    the sum of its token-wise kernels, which depend only on the step's tokens; of its LM
    head's, which depend only on its requests; and of each attention group's, which depend
    only on the group (batch, tokens, context). Each part is priced once (a small graph each)
    and, with `ragged` False, the sum equals pricing the whole step's graph (tests): a step
    of many requests needs no graph of its own.

    `ragged` (the default): serving engines run one attention kernel per role and layer for
    all of a step's requests (vLLM's paged attention for decodes, variable-length
    FlashAttention for prefill chunks), so each group's attention work is priced as above but
    the kernels are launched once, as the most-launched group's, not once per group."""

    def __init__(self, model: Model, gpu, mode: str = "graph", routing: str = "uniform",
                 ragged: bool = True, tp: int = 1, link=None) -> None:
        self.model, self.gpu, self.mode, self.routing = model, gpu, mode, routing
        self.ragged = ragged
        # `tp` GPUs of a node (on `link`, default the GPU's): every rank's kernels alike, and
        # each collective as NCCL runs it
        self.placement = Placement(tp, (link or load_link(gpu.link)) if tp > 1 else None)
        # a dense model's layers price alike: its parts are priced on one layer, the layer's
        # kernels counted once per layer (a mixture of experts routes each layer its own way)
        self.probes = _Probes(model, routing, batched=True)
        self._layers = self.probes.layers
        self._probe_model = model if self._layers == 1 else self.probes.with_layers(1)
        self._tokenwise: dict[int, tuple] = {}       # parts as `_priced` gives them
        self._heads: dict[int, tuple] = {}
        self._groups: dict[tuple[int, int, int], tuple] = {}

    def cost(self, shape: StepShape) -> StepCost:
        step = _step(self.model, shape, True)
        parts = groups(step)
        if len(parts) == 1:                 # one group: its own small graph, priced whole
            return StepCost(*_total(self._priced(step, lambda name: True)))
        attention = [self._group_part(p.batch, p.seq, p.kv) for p in parts]
        seconds, energy = map(sum, zip(_total(self._tokenwise_part(shape.tokens)),
                                       _total(self._head_part(shape.batch)),
                                       *(part[:2] for part in attention)))
        launches = (max(attention, key=lambda part: part[2]) if self.ragged else
                    tuple(map(sum, zip(*attention))))
        return StepCost(seconds + launches[2], energy + launches[3])

    def _tokenwise_part(self, tokens: int) -> tuple:
        """The kernels of a step of `tokens` tokens in two groups or more, outside attention
        and the LM head: those of a probe step of a prefill and a decode (two groups, the
        same joins of the groups' outputs)."""
        if tokens not in self._tokenwise:
            self._tokenwise[tokens] = self._priced(self.probes.tokenwise_step(tokens), _tokenwise)
        return self._tokenwise[tokens]

    def _head_part(self, requests: int) -> tuple:
        """The last tokens' join and the LM head of `requests` requests in two groups or
        more: those of a probe step of one token each."""
        if requests not in self._heads:
            self._heads[requests] = self._priced(self.probes.head_step(requests), _head)
        return self._heads[requests]

    def _group_part(self, batch: int, seq: int, kv: int) -> tuple:
        """One attention group's kernels: those of a step of that group alone."""
        key = (batch, seq, kv)
        if key not in self._groups:
            alone = Step((Segment(seq, kv),) * batch)
            self._groups[key] = self._priced(alone, _group)
        return self._groups[key]

    def _priced(self, step: Step, keep) -> tuple[float, float, float, float]:
        """(work seconds, work joules, launch seconds, launch joules) of the kept kernels of
        `step`'s graph, a kernel's launch being its fixed overhead and that time's share of
        its energy; the graph built with one layer where the layers price alike, that layer's
        kernels counted once per layer."""
        graph = _routed(self.placement.graph(self._probe_model, step), self.routing)
        kernels = rank_work(graph)[0]
        work_s = work_j = launch_s = launch_j = 0.0
        for kernel, timed in zip(kernels, gpu_baseline(kernels, self.gpu, self.mode).kernels):
            if keep(kernel.name):
                times = self._layers if layer_of((kernel.name,)) is not None else 1
                launch = timed.overhead_s / timed.time_s if timed.time_s else 0.0
                work_s += times * (timed.time_s - timed.overhead_s)
                work_j += times * timed.energy_j * (1 - launch)
                launch_s += times * timed.overhead_s
                launch_j += times * timed.energy_j * launch
        for name, kind, nbytes, ranks in graph_collectives(graph):
            if keep(name):          # NCCL in the stream after the kernels before it, GPUs idle
                times = self._layers if layer_of((name,)) is not None else 1
                cost = collective_cost(self.placement.link, kind, nbytes, ranks)
                work_s += times * cost.seconds
                work_j += times * (cost.energy_j + self.gpu.idle_w * cost.seconds)
        tp = self.placement.tp
        return work_s, tp * work_j, launch_s, tp * launch_j     # every rank's


def _total(priced: tuple[float, float, float, float]) -> tuple[float, float]:
    """Seconds and joules of a priced part, work and launches together."""
    return priced[0] + priced[2], priced[1] + priced[3]


# an attention group's ops carry its tag: `layers.3.self_attn.scores.seg2`, `h.0.attn.q.rows.seg1`;
# the LM head and the join of the requests' last tokens before it (`norm.last`, `ln_f.last`)
_GROUP = re.compile(r"\.seg\d+(\.|$)")
_HEAD = re.compile(r"^lm_head$|\.last$")


def _group(name: str) -> bool:
    return _GROUP.search(name) is not None


def _head(name: str) -> bool:
    return _HEAD.search(name) is not None and not _group(name)


def _tokenwise(name: str) -> bool:
    return not (_group(name) or _HEAD.search(name))


def _routed(graph, routing: str):
    """`graph` with its mixture-of-experts ops routed by the policy `routing` (timing only)."""
    return route_graph(graph, policy_routing(graph, routing)) if moe_ops(graph) else graph


def _step(model: Model, shape: StepShape, batched: bool) -> Step:
    """The serving step of `shape`, contexts past the model's context stopped at it."""
    limit = model.config.n_positions
    return Step(tuple(Segment(tokens, min(context, limit - tokens))
                      for _, tokens, context in shape.entries), batched)


def kv_bytes_per_token(model: Model, itemsize: int, placement: Placement = ONE_DEVICE) -> int:
    """Bytes of K and V one token adds over all layers on one device (under tensor
    parallelism, its KV heads'): the caches of a decode at one cached token, at `itemsize`
    bytes per value."""
    graph = placement.graph(model, decode(1))
    return sum(math.prod(op.type.shape) * itemsize for op in graph.inputs
               if op.name.endswith(("k_cache", "v_cache")))


def device_memory_bytes(arch) -> int:
    """Bytes a device holds off chip: a GPU preset's memory, else the arch's off-chip spaces."""
    if getattr(arch, "target", None) == "gpu":
        return int(arch.mem_gb * 1e9)
    return sum(s.size_bytes for s in arch.machine_view().spaces.values() if not s.on_chip)


def kv_capacity_tokens(model: Model, memory_bytes: int, itemsize: int,
                       placement: Placement = ONE_DEVICE) -> int:
    """Tokens of KV cache a device of `memory_bytes` holds after its weights (every parameter
    of its graph at `itemsize` bytes; under tensor parallelism, its rank's share), over
    `kv_bytes_per_token`. Refused when the weights alone do not fit."""
    graph = placement.graph(model, decode(1))
    weights = sum(math.prod(op.type.shape) for op in graph.params) * itemsize
    if weights >= memory_bytes:
        where = "the device's" if placement.tp == 1 else f"each of {placement.tp} devices'"
        raise ServeError(f"{model.name}: its weights ({weights:,} bytes a device) leave no room "
                         f"for a KV cache in {where} {memory_bytes:,} bytes")
    return (memory_bytes - weights) // kv_bytes_per_token(model, itemsize, placement)
