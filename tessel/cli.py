"""The `tessel` command line: graph, run, compile, sim, asm, disasm, sweep.

Exit 0 on success. Bad input exits 2 with one line `error: ...` on stderr naming the
file, field, line:column or argument — never a traceback, never a half-written file.
Every output path is checked before any work starts (tessel/files.py). SIGINT and SIGTERM
end a command with one line `error: interrupted (SIGTERM)` and exit status 128 + the
signal (130, 143), after the clean-up (tessel/interrupt.py). Runs longer than 2 s show a
progress bar per phase on stderr when it is a terminal (tessel/progress.py).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

import isa
from compiler.cost import graph_cost
from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import Model, load_model, to_text
from compiler.ir import GraphError
from compiler.phase import Phase
from compiler.roll import roll
from sim.gpu import MODES
from tessel.allocator import keep_freed_memory
from tessel.coe import PCIE_GBPS
from tessel.budget import compile_guard, peak_rss_bytes
from tessel.errors import USER_ERRORS, UsageError
from tessel.files import atomic_write, check_output
from tessel.interrupt import Interrupted, signals_raise
from tessel.progress import Progress
from tessel.request import make_request, resolve_phase, routing_policy
from tessel.table import render_table
from tessel.targets import TARGETS, target


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _token_list(text: str) -> list[int]:
    try:
        tokens = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    return tokens


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _output_arg(p: argparse.ArgumentParser, *flags: str, **kwargs) -> None:
    """An argument naming a file to write: main checks it right after parsing (check_output)."""
    action = p.add_argument(*flags, **kwargs)
    p.set_defaults(outputs=(*(p.get_default("outputs") or ()), (action.dest, "/".join(flags))))


def _add_phase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--phase", choices=("prefill", "decode"), help="default prefill")
    p.add_argument("--seq", type=_positive, help="prompt tokens for prefill (default 128)")
    p.add_argument("--kv", type=_positive, help="KV-cache length for decode (default 128)")
    p.add_argument("--batch", type=_positive, help="sequences per batch (default 1)")


def _phase(args: argparse.Namespace, model: Model, tokens: list[int] | None = None) -> Phase | None:
    return resolve_phase(model, args.phase, args.seq, args.kv, args.batch, tokens)


def cmd_graph(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    phase = _phase(args, model)
    graph = model.graph(phase)
    cost = graph_cost(graph)
    if args.emit:
        atomic_write(Path(args.emit), to_text(graph).encode())
    params = model_params(model, graph)
    if args.json:
        print(json.dumps({**cost.to_json(), **params}))
        return 0
    print(f"model {model.name}" + (f", {phase}" if phase else "") + f": {len(cost.ops)} ops, "
          + f"{params['params']:,} parameters"
          + (f" ({params['active_params']:,} active per token)" if "active_params" in params else ""))
    rows = [(op.name, op.kind, "x".join(map(str, op.output)), f"{op.flops:,}", f"{op.bytes:,}")
            for op in cost.ops]
    rows.append(("total", "", "", f"{cost.total_flops:,}", f"{cost.total_bytes:,}"))
    print(render_table(("op", "kind", "output", "FLOPs", "bytes"), rows))
    return 0


def model_params(model: Model, graph) -> dict[str, int]:
    """`params`: every parameter of the graph (a tied LM head is one param op, counted once);
    for mixture-of-experts models also `active_params`, those one token uses (the config's)."""
    counts = {"params": sum(op.type.numel for op in graph.params)}
    if getattr(model.config, "num_experts", 0):
        counts["active_params"] = model.config.active_params
    return counts


def cmd_run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    run = decode_logits if args.phase == "decode" else prefill_logits
    quant = None
    if args.quant:
        from compiler.quant import quantise         # ml_dtypes and the recipes: only when asked
        quant = quantise(model, args.quant, calibration=args.tokens, expert_bits=args.expert_bits)
    elif args.expert_bits is not None:
        raise UsageError("--expert-bits reads bit-nested expert weights: give a --quant recipe "
                         "with nested weights (w8a16:nested, ...)")
    logits = run(model, args.tokens, variant=quant).astype(np.float32)
    atomic_write(Path(args.logits), _npy_bytes(logits))
    recipe = f", recipe {quant.recipe.name}" if quant else ""
    if args.expert_bits is not None:
        recipe += f", experts read at {args.expert_bits} bits"
    print(f"wrote {args.logits}: float32 {list(logits.shape)} logits of {model.name} "
          f"({args.phase or 'prefill'}, reference executor{recipe})")
    return 0


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


DEFAULT_TARGET = "systolic"


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, choices=sorted(TARGETS))
    p.add_argument("--arch", help="preset name or .toml file (default: the target's preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one architecture field (repeatable; dotted keys for tables)")
    p.add_argument("--dtype", choices=("bf16", "fp32"),
                   help="operand and storage type (default: the architecture's)")


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=_positive, help="devices of a parallel plan (docs/parallel.md)")
    p.add_argument("--tp", type=_positive, help="tensor-parallel ranks (default: --devices / --pp)")
    p.add_argument("--pp", type=_positive, help="pipeline stages (default: --devices / --tp)")
    p.add_argument("--ep", type=_positive, help="expert-parallel ranks (default 1)")
    p.add_argument("--ep-dispatch", choices=("all_to_all", "replicated"),
                   help="how expert parallelism moves tokens (default: all_to_all when a pass's "
                        "tokens split evenly over the ranks, else replicated)")
    p.add_argument("--microbatches", type=_positive,
                   help="pipeline micro-batches the batch is split into (default 1)")
    p.add_argument("--node", metavar="PRESET|FILE.toml",
                   help="a node preset (dgx-h100, sn40l-8, pim-cxl-32, tpu-v4-8): device, count, link")
    p.add_argument("--link", metavar="PRESET|FILE.toml",
                   help="how the devices are joined (default: the target's, docs/links.md)")
    p.add_argument("--set-link", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field of the link")


def _apply_node(args: argparse.Namespace) -> None:
    """`--node NAME`: the node preset's target, device preset (with its overrides before
    `--set`), device count and link, in place of --target/--arch/--devices/--link."""
    if args.node is None:
        return
    from arch import load_arch
    from arch.nodes import load_node
    clash = [f"--{n}" for n in ("target", "arch", "devices", "link") if getattr(args, n) is not None]
    if clash:
        raise UsageError(f"{' '.join(clash)}: not with --node (the node preset sets them)")
    node = load_node(args.node)
    kind = load_arch(node.device).target
    if kind not in TARGETS:
        raise UsageError(f"--node {args.node}: a node of {node.device} ({kind}) is a baseline, not "
                         f"simulated: compare it with tessel compare --nodes, or --gpu")
    args.target, args.arch, args.devices, args.link = kind, node.device, node.devices, node.link
    args.set = node.overrides(args.set)


def _plan(args: argparse.Namespace, model: Model, phase):
    """The parallel plan the flags ask for, or None for one device."""
    from compiler.parallel.plan import make_plan
    if args.devices is None:
        given = [f"--{n.replace('_', '-')}" for n in ("tp", "pp", "ep", "ep_dispatch",
                                                       "microbatches", "link")
                 if getattr(args, n) is not None] + (["--set-link"] if args.set_link else [])
        if given:
            raise UsageError(f"{' '.join(given)}: only with --devices N")
        return None
    if model.config is None:
        raise UsageError(f"--devices: '{model.name}' is a .graph file; a parallel plan needs a "
                         "model config")
    tp, pp = _split(args.devices, args.tp, args.pp)
    ep = args.ep or 1
    if args.ep_dispatch is not None and ep == 1:
        raise UsageError("--ep-dispatch: only with --ep > 1")
    dispatch = args.ep_dispatch
    if dispatch is None and ep > 1:     # all-to-all needs every rank to hold as many tokens
        tokens = phase.batch // (args.microbatches or 1) * phase.seq
        dispatch = "all_to_all" if tokens % ep == 0 else "replicated"
    return make_plan(model.config, args.devices, tp=tp, pp=pp, ep=ep, dispatch=dispatch)


def _split(devices: int, tp: int | None, pp: int | None) -> tuple[int, int]:
    """tp and pp for `devices` from the flags: a missing one is what the other leaves
    (neither: every device one tensor-parallel rank); make_plan checks the product."""
    if tp is None:
        return max(1, devices // (pp or 1)), pp or 1
    return tp, pp if pp is not None else max(1, devices // tp)


def _gpu_attention_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu-attention", choices=("unfused", "fused"),
                   help="how the GPU baseline runs attention: unfused (default: scores GEMM, "
                        "softmax, context GEMM) or fused (one FlashAttention-style kernel; "
                        "docs/validation.md)")


def _gpu_mode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu-mode", choices=MODES,
                   help="GPU execution: graph (launch cost per kernel; default), eager (framework "
                        "overhead per operator) or hf (the operators of a Hugging Face eager "
                        "generate step: GPT-2, Llama, Mistral, Qwen2/3; docs/validation.md)")


def _gpu_mode(args: argparse.Namespace, gpus: tuple[str, ...]) -> str:
    """The GPU mode asked for (default graph); one given with no GPU to run in it is refused."""
    if args.gpu_mode is not None and not gpus and not getattr(args, "gpu_calibration", None):
        raise UsageError(f"--gpu-mode {args.gpu_mode}: no GPU to run it on (--gpu none)")
    return args.gpu_mode or "graph"


def _routing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--routing", metavar="POLICY",
                   help="mixture-of-experts models, timing only: which experts each token uses. "
                        "uniform (default): top-k distinct experts drawn uniformly; zipf:S: expert "
                        "popularity 1/rank^S, a seeded rank order per layer; file:PATH: JSON "
                        "{\"experts\": [per MoE layer: [per token: [top-k ids]]]}. Seeded, so runs "
                        "repeat; numeric runs use the router's own choice (docs/models.md)")


