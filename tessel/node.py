"""A run request on several devices: the plan's device graphs compiled for the target, simulated
together on the node's link (sim/multi.py), reported per device and for the node, beside a GPU
node running the same plan.

Tensor, expert and pipeline parallelism (with micro-batches) run on every target
(docs/parallel.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

import isa
from arch.links import LinkArch
from compiler.parallel.handoff import HIDDEN, stage_program
from compiler.parallel.overlap import split_part
from compiler.parallel.partition import device_graphs
from compiler.parallel.plan import ParallelPlan, PlanError
from compiler.parallel.reference import decode_feeds, prefill_feeds
from compiler.ir import OpKind
from compiler.passes.routing import policy_routing, route_graph, routing_feeds
from compiler.targets.data import read_value
from isa.bulk import no_gc
from sim.multi import NodeResult, simulate_node
from sim.result import GpuComparison
from tessel.baselines import compare_gpus_on_plan
from tessel.budget import out_of_memory_is_an_error
from tessel.driver import compile_model_graph, model_feeds, router_routed
from tessel.progress import QUIET, Progress
from tessel.request import RunRequest
from tessel.table import render_table, si
from tessel.targets import target

__all__ = ["NodeRun", "run_node", "render_node"]


@dataclass(frozen=True)
class NodeRun:
    """A node's simulation and what the report adds to it."""

    plan: ParallelPlan
    link: LinkArch
    target: str
    arch_name: str
    node: NodeResult
    tokens: int                            # tokens the pass processes (prefill: the prompt)
    gpu: dict[str, GpuComparison]
    logits_rel_error: float | None = None
    microbatches: int = 1
    split: bool = False                    # --set overlap=split: two interleaved halves

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.node.time_s if self.node.cycles else 0.0

    def to_json(self) -> dict[str, Any]:
        n = self.node
        devices = []
        for d, r in enumerate(n.devices):
            row = r.to_json()
            row.update(link_busy_cycles=n.link_busy_cycles[d], link_bytes=n.link_bytes[d],
                       exposed_comm_cycles=n.exposed_cycles[d], idle_cycles=n.idle_cycles[d])
            devices.append(row)
        return {"plan": dataclasses.asdict(self.plan), "microbatches": self.microbatches,
                "overlap": "split" if self.split else "none",
                "link": dataclasses.asdict(self.link),
                "target": self.target, "arch_name": self.arch_name, "cycles": n.cycles,
                "clock_hz": n.clock_hz, "time_s": n.time_s, "energy_j": n.energy_j,
                "tokens": self.tokens, "tokens_per_s": self.tokens_per_s,
                "collectives": [dict(kind=c.kind, members=list(c.members), bytes=c.nbytes,
                                     cycles=c.cycles, algorithm=c.algorithm, count=c.count)
                                for c in n.collectives],
                "logits_rel_error": self.logits_rel_error,
                "gpu": {k: g.to_json() for k, g in self.gpu.items()}, "devices": devices}


