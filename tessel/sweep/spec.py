"""Sweep specs: one TOML file, parsed and checked completely before any point runs.

    base = "systolic-32"                 # preset name or .toml (relative to the spec)
    models = ["gpt2", "llama-3.2-1b"]    # presets, HF directories, .graph files (relative to the spec)
    routing = "zipf:1.2"                 # mixture-of-experts models: uniform (default), zipf:S, file:PATH
    quant = ["none", "w4a16:g128"]       # quantisation recipes the programs are compiled under
    metrics = ["time_s", "energy_j"]     # recorded in the CSV (tessel.sweep.metrics)
    [[phases]]                           # preset and checkpoint models: kind, seq | kv, batch
    kind = "decode"
    kv = 128
    [parameters]                         # arch fields: value lists, ranges, linked fields
    rows = [16, 32, 64]
    sram_bytes = { start = 262144, stop = 2097152, factor = 2 }
    [sampling]                           # grid (default) or random: samples, seed
    [plot]                               # axes = [["time_s", "mac_utilization"]]
    [serve]                              # instead of [[phases]]: serve a workload per point
                                         # (tessel.sweep.serving), serve.* metrics

Every error is one line naming the file and the key (docs/sweeps.md has every key).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from arch import ArchError, load_arch
from arch.config import CONFIG_DIR
from arch.toml_file import read_toml
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.phase import Phase
from compiler.passes.routing import check_policy
from tessel.request import routing_policy
from tessel.sweep.metrics import PASS_AXES, SERVE_AXES, is_table, metric_error
from tessel.sweep.params import Parameter, SweepError, parse_parameter
from tessel.sweep.serving import ServeSpec, parse_serve

__all__ = ["SweepSpec", "ModelRef", "QuantRef", "Sampling", "load_spec", "SweepError"]

_KEYS = ("base", "models", "phases", "routing", "quant", "parameters", "metrics", "sampling", "plot",
         "serve")
_PHASE_DEFAULTS = {"seq": 128, "kv": 128, "batch": 1}     # as the command line's defaults
DEFAULT_METRICS = ("cycles", "time_s", "energy_j")
DEFAULT_SERVE_METRICS = ("serve.ttft_s.p99", "serve.tpot_s.p50", "serve.throughput.output_tokens_per_s",
                         "serve.energy.per_output_token_j")


@dataclass(frozen=True, slots=True)
class ModelRef:
    label: str               # as the spec writes it
    spec: str                # what load_model takes (a path resolved against the spec)
    digest: str              # preset name, or sha256 of the file's contents
    phased: bool             # phases apply (a .graph file has fixed shapes)
    routing: str | None      # mixture-of-experts models: the timing-only routing policy


@dataclass(frozen=True, slots=True)
class QuantRef:
    label: str               # as the spec writes it ("none", "w4a16:g128", "r.toml")
    recipe: str | None       # what --quant takes (a file resolved against the spec); None: none
    digest: str              # sha256 of a recipe file ("" for a named recipe)


@dataclass(frozen=True, slots=True)
class Sampling:
    method: str              # grid | random
    samples: int | None      # random: how many distinct grid points
    seed: int


@dataclass(frozen=True, slots=True)
class SweepSpec:
    path: Path
    target: str
    base: str                # preset name or resolved .toml path, for load_arch
    base_sha256: str         # of the base file: a changed preset is a different point
    parameters: tuple[Parameter, ...]
    models: tuple[ModelRef, ...]
    phases: tuple[Phase, ...]
    metrics: tuple[str, ...]
    sampling: Sampling
    plot_axes: tuple[tuple[str, str], ...]
    routing_digest: str = ""  # of a file:PATH routing policy: a changed file is a new point
    serve: ServeSpec | None = None   # [serve]: every task serves a workload instead of a phase
    quant: tuple["QuantRef", ...] = ()   # recipes (or "none") every point runs under; (): no such axis

    @property
    def pareto_axes(self) -> tuple[str, str]:
        """The first panel of the plot and the CSV's `pareto` column."""
        return SERVE_AXES if self.serve is not None else PASS_AXES


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    table = read_toml(path, SweepError)
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise SweepError(f"{path}: {unknown[0]}: unknown key (keys: {', '.join(_KEYS)})")
    base, base_file, arch = _base(path, table)
    parameters = _parameters(path, table, arch)
    routing, routing_digest = _routing(path, table)
    models = _models(path, table, routing)
    serve = None
    if "serve" in table:
        if "phases" in table:
            raise SweepError(f"{path}: phases: not with [serve] (a serving point runs its own "
                             "prefill and decode steps)")
        serve = parse_serve(path, table["serve"], arch.target, models)
    phases = _phases(path, table, models) if serve is None else ()
    metrics = tuple(_names(path, table, "metrics", DEFAULT_SERVE_METRICS if serve else DEFAULT_METRICS,
                           serve=serve is not None))
    axes = _plot(path, table, parameters, serve=serve is not None)
    quant = _quant(path, table, arch, models, phases, serve is not None)
    return SweepSpec(path, arch.target, base, hashlib.sha256(base_file.read_bytes()).hexdigest(),
                     parameters, models, phases, metrics, _sampling(path, table, parameters), axes,
                     routing_digest, serve, quant)


