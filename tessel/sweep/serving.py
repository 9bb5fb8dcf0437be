"""A sweep's `[serve]` table: each point serves one workload through one scheduler, as
`tessel serve` does (tessel/serve/run.py `serve_on`), and records the summary's figures.

    [serve]
    rate = 4.0                        # synthetic Poisson arrivals (requests/s), or trace = "x.csv"
    requests = 16                     # with rate only: requests, prompt, output, seed
    prompt = "uniform:32,128"
    output = "fixed:16"
    scheduler = "sarathi"             # static | continuous | sarathi (default)
    kv_bucket = 64                    # and max_batch, token_budget, chunk, preemption,
                                      # block_size, kv_blocks, step_cost, token_grid, check_steps,
                                      # slo_ttft, slo_tpot (seconds), tp, link

Every key is checked when the spec loads, with the checks `tessel serve` makes of its flags
(the synthetic workload is drawn once, a trace file is read whole), and a bad one is refused
in one line naming the file and the key. The settings and the workload (a trace by its
contents' digest) are part of every point's store key.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from arch.config import link_names
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.parallel.plan import make_plan
from tessel.progress import QUIET
from tessel.serve.args import CHECK_STEPS, STEP_COSTS, SYNTHETIC
from tessel.serve.errors import ServeError
from tessel.serve.kv import DEFAULT_BLOCK_SIZE
from tessel.serve.run import ServeSettings, serve_on
from tessel.serve.scheduler import (DEFAULT_CHUNK, DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET,
                                    POLICIES, Scheduler)
from tessel.serve.traces import read_trace
from tessel.serve.workload import Lengths, Request, parse_lengths, synthetic
from tessel.sweep.metrics import flatten_summary
from tessel.sweep.params import SweepError
from tessel.targets import TARGETS

__all__ = ["ServeSpec", "Workload", "parse_serve", "requests_of", "serve_figures"]

_KEYS = ("trace", "rate", *SYNTHETIC, "scheduler", "max_batch", "token_budget", "chunk",
         "preemption", "block_size", "kv_blocks", "kv_bucket", "step_cost", "token_grid",
         "check_steps", "slo_ttft", "slo_tpot", "tp", "link")
_PREEMPTIONS = ("recompute", "swap")


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests every point serves: a trace file (read by its path, known by its
    contents' digest) or a seeded synthetic workload (known by its arguments)."""
    trace: Path | None
    trace_sha256: str
    rate: float | None
    requests: int
    prompt: Lengths | None
    output: Lengths | None
    seed: int

    def identity(self) -> dict[str, Any]:
        if self.trace is not None:
            return {"trace_sha256": self.trace_sha256}
        return {"rate": self.rate, "requests": self.requests, "prompt": asdict(self.prompt),
                "output": asdict(self.output), "seed": self.seed}


@dataclass(frozen=True, slots=True)
class ServeSpec:
    workload: Workload
    scheduler: Scheduler
    preemption: str                  # recompute | swap (over tessel serve's default host link)
    block_size: int
    kv_blocks: int | None            # None: the device's memory after the weights
    kv_bucket: int | None            # None: exact cache lengths
    step_cost: str                   # parts | whole (tessel/serve/run.py)
    token_grid: int | None           # parts: token counts interpolated between multiples
    check_steps: int                 # steps simulated whole and exactly to measure the error
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    tp: int = 1                      # tensor-parallel ranks each step runs on
    link: str | None = None          # how they are joined (default: the target's)

    def identity(self) -> dict[str, Any]:
        """What a point's result depends on beyond the arch and the model (its store key)."""
        return {"workload": self.workload.identity(), "scheduler": self.scheduler.describe(),
                "preemption": self.preemption, "block_size": self.block_size,
                "kv_blocks": self.kv_blocks, "kv_bucket": self.kv_bucket,
                "step_cost": self.step_cost, "check_steps": self.check_steps,
                **({"token_grid": self.token_grid} if self.token_grid else {}),
                **({"tp": self.tp, "link": self.link} if self.tp > 1 else {}),
                "slo_ttft_s": self.slo_ttft_s, "slo_tpot_s": self.slo_tpot_s}

    def settings(self, routing: str | None) -> ServeSettings:
        return ServeSettings(self.scheduler, routing=routing or "uniform", preemption=self.preemption,
                             block_size=self.block_size, kv_blocks=self.kv_blocks,
                             kv_bucket=self.kv_bucket, slo_ttft_s=self.slo_ttft_s,
                             slo_tpot_s=self.slo_tpot_s, step_cost=self.step_cost,
                             token_grid=self.token_grid, check_steps=self.check_steps,
                             tp=self.tp, link=self.link)


