"""`tessel serve`: a request trace through a scheduler on a simulated target or a GPU preset.

Step costs come from the simulator (tessel/serve/simulated.py), once per distinct step shape;
the KV cache is what the device's memory holds after the weights, in blocks. With
`--kv-bucket`, the run also simulates a sample of its steps at their exact lengths and reports
the bucketing's error on them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from arch import ArchError, load_arch
from arch.links import load_link
from arch.nodes import load_node
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.parallel.plan import make_plan
from tessel.files import atomic_write
from tessel.request import routing_policy
from tessel.serve.args import CHECK_STEPS, SYNTHETIC
from tessel.serve.errors import ServeError
from tessel.serve.output import write_outputs
from tessel.serve.run import ServeSettings, serve_on
from tessel.serve.scheduler import DEFAULT_CHUNK, Scheduler
from tessel.serve.traces import read_trace
from tessel.serve.workload import synthetic
from tessel.table import render_table, si
from tessel.targets import TARGETS

__all__ = ["cmd_serve", "render_summary", "render_comparison"]


def cmd_serve(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    if model.config is None:
        raise ServeError(f"--model {args.model}: a .graph file has no requests to serve")
    if args.kv_bucket is not None and args.kv_bucket < 1:
        raise ServeError(f"--kv-bucket {args.kv_bucket}: must be an integer >= 1")
    if args.token_grid is not None and args.token_grid < 2:
        raise ServeError(f"--token-grid {args.token_grid}: must be an integer >= 2")
    if args.token_grid is not None and (args.target == "gpu" or args.step_cost == "whole"):
        raise ServeError("--token-grid: only with --step-cost parts on a simulated target")
    if args.check_steps is not None and args.check_steps < 0:
        raise ServeError(f"--check-steps {args.check_steps}: must be an integer >= 0")
    _apply_node(args)
    _refuse_unused(args)
    _check_plan(args, model)
    args.routing = routing_policy(model, False, args.routing) or "uniform"
    requests = read_trace(args.trace) if args.trace is not None else _synthetic(args)
    scheduler = Scheduler(args.scheduler, args.max_batch, args.token_budget,
                          DEFAULT_CHUNK if args.chunk is None else args.chunk)
    if args.compare is not None:
        return _compare(args, model, requests, scheduler)
    args.target = args.target or "systolic"
    if args.target == "gpu":
        arch = _gpu(args.arch or "gpu-a100-80gb", "--arch")
    else:
        arch = TARGETS[args.target].load_arch(args.arch, args.set)
    summary, result = serve_on(model, requests, _settings(args, scheduler), args.target, arch)
    if args.out is not None:
        write_outputs(result, args.out, summary=summary, devices=args.tp or 1)   # a track a rank
    if args.json is not None:
        atomic_write(Path(args.json), json.dumps(summary, indent=1).encode())
    ranks = f" x {args.tp} (tp over {summary['target']['link']})" if (args.tp or 1) > 1 else ""
    print(render_summary(summary, f"tessel serve: {model.name} on {arch.name}{ranks} "
                                  f"({args.target}), {scheduler.policy}"))
    return 0


def _apply_node(args) -> None:
    """`--node NAME`: its device preset (with its overrides before `--set`), its target, its
    devices as tensor-parallel ranks and its link, in place of --target/--arch/--tp/--link."""
    if args.node is None:
        return
    clash = [f"--{n}" for n in ("target", "arch", "tp", "link", "compare")
             if getattr(args, n) is not None]
    if clash:
        raise ServeError(f"{' '.join(clash)}: not with --node (the node preset sets them)")
    node = load_node(args.node)
    args.target = load_arch(node.device).target
    args.arch, args.tp, args.link = node.device, node.devices, node.link
    args.set = node.overrides(args.set)


def _check_plan(args, model) -> None:
    """Tensor parallelism that the model cannot take, or a link that does not exist, is
    refused before anything runs, naming the node whose devices asked for it."""
    if args.link is not None:
        try:
            load_link(args.link)
        except ArchError as e:
            raise ServeError(f"--link {args.link}: {e}") from None
    if (args.tp or 1) > 1:
        try:
            make_plan(model.config, args.tp, tp=args.tp)
        except GraphError as e:
            raise ServeError(f"--node {args.node} ({args.tp} devices as tensor-parallel ranks): "
                             f"{e}" if args.node else str(e)) from None


def _synthetic(args):
    """The synthetic workload the flags ask for, SYNTHETIC's defaults where left out."""
    given = {k: SYNTHETIC[k] if getattr(args, k) is None else getattr(args, k) for k in SYNTHETIC}
    return synthetic(given["requests"], args.rate, given["prompt"], given["output"], given["seed"])


def _refuse_unused(args) -> None:
    """A flag given where it does not apply is refused, not ignored."""
    if args.trace is not None:
        given = [f"--{k}" for k in SYNTHETIC if getattr(args, k) is not None]
        if given:
            raise ServeError(f"{' '.join(given)}: only with --rate (a synthetic workload), not "
                             "with --trace")
    if args.chunk is not None and args.scheduler != "sarathi":
        raise ServeError(f"--chunk: only with --scheduler sarathi (the {args.scheduler} "
                         "scheduler prefills whole)")
    exact = args.kv_bucket is None and (args.target == "gpu" or args.step_cost == "whole")
    if args.check_steps is not None and exact and args.compare is None:
        raise ServeError("--check-steps: nothing to check (the steps are priced whole at exact "
                         "lengths; it applies to --step-cost parts or --kv-bucket)")
    if args.target == "gpu" and args.set:
        raise ServeError(f"--set: not with {'--node ' + args.node if args.node else '--target gpu'} "
                         "(GPU presets are priced as they are)")
    if args.target == "gpu" and args.step_cost is not None:
        raise ServeError("--step-cost: simulated targets only (a GPU preset's parts are its "
                         "whole step's kernels)")
    if args.tp is not None and args.tp < 1:
        raise ServeError(f"--tp {args.tp}: must be an integer >= 1")
    if args.link is not None and (args.tp or 1) == 1:
        raise ServeError("--link: only with --tp > 1 (the link joins tensor-parallel ranks)")
    if args.link is not None and args.compare is not None:
        raise ServeError("--link: not with --compare (each column uses its own target's link)")
    if args.swap_link is not None and args.preemption != "swap":
        raise ServeError("--swap-link: only with --preemption swap")