def _quant(path: Path, table: Mapping[str, Any], arch: Any, models: tuple[ModelRef, ...],
           phases: tuple[Phase, ...], serving: bool) -> tuple[QuantRef, ...]:
    """The recipes every point is compiled under (`none`: full precision; a .toml recipe file
    relative to the spec), each checked against the target and every model and phase now
    (tessel.request.target_recipe)."""
    if "quant" not in table:
        return ()
    from tessel.errors import USER_ERRORS
    from tessel.request import target_recipe
    names = _names(path, table, "quant", None)
    if serving:
        raise SweepError(f"{path}: quant: not with [serve] (a serving point runs full precision)")
    if len(set(names)) != len(names):
        raise SweepError(f"{path}: quant: a recipe is listed twice")
    out = []
    for i, name in enumerate(names):
        if name == "none":
            out.append(QuantRef(name, None, ""))
            continue
        spec, digest = name, ""
        if name.endswith(".toml"):
            spec = str(path.parent / name)
            try:
                digest = hashlib.sha256(Path(spec).read_bytes()).hexdigest()
            except OSError as e:
                raise SweepError(f"{path}: quant[{i}]: {spec}: cannot read ({e.strerror})") from None
        for model in models:
            if not model.phased:
                raise SweepError(f"{path}: quant[{i}]: model '{model.label}' is a .graph file; "
                                 "a recipe needs a model config")
            loaded = load_model(model.spec)
            for phase in phases:
                try:
                    target_recipe(loaded, phase, arch.target, arch, None, spec)
                except USER_ERRORS as e:
                    raise SweepError(f"{path}: quant[{i}]: {e}") from None
        out.append(QuantRef(name, spec, digest))
    return tuple(out)


def _base(path: Path, table: Mapping[str, Any]) -> tuple[str, Path, Any]:
    base = table.get("base")
    if not isinstance(base, str):
        raise SweepError(f"{path}: base: expected a preset name or a .toml file, got {base!r}")
    if base.endswith(".toml"):
        base = str(path.parent / base)
    try:
        arch = load_arch(base)
    except ArchError as e:
        raise SweepError(f"{path}: base: {e}") from None
    return base, Path(base) if base.endswith(".toml") else CONFIG_DIR / f"{base}.toml", arch


