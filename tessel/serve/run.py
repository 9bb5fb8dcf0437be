"""One serving run on one target, from settings rather than a command line: what `tessel
serve` (command.py) runs per column and what a sweep point with a `[serve]` table runs.

`ServeSettings` holds everything but the model, the requests and the target: the scheduler,
the KV cache, preemption, bucketing and the SLOs. `serve_on` builds the target's step costs
(the simulator's, or the GPU baseline's for a GPU preset), sizes the KV cache from the
device's memory after the weights unless `kv_blocks` is given, serves the requests and
summarises them. A simulated target prices steps by their parts by default (`step_cost`
"parts", tessel/serve/simulated.py) or whole ("whole": each distinct step simulated as one
program, exact and a few thousand times slower); where the price is not the whole step's
simulation at exact lengths (parts, or `kv_bucket`), the run simulates `check_steps` of its
steps, evenly spaced, whole and exactly, and reports the relative error of what it used.
"""
from __future__ import annotations

from dataclasses import dataclass

from arch.links import load_link
from isa import DType
from tessel.progress import Progress
from tessel.serve.args import CHECK_STEPS, SWAP_LINK
from tessel.serve.engine import ServeResult, serve
from tessel.serve.kv import DEFAULT_BLOCK_SIZE, KVConfig
from tessel.serve.metrics import summarize
from tessel.serve.preemption import Recompute, Swap
from tessel.serve.scheduler import Scheduler
from tessel.serve.placement import Placement
from tessel.serve.simulated import (GpuCosts, SimulatedCosts, SimulatedParts, device_memory_bytes,
                                    kv_bytes_per_token, kv_capacity_tokens)
from tessel.serve.step import Memo, StepShape
from tessel.targets import TARGETS

__all__ = ["ServeSettings", "serve_on"]


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
    step_cost: str = "parts"              # simulated targets: parts | whole
    token_grid: int | None = None         # parts: token counts interpolated between multiples
    tp: int = 1                           # tensor-parallel ranks a step runs on
    link: str | None = None               # how they are joined (default: the target's or GPU's)
    check_steps: int = CHECK_STEPS        # steps checked against whole exact simulation


def serve_on(model, requests, settings: ServeSettings, target_name: str, arch,
             progress: Progress | None = None) -> tuple[dict, ServeResult]:
    """One target's run: its step costs, its KV cache, the summary (with the measured error
    of its step prices where they are not exact) and the result."""
    placement = _placement(settings, target_name, arch)
    if target_name == "gpu":
        costs = GpuCosts(model, arch, routing=settings.routing, tp=settings.tp,
                         link=placement.link)
        exact, itemsize = costs, 2          # its parts are the whole graph's kernels (tests)
    else:
        exact = SimulatedCosts(model, target_name, arch, routing=settings.routing,
                               placement=placement)
        costs = (SimulatedParts(model, target_name, arch, routing=settings.routing,
                                placement=placement, token_grid=settings.token_grid)
                 if settings.step_cost == "parts" else exact)
        itemsize = DType(arch.dtype).itemsize
    blocks = settings.kv_blocks
    if blocks is None:              # every rank holds its KV heads' share of every token
        blocks = kv_capacity_tokens(model, device_memory_bytes(arch), itemsize,
                                    placement) // settings.block_size
    kv = KVConfig(blocks, settings.block_size)
    preemption = (Recompute() if settings.preemption == "recompute" else     # each rank its own
                  Swap(kv_bytes_per_token(model, itemsize, placement),      # host link
                       _host_bandwidth(settings.swap_link or SWAP_LINK)))
    memo, shapes = Memo(costs), []
    result = serve(requests, memo, scheduler=settings.scheduler, kv=kv, preemption=preemption,
                   kv_bucket=settings.kv_bucket, progress=progress or Progress(),
                   on_step=lambda step, record: shapes.append(StepShape.of(step)),
                   context_tokens=model.config.n_positions)
    summary = summarize(result, slo_ttft_s=settings.slo_ttft_s, slo_tpot_s=settings.slo_tpot_s)
    summary["target"] = {"target": target_name, "arch": arch.name, "model": model.name,
                         "tp": settings.tp, "link": placement.link and placement.link.name}
    method = "whole" if costs is exact else "parts"
    summary["step_cost"] = {"method": method, "kv_bucket": settings.kv_bucket,
                            "token_grid": settings.token_grid if method == "parts" else None,
                            "parts_simulated": getattr(costs, "parts", None)}
    if costs is not exact or settings.kv_bucket is not None:
        summary["step_cost"] |= _checked(exact, memo, shapes, settings)
    return summary, result


def _placement(settings: ServeSettings, target_name: str, arch) -> Placement:
    """One device, or `tp` ranks joined by the named link (default: the GPU's, or the
    target's)."""
    if settings.tp == 1:
        return Placement()
    default = arch.link if target_name == "gpu" else TARGETS[target_name].default_link
    return Placement(settings.tp, load_link(settings.link or default))


def _host_bandwidth(preset: str) -> float:
    link = load_link(preset)
    return link.links_per_device * link.link_bw_gbps * 1e9 * link.efficiency


def _checked(exact, memo: Memo, shapes: list[StepShape], settings: ServeSettings) -> dict:
    """The relative error of the step costs the run used (parts, bucketed lengths) against
    each step simulated whole at its exact lengths, on `check_steps` steps evenly spaced over
    the run: mean and worst, of the seconds and of the joules."""
    count = min(settings.check_steps, len(shapes))
    picked = [shapes[(2 * i + 1) * len(shapes) // (2 * count)] for i in range(count)]
    seconds, joules, checked = [], [], []
    for shape in picked:
        truth, used = exact.cost(shape), memo.cost(shape.bucketed(settings.kv_bucket))
        seconds.append(abs(used.seconds - truth.seconds) / truth.seconds)
        if truth.energy_j:
            joules.append(abs(used.energy_j - truth.energy_j) / truth.energy_j)
        checked.append({"requests": shape.batch, "tokens": shape.tokens,
                        "prefill_tokens": shape.prefill_tokens, "seconds_used": used.seconds,
                        "seconds_exact": truth.seconds})
    return {"steps_checked": count, "checked": checked,
            "mean_rel_error": sum(seconds) / count if count else None,
            "max_rel_error": max(seconds) if count else None,
            "max_rel_error_energy": max(joules) if joules else None}