def cmd_compile(args: argparse.Namespace) -> int:
    from tessel.driver import compile_model_graph
    if args.dump_after:
        if args.unroll:
            raise UsageError("tessel compile: --unroll chooses how a program is written (-o); "
                             "--dump-after writes none")
        return _dump_after(args)
    progress = Progress()
    if args.output is None:
        raise UsageError("tessel compile: the following arguments are required: -o/--output "
                         "(unless --dump-after)")
    out = Path(args.output)
    if out.suffix not in (".tbin", ".tasm"):
        raise isa.IsaError(f"{out}: output must be a .tbin or .tasm file")
    model = load_model(args.model)
    phase = _phase(args, model, args.tokens)
    arch = target(args.target).load_arch(args.arch, args.set)
    recipe, quantised = _compile_recipe(args, model, phase, arch)
    graph, feeds, plan, weights = _compiled_graph(args, model, phase, quantised, recipe)
    steps = len(target(args.target).pipeline.steps)
    with progress.phase(f"{args.target}: compile", steps + 2, "step") as bar:
        with compile_guard(simulate=False):
            lowered = compile_model_graph(model, graph, args.target, arch, _dtype(args), feeds,
                                          weights, progress=bar, quant=plan)
        if bar is not None:
            bar("verify", steps)
        emitted = lowered.program          # its tile sweeps already loops (compiler/targets/sweep.py)
        program = isa.unroll(emitted) if args.unroll else roll(emitted, arch.machine_view().limits)
        isa.verify(program, arch.machine_view())
        if bar is not None:
            bar("write", steps + 1)
        isa.save(program, out)
    executed = isa.executed_count(program)
    words = "" if executed == len(program.instructions) else f" in {len(program.instructions):,} words (loops)"
    print(f"wrote {out}: {executed:,} instructions{words} for {arch.name}"
          + (" with weights and inputs" if feeds else ""))
    return 0