def _parameters(path: Path, table: Mapping[str, Any], arch: Any) -> tuple[Parameter, ...]:
    raw = table.get("parameters")
    if not isinstance(raw, Mapping) or not raw:
        raise SweepError(f"{path}: parameters: expected a table of one or more parameters")
    parameters, owner = [], {}
    for label, values in raw.items():
        where = f"{path}: parameters.{label}"
        parameter = parse_parameter(label, values, arch, where)
        for field in parameter.fields:
            if field in owner:
                raise SweepError(f"{where}: field '{field}' is also set by parameters.{owner[field]}")
            owner[field] = label
        parameters.append(parameter)
    return tuple(parameters)


def _routing(path: Path, table: Mapping[str, Any]) -> tuple[str | None, str]:
    """The spec's routing policy (a file: path resolved against the spec) and the digest of
    its file; (None, "") when the spec names none."""
    raw = table.get("routing")
    if raw is None:
        return None, ""
    if not isinstance(raw, str):
        raise SweepError(f"{path}: routing: expected a policy (uniform, zipf:S, file:PATH), got {raw!r}")
    kind, _, arg = raw.partition(":")
    policy = f"file:{path.parent / arg}" if kind == "file" and arg else raw
    try:
        check_policy(policy)
    except GraphError as e:
        raise SweepError(f"{path}: routing: {e}") from None
    if kind == "router":
        raise SweepError(f"{path}: routing: sweeps run timing only; 'router' needs numerics "
                         "(uniform, zipf:S or file:PATH)")
    if kind != "file":
        return policy, ""
    try:
        return policy, hashlib.sha256(Path(policy[5:]).read_bytes()).hexdigest()
    except OSError as e:
        raise SweepError(f"{path}: routing: {policy[5:]}: cannot read ({e.strerror})") from None


def _models(path: Path, table: Mapping[str, Any], routing: str | None) -> tuple[ModelRef, ...]:
    names = _names(path, table, "models", None)
    models = []
    for i, label in enumerate(names):
        local = label.endswith(".graph") or "/" in label
        spec = str(path.parent / label) if local else label
        try:
            model = load_model(spec)
            policy = routing_policy(model, numerics=False, routing=None)
        except GraphError as e:
            raise SweepError(f"{path}: models[{i}]: {e}") from None
        if local:
            source = Path(spec) / "config.json" if Path(spec).is_dir() else Path(spec)
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        else:
            digest = label
        models.append(ModelRef(label, spec, digest, model.config is not None,
                               (routing or policy) if policy else None))
    if len({m.label for m in models}) != len(models):
        raise SweepError(f"{path}: models: a model is listed twice")
    if routing is not None and not any(m.routing for m in models):
        raise SweepError(f"{path}: routing: applies to mixture-of-experts models only; "
                         "no model here has experts")
    return tuple(models)


def _names(path: Path, table: Mapping[str, Any], key: str, default: tuple[str, ...] | None,
           serve: bool = False) -> list[str]:
    names = table.get(key, default)
    if names is None:
        raise SweepError(f"{path}: {key}: missing (a list of names)")
    if not isinstance(names, (list, tuple)) or not names:
        raise SweepError(f"{path}: {key}: expected a non-empty list of names, got {names!r}")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise SweepError(f"{path}: {key}[{i}]: expected a name, got {name!r}")
        if key == "metrics" and (why := metric_error(name, serve)):
            raise SweepError(f"{path}: metrics[{i}]: {why}")
    return list(names)


def _phases(path: Path, table: Mapping[str, Any], models: tuple[ModelRef, ...]) -> tuple[Phase, ...]:
    raw = table.get("phases")
    phased = [m for m in models if m.phased]
    if raw is None:
        if phased:
            raise SweepError(f"{path}: phases: missing, and preset and checkpoint models need one "
                             f"or more ([[phases]] kind = \"decode\", kv = 128)")
        return ()
    if not phased:
        raise SweepError(f"{path}: phases: apply to preset and checkpoint models only; every "
                         "model here is a .graph file")
    if not isinstance(raw, list) or not raw:
        raise SweepError(f"{path}: phases: expected a list of tables ([[phases]]), got {raw!r}")
    phases = [_phase(path, i, entry) for i, entry in enumerate(raw)]
    for i, phase in enumerate(phases):
        for model in phased:
            try:
                load_model(model.spec).graph(phase)
            except GraphError as e:
                raise SweepError(f"{path}: phases[{i}]: {e}") from None
    if len(set(phases)) != len(phases):
        raise SweepError(f"{path}: phases: a phase is listed twice")
    return tuple(phases)