def _gpu(name: str, flag: str):
    arch = load_arch(name)
    if arch.target != "gpu":
        raise ServeError(f"{flag} {name}: a {arch.target} architecture, not a GPU preset")
    return arch


def _settings(args, scheduler: Scheduler) -> ServeSettings:
    return ServeSettings(scheduler, routing=args.routing, preemption=args.preemption,
                         swap_link=args.swap_link, block_size=args.block_size,
                         kv_blocks=args.kv_blocks, kv_bucket=args.kv_bucket,
                         slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot,
                         step_cost=args.step_cost or "parts", token_grid=args.token_grid,
                         tp=args.tp or 1, link=args.link,
                         check_steps=CHECK_STEPS if args.check_steps is None else args.check_steps)


def _compare(args, model, requests, scheduler: Scheduler) -> int:
    """`--compare`: the same requests and scheduler on each listed target (its default preset)
    or GPU preset, a column each."""
    clash = [f"--{n.replace('_', '-')}" for n in ("arch", "out", "kv_blocks") if getattr(args, n)]
    clash += ["--set"] * bool(args.set) + ["--target"] * (args.target is not None)
    if clash:
        raise ServeError(f"{' '.join(clash)}: not with --compare (each column runs its own "
                         "target's default preset and memory)")
    entries = [e.strip() for e in args.compare.split(",") if e.strip()]
    if not entries:
        raise ServeError(f"--compare {args.compare!r}: list targets or GPU presets, e.g. "
                         "systolic,dataflow,gpu-a100-80gb")
    archs = {e: (e, TARGETS[e].load_arch()) if e in TARGETS else ("gpu", _gpu(e, "--compare"))
             for e in entries}              # every column checked before any runs
    settings = _settings(args, scheduler)
    runs = {e: serve_on(model, requests, settings, *archs[e])[0] for e in entries}
    if args.json is not None:
        atomic_write(Path(args.json), json.dumps(runs, indent=1).encode())
    ranks = f", tp {args.tp} (each target's link)" if (args.tp or 1) > 1 else ""
    print(render_comparison(runs, f"tessel serve --compare: {model.name}, {scheduler.policy}{ranks}"))
    return 0


def render_summary(s: dict, title: str) -> str:
    return "\n".join([title, render_table(("metric", "value"), _rows(s))])


def _rows(s: dict) -> list[tuple[str, str]]:
    """A summary's figures as (metric, value) rows."""
    def dist(d, scale=1e3, unit="ms") -> str:
        if d is None:
            return "-"
        return " / ".join(f"{d[k] * scale:.4g}" for k in ("p50", "p90", "p99")) + f" {unit}"
    rows = [("requests", f"{s['requests']['finished']} finished, {s['requests']['rejected']} rejected"),
            ("TTFT p50 / p90 / p99", dist(s["ttft_s"])),
            ("TPOT p50 / p90 / p99", dist(s["tpot_s"])),
            ("E2E p50 / p90 / p99", dist(s["e2e_s"], 1, "s")),
            ("throughput", f"{s['throughput']['output_tokens_per_s'] or 0:,.1f} output tokens/s"),
            ("energy per output token", si(s["energy"]["per_output_token_j"] or 0, "J")),
            ("steps", f"{s['steps']['count']:,} (mean batch {s['steps']['mean_batch'] or 0:.1f}, "
                      f"{s['steps']['preemptions']} preemptions)"),
            ("step shapes priced", f"{s['cost_model']['distinct_shapes']:,} "
                                   f"({s['cost_model']['memo_hits']:,} steps from memory"
                                   + (f"; {parts:,} parts simulated)" if (parts := s["step_cost"]
                                      ["parts_simulated"]) is not None else ")"))]
    if s.get("slo"):
        rows.append(("SLO attainment", f"{s['slo'].get('attainment', 0):.1%}"))
    if "steps_checked" in s["step_cost"]:
        e = s["step_cost"]
        how = ", ".join(filter(None, ["parts" * (e["method"] == "parts"),
                                      e["token_grid"] and f"tokens on a grid of {e['token_grid']}",
                                      e["kv_bucket"] and f"contexts bucketed to {e['kv_bucket']}"]))
        rows.append(("step cost error", f"{how}: mean {(e['mean_rel_error'] or 0):.2%}, worst "
                     f"{(e['max_rel_error'] or 0):.2%} of the time on {e['steps_checked']} steps "
                     "simulated whole" if e["steps_checked"] else f"{how}: not checked"))
    return rows


def render_comparison(runs: dict[str, dict], title: str) -> str:
    """One column per target: the figures `render_summary` shows."""
    tables = {name: dict(_rows(s)) for name, s in runs.items()}
    metrics = list(dict.fromkeys(m for rows in tables.values() for m in rows))
    rows = [(m, *(tables[name].get(m, "-") for name in runs)) for m in metrics]
    return "\n".join([title, render_table(("metric", *runs), rows)])