def _compile_recipe(args: argparse.Namespace, model: Model, phase: Phase | None, arch):
    """`tessel compile --quant`: the recipe, checked as `tessel sim` checks it, and with
    --with-data the model it quantises (codes and scales, made here: compile time)."""
    from tessel.request import check_expert_bits, target_recipe
    if args.quant is None:
        if args.expert_bits is not None:            # refused: it needs a nested recipe
            check_expert_bits(model, None, args.expert_bits)
        return None, None
    from compiler.quant import quantise
    recipe = target_recipe(model, phase, args.target, arch, _dtype(args), args.quant)
    if args.expert_bits is not None:
        check_expert_bits(model, recipe, args.expert_bits)
    return recipe, (quantise(model, recipe, calibration=args.tokens, expert_bits=args.expert_bits)
                    if args.with_data else None)


def _compiled_graph(args: argparse.Namespace, model: Model, phase: Phase | None, quantised=None,
                    recipe=None):
    """The graph a target lowers (under `recipe`: with its quantize ops), its inputs
    (--with-data), the recipe's plan and the weights the data holds (None: the model's): a
    mixture-of-experts graph is routed by the router's own choice when the program carries
    data, else by --routing. `quantised`: the recipe's quantised model, whose weights (with
    the KV channel order it calibrated folded in) the data's KV cache and routing are
    computed with."""
    from tessel.driver import (folded, model_feeds, policy_routed, ranking_routing, recipe_graph,
                               router_routed)
    hot = args.expert_bits is not None and args.with_data    # a `hot` policy routes with them
    policy = routing_policy(model, numerics=args.with_data, routing=args.routing)
    graph, plan = recipe_graph(model, phase, recipe, args.expert_bits,
                               model.weights if hot else None, args.tokens,
                               ranking_routing(model, phase, args.expert_bits, policy))
    if not args.with_data:
        return policy_routed(graph, policy)[0], None, plan, None
    weights = order = None
    if quantised is not None:
        graph, weights = folded(quantised, graph, plan)
        order = quantised.kv_order
    feeds = model_feeds(model, phase, args.tokens, weights, recipe, order)
    if policy == "router":
        _, graph, feeds, _ = router_routed(graph, model.weights if weights is None else weights, feeds)
    return graph, feeds, plan, weights


def _dump_after(args: argparse.Namespace) -> int:
    """Print what one compilation step decided (compiler/pipeline.py); nothing is written."""
    from compiler.pipeline import dump_after
    from tessel.driver import policy_routed, ranking_routing, recipe_graph
    from tessel.request import check_expert_bits, target_recipe
    model = load_model(args.model)
    chosen = target(args.target)
    arch = chosen.load_arch(args.arch, args.set)
    phase = _phase(args, model, args.tokens)
    recipe = (None if args.quant is None
              else target_recipe(model, phase, args.target, arch, _dtype(args), args.quant))
    if args.expert_bits is not None:
        check_expert_bits(model, recipe, args.expert_bits)
    policy = routing_policy(model, numerics=False, routing=args.routing)
    graph, plan = recipe_graph(model, phase, recipe, args.expert_bits, routing=ranking_routing(
        model, phase, args.expert_bits, policy))
    graph = policy_routed(graph, policy)[0]
    print(dump_after(chosen.pipeline, graph, arch, _dtype(args), args.dump_after, plan))
    return 0


def _dtype(args: argparse.Namespace) -> isa.DType | None:
    return isa.DType(args.dtype) if args.dtype else None


# `tessel sim` options that only a model run reads (their defaults are None to tell).
_MODEL_ONLY = ("target", "phase", "seq", "kv", "batch", "dtype", "tokens", "logits", "gpu",
               "gpu_mode", "gpu_calibration", "gpu_quant", "gpu_attention", "routing", "devices", "tp", "pp", "ep", "ep_dispatch", "microbatches",
               "link", "node", "quant", "expert_bits")


