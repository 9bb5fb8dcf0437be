"""Step costs from the simulator, and the KV-cache capacity a target leaves after the weights.

`SimulatedCosts` prices a step shape by building the serving step's graph (compiler.phase.Step:
every request's tokens through the token-wise ops at once, attention per request on its own
cache), compiling it for the target and simulating it timing only; `GpuCosts` prices the same
graph with the GPU baseline's per-kernel model. Both are `CostModel`s for `Memo`, which asks
once per distinct shape. A mixture of experts is routed by a routing policy (timing only).

`kv_capacity_tokens`: the device's off-chip memory less the weights, in tokens of KV cache at
the storage type (what the serving layer allocates in blocks, tessel/serve/kv.py).
"""
from __future__ import annotations

import math

from compiler.frontend import Model
from compiler.passes.routing import moe_ops, policy_routing, route_graph
from compiler.phase import Segment, Step, decode
from sim.gpu import gpu_baseline
from tessel.gpu_kernels import graph_kernels
from tessel.serve.errors import ServeError
from tessel.serve.step import StepCost, StepShape
from tessel.targets import target

__all__ = ["SimulatedCosts", "GpuCosts", "step_graph", "device_memory_bytes", "kv_capacity_tokens",
           "kv_bytes_per_token"]


def step_graph(model: Model, shape: StepShape, batched: bool = True, routing: str = "uniform"):
    """The graph of one serving step of `shape` (its entries' order: alike requests adjacent,
    so they attend as one batch where `batched`), a mixture of experts routed by `routing`. A
    context that bucketing rounded past the model's context stops at it."""
    limit = model.config.n_positions
    step = Step(tuple(Segment(tokens, min(context, limit - tokens))
                      for _, tokens, context in shape.entries), batched)
    graph = model.graph(step)
    if moe_ops(graph):
        graph = route_graph(graph, policy_routing(graph, routing))
    return graph


class SimulatedCosts:
    """A step's time and energy as the target's simulator gives them (timing only)."""

    def __init__(self, model: Model, target_name: str, arch, dtype=None,
                 routing: str = "uniform") -> None:
        self.model, self.spec, self.arch, self.dtype = model, target(target_name), arch, dtype
        self.routing = routing

    def cost(self, shape: StepShape) -> StepCost:
        graph = step_graph(self.model, shape, not self.spec.one_sequence, self.routing)
        program = self.spec.compile(graph, self.arch, self.dtype).program
        result = self.spec.simulate(program, self.arch, functional=False).result
        return StepCost(result.time_s, result.energy_j)


class GpuCosts:
    """A step's time and energy on a GPU preset by the per-kernel baseline (sim/gpu.py)."""

    def __init__(self, model: Model, gpu, mode: str = "graph", routing: str = "uniform") -> None:
        self.model, self.gpu, self.mode, self.routing = model, gpu, mode, routing

    def cost(self, shape: StepShape) -> StepCost:
        base = gpu_baseline(graph_kernels(step_graph(self.model, shape, True, self.routing)),
                            self.gpu, self.mode)
        return StepCost(base.time_s, base.energy_j)


def kv_bytes_per_token(model: Model, itemsize: int) -> int:
    """Bytes of K and V one token adds over all layers: the caches of a decode at one cached
    token, at `itemsize` bytes per value."""
    graph = model.graph(decode(1))
    return sum(math.prod(op.type.shape) * itemsize for op in graph.inputs
               if op.name.endswith(("k_cache", "v_cache")))


def device_memory_bytes(arch) -> int:
    """Bytes a device holds off chip: a GPU preset's memory, else the arch's off-chip spaces."""
    if getattr(arch, "target", None) == "gpu":
        return int(arch.mem_gb * 1e9)
    return sum(s.size_bytes for s in arch.machine_view().spaces.values() if not s.on_chip)


def kv_capacity_tokens(model: Model, memory_bytes: int, itemsize: int) -> int:
    """Tokens of KV cache a device of `memory_bytes` holds after the model's weights (every
    parameter at `itemsize` bytes), over `kv_bytes_per_token`. Refused when the weights alone
    do not fit."""
    weights = sum(math.prod(op.type.shape) for op in model.graph(decode(1)).params) * itemsize
    if weights >= memory_bytes:
        raise ServeError(f"{model.name}: its weights ({weights:,} bytes) leave no room for a KV "
                         f"cache in the device's {memory_bytes:,} bytes")
    return (memory_bytes - weights) // kv_bytes_per_token(model, itemsize)
