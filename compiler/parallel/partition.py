"""A plan's device graphs: each built by the model's own frontend for the device's Shard.

The frontends build the split directly (column- and row-parallel linears, the stage's layers)
rather than a pass cutting a finished graph apart by op names, so a new family gets tensor
and pipeline parallelism by building through PartBuilder.
"""
from __future__ import annotations

from compiler.frontend import decoder, gpt2
from compiler.frontend.decoder import DecoderConfig
from compiler.frontend.gpt2 import GPT2Config
from compiler.parallel.plan import ParallelPlan
from compiler.parallel.shard import ShardGraph
from compiler.phase import Phase

__all__ = ["device_graph", "device_graphs"]


def device_graph(config: GPT2Config | DecoderConfig, plan: ParallelPlan, phase: Phase,
                 device: int) -> ShardGraph:
    """Device `device`'s graph of one pass under `plan` (made by compiler.parallel.make_plan,
    which checked it against `config`); its weights: `.weights(model.weights)`."""
    build = decoder.build_part if isinstance(config, DecoderConfig) else gpt2.build_part
    return build(config, phase, plan.shard(device))


def device_graphs(config: GPT2Config | DecoderConfig, plan: ParallelPlan,
                  phase: Phase) -> tuple[ShardGraph, ...]:
    """Every device's graph, by device number (stage x tp + rank)."""
    return tuple(device_graph(config, plan, phase, d) for d in range(plan.devices))