def cmd_sim(args: argparse.Namespace) -> int:
    from tessel.baselines import parse_gpus
    from tessel.driver import run, simulate_file
    from tessel.report import render_result
    progress = Progress()
    if (args.program is None) == (args.model is None):
        raise GraphError("give either --model M or a PROGRAM.tbin file")
    if args.program is not None:
        ignored = [f"--{name.replace('_', '-')}" for name in _MODEL_ONLY
                   if getattr(args, name) is not None]
        if ignored:
            raise UsageError(f"{' '.join(ignored)}: only with --model (a program file has no "
                             f"graph and names its target)")
        numerics = False if args.no_functional else True if args.functional else None
        result = simulate_file(Path(args.program), args.arch, args.set, numerics,
                               override_arch=args.override_arch, progress=progress)
        title = f"tessel sim: {args.program} on {result.arch_name}"
    else:
        if args.override_arch:
            raise UsageError("--override-arch: only with a program file (a model is compiled "
                             "for the architecture given)")
        model = load_model(args.model)
        phase = _phase(args, model, args.tokens)
        _apply_node(args)
        if args.gpu_mode == "hf" and args.devices is not None:
            raise UsageError("--gpu-mode hf: not with --devices (the Hugging Face generate loop is "
                             "modelled on one GPU)")
        split = _overlap(args)
        arch = target(args.target or DEFAULT_TARGET).load_arch(args.arch, args.set)
        numerics = (False if args.no_functional
                    else True if args.functional or args.tokens or args.logits else None)
        if args.logits and not numerics:
            raise GraphError("--logits needs a numeric simulation (drop --no-functional)")
        request = make_request(model, args.target or DEFAULT_TARGET, arch, phase,
                               numerics=numerics, tokens=args.tokens, dtype=_dtype(args),
                               gpus=parse_gpus(args.gpu), gpu_mode=_gpu_mode(args, parse_gpus(args.gpu)),
                               gpu_calibration=Path(args.gpu_calibration) if args.gpu_calibration else None,
                               routing=args.routing, gpu_quant=args.gpu_quant,
                               gpu_attention=args.gpu_attention, quant=args.quant,
                               expert_bits=args.expert_bits)
        functional = request.numerics
        plan = _plan(args, model, phase)
        if plan is not None:
            return _sim_node(args, request, plan, split, progress)
        if split:
            raise UsageError("--set overlap=split: only with --devices N (it overlaps the "
                             "all-reduces of tensor-parallel ranks)")
        outcome = run(request, progress=progress)
        result = outcome.result
        if args.logits:
            logits = outcome.logits if phase.kind == "prefill" else outcome.logits[-1:]
            atomic_write(Path(args.logits), _npy_bytes(logits))
        title = (f"tessel sim: {model.name}, {phase or 'fixed graph'}, on {arch.name}"
                 + ("" if functional else " (timing only)"))
    if args.json:
        result = replace(result, sim_peak_rss_bytes=peak_rss_bytes())
        atomic_write(Path(args.json), json.dumps(result.to_json(), indent=1).encode())
    print(render_result(result, title))
    return 0


def _overlap(args: argparse.Namespace) -> bool:
    """`--set overlap=split|none`, taken out of the architecture's overrides: a node's setting
    (TokenWeave's two interleaved halves, compiler/parallel/overlap.py), not an arch field."""
    keep, split = [], False
    for item in args.set:
        key, _, value = item.partition("=")
        if key.strip() != "overlap":
            keep.append(item)
        elif value.strip() in ("split", "none"):
            split = value.strip() == "split"
        else:
            raise UsageError(f"--set {item}: overlap must be split or none")
    args.set = keep
    return split