def _phase(path: Path, i: int, entry: Any) -> Phase:
    where = f"{path}: phases[{i}]"
    if not isinstance(entry, Mapping):
        raise SweepError(f"{where}: expected a table with kind, seq | kv, batch, got {entry!r}")
    kind = entry.get("kind")
    allowed = {"prefill": ("kind", "seq", "batch"), "decode": ("kind", "kv", "batch")}
    if kind not in allowed:
        raise SweepError(f"{where}.kind: expected \"prefill\" or \"decode\", got {kind!r}")
    unknown = sorted(set(entry) - set(allowed[kind]))
    if unknown:
        raise SweepError(f"{where}.{unknown[0]}: not a key of a {kind} phase ({', '.join(allowed[kind])})")
    sizes = {k: entry.get(k, _PHASE_DEFAULTS[k]) for k in allowed[kind][1:]}
    for k, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SweepError(f"{where}.{k}: expected a positive integer, got {v!r}")
    if kind == "prefill":
        return Phase("prefill", sizes["seq"], 0, sizes["batch"])
    return Phase("decode", 1, sizes["kv"], sizes["batch"])


def _sampling(path: Path, table: Mapping[str, Any], parameters: tuple[Parameter, ...]) -> Sampling:
    raw = table.get("sampling", {})
    where = f"{path}: sampling"
    if not isinstance(raw, Mapping):
        raise SweepError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - {"method", "samples", "seed"})
    if unknown:
        raise SweepError(f"{where}.{unknown[0]}: unknown key (keys: method, samples, seed)")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepError(f"{where}.method: expected \"grid\" or \"random\", got {method!r}")
    for key in ("samples", "seed"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise SweepError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    if method == "grid":
        if "samples" in raw:
            raise SweepError(f"{where}.samples: applies to method = \"random\" only")
        return Sampling("grid", None, 0)
    samples = raw.get("samples")
    grid = 1
    for p in parameters:
        grid *= len(p.values)
    if not samples:
        raise SweepError(f"{where}.samples: random sampling needs a positive number of samples")
    if samples > grid:
        raise SweepError(f"{where}.samples: {samples} is more than the {grid} points of the grid")
    return Sampling("random", samples, raw.get("seed", 0))


def _plot(path: Path, table: Mapping[str, Any], parameters: tuple[Parameter, ...],
          serve: bool) -> tuple[tuple[str, str], ...]:
    numeric = {f for p in parameters for i, f in enumerate(p.fields)
               if all(isinstance(v[i], (int, float)) and not isinstance(v[i], bool) for v in p.values)}
    raw = table.get("plot", {})
    if not isinstance(raw, Mapping) or set(raw) - {"axes"}:
        raise SweepError(f"{path}: plot: expected a table with the one key 'axes'")
    axes = raw.get("axes", [])
    if not isinstance(axes, list):
        raise SweepError(f"{path}: plot.axes: expected a list of [x, y] pairs, got {axes!r}")
    for i, pair in enumerate(axes):
        where = f"{path}: plot.axes[{i}]"
        if not (isinstance(pair, list) and len(pair) == 2):
            raise SweepError(f"{where}: expected a pair [x, y] of metric or parameter names, got {pair!r}")
        for name in pair:
            if name not in numeric and (why := metric_error(name, serve)):
                raise SweepError(f"{where}: {why}, nor a numeric swept parameter")
            if is_table(name):
                raise SweepError(f"{where}: '{name}' is a table: name one entry, such as {name}.<key>")
    return tuple(tuple(pair) for pair in axes)
