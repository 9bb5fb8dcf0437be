"""One simulation run, decided once: a frozen, validated request.

Everything a run depends on is settled here, before anything is compiled: the phase (from
--phase/--seq/--kv/--batch, or from the tokens given), whether the program runs numerically,
and the tokens it runs on. The command line, `tessel compare`, sweeps and the benchmarks all
build the same request, so the numerics policy and the phase rules live in this one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from isa import DType
from arch import TargetArch, load_arch
from compiler.passes.routing import check_policy, moe_ops
from compiler.frontend import Model
from compiler.ir import GraphError
from compiler.phase import Phase, prefill
from compiler.targets import CompileError
from sim.gpu import MODES
from tessel.gpu_hf import check_hf
from tessel.gpu_kernels import ATTENTION

if TYPE_CHECKING:                      # the recipes load ml_dtypes: imported only when asked
    from compiler.quant import Recipe

__all__ = ["RunRequest", "make_request", "resolve_phase", "numerics_by_default",
           "reference_by_default", "default_tokens",
           "routing_policy", "check_gpu_attention", "check_gpu_mode", "target_recipe",
           "NUMERICS_DEFAULT_MAX_PARAMS", "DEFAULT_SEQ", "DEFAULT_KV"]

# Numeric simulation is on by default up to this many parameters (gpt2-medium and below):
# larger models take minutes per numeric run and gigabytes of simulated memory.
NUMERICS_DEFAULT_MAX_PARAMS = 400_000_000
DEFAULT_SEQ = 128          # prompt tokens of a prefill when none are given
DEFAULT_KV = 128           # KV-cache length of a decode step when none is given


@dataclass(frozen=True)
class RunRequest:
    """What to compile and simulate, and how; built only by `make_request`."""

    model: Model
    phase: Phase | None                 # None for a .graph file (its shapes are fixed)
    target: str
    arch: TargetArch
    dtype: DType | None                 # operand and storage type; None: the architecture's
    numerics: bool                      # run every instruction numerically, compare logits
    tokens: tuple[int, ...] | None      # numeric runs: prompt (prefill), cache + new (decode)
    gpus: tuple[str, ...] = ()
    gpu_mode: str = "graph"             # graph, eager or hf (sim.gpu.MODES)
    gpu_calibration: Path | None = None
    routing: str | None = None          # MoE timing-only runs: uniform, zipf:S, file:PATH
    gpu_recipe: Recipe | None = None    # the GPU comparison runs quantised (tessel/gpu_quant.py)
    gpu_attention: str = "unfused"      # the GPU runs attention fused or not (tessel/gpu_kernels.py)
    quant: Recipe | None = None         # the target's program stores weights quantised
    expert_bits: str | None = None      # widths its bit-nested expert weights are read at

    @property
    def operand_dtype(self) -> DType:
        return self.dtype or DType(self.arch.dtype)


def resolve_phase(model: Model, kind: str | None = None, seq: int | None = None,
                  kv: int | None = None, batch: int | None = None,
                  tokens: Sequence[int] | None = None) -> Phase | None:
    """The phase from command-line style settings (None where not given); with tokens, the
    phase they imply (and a given --seq/--kv must agree with them)."""
    given = [f"--{n}" for n, v in (("phase", kind), ("seq", seq), ("kv", kv), ("batch", batch))
             if v is not None]
    if model.config is None:
        if given:
            raise GraphError(f"{given[0]} does not apply to a .graph file (its shapes are fixed)")
        return None
    kind = kind or "prefill"
    if kind == "prefill" and kv is not None:
        raise GraphError("--kv applies to --phase decode only")
    if kind == "decode" and seq is not None:
        raise GraphError("--seq applies to --phase prefill only (decode takes one token)")
    batch = batch or 1
    if tokens is not None:
        if batch != 1:
            raise GraphError("--tokens runs one sequence: --batch must be 1")
        n = len(tokens) if kind == "prefill" else len(tokens) - 1
        stated = seq if kind == "prefill" else kv
        if stated is not None and stated != n:
            raise GraphError(f"--tokens gives {len(tokens)} tokens, which does not match "
                             f"--{'seq' if kind == 'prefill' else 'kv'} {stated}")
        if n < 1:
            raise GraphError("decode needs at least 2 tokens: a cache and the new token")
        return Phase(kind, n if kind == "prefill" else 1, 0 if kind == "prefill" else n, 1)
    if kind == "prefill":
        return Phase("prefill", seq or DEFAULT_SEQ, 0, batch)
    return Phase("decode", 1, kv or DEFAULT_KV, batch)


def numerics_by_default(model: Model, phase: Phase | None, arch: TargetArch, dtype: DType | None) -> bool:
    """The default: numerics for models of at most 400 M parameters (every family), one sequence, and
    an operand type other than int8 (which needs a quantisation pass Tessel does not have);
    timing only otherwise, and always for .graph files (they carry no input values)."""
    return reference_by_default(model, phase) and (dtype or DType(arch.dtype)) is not DType.int8


def reference_by_default(model: Model, phase: Phase | None) -> bool:
    """Whether a run computes values by default, whatever the target's operand type: a model
    of at most 400 M parameters with a config, one sequence."""
    return (model.config is not None and model.config.n_params <= NUMERICS_DEFAULT_MAX_PARAMS
            and (phase is None or phase.batch == 1))


def default_tokens(model: Model, phase: Phase) -> tuple[int, ...]:
    """Seeded tokens when none are given: the prompt (prefill) or the cache plus one (decode)."""
    n = phase.seq if phase.kind == "prefill" else phase.kv + 1
    return tuple(np.random.default_rng(0).integers(0, model.config.vocab_size, n).tolist())


def make_request(model: Model, target: str, arch: TargetArch, phase: Phase | None = None, *,
                 numerics: bool | None = None, tokens: Sequence[int] | None = None,
                 dtype: DType | None = None, gpus: Sequence[str] = (), gpu_mode: str = "graph",
                 gpu_calibration: Path | None = None, routing: str | None = None,
                 gpu_quant: str | None = None, gpu_attention: str | None = None,
                 quant: str | None = None, expert_bits: str | None = None) -> RunRequest:
    """A validated request. numerics: True asks for it (an error where it cannot run), False
    turns it off, None applies `numerics_by_default`. tokens must match the phase.
    gpu_quant: a recipe (name or .toml) the GPU comparison runs under, checked against the
    model and every GPU here. gpu_attention: how the GPU runs attention (None: unfused).
    gpu_mode: sim.gpu.MODES; "hf" needs a model Hugging Face's modelled code runs.
    quant: a recipe (name or .toml) the target's program follows, planned on the model here
    (what the target cannot run is one line). expert_bits: the widths its bit-nested expert
    weights are read at (compiler/quant/nested.py: B, b0,b1,... or, numeric runs, hot:K:HI:LO)."""
    if arch.target != target:
        raise CompileError(f"architecture '{arch.name}' is for target '{arch.target}', not '{target}'")
    if phase is not None and model.config is None:
        raise GraphError("phases apply to preset and checkpoint models only (a .graph file has fixed shapes)")
    if model.config is not None and phase is None:
        phase = resolve_phase(model)
    if tokens is not None and model.config is not None:
        implied = resolve_phase(model, phase.kind, tokens=tokens)
        if implied != phase:
            raise GraphError(f"{len(tokens)} tokens do not make a {phase}")
    if numerics is None:
        numerics = numerics_by_default(model, phase, arch, dtype)
    if numerics:
        if model.config is None:
            raise GraphError(f"numeric simulation of '{model.name}' needs input values; .graph "
                             "files run timing only (--no-functional)")
        if (dtype or DType(arch.dtype)) is DType.int8:
            raise GraphError("numeric simulation of int8 needs a quantization pass, which Tessel "
                             "does not have yet: use --dtype bf16|fp32 or --no-functional")
        if phase.batch != 1:
            raise GraphError("numeric simulation runs one sequence: use --batch 1 or --no-functional")
        tokens = tuple(tokens) if tokens is not None else default_tokens(model, phase)
    else:
        tokens = None
    routing = routing_policy(model, numerics, routing)
    check_gpu_attention(gpu_attention, bool(gpus) or gpu_calibration is not None, gpu_quant)
    check_gpu_mode(gpu_mode, gpu_attention, gpu_quant)
    if gpu_mode == "hf" and (gpus or gpu_calibration is not None):
        check_hf(model.config, model.name)
    recipe = None if gpu_quant is None else _gpu_recipe(model, phase, gpu_quant, gpus, gpu_calibration)
    program_recipe = None if quant is None else target_recipe(model, phase, target, arch, dtype, quant)
    if expert_bits is not None:
        check_expert_bits(model, program_recipe, expert_bits)
    return RunRequest(model, phase, target, arch, dtype, numerics, tokens, tuple(gpus), gpu_mode,
                      gpu_calibration, routing, recipe, gpu_attention or "unfused", program_recipe,
                      expert_bits)


def check_expert_bits(model: Model, recipe: Recipe | None, expert_bits: str) -> None:
    """--expert-bits reads a recipe's bit-nested expert weights: refused in one line without
    such a recipe, or where its widths do not fit the model's experts (a `hot` policy's
    ranking comes later: a numeric run's calibration tokens, a timing-only run's routing)."""
    from compiler.quant import RecipeError, plan
    from compiler.quant.model import expert_widths
    from compiler.quant.nested import parse_expert_bits
    if recipe is None:
        raise RecipeError("--expert-bits reads bit-nested expert weights: give a --quant recipe "
                          "with :nested weights (w8a16:nested, ...)")
    policy = parse_expert_bits(expert_bits)
    expert_widths(model, None, recipe, plan(model.graph(prefill(1)), recipe, model.config.n_layer),
                  policy, None, {} if policy.hot is not None else None)   # (no ranking yet)


def target_recipe(model: Model, phase: Phase | None, target: str, arch: TargetArch,
                  dtype: DType | None, spec: str) -> Recipe:
    """The recipe of --quant, checked before anything is compiled: a target that can run it,
    an operand type the codes dequantise to, a model with a config, values the targets round
    (compiler/passes/quantised_values.py), a KV channel order that folds into the projections
    (compiler/passes/kv_fold.py) and weights the target can store (its own check_quantised
    refuses the rest)."""
    from compiler.passes.kv_fold import kv_fold
    from compiler.passes.quantised import stored_formats
    from compiler.passes.quantised_values import quantised_graph
    from compiler.quant import plan, resolve_recipe
    from tessel.targets import TARGETS
    check = TARGETS[target].check_quantised
    if check is None:
        built = ", ".join(t.name for t in TARGETS.values() if t.check_quantised is not None)
        raise CompileError(f"--quant: target '{target}' cannot run quantised programs yet "
                           f"(built: {built})")
    if (dtype or DType(arch.dtype)) is DType.int8:
        raise CompileError("--quant: weights dequantise to the operand type, and int8 operands "
                           "need quantised activations, which are not built: use --dtype bf16 or fp32")
    if model.config is None:
        raise GraphError(f"--quant: model '{model.name}' is a .graph file; quantisation needs a "
                         "model with a config")
    recipe = resolve_recipe(spec)
    graph = model.graph(phase)
    quant = plan(graph, recipe, model.config.n_layer)
    rounded = quantised_graph(graph, quant)
    kv_fold(rounded, quant, {})
    check(arch, stored_formats(rounded, quant), rounded)
    return recipe


def check_gpu_attention(attention: str | None, any_gpu: bool, gpu_quant: str | None = None) -> None:
    """Refuse --gpu-attention where it does not apply, in one line."""
    if attention is None:
        return
    if attention not in ATTENTION:
        raise GraphError(f"--gpu-attention: expected one of {', '.join(ATTENTION)}, got {attention!r}")
    if not any_gpu:
        raise GraphError(f"--gpu-attention {attention}: no GPU to run it on (--gpu none)")
    if attention == "fused" and gpu_quant is not None:
        raise GraphError("--gpu-attention fused: not with --gpu-quant (the fused kernel is priced "
                         "in fp16; a recipe narrows the unfused kernels)")


def check_gpu_mode(mode: str, attention: str | None = None, gpu_quant: str | None = None) -> None:
    """Refuse, in one line, a GPU mode that is unknown or does not go with the other GPU options:
    Hugging Face's eager attention is unfused, and its operators are priced in fp16."""
    if mode not in MODES:
        raise GraphError(f"--gpu-mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "hf" and attention == "fused":
        raise GraphError("--gpu-mode hf: not with --gpu-attention fused (Hugging Face's eager "
                         "attention is unfused: matmul, mask, softmax, matmul)")
    if mode == "hf" and gpu_quant is not None:
        raise GraphError("--gpu-mode hf: not with --gpu-quant (the Hugging Face operators are "
                         "priced in fp16)")


def _gpu_recipe(model: Model, phase: Phase | None, spec: str, gpus: Sequence[str],
                calibration: Path | None) -> Recipe:
    """The recipe of --gpu-quant, planned on the model and held against every GPU's rates."""
    from tessel.gpu_quant import check_gpus, narrowing
    if not gpus and calibration is None:
        raise GraphError("--gpu-quant: no GPU to run it on (--gpu none)")
    if model.config is None:
        raise GraphError(f"--gpu-quant: model '{model.name}' is a .graph file; quantisation needs "
                         "a model with a config (its layers and caches)")
    narrow = narrowing(model.graph(phase), spec, model.config.n_layer)
    check_gpus(narrow, [load_arch(name) for name in gpus])
    return narrow.recipe


def routing_policy(model: Model, numerics: bool, routing: str | None) -> str | None:
    """Which experts tokens use: the router's own choice in numeric runs, a policy (default
    uniform) in timing-only runs of a mixture-of-experts model; None for dense models."""
    moe = (bool(moe_ops(model.fixed_graph)) if model.fixed_graph is not None
           else getattr(model.config, "num_experts", 0) > 0)
    if routing is not None:
        check_policy(routing)
        if not moe:
            raise GraphError(f"--routing {routing}: model '{model.name}' has no experts to route")
        if numerics and routing != "router":
            raise GraphError(f"--routing {routing} applies to timing-only runs (--no-functional); "
                             "numeric runs route by the router's own choice")
        if not numerics and routing == "router":
            raise GraphError("--routing router needs numerics (the router's choice is computed): "
                             "use --functional, or a policy (uniform, zipf:S, file:PATH)")
    if not moe:
        return None
    return "router" if numerics else (routing or "uniform")