def _sim_node(args: argparse.Namespace, request, plan, split: bool, progress: Progress) -> int:
    """`tessel sim --devices N`: the plan's devices on one node (tessel/node.py)."""
    from arch.links import load_link
    from tessel.node import render_node, run_node
    if args.logits:
        raise UsageError("--logits: not with --devices (the node report gives the logits' error)")
    if args.gpu_quant:
        raise UsageError("--gpu-quant: not with --devices (a GPU node's plan is priced in fp16)")
    if args.quant:
        raise UsageError("--quant: not with --devices (a node's plan compiles full-precision "
                         "programs; one device runs quantised)")
    if args.gpu_calibration:
        raise UsageError("--gpu-calibration: not with --devices (a GPU node is priced by the "
                         "GPU model on the preset's link)")
    link = load_link(args.link or target(request.target).default_link, args.set_link)
    outcome = run_node(request, plan, link, microbatches=args.microbatches or 1, split=split,
                       progress=progress)
    phase = request.phase
    title = (f"tessel sim: {request.model.name}, {phase}, on {plan.devices} x {request.arch.name}"
             + ("" if request.numerics else " (timing only)"))
    if args.json:
        atomic_write(Path(args.json), json.dumps({**outcome.to_json(),
                                                  "sim_peak_rss_bytes": peak_rss_bytes()},
                                                 indent=1).encode())
    print(render_node(outcome, title))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tessel.baselines import parse_gpus
    from tessel.compare import render_comparison
    from tessel.driver import run
    model = load_model(args.model)
    phase = _phase(args, model)
    if args.quant is not None:
        if args.gpu_attention is not None:
            raise UsageError("--gpu-attention: not with --quant (the recipes' GPU columns run "
                             "the unfused kernels)")
        if args.gpu_mode is not None:
            raise UsageError("--gpu-mode: not with --quant (the recipes' GPU columns run in graph mode)")
        return _compare_recipes(args, model, phase)
    if args.nodes is not None:
        if args.gpu_mode == "hf":
            raise UsageError("--gpu-mode hf: not with --nodes (the Hugging Face generate loop is "
                             "modelled on one GPU)")
        if args.targets is not None:
            raise UsageError("--targets: not with --nodes (each node names its device)")
        if args.gpu is not None:
            raise UsageError("--gpu: not with --nodes (a GPU node, e.g. dgx-h100, is a column of "
                             "its own)")
        return _compare_nodes(args, model, phase)
    given = [f"--{n}" for n in ("tp", "pp", "microbatches") if getattr(args, n) is not None]
    if given:
        raise UsageError(f"{' '.join(given)}: only with --nodes")
    targets = [t.strip() for t in (args.targets or ",".join(TARGETS)).split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise UsageError(f"--targets: unknown target '{unknown[0] if unknown else ''}' "
                         f"(targets: {', '.join(TARGETS)})")
    requests = [make_request(model, t, TARGETS[t].load_arch(), phase,
                             numerics=False if args.no_functional else None,
                             gpus=parse_gpus(args.gpu or "t4"),
                             gpu_mode=_gpu_mode(args, parse_gpus(args.gpu or "t4")),
                             routing=args.routing, gpu_attention=args.gpu_attention)
                for t in targets]
    functional = all(r.numerics for r in requests)
    progress = Progress()
    results = [run(r, progress=progress).result for r in requests]
    if args.json:
        atomic_write(Path(args.json), json.dumps({t: r.to_json() for t, r in zip(targets, results)},
                                                 indent=1).encode())
    tokens = (phase.seq if phase.kind == "prefill" else 1) * phase.batch if phase else 1
    notes = dict.fromkeys(g.memory_note for r in results for g in r.gpu.values() if g.memory_note)
    fused = ", GPU attention fused" if args.gpu_attention == "fused" else ""
    fused += f", GPU {args.gpu_mode} mode" if args.gpu_mode else ""
    print(render_comparison(f"tessel compare: {model.name}, {phase or 'fixed graph'}{fused}"
                            + ("" if functional else " (timing only)"), targets, results, tokens,
                            notes))
    return 0


def _compare_recipes(args: argparse.Namespace, model: Model, phase: Phase) -> int:
    """`tessel compare --quant a,b,c`: recipes side by side (tessel/compare_quant.py)."""
    from tessel.baselines import parse_gpus
    from tessel.compare_quant import compare_recipes, parse_recipes, render_recipes
    from tessel.request import default_tokens, reference_by_default
    given = [f"--{n}" for n in ("nodes", "tp", "pp", "microbatches")
             if getattr(args, n) is not None]
    if given:
        raise UsageError(f"{given[0]}: not with --quant (--quant compares recipes on the "
                         "reference, the GPUs and the --targets, each on one device)")
    targets = [t.strip() for t in (args.targets or "").split(",") if t.strip()]
    unknown = [t for t in targets if t.partition(":")[0] not in TARGETS]
    if unknown or (args.targets is not None and not targets):
        raise UsageError(f"--targets: unknown target '{unknown[0].partition(':')[0] if unknown else ''}' "
                         f"(targets: {', '.join(TARGETS)}; a preset as target:preset)")
    for t in targets:                  # a named preset: of its target, refused in one line
        name, _, preset = t.partition(":")
        if preset:
            TARGETS[name].load_arch(preset)
    recipes = parse_recipes(args.quant)
    if model.config is None or phase is None:
        raise UsageError(f"--quant: '{model.name}' is a .graph file; recipes need a model config")
    logits = not args.no_functional and reference_by_default(model, phase)
    rows = compare_recipes(model, phase, recipes, parse_gpus(args.gpu or "a100-80gb"), "graph",
                           default_tokens(model, phase) if logits else None, targets,
                           routing_policy(model, numerics=False, routing=args.routing))
    if args.json:
        atomic_write(Path(args.json), json.dumps([r.as_dict() for r in rows], indent=1).encode())
    print(render_recipes(f"tessel compare --quant: {model.name}, {phase}", rows))
    return 0


def _compare_nodes(args: argparse.Namespace, model: Model, phase: Phase) -> int:
    """`tessel compare --nodes`: each node preset runs the same plan (tp x pp from the flags,
    tp defaulting to the node's devices / pp), a column each; a GPU node is priced by the GPU
    model (tessel.baselines.compare_gpus_on_plan)."""
    from arch import load_arch
    from arch.links import load_link
    from arch.nodes import load_node
    from compiler.parallel.partition import device_graphs
    from compiler.parallel.plan import make_plan
    from tessel.compare import render_node_comparison
    from tessel.baselines import compare_gpus_on_plan
    from tessel.node import run_node
    if model.config is None:
        raise UsageError(f"--nodes: '{model.name}' is a .graph file; a parallel plan needs a model config")
    names = [n.strip() for n in args.nodes.split(",") if n.strip()]
    if not names:
        raise UsageError("--nodes: give at least one node preset")
    microbatches = args.microbatches or 1
    if all(load_arch(load_node(n).device).target in TARGETS for n in names):
        for flag, value in (("--gpu-attention", args.gpu_attention), ("--gpu-mode", args.gpu_mode)):
            if value is not None:
                raise UsageError(f"{flag}: no GPU node among {', '.join(names)} to run it on")
    progress = Progress()
    columns = []
    for name in names:
        node = load_node(name)
        plan = _node_plan(model, node.devices, args.tp, args.pp)
        device = load_arch(node.device, node.overrides())
        if device.target not in TARGETS:                       # a GPU node: the baseline
            step = replace(phase, batch=phase.batch // microbatches)
            parts = [p.graph for p in device_graphs(model.config, plan, step)]
            (gpu,) = compare_gpus_on_plan(parts, plan, microbatches, 0.0, 0.0, [node.device],
                                          args.gpu_mode or "graph",
                                          args.gpu_attention or "unfused").values()
            columns.append((node, plan, gpu))
            continue
        request = make_request(model, device.target, device, phase,
                               numerics=False if args.no_functional else None, gpus=(),
                               routing=args.routing)
        columns.append((node, plan, run_node(request, plan, load_link(node.link),
                                             microbatches=microbatches, progress=progress)))
    tokens = phase.seq * phase.batch if phase.kind == "prefill" else phase.batch
    if args.json:
        atomic_write(Path(args.json), json.dumps(
            {node.name: run.to_json()
             for node, _, run in columns}, indent=1).encode())
    fused = ", GPU attention fused" if args.gpu_attention == "fused" else ""
    print(render_node_comparison(f"tessel compare: {model.name}, {phase}{fused}", columns, tokens))
    return 0


def _node_plan(model: Model, devices: int, tp: int | None, pp: int | None):
    """The plan a node runs: as --tp/--pp say, or with neither the most tensor parallelism the
    model allows on `devices` (the largest tp dividing them that the heads and widths take, the
    rest as pipeline stages)."""
    from compiler.parallel.plan import PlanError, make_plan
    if tp is not None or pp is not None:
        tp, pp = _split(devices, tp, pp)
        return make_plan(model.config, devices, tp=tp, pp=pp)
    error = None
    for t in sorted((t for t in range(1, devices + 1) if devices % t == 0), reverse=True):
        try:
            return make_plan(model.config, devices, tp=t, pp=devices // t)
        except PlanError as e:
            error = error or e
    raise error


def cmd_coe(args: argparse.Namespace) -> int:
    from tessel.coe import expert, switch_times
    arch = TARGETS["dataflow"].load_arch(args.arch, args.set)
    switches = switch_times([expert(n.strip()) for n in args.models.split(",") if n.strip()],
                            arch, args.pcie)
    rows = [(s.expert.name, f"{s.expert.weight_bytes:,}", f"{s.switch_s * 1e3:.4g} ms",
             f"{s.gpu_pcie_s * 1e3:.4g} ms", f"{s.gpu_pcie_s / s.switch_s:.3g}x") for s in switches]
    if args.json:
        atomic_write(Path(args.json), json.dumps({"arch": arch.name, "pcie": args.pcie,
                                                  "switches": [s.to_json() for s in switches]},
                                                 indent=1).encode())
    print(f"tessel coe: experts in DDR, switched into HBM on {arch.name} "
          f"(DDR {arch.ddr_bw_gbps:g} GB/s -> HBM) vs a GPU reloading over PCIe {args.pcie} "
          f"({PCIE_GBPS[args.pcie]:g} GB/s)")
    print(render_table(("expert", "weight bytes", "switch (dataflow)", f"GPU PCIe {args.pcie}", "speedup"), rows))
    return 0


def cmd_asm(args: argparse.Namespace) -> int:
    program = isa.load(Path(args.input))
    out = Path(args.output)
    if out.suffix != ".tbin":
        raise isa.IsaError(f"{out}: output of asm must be a .tbin file")
    isa.save(program, out)
    print(f"wrote {out}: {len(program.instructions)} instructions")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    program = isa.load(Path(args.input))
    if args.output is None:
        sys.stdout.write(isa.disassemble(program))
        return 0
    out = Path(args.output)
    if out.suffix != ".tasm":
        raise isa.IsaError(f"{out}: output of disasm must be a .tasm file")
    isa.save(program, out)
    print(f"wrote {out}: {len(program.instructions)} instructions")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from tessel.serve.command import cmd_serve
    return cmd_serve(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tessel.sweep import default_out_dir, load_spec, run_sweep
    spec = load_spec(args.spec)
    summary = run_sweep(spec, Path(args.out) if args.out else default_out_dir(spec),
                        workers=args.workers, dask=args.dask)
    print("\n".join(summary.lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tessel", description=__doc__.splitlines()[0])
    parser.set_defaults(outputs=())           # (dest, flag) of each output argument: _output_arg
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = ("preset (gpt2 ... gpt3-xl, llama-3.2-1b ... qwen3-30b-a3b: docs/models.md), "
                  "Hugging Face directory, or .graph file")

    p = sub.add_parser("graph", help="print a model's graph: ops, shapes, FLOPs, bytes")
    p.add_argument("--model", required=True, help=model_help)
    _add_phase_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _output_arg(p, "--emit", metavar="OUT.graph", help="also write the graph in .graph text form")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("run", help="run the numpy reference executor and save logits")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--tokens", required=True, type=_token_list, help="comma-separated token ids")
    p.add_argument("--phase", choices=("prefill", "decode"),
                   help="prefill: logits of every token; decode: last token against the cache "
                        "of the others")
    p.add_argument("--quant", metavar="RECIPE|FILE.toml",
                   help="run quantised: w8a8, w4a16:g128, w4a8, w4a4kv4, fp8, mxfp4, kv:bfp8, "
                        "joined by '+', or a recipe file (docs/formats.md); the reference "
                        "executor only (tessel sim --quant compiles a target's program quantised)")
    p.add_argument("--expert-bits", metavar="B|b0,b1,...|hot:K:HI:LO",
                   help="widths bit-nested expert weights are read at: every expert, one per "
                        "expert, or the K most-routed experts of each layer at HI bits and the "
                        "rest at LO (with a --quant recipe with :nested weights)")
    _output_arg(p, "--logits", required=True, metavar="OUT.npy", help="where to write the logits")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("compile", help="compile a model to a tile-ISA program")
    p.add_argument("--model", required=True, help=model_help)
    _add_phase_args(p)
    _target_args(p)
    p.add_argument("--tokens", type=_token_list, help="token ids for the data (with --with-data)")
    p.add_argument("--with-data", action="store_true",
                   help="include weights and inputs so the program can be simulated numerically")
    _output_arg(p, "-o", "--output", metavar="OUT.tbin|OUT.tasm",
                   help="where to write the program (required unless --dump-after)")
    p.add_argument("--unroll", action="store_true",
                   help="write the fully unrolled program (no loop words; the same instructions "
                        "executed), for comparison and for the RTL cross-check")
    _routing_arg(p)
    p.add_argument("--quant", metavar="RECIPE|FILE.toml",
                   help="compile under a quantisation recipe (w8a16, w4a16:g128, w8a8, w4a4kv4, "
                        "fp8, mxfp4, kv:bfp8, ...: docs/formats.md): weights stored as codes and "
                        "scales (made now), matmul inputs and KV writes rounded, KV caches stored "
                        "narrow where the target does")
    p.add_argument("--expert-bits", metavar="B|b0,b1,...|hot:K:HI:LO",
                   help="with a --quant recipe with :nested weights: the widths the bit-nested "
                        "expert weights are read at (every expert, one per expert, or the K "
                        "most-routed experts of each layer at HI bits, the rest LO: routed by "
                        "the calibration tokens in numeric runs, by --routing in timing-only ones)")
    p.add_argument("--dump-after", metavar="STEP",
                   help="print what compilation step STEP decided (e.g. storage, emit) and stop; "
                        "writes nothing")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("sim", help="compile and simulate a model, or simulate a program file")
    p.add_argument("program", nargs="?", metavar="PROGRAM.tbin")
    p.add_argument("--model", help=model_help)
    _add_phase_args(p)
    _target_args(p)
    p.add_argument("--tokens", type=_token_list, help="token ids (default: seeded random)")
    _output_arg(p, "--logits", metavar="OUT.npy", help="write the simulated logits")
    _output_arg(p, "--json", metavar="OUT.json", help="write the full result as JSON")
    p.add_argument("--gpu", metavar="NAMES",
                   help="GPUs to compare with, comma-separated (t4, v100, a100-40gb, a100-80gb, "
                        "rtx-a6000, h100-sxm, h200; default all; 'none' for no comparison)")
    _gpu_mode_arg(p)
    p.add_argument("--gpu-calibration", metavar="FILE.json",
                   help="a measurement from baselines/measure_gpu.py: adds a calibrated row")
    p.add_argument("--gpu-quant", metavar="RECIPE|FILE.toml",
                   help="run the GPU comparison quantised (w8a8, w4a16:g128, w4a4kv4, fp8, ...: "
                        "docs/validation.md, Quantised GEMMs); the simulated target still runs "
                        "unquantised")
    _gpu_attention_arg(p)
    p.add_argument("--quant", metavar="RECIPE|FILE.toml",
                   help="compile the target's program under a quantisation recipe (w8a16, "
                        "w4a16:g128, w8a8, w4a4kv4, fp8, mxfp4, kv:bfp8, ..., or a recipe file: "
                        "docs/formats.md): weights stored as codes and scales, matmul inputs and "
                        "KV writes rounded, KV caches stored narrow on the systolic and dataflow "
                        "targets. The GPU comparison stays fp16 unless --gpu-quant is given")
    p.add_argument("--expert-bits", metavar="B|b0,b1,...|hot:K:HI:LO",
                   help="with a --quant recipe with :nested weights: the widths the bit-nested "
                        "expert weights are read at (every expert, one per expert, or the K "
                        "most-routed experts of each layer at HI bits, the rest LO: routed by "
                        "the calibration tokens in numeric runs, by --routing in timing-only ones)")
    _routing_arg(p)
    _plan_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-functional", action="store_true", help="timing only, no numerics")
    mode.add_argument("--functional", action="store_true",
                      help="numerics even for models over 400 M parameters")
    p.add_argument("--override-arch", action="store_true",
                   help="simulate a program file on the --arch/--set architecture even though it "
                        "was compiled for another (the report names both)")
    p.set_defaults(handler=cmd_sim, target=None, gpu_mode=None)

    p = sub.add_parser("compare", help="one model and phase on several targets, a column each")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--targets", default=None,
                   help=f"comma-separated targets, each on its default preset (default "
                        f"{','.join(TARGETS)}); with --quant, target:preset names the preset")
    p.add_argument("--nodes", metavar="PRESETS",
                   help="comma-separated node presets instead (dgx-h100, sn40l-8, pim-cxl-32, "
                        "tpu-v4-8), each running the plan --tp/--pp/--microbatches give")
    p.add_argument("--tp", type=_positive, help="with --nodes: tensor-parallel ranks (default: "
                                                "each node's devices / --pp)")
    p.add_argument("--pp", type=_positive, help="with --nodes: pipeline stages (default: each "
                                                "node's devices / --tp)")
    p.add_argument("--microbatches", type=_positive, help="with --nodes: micro-batches (default 1)")
    _add_phase_args(p)
    p.add_argument("--gpu", metavar="NAMES", help="GPUs for the ratio rows (default t4; with "
                                                  "--nodes, name GPU nodes there instead)")
    _gpu_mode_arg(p)
    _gpu_attention_arg(p)
    _output_arg(p, "--json", metavar="OUT.json", help="write every target's result as JSON")
    p.add_argument("--no-functional", action="store_true", help="timing only, no numerics")
    p.add_argument("--quant", metavar="RECIPES",
                   help="comma-separated recipes side by side (none, w8a8, w4a16:g128, ...): "
                        "logits error on the reference executor, bytes by role, GPU time and "
                        "energy (default GPU a100-80gb), and with --targets each target's time "
                        "and energy under the recipe (target or target:preset); not with --nodes")
    _routing_arg(p)
    p.set_defaults(handler=cmd_compare, gpu_mode=None)

    p = sub.add_parser("coe", help="composition of experts: model switch times, DDR -> HBM vs GPU PCIe")
    p.add_argument("--models", required=True,
                   help="experts in switch order, comma-separated (model presets or Hugging Face directories)")
    p.add_argument("--arch", help="dataflow preset or .toml file (default sn40l)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one architecture field (repeatable)")
    p.add_argument("--pcie", choices=sorted(PCIE_GBPS), default="gen5",
                   help="the GPU's host link (default gen5)")
    _output_arg(p, "--json", metavar="OUT.json", help="write the switch times as JSON")
    p.set_defaults(handler=cmd_coe)

    p = sub.add_parser("asm", help="assemble .tasm text into a .tbin binary")
    p.add_argument("input", metavar="IN.tasm")
    _output_arg(p, "-o", "--output", required=True, metavar="OUT.tbin")
    p.set_defaults(handler=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble a .tbin binary into .tasm text")
    p.add_argument("input", metavar="IN.tbin")
    _output_arg(p, "-o", "--output", metavar="OUT.tasm", help="default: standard output")
    p.set_defaults(handler=cmd_disasm)

    p = sub.add_parser("serve", help="a request trace through a batching scheduler on a target "
                       "(docs/serving.md)")
    from tessel.serve.args import add_arguments
    add_arguments(p)
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser("sweep", help="evaluate a design-space sweep spec (docs/sweeps.md)")
    p.add_argument("spec", metavar="SPEC.toml")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, help="local worker processes (default: the CPU cores)")
    where.add_argument("--dask", metavar="ADDRESS|local:N",
                       help="run the points on a dask.distributed scheduler, or on N local Dask workers")
    p.add_argument("--out", metavar="DIR", help="results directory (default out/sweeps/<spec name>/; "
                   "checked by the sweep before any point runs)")
    p.set_defaults(handler=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Run as a program (no `argv`: the `tessel` script, `python -m
    tessel.cli`), it first sets the process's allocator policy (tessel/allocator.py)."""
    if argv is None:
        keep_freed_memory()
    with signals_raise():
        try:
            args = build_parser().parse_args(argv)
            for dest, flag in args.outputs:
                if getattr(args, dest) is not None:
                    check_output(getattr(args, dest), flag)
            return args.handler(args)
        except USER_ERRORS as e:
            return _fail(str(e))
        except BrokenPipeError:      # the reader closed our output (`tessel ... | head`): done
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as e:
            return _fail(f"{e.filename or ''}: {e.strerror}".lstrip(": "))
        except KeyboardInterrupt as e:
            interrupt = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
            print(f"error: {interrupt}", file=sys.stderr)
            return interrupt.exit_status


if __name__ == "__main__":
    sys.exit(main())