def run_node(request: RunRequest, plan: ParallelPlan, link: LinkArch, *, microbatches: int = 1,
             split: bool = False, progress: Progress = QUIET) -> NodeRun:
    """Compile each device's graph (devices whose graphs are alike share one program when
    timing only; `split`: each in two interleaved halves of its batch,
    compiler/parallel/overlap.py), wrap pipeline stages in their hand-off for `microbatches`
    runs (compiler/parallel/handoff.py), simulate the node, and compare its logits (numerics)
    with one device's reference."""
    model, phase = request.model, request.phase
    if phase is None:
        raise PlanError(f"'{model.name}' is a .graph file: a parallel plan needs a model config")
    if phase.batch % microbatches:
        raise PlanError(f"--microbatches {microbatches}: does not divide --batch {phase.batch}")
    if microbatches > 1 and request.numerics:
        raise PlanError(f"--microbatches {microbatches}: numeric runs take one micro-batch "
                        "(its buffers are reused by the next); add --no-functional")
    step = dataclasses.replace(phase, batch=phase.batch // microbatches)
    parts = device_graphs(model.config, plan, step)
    if split:
        if plan.tp == 1:
            raise PlanError("--set overlap=split: needs --tp > 1 (it overlaps the all-reduces "
                            "of tensor-parallel ranks)")
        if target(request.target).one_sequence:
            raise PlanError(f"--set overlap=split: the {request.target} target runs one "
                            "sequence at a time, and the split halves a batch")
        parts = tuple(map(split_part, parts))
    with no_gc(), out_of_memory_is_an_error():
        graphs, feeds, reference = _device_inputs(request, plan, parts, step)
        lowered, programs = _compile(request, plan, parts, graphs, feeds, microbatches, progress)
        where = target(request.target)
        machines = [where.machine(request.arch) for _ in parts]
        executed = sum(map(isa.executed_count, {id(p): p for p in programs}.values()))
        with progress.phase(f"{request.target}: simulate {plan.devices} devices", executed,
                            "instr") as bar:
            node = simulate_node(programs, machines, link, functional=request.numerics,
                                 progress=bar)
    error = None
    if reference is not None:
        last = plan.device(plan.pp - 1, 0)
        logits = read_value(lambda s: node.memories[last].read_symbol(programs[last], s),
                            lowered[last].plan, graphs[last].outputs[0])[0]
        error = float(np.abs(logits - reference).max() / np.abs(reference).max())
    gpus = compare_gpus_on_plan(graphs, plan, microbatches, node.time_s,
                                node.energy_j, request.gpus, request.gpu_mode, request.gpu_attention)
    return NodeRun(plan, link, request.target, request.arch.name, node,
                   phase.batch * phase.seq, gpus, error, microbatches, split)


def _device_inputs(request: RunRequest, plan: ParallelPlan, parts, step):
    """Each device's graph as its target gets it (a mixture of experts routed as the whole
    model's router chose in the reference run, or by the routing policy when timing only),
    each device's feeds (numerics; a later stage's `hidden` is received, zeros until then)
    and one device's reference logits."""
    feeds = reference = None
    if request.numerics:
        feeds, reference, routing = _numeric_inputs(request, plan)
        feeds = [{**f, **({HIDDEN: np.zeros(part.graph[HIDDEN].type.shape)}
                          if part.shard.stage else {})} for f, part in zip(feeds, parts)]
    else:
        routing = (policy_routing(request.model.graph(step), request.routing)
                   if request.routing else None)
    graphs = [part.graph for part in parts]
    if routing is not None:
        feeds = None if feeds is None else [{**f, **routing_feeds(g, routing)}
                                            for f, g in zip(feeds, graphs)]
        graphs = [route_graph(g, routing) for g in graphs]
    return graphs, feeds, reference


def _compile(request: RunRequest, plan: ParallelPlan, parts, graphs, feeds, microbatches: int,
             progress: Progress):
    """Each device's Lowered and program (a stage's wrapped in its hand-off); timing only,
    devices whose graphs are alike share both."""
    model, lowered, programs = request.model, [], []
    keys = [_program_key(g) for g in graphs]
    with progress.phase(f"{request.target}: compile {plan.devices} devices", plan.devices,
                        "device") as bar:
        for d, (part, graph) in enumerate(zip(parts, graphs)):
            same = next((k for k in range(d) if feeds is None and keys[k] == keys[d]), None)
            if same is not None:
                lowered.append(lowered[same])
                programs.append(programs[same])
            else:
                low = compile_model_graph(model, graph, request.target, request.arch,
                                          request.dtype, None if feeds is None else feeds[d],
                                          None if feeds is None else part.weights(model.weights))
                stage = part.shard.stage
                lowered.append(low)
                programs.append(stage_program(low, graph, plan.tp, first=stage == 0,
                                              last=stage == plan.pp - 1,
                                              microbatches=microbatches))
            if bar is not None:
                bar(f"device {d}", d + 1)
    return lowered, programs


def _program_key(graph) -> tuple:
    """What a device's program depends on, timing only: its graph, but for which rank of an
    all-reduce it is (the lowering emits the same `coll` for every rank)."""
    return tuple(dataclasses.replace(op, attrs=tuple(a for a in op.attrs if a[0] != "rank"))
                 if op.kind is OpKind.ALLREDUCE else op for op in graph.ops)


def _numeric_inputs(request: RunRequest, plan: ParallelPlan):
    """Each device's feeds, one device's reference logits for the same tokens, and the
    router's choices in that reference run (mixture-of-experts models; else None)."""
    model, phase = request.model, request.phase
    tokens = list(request.tokens)
    if phase.kind == "prefill":
        feeds = prefill_feeds(plan, np.asarray(tokens))
    else:
        feeds = decode_feeds(model, plan, tokens)
    reference, _, _, routing = router_routed(model.graph(phase), model.weights,
                                             model_feeds(model, phase, tokens))
    return feeds, reference, routing


def render_node(run: NodeRun, title: str) -> str:
    """The node's figures, then one row per device, then the GPU node."""
    n, plan = run.node, run.plan
    summary = [
        ("devices", f"{plan.devices}", f"tp {plan.tp} x pp {plan.pp}"
                                       f"{f', ep {plan.ep} ({plan.dispatch})' if plan.ep > 1 else ''}, "
                                       f"{run.microbatches} "
                                       f"micro-batch(es){', two overlapped halves' if run.split else ''}, "
                                       f"link {run.link.name} ({run.link.topology})"),
        ("time", f"{n.time_s * 1e3:.4g} ms", f"{n.cycles:,} cycles at {n.clock_hz / 1e6:g} MHz"),
        ("tokens/s", f"{run.tokens_per_s:,.1f}", f"{run.tokens} tokens in the pass"),
        ("energy", si(n.energy_j, "J"), f"all devices; links {si(sum(r.energy_breakdown_j['link'] for r in n.devices), 'J')}"),
        ("communication", f"{n.link_share:.1%}",
         f"{max(n.link_busy_cycles):,} link-busy cycles on the busiest device"),
        ("exposed", f"{n.exposed_share:.1%}",
         f"{max(n.exposed_cycles):,} cycles with the link busy and nothing else"),
        ("idle", f"{n.idle_share:.1%}",
         "device-cycles with no queue busy: the pipeline bubble and waits for other devices"),
        ("collectives", f"{sum(c.count for c in n.collectives):,}", ", ".join(sorted({f'{c.kind} ({c.algorithm})' for c in n.collectives}))),
    ]
    if run.logits_rel_error is not None:
        summary.append(("logits vs reference", f"{run.logits_rel_error:.2e}",
                        "max |sim - ref| / max |ref|, one device's reference"))
    lines = [title, f"architecture: {run.arch_name} x {plan.devices} ({run.target})", "",
             render_table(("metric", "value", "detail"), summary), ""]
    rows = [(str(d), si(r.energy_j, "J"), f"{r.mac_utilization:.1%}", f"{n.idle_cycles[d]:,}",
             f"{n.link_busy_cycles[d]:,}", f"{n.exposed_cycles[d]:,}", f"{n.link_bytes[d]:,}")
            for d, r in enumerate(n.devices)]
    lines.append(render_table(("device", "energy", "MAC util.", "idle", "link busy", "exposed",
                               "bytes sent"), rows))
    if run.gpu:
        lines += ["", f"GPU nodes ({plan.devices} GPUs, the same plan in fp16; ratios are GPU / "
                      f"{run.arch_name} x {plan.devices})"]
        lines.append(render_table(("gpu", "time", "energy", "power/GPU", "speedup", "energy eff."),
                                  [(k, f"{g.time_s * 1e3:.4g} ms", si(g.energy_j, "J"),
                                    f"{g.avg_power_w:.0f} W", f"{g.speedup:.3g}x",
                                    f"{g.energy_efficiency:.3g}x") for k, g in run.gpu.items()]))
    return "\n".join(lines)
