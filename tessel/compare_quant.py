"""`tessel compare --quant a,b,c`: quantisation recipes side by side on one model and phase.

Per recipe (`none`: every tensor at full precision, the row the others are measured against):
- logits: the reference executor run quantised against the same run unquantised on the tokens
  (a prefill of all but the last, then a decode step of the last: compiler.quant.report), as
  the largest error over the largest logit and the share of positions whose top-1 token agrees;
  only for a model the reference runs by default (tessel.request.numerics_by_default, at most
  400 M parameters), '-' otherwise;
- bytes: the weights against BF16, KV and matmul inputs per token (compiler.quant.report);
- per GPU: time and energy of the phase's graph under the recipe (tessel/gpu_quant.py, refused
  in one line where a GPU has no tensor-core rate for it) and the speedup over `none`.
- per simulated target given (`--targets`, each on its default preset or, as `target:preset`,
  on that one: systolic:systolic-32, whose array has int8 and int4 MACs): the phase's time and
  energy with the target's program compiled under the recipe (timing only: tessel sim
  --quant), and the speedup over `none`; a recipe a target cannot run is refused in one line
  before anything runs, as a GPU's is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from arch import load_arch
from compiler.frontend import Model
from compiler.passes.routing import moe_routers
from compiler.phase import Phase, prefill
from compiler.quant import Recipe, RecipeError, plan, recipe_reports, resolve_recipe, role_bytes
from sim.gpu import gpu_baseline
from tessel.gpu_kernels import graph_kernels
from tessel.driver import policy_routed, run
from tessel.gpu_quant import check_gpus, narrowing
from tessel.table import render_table

__all__ = ["RecipeRow", "compare_recipes", "render_recipes", "parse_recipes"]

NONE = "none"


@dataclass(frozen=True)
class RecipeRow:
    recipe: str
    relative_error: float | None        # max |quantised - full| / max |full| over the logits
    top1_agreement: float | None
    weights_ratio: float                # quantised weights' bytes / the same tensors in BF16
    kv_bytes_per_token: float
    activation_bytes_per_token: float
    gpu: dict[str, dict[str, float]] = field(default_factory=dict)   # name -> time_s, energy_j
    targets: dict[str, dict[str, float]] = field(default_factory=dict)   # target[:preset] -> time_s, energy_j

    def as_dict(self) -> dict:
        return asdict(self)


def parse_recipes(text: str) -> list[str]:
    """Comma-separated recipes (`none` allowed), each once; `+` joins parts within one."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise RecipeError("--quant: give one or more recipes (none, w8a8, w4a16:g128, ...)")
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise RecipeError(f"--quant: recipe {sorted(seen)[0]!r} given twice")
    return names


def compare_recipes(model: Model, phase: Phase, recipes: Sequence[str], gpus: Sequence[str],
                    mode: str, tokens: Sequence[int] | None,
                    targets: Sequence[str] = (), routing: str | None = None) -> list[RecipeRow]:
    """One row per recipe (module docstring); `tokens`: for the logits, None to skip them;
    `targets`: simulated targets (`target` or `target:preset`) that run each recipe's
    program (timing only); `routing`: the policy a mixture of experts' GPU kernels and target
    runs are routed by (tessel.request.routing_policy; None for dense models)."""
    if model.config is None:
        raise RecipeError(f"--quant: '{model.name}' is a .graph file; recipes need a model config")
    n_layers = model.config.n_layer
    resolved = {name: Recipe(NONE) if name == NONE else resolve_recipe(name) for name in recipes}
    graph, one = policy_routed(model.graph(phase), routing)[0], model.graph(prefill(1))
    archs = [load_arch(g) for g in gpus]
    narrows = {}
    for name, recipe in resolved.items():          # every recipe checked before anything runs
        planned = plan(one, recipe, n_layers)
        if name != NONE:
            narrows[name] = narrowing(graph, recipe, n_layers, moe_routers(model.graph(phase)))
            check_gpus(narrows[name], archs)
        resolved[name] = (recipe, planned)
    requests = {(name, t): _target_request(model, phase, t, None if name == NONE else name, routing)
                for name in resolved for t in targets}   # each checked before anything runs
    errors = {}
    quantised = [r for name, (r, _) in resolved.items() if name != NONE]
    if tokens is not None and quantised:
        for report in recipe_reports(model, quantised, tokens, np.float32):
            errors[report.recipe] = (report.relative_error, report.top1_agreement)
    rows = []
    for name, (recipe, planned) in resolved.items():
        b = role_bytes(one, planned)
        kernels = graph_kernels(graph, narrows.get(name))
        gpu = {}
        for arch in archs:
            base = gpu_baseline(kernels, arch, mode)
            gpu[arch.name] = {"time_s": base.time_s, "energy_j": base.energy_j}
        err, top1 = (0.0, 1.0) if name == NONE and tokens is not None else errors.get(
            recipe.name, (None, None))
        simulated = {}
        for t in targets:
            result = run(requests[name, t]).result
            simulated[t] = {"time_s": result.time_s, "energy_j": result.energy_j}
        rows.append(RecipeRow(name, err, top1, b.weights / b.weights_bf16 if b.weights_bf16 else 1.0,
                              b.kv_per_token, b.activations_per_token, gpu, simulated))
    return rows


def _target_request(model: Model, phase: Phase, target: str, recipe: str | None,
                    routing: str | None):
    """A timing-only run of `target` (`name` on its default preset, or `name:preset`), compiled
    under `recipe`, its experts routed by `routing`."""
    from tessel.request import make_request
    from tessel.targets import TARGETS
    name, _, preset = target.partition(":")
    return make_request(model, name, TARGETS[name].load_arch(preset or None), phase,
                        numerics=False, quant=recipe, routing=routing)


def render_recipes(title: str, rows: Sequence[RecipeRow]) -> str:
    """A table: logits, bytes, and per GPU time, energy and speedup over `none` (if given)."""
    gpus = list(rows[0].gpu) if rows else []
    base = next((r for r in rows if r.recipe == NONE), None)
    header = ["recipe", "logits err", "top-1", "weights/bf16", "KV B/token", "act B/token"]
    columns = [(g, "gpu") for g in gpus] + [(t, "targets") for t in (rows[0].targets if rows else {})]
    for g, _ in columns:
        header += [f"{g} time", f"{g} energy"] + ([f"{g} speedup"] if base else [])
    body = []
    for r in rows:
        line = [r.recipe, "-" if r.relative_error is None else f"{r.relative_error:.3g}",
                "-" if r.top1_agreement is None else f"{r.top1_agreement:.1%}",
                f"{r.weights_ratio:.4f}", f"{r.kv_bytes_per_token:,.0f}",
                f"{r.activation_bytes_per_token:,.0f}"]
        for g, kind in columns:
            t, e = getattr(r, kind)[g]["time_s"], getattr(r, kind)[g]["energy_j"]
            line += [f"{t * 1e3:.3f} ms", f"{e * 1e3:.2f} mJ"]
            if base:
                line.append(f"{getattr(base, kind)[g]['time_s'] / t:.2f}x")
        body.append(line)
    notes = ["logits: the reference executor quantised against itself at full precision "
             "(docs/formats.md)"]
    if rows and rows[0].targets:
        notes.append("targets: timing only, each on its default preset (or the one named), the "
                     "program compiled under the recipe (tessel sim --quant; docs/formats.md)")
    return "\n".join([title, render_table(header, body), *[f"note: {n}" for n in notes]])
