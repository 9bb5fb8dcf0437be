"""One serving run on one target, from settings rather than a command line: what `tessel
serve` (command.py) runs per column and what a sweep point with a `[serve]` table runs.

`ServeSettings` holds everything but the model, the requests and the target: the scheduler,
the KV cache, preemption, bucketing and the SLOs. `serve_on` builds the target's step costs
(the simulator's, or the GPU baseline's for a GPU preset), sizes the KV cache from the
device's memory after the weights unless `kv_blocks` is given, serves the requests and
summarises them; with `kv_bucket`, it also simulates a sample of the steps at their exact
lengths and reports the bucketing's error on them.
"""
from __future__ import annotations

from dataclasses import dataclass

from arch.links import load_link
from isa import DType
from tessel.progress import Progress
from tessel.serve.args import SWAP_LINK
from tessel.serve.engine import ServeResult, serve
from tessel.serve.kv import DEFAULT_BLOCK_SIZE, KVConfig
from tessel.serve.metrics import summarize
from tessel.serve.preemption import Recompute, Swap
from tessel.serve.scheduler import Scheduler
from tessel.serve.simulated import (GpuCosts, SimulatedCosts, device_memory_bytes,
                                    kv_bytes_per_token, kv_capacity_tokens)
from tessel.serve.step import Memo, StepShape

__all__ = ["ServeSettings", "serve_on", "SAMPLE_STEPS"]

SAMPLE_STEPS = 8            # steps simulated at their exact lengths to measure --kv-bucket's error


@dataclass(frozen=True, slots=True)
class ServeSettings:
    scheduler: Scheduler
    routing: str = "uniform"              # a mixture of experts' routing policy (timing only)
    preemption: str = "recompute"         # recompute | swap
    swap_link: str | None = None          # swap: a link preset (default SWAP_LINK)
    block_size: int = DEFAULT_BLOCK_SIZE  # tokens per KV block
    kv_blocks: int | None = None          # None: the device's memory after the weights
    kv_bucket: int | None = None          # None: exact cache lengths
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None


def serve_on(model, requests, settings: ServeSettings, target_name: str, arch,
             progress: Progress | None = None) -> tuple[dict, ServeResult]:
    """One target's run: its step costs, its KV cache, the summary (with the bucketing's
    measured error) and the result."""
    if target_name == "gpu":
        costs, itemsize = GpuCosts(model, arch, routing=settings.routing), 2
    else:
        costs = SimulatedCosts(model, target_name, arch, routing=settings.routing)
        itemsize = DType(arch.dtype).itemsize
    blocks = settings.kv_blocks
    if blocks is None:
        blocks = kv_capacity_tokens(model, device_memory_bytes(arch), itemsize) // settings.block_size
    kv = KVConfig(blocks, settings.block_size)
    preemption = (Recompute() if settings.preemption == "recompute" else
                  Swap(kv_bytes_per_token(model, itemsize),
                       _host_bandwidth(settings.swap_link or SWAP_LINK)))
    memo, sample = Memo(costs), []

    def keep(step, record) -> None:         # a sample of exact shapes for the bucketing error
        if settings.kv_bucket is not None and len(sample) < SAMPLE_STEPS * 4:
            sample.append(StepShape.of(step))
    result = serve(requests, memo, scheduler=settings.scheduler, kv=kv, preemption=preemption,
                   kv_bucket=settings.kv_bucket, progress=progress or Progress(), on_step=keep,
                   context_tokens=model.config.n_positions)
    summary = summarize(result, slo_ttft_s=settings.slo_ttft_s, slo_tpot_s=settings.slo_tpot_s)
    summary["target"] = {"target": target_name, "arch": arch.name, "model": model.name}
    if settings.kv_bucket is not None:
        summary["kv_bucket_error"] = _bucket_error(costs, memo, sample[::4], settings.kv_bucket)
    return summary, result


def _host_bandwidth(preset: str) -> float:
    link = load_link(preset)
    return link.links_per_device * link.link_bw_gbps * 1e9 * link.efficiency


def _bucket_error(costs, memo: Memo, exact: list[StepShape], bucket: int) -> dict:
    """Each sampled step's cost at its exact lengths against the bucketed cost the run used:
    relative error of the seconds, mean and worst."""
    errors = []
    for shape in exact:
        truth = costs.cost(shape).seconds
        errors.append(abs(memo.cost(shape.bucketed(bucket)).seconds - truth) / truth)
    return {"kv_bucket": bucket, "steps_sampled": len(errors),
            "mean_rel_error": sum(errors) / len(errors) if errors else None,
            "max_rel_error": max(errors) if errors else None}