def parse_serve(path: Path, raw: Any, target: str, models: Sequence[Any]) -> ServeSpec:
    """The `[serve]` table of the spec at `path`, for its base's target and its models."""
    where = f"{path}: serve"
    if not isinstance(raw, Mapping):
        raise SweepError(f"{where}: expected a table ([serve]), got {raw!r}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise SweepError(f"{where}.{unknown[0]}: unknown key (keys: {', '.join(_KEYS)})")
    if target not in TARGETS:
        raise SweepError(f"{path}: base: a {target} architecture; [serve] runs on a simulated "
                         f"target ({', '.join(TARGETS)})")
    for i, model in enumerate(models):
        if not model.phased:
            raise SweepError(f"{path}: models[{i}]: {model.label}: a .graph file has no requests "
                             "to serve; [serve] needs preset or checkpoint models")
    policy = _choice(where, raw, "scheduler", tuple(POLICIES), "sarathi")
    if "chunk" in raw and policy != "sarathi":
        raise SweepError(f"{where}.chunk: only with scheduler = \"sarathi\" (the {policy} "
                         "scheduler prefills whole)")
    try:
        scheduler = Scheduler(policy, _integer(where, raw, "max_batch", DEFAULT_MAX_BATCH),
                              _integer(where, raw, "token_budget", DEFAULT_TOKEN_BUDGET),
                              _integer(where, raw, "chunk", DEFAULT_CHUNK))
    except ServeError as e:              # the one check across keys: token_budget >= max_batch
        raise SweepError(f"{where}.token_budget: {e}") from None
    step_cost = _choice(where, raw, "step_cost", STEP_COSTS, "parts")
    kv_bucket = _integer(where, raw, "kv_bucket", None)
    token_grid = _integer(where, raw, "token_grid", None, least=2)
    if token_grid is not None and step_cost == "whole":
        raise SweepError(f"{where}.token_grid: only with step_cost = \"parts\"")
    if "check_steps" in raw and step_cost == "whole" and kv_bucket is None:
        raise SweepError(f"{where}.check_steps: nothing to check (the steps are priced whole at "
                         "exact lengths; it applies to step_cost = \"parts\" or kv_bucket)")
    tp = _integer(where, raw, "tp", 1)
    link = raw.get("link")
    if link is not None:
        if tp == 1:
            raise SweepError(f"{where}.link: only with tp > 1 (the link joins tensor-parallel ranks)")
        if not isinstance(link, str) or link not in link_names():
            raise SweepError(f"{where}.link: expected a link preset ({', '.join(link_names())}), "
                             f"got {link!r}")
    for i, model in enumerate(models):
        if tp > 1:
            try:
                make_plan(load_model(model.spec).config, tp, tp=tp)
            except GraphError as e:
                raise SweepError(f"{path}: models[{i}]: serve.tp: {e}") from None
    return ServeSpec(_workload(path, raw), scheduler,
                     _choice(where, raw, "preemption", _PREEMPTIONS, "recompute"),
                     _integer(where, raw, "block_size", DEFAULT_BLOCK_SIZE),
                     _integer(where, raw, "kv_blocks", None), kv_bucket, step_cost, token_grid,
                     _integer(where, raw, "check_steps", CHECK_STEPS, least=0),
                     _seconds(where, raw, "slo_ttft"), _seconds(where, raw, "slo_tpot"), tp, link)


def _workload(path: Path, raw: Mapping[str, Any]) -> Workload:
    where = f"{path}: serve"
    if "trace" in raw and "rate" in raw:
        raise SweepError(f"{where}.rate: not with trace (serve a trace file or a synthetic "
                         "workload, not both)")
    if "trace" in raw:
        given = [k for k in SYNTHETIC if k in raw]
        if given:
            raise SweepError(f"{where}.{given[0]}: only with rate (a synthetic workload), not with trace")
        trace = raw["trace"]
        if not isinstance(trace, str):
            raise SweepError(f"{where}.trace: expected a CSV file (relative to the spec), got {trace!r}")
        file = path.parent / trace
        try:
            read_trace(file)
        except ServeError as e:
            raise SweepError(f"{where}.trace: {e}") from None
        return Workload(file, hashlib.sha256(file.read_bytes()).hexdigest(), None, 0, None, None, 0)
    if "rate" not in raw:
        raise SweepError(f"{where}: missing the workload: trace = \"FILE.csv\" or rate = "
                         "REQUESTS_PER_S (a synthetic one)")
    rate = raw["rate"]
    if not _finite(rate) or rate <= 0:
        raise SweepError(f"{where}.rate: expected a finite number of requests/s > 0, got {rate!r}")
    lengths = {}
    for key in ("prompt", "output"):
        spec = raw.get(key, SYNTHETIC[key])
        if not isinstance(spec, str):
            raise SweepError(f"{where}.{key}: expected a length spec (fixed:N, uniform:LO,HI or "
                             f"lognormal:MEDIAN,SIGMA[,MAX]), got {spec!r}")
        try:
            lengths[key] = parse_lengths(spec, what=f"{key} lengths")
        except ServeError as e:
            raise SweepError(f"{where}.{key}: {e}") from None
    return Workload(None, "", float(rate), _integer(where, raw, "requests", SYNTHETIC["requests"]),
                    lengths["prompt"], lengths["output"],
                    _integer(where, raw, "seed", SYNTHETIC["seed"], least=0))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(where: str, raw: Mapping[str, Any], key: str, default: int | None, least: int = 1) -> int | None:
    value = raw.get(key, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
        raise SweepError(f"{where}.{key}: expected an integer >= {least}, got {value!r}")
    return value


def _seconds(where: str, raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is not None and (not _finite(value) or value <= 0):
        raise SweepError(f"{where}.{key}: expected a finite number of seconds > 0, got {value!r}")
    return None if value is None else float(value)


def _choice(where: str, raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise SweepError(f"{where}.{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


@lru_cache(maxsize=4)
def requests_of(workload: Workload) -> tuple[Request, ...]:
    """The workload's requests, built once per process (every point serves the same ones); a
    trace whose contents changed since the spec was loaded is refused, not served."""
    if workload.trace is None:
        return tuple(synthetic(workload.requests, workload.rate, workload.prompt, workload.output,
                               workload.seed))
    try:
        digest = hashlib.sha256(workload.trace.read_bytes()).hexdigest()
    except OSError as e:
        raise ServeError(f"{workload.trace}: cannot read the trace ({e.strerror})") from None
    if digest != workload.trace_sha256:
        raise ServeError(f"{workload.trace}: changed since the sweep spec was loaded")
    return tuple(read_trace(workload.trace))


def serve_figures(spec: ServeSpec, model: Any, target_name: str, arch: Any,
                  routing: str | None) -> dict[str, float | int]:
    """One point's serving run, without a progress bar, as its flattened figures."""
    summary, _ = serve_on(model, requests_of(spec.workload), spec.settings(routing), target_name,
                          arch, progress=QUIET)
    return flatten_summary(summary)
