"""End to end: model -> graph -> program for a target -> simulation -> measured result.

Numeric runs feed the same tokens to the compiled program and to the reference executor
(decode: a KV cache from a reference prefill of the earlier tokens) and report how far the
simulated logits are from the reference.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

import isa
from arch import load_arch
from compiler.driver import check_tokens, kv_feeds, token_feeds
from compiler.frontend import Model
from compiler.ir import Graph, GraphError
from compiler.phase import Phase, prefill
from compiler.reference import execute
from compiler.targets import DEFAULT_ARCH, TARGETS, CompileError, Lowered
from compiler.targets.data import read_value
from sim.machines import MACHINES
from sim.simulate import simulate
from sim.result import SimResult
from tessel.baselines import compare_gpus

__all__ = ["compile_model", "run", "Run", "load_target_arch", "default_tokens", "model_feeds",
           "simulate_file"]


def load_target_arch(target: str, spec: str | None, overrides: Sequence[str]):
    if target not in TARGETS:
        raise CompileError(f"unknown target '{target}' (one of {', '.join(TARGETS)})")
    arch = load_arch(spec or DEFAULT_ARCH[target], overrides)
    if arch.target != target:
        raise CompileError(f"architecture '{arch.name}' is for target '{arch.target}', not '{target}'")
    return arch


def default_tokens(model: Model, phase: Phase) -> list[int]:
    """Seeded tokens when none are given: the prompt (prefill) or the cache plus one (decode)."""
    n = phase.seq if phase.kind == "prefill" else phase.kv + 1
    return np.random.default_rng(0).integers(0, model.config.vocab_size, n).tolist()


def _feeds(model: Model, graph: Graph, phase: Phase, tokens: Sequence[int]) -> dict[str, np.ndarray]:
    ids = check_tokens(model, tokens)
    if phase.kind == "prefill":
        return token_feeds(ids)
    first = model.graph(prefill(len(ids) - 1))
    cache = kv_feeds(first, execute(first, model.weights, token_feeds(ids[:-1])))
    return {**cache, **token_feeds(ids[-1:])}


def model_feeds(model: Model, phase: Phase, tokens: Sequence[int] | None) -> dict[str, np.ndarray]:
    """Inputs of one pass: the given tokens or seeded ones, with a reference-filled KV cache."""
    if model.config is None:
        raise GraphError(f"'{model.name}' is a .graph file: it has no token inputs")
    if phase.batch != 1:
        raise GraphError("numeric runs take one sequence (--batch 1)")
    tokens = list(tokens) if tokens else default_tokens(model, phase)
    return _feeds(model, model.graph(phase), phase, tokens)


def simulate_file(path, arch_spec: str | None, overrides: Sequence[str], functional: bool) -> SimResult:
    """Simulate a program file on its target's (or the given) architecture."""
    program = isa.load(path)
    arch = load_target_arch(program.target, arch_spec, overrides)
    functional = functional and program.data is not None
    return simulate(program, MACHINES[program.target](arch), functional=functional,
                    assumptions=(f"program file {path}",)).result


def compile_model(model: Model, phase: Phase | None, target: str, arch, dtype: isa.DType | None = None,
                  feeds: dict | None = None) -> tuple[Graph, Lowered]:
    """Lower the model's graph; with feeds, the program carries weights and inputs."""
    graph = model.graph(phase)
    lowered = TARGETS[target](graph, arch, dtype)
    if feeds is not None:
        data = lowered.initial_data(graph, model.weights, feeds)
        lowered = replace(lowered, program=replace(lowered.program, data=data))
    return graph, lowered


@dataclass(frozen=True)
class Run:
    result: SimResult
    logits: np.ndarray | None          # simulated logits [positions, vocab] (numeric runs)
    reference: np.ndarray | None       # reference executor's logits for the same inputs


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector while a program is built and simulated: the
    program's ~10^5-10^6 live instruction objects make every full collection rescan them all
    (3x slower end to end on gpt2-xl), and this code creates no reference cycles to reclaim."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run(model: Model, phase: Phase | None, target: str, arch, **options) -> "Run":
    """Compile and simulate (see `_run` for the options), with the garbage collector paused."""
    with _gc_paused():
        return _run(model, phase, target, arch, **options)


def _run(model: Model, phase: Phase | None, target: str, arch, *, functional: bool,
        dtype: isa.DType | None = None, tokens: Sequence[int] | None = None,
        gpus: Sequence[str] = (), gpu_mode: str = "graph", gpu_calibration=None) -> Run:
    if phase is not None and model.config is None:
        raise GraphError("phases apply to GPT-2 models only")
    if functional and model.config is None:
        raise GraphError(f"numeric simulation of '{model.name}' needs input values; .graph "
                         "files run timing only (--no-functional)")
    feeds = None
    if functional and (dtype or isa.DType(arch.dtype)) is isa.DType.int8:
        raise GraphError("numeric simulation of int8 needs a quantization pass, which Tessel does "
                         "not have yet: use --dtype bf16|fp32 or --no-functional")
    if functional and phase is not None and phase.batch != 1:
        raise GraphError("numeric simulation runs one sequence: use --batch 1 or --no-functional")
    if functional:
        tokens = list(tokens) if tokens else default_tokens(model, phase)
        expected = len(tokens) if phase.kind == "prefill" else len(tokens) - 1
        phase = replace(phase, seq=len(tokens)) if phase.kind == "prefill" else replace(phase, kv=expected)
        graph = model.graph(phase)
        feeds = _feeds(model, graph, phase, tokens)
    graph, lowered = compile_model(model, phase, target, arch, dtype, feeds)
    assumptions = (f"operand type {lowered.dtype.value}, fp32 accumulation"
                   + (f" (energy per MAC as the preset's {arch.dtype})" if lowered.dtype.value != arch.dtype else ""),
                   *lowered.assumptions,
                   f"phase: {phase}" if phase else f"graph: {graph.name}")
    sim = simulate(lowered.program, MACHINES[target](arch), functional=functional, assumptions=assumptions)
    comparison = compare_gpus(graph, sim.result, gpus, gpu_mode, gpu_calibration)
    if comparison:
        sim = replace(sim, result=replace(sim.result, extra={**sim.result.extra, "gpu": comparison}))
    if not functional:
        return Run(sim.result, None, None)
    program = lowered.program
    logits = read_value(lambda s: sim.memory.read_symbol(program, s), lowered.plan, graph.outputs[0])[0]
    reference = execute(graph, model.weights, feeds)[graph.outputs[0]][0]
    error = float(np.abs(logits - reference).max() / np.abs(reference).max())
    extra = {"logits_rel_error": error, "tokens": len(tokens)}
    return Run(replace(sim.result, extra={**sim.result.extra, **extra}), logits.astype(np.float32), reference)
