"""End to end: a run request -> graph -> program for a target -> simulation -> result.

Numeric runs feed the same tokens to the compiled program and to the reference executor
(decode: a KV cache from a reference prefill of the earlier tokens) and report how far the
simulated logits are from the reference. What to run is settled by `tessel.request` first.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import networkx as nx
import numpy as np

import isa
from isa.bulk import no_gc
from arch import TargetArch
from compiler.driver import check_tokens, kv_feeds, token_feeds
from compiler.frontend import DecoderConfig, Model
from compiler.ir import Graph, GraphError
from compiler.phase import Phase, prefill
from compiler.passes.routing import (Routing, moe_routers, policy_routing, route_graph, routing_feeds,
                                     routing_summary)
from compiler.reference import execute
from compiler.targets import Lowered
from compiler.targets.data import read_value
from sim.result import SimResult
from tessel.attention import attention_report
from tessel.baselines import compare_gpus
from tessel.budget import compile_guard, numeric_reserve_bytes, out_of_memory_is_an_error
from tessel.program_arch import program_arch
from tessel.progress import QUIET, Progress
from tessel.request import RunRequest, default_tokens
from tessel.targets import target

__all__ = ["compile_model_graph", "run", "Run", "model_feeds", "simulate_file", "router_routed",
           "policy_routed", "workload_facts", "folded"]


def _feeds(model: Model, weights: Mapping[str, np.ndarray], phase: Phase,
           tokens: Sequence[int], recipe=None, kv_order=None) -> dict[str, np.ndarray]:
    """The graph inputs of one pass over `tokens` (decode: a reference-filled KV cache, as a
    recipe that quantises the cache stored it, in the channel order `kv_order` folded into
    `weights`)."""
    ids = check_tokens(model, tokens)
    if phase.kind == "prefill":
        return token_feeds(ids)
    first = recipe_graph(model, prefill(len(ids) - 1), recipe, kv_order=kv_order)[0]
    cache = kv_feeds(first, execute(_caches_only(first), weights, token_feeds(ids[:-1])),
                     model.graph(phase))
    return {**cache, **token_feeds(ids[-1:])}


def _caches_only(first: Graph) -> Graph:
    """The prefill graph cut down to what its K/V outputs need (no final layer norm and no
    LM head: a vocab x width float64 copy of the embedding the decode inputs do not use)."""
    caches = first.outputs[1:]
    needed = set(caches).union(*(nx.ancestors(first.nx, name) for name in caches))
    return Graph(first.name, [op for op in first.ops if op.name in needed], caches)


def model_feeds(model: Model, phase: Phase, tokens: Sequence[int] | None,
                weights: Mapping[str, np.ndarray] | None = None, recipe=None,
                kv_order=None) -> dict[str, np.ndarray]:
    """Inputs of one pass: the given tokens or seeded ones, with a KV cache the reference
    fills with `weights` (default: the model's; a quantised model's for its programs) under
    `recipe` (its KV format, in the channel order `kv_order` folded into the weights)."""
    if model.config is None:
        raise GraphError(f"'{model.name}' is a .graph file: it has no token inputs")
    if phase.batch != 1:
        raise GraphError("numeric runs take one sequence (--batch 1)")
    return _feeds(model, model.weights if weights is None else weights, phase,
                  tokens or default_tokens(model, phase), recipe, kv_order)


def simulate_file(path, arch_spec: str | None, overrides: Sequence[str],
                  numerics: bool | None = None, *, override_arch: bool = False,
                  progress: Progress = QUIET) -> SimResult:
    """Simulate a program file on the architecture it records (tessel/program_arch.py: the
    given one must be the same unless `override_arch`); numerics when asked, or by default
    when the program carries its data. A bar for the simulation when `progress` shows one."""
    program = isa.load(path)
    where = target(program.target)
    arch, provenance = program_arch(program, path, where, arch_spec, overrides, override_arch)
    functional = program.data is not None if numerics is None else numerics
    try:
        with progress.phase(f"{where.name}: simulate", isa.executed_count(program), "instr") as bar:
            return where.simulate(program, arch, functional=functional,
                                  assumptions=(f"program file {path}", provenance), progress=bar).result
    except isa.VerifyError as e:                   # name the file the bad program came from
        raise isa.VerifyError(f"{path}: {e}", e.index) from None


def compile_model_graph(model: Model, graph: Graph, name: str, arch: TargetArch,
                        dtype: isa.DType | None = None, feeds: dict | None = None,
                        weights: Mapping[str, np.ndarray] | None = None, *,
                        progress: Callable[[str, int], None] | None = None,
                        quant=None) -> Lowered:
    """Lower one of the model's graphs for target `name`; with feeds, the program carries
    weights (default: the model's) and inputs. progress(step, steps done) before each step.
    quant: a recipe's plan for `graph` (compiler/quant/plan.py): its weights stored
    quantised, whose codes `weights` must then hold (compiler.quant.weights)."""
    lowered = target(name).compile(graph, arch, dtype, progress=progress, quant=quant)
    if feeds is not None:
        data = lowered.initial_data(graph, model.weights if weights is None else weights, feeds)
        lowered = replace(lowered, program=replace(lowered.program, data=data))
    return lowered


@dataclass(frozen=True)
class Run:
    result: SimResult
    logits: np.ndarray | None          # simulated logits [positions, vocab] (numeric runs)
    reference: np.ndarray | None       # reference executor's logits for the same inputs


def run(request: RunRequest, *, progress: Progress = QUIET) -> Run:
    """Compile and simulate the request, with the cyclic garbage collector paused: the
    program's ~10^5-10^6 live instruction objects would make every full collection rescan
    them all (3x slower end to end on gpt2-xl). A bar per phase (compile steps, simulated
    instructions) when `progress` shows them (tessel/progress.py)."""
    with no_gc(), out_of_memory_is_an_error():
        return _run(request, progress)


def router_routed(graph: Graph, weights: Mapping[str, np.ndarray], feeds: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, Graph, dict[str, np.ndarray], Routing | None]:
    """A numeric pass's reference logits, and the graph and feeds a target runs: a
    mixture-of-experts graph routed by the router's own top-k in the float64 reference run
    (its index inputs added to the feeds); a dense graph as it is."""
    choices: dict[str, np.ndarray] = {}
    reference = execute(graph, weights, feeds, routing=choices)[graph.outputs[0]][0]
    if not choices:
        return reference, graph, feeds, None
    routing = Routing(choices, "router (its top-k in the float64 reference run)")
    return reference, route_graph(graph, routing), {**feeds, **routing_feeds(graph, routing)}, routing


def ranking_routing(model: Model, phase: Phase | None, expert_bits: str | None,
                    policy: str | None) -> Routing | None:
    """What a timing-only run's `hot` expert-bits policy ranks the experts by: the routing
    policy's decision for the whole sequences, a prefill of their kv + seq tokens each (a
    prefill's: the step's own decision, which `policy_routed` makes of the same moe ops). So a decode
    step reads wide the experts its context went to most, as a numeric run ranks by its
    tokens, not whichever its one token chose (those would always be the wide ones). A
    routing file gives one step's decision only: a decode step's cannot rank. None where no
    policy routes (a numeric run's router ranks by its calibration tokens) or no widths are
    asked for."""
    if expert_bits is None or policy is None or policy == "router":
        return None
    if phase.kind != "prefill" and policy.startswith("file:"):
        from compiler.quant import RecipeError
        raise RecipeError(f"--expert-bits {expert_bits}: a timing-only {phase.kind} ranks the "
                          f"experts by the routing of its whole sequence, which --routing "
                          f"{policy} (one step's decision) does not give: give B or b0,b1,...")
    return policy_routing(model.graph(prefill(phase.total_len, phase.batch)), policy)


def policy_routed(graph: Graph, policy: str | None) -> tuple[Graph, Routing | None]:
    """A timing-only graph with its moe ops expanded by `policy` (tessel.request settles it:
    None for dense models)."""
    if policy is None:
        return graph, None
    routing = policy_routing(graph, policy)
    return route_graph(graph, routing), routing


def _with_data(req: RunRequest, graph: Graph, plan, bar: Callable[[str, int], None] | None
               ) -> tuple[Lowered, np.ndarray, Graph, Routing | None]:
    """A numeric run's program (with its data) and the reference logits, made from a copy of
    the weights that is dropped on return: the simulated memory never sits beside it. Under a
    recipe, `graph` rounds what the recipe rounds (`recipe_graph`), and so does its reference;
    a KV channel order the recipe calibrates is folded into both (`folded`)."""
    if bar is not None:
        bar("reference", 0)
    weights, order = req.model.load_weights(), None
    if req.quant is not None:           # codes and scales, read back as the reference's weights
        from compiler.quant import quantise
        q = quantise(req.model, req.quant, weights, calibration=req.tokens,
                     expert_bits=req.expert_bits)
        graph, weights = folded(q, graph, plan)
        order = q.kv_order
    feeds = _feeds(req.model, weights, req.phase, req.tokens, req.quant, order)
    reference, graph, feeds, routing = router_routed(graph, weights, feeds)
    return (compile_model_graph(req.model, graph, req.target, req.arch, req.dtype, feeds, weights,
                                progress=bar, quant=plan),
            reference, graph, routing)


def quantised_facts(lowered: Lowered, recipe: str, layouts: tuple[str, ...] = ("weight", "planes")) -> dict:
    """The weights (layouts "weight" and "planes") or KV caches ("rows") a program stores
    quantised: how many, their bytes as the program holds them (codes and scales) and at the
    program's operand type; for bit-nested weights also the bytes a step reads of them (the
    planes its experts are read at, and the scales)."""
    formats = [f for f in lowered.quantised.values() if f.layout in layouts]
    facts = {"recipe": recipe, "count": len(formats), "stored_bytes": lowered.quantised_bytes(layouts),
             "full_bytes": sum(math.prod(f.shape) for f in formats) * lowered.dtype.itemsize}
    nested = [f for f in formats if f.layout == "planes"]
    if nested:
        facts["nested_read_bytes"] = sum(
            math.prod(f.code_shape) * (f.read_bits or f.bits) // f.bits
            + f.code.scale_bytes * math.prod(f.scale_shape) for f in nested)
        facts["nested_stored_bytes"] = lowered.quantised_bytes(("planes",))
    return facts


def folded(q, graph: Graph, plan) -> tuple[Graph, Mapping[str, np.ndarray]]:
    """A quantised model `q`'s graph (under `plan`) and weights with the KV channel order it
    calibrated folded into both (compiler/passes/kv_fold.py): what programs and their
    reference run. Without an order, `graph` and `q.weights` as they are."""
    from compiler.passes.kv_fold import kv_fold
    fold = kv_fold(graph, plan, q.kv_order)
    return fold.graph, q.folded(fold)


def recipe_graph(model: Model, phase: Phase | None, recipe, expert_bits: str | None = None,
                 weights: Mapping[str, np.ndarray] | None = None,
                 calibration: Sequence[int] | None = None,
                 routing: Routing | None = None, kv_order=None) -> tuple[Graph, object]:
    """The model's graph of the phase under a recipe, and the recipe's plan (None: none, the
    graph as it is). The plan is made before any routing: there a mixture of experts is one op
    whose router the plan keeps at full precision, as the reference's quantised mode does; the
    routed graph a target compiles holds the same parameters. The graph has a quantize op in
    front of each value the recipe rounds (compiler/passes/quantised_values.py), so programs
    and the reference compute the recipe's numerics from it. `expert_bits`: the widths its
    bit-nested expert weights are read at (compiler/quant/nested.py; a `hot` policy ranks the
    experts by a timing-only run's `routing`, or else routes the `calibration` tokens with
    `weights`). `kv_order`: a rearranged KV cache's channel order (compiler.quant's
    `kv_order`), folded into the graph (compiler/passes/kv_fold.py; its weights: `folded`).
    Without one (timing only: no calibration), the graph is checked and left in place: the
    folded program differs only in its weights' and rope tables' values, which a program
    without data does not hold."""
    graph = model.graph(phase)
    if recipe is None:
        return graph, None
    from compiler.passes.kv_fold import kv_fold
    from compiler.passes.quantised_values import quantised_graph
    from compiler.quant import plan
    quant = plan(graph, recipe, model.config.n_layer)
    if expert_bits is not None:
        from compiler.quant.model import expert_widths, routed_counts
        whole = plan(model.graph(prefill(1)), recipe, model.config.n_layer)
        quant = replace(quant, widths=expert_widths(
            model, weights, recipe, whole, expert_bits, calibration,
            None if routing is None else routed_counts(routing)))
    return kv_fold(quantised_graph(graph, quant), quant, kv_order or {}).graph, quant


def workload_facts(model: Model, graph: Graph, routing: Routing | None, itemsize: int) -> dict:
    """The model's own figures a report shows: KV-cache bytes per token (at the operand type)
    and, for mixture-of-experts models, the routing decision and the expert weights it reads."""
    c = model.config
    facts = {}
    if isinstance(c, DecoderConfig):
        facts["kv_bytes_per_token"] = c.kv_bytes(itemsize)
    if routing is not None:
        facts.update(routing_summary(graph, routing, itemsize))
    return facts


def _gpu_graph(model: Model, phase: Phase | None, graph: Graph, recipe, routing: Routing | None
               ) -> Graph:
    """The graph the GPU baseline prices: the model's own, routed as the target's run was, not
    one a recipe rewrote (its quantize ops are the accelerator's rounding; a GPU runs a recipe
    only under --gpu-quant, priced by tessel/gpu_quant.py on the plain graph)."""
    if recipe is None:
        return graph
    plain = model.graph(phase)
    return plain if routing is None else route_graph(plain, routing)


def _run(req: RunRequest, progress: Progress) -> Run:
    model, phase, arch = req.model, req.phase, req.arch
    hot = req.expert_bits is not None and req.numerics     # a `hot` policy routes with them
    graph, plan = recipe_graph(model, phase, req.quant, req.expert_bits,
                               model.weights if hot else None, req.tokens,
                               ranking_routing(model, phase, req.expert_bits, req.routing))
    c = model.config
    reserve = (numeric_reserve_bytes(c.n_params, c.vocab_size * c.n_embd, req.operand_dtype.itemsize)
               if req.numerics else 0)
    unrouted, routing = graph, None
    where = target(req.target)
    with (compile_guard(simulate=True, reserve_bytes=reserve, reserved_for="weights, reference and data"),
          progress.phase(f"{req.target}: compile", len(where.pipeline.steps), "step") as bar):
        if req.numerics:
            lowered, reference, graph, routing = _with_data(req, graph, plan, bar)
        else:
            graph, routing = policy_routed(graph, req.routing)
            lowered = compile_model_graph(model, graph, req.target, arch, req.dtype, progress=bar,
                                          quant=plan)
    assumptions = (f"operand type {lowered.dtype.value}, fp32 accumulation"
                   + (f" (energy per MAC as the preset's {arch.dtype})" if lowered.dtype.value != arch.dtype else ""),
                   *lowered.assumptions,
                   f"phase: {phase}" if phase else f"graph: {graph.name}")
    with progress.phase(f"{req.target}: simulate", isa.executed_count(lowered.program), "instr") as bar:
        sim = where.simulate(lowered.program, arch, functional=req.numerics,
                             assumptions=assumptions, progress=bar)
    comparison = compare_gpus(_gpu_graph(model, phase, graph, req.quant, routing), sim.result,
                              req.gpus, req.gpu_mode, req.gpu_calibration,
                              req.gpu_recipe, c.n_layer if c is not None else None, req.gpu_attention,
                              (c, phase) if req.gpu_mode == "hf" else None, moe_routers(unrouted))
    if comparison:
        sim = replace(sim, result=replace(sim.result, gpu=comparison))
    traffic = attention_report(lowered.program, lowered.attention)
    if traffic:
        sim = replace(sim, result=replace(sim.result, attention=traffic))
    facts = workload_facts(model, unrouted, routing, req.operand_dtype.itemsize)
    for key, layouts in (("quantised_weights", ("weight", "planes")), ("quantised_kv", ("rows",))):
        if any(f.layout in layouts for f in lowered.quantised.values()):
            facts[key] = quantised_facts(lowered, req.quant.name, layouts)
    if facts:
        sim = replace(sim, result=replace(sim.result, workload=facts))
    if not req.numerics:
        return Run(sim.result, None, None)
    program = lowered.program
    logits = read_value(lambda s: sim.memory.read_symbol(program, s), lowered.plan, graph.outputs[0])[0]
    error = float(np.abs(logits - reference).max() / np.abs(reference).max())
    result = replace(sim.result, logits_rel_error=error, tokens=len(req.tokens))
    return Run(result, logits.astype(np.float32), reference)
