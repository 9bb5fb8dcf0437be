"""One point, timing only: the pure function that every executor (process pool, Dask) runs.
A phase task simulates one pass; a serving task serves its spec's workload on the point's
arch (tessel/sweep/serving.py).

A point that cannot be built or run (an arch that fails a cross-field check, a model whose
tiles do not fit) is an outcome too: `failed` with the one-line reason, never retried.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from compiler.frontend import Model, load_model
from tessel.driver import run
from tessel.errors import USER_ERRORS
from tessel.request import make_request
from tessel.targets import target
from tessel.sweep.metrics import flatten
from tessel.sweep.points import Task
from tessel.sweep.serving import serve_figures

__all__ = ["Outcome", "evaluate_point"]


@dataclass(frozen=True, slots=True)
class Outcome:
    key: str
    ok: bool
    metrics: dict[str, float | int]     # every figure of tessel.sweep.metrics.flatten (empty if failed)
    error: str | None                   # one line, when failed
    wall_s: float


@lru_cache(maxsize=8)
def _model(spec: str) -> Model:
    return load_model(spec)


def evaluate_point(task: Task) -> Outcome:
    start = time.perf_counter()
    try:
        arch = target(task.target).load_arch(task.base, task.overrides)
        if task.serve is not None:
            figures = serve_figures(task.serve, _model(task.model), task.target, arch, task.routing)
        else:
            result = run(make_request(_model(task.model), task.target, arch, task.phase,
                                      numerics=False, routing=task.routing,
                                      quant=task.quant)).result
            figures = flatten(result, task.phase)
    except USER_ERRORS as e:
        return Outcome(task.key, False, {}, _one_line(str(e)), time.perf_counter() - start)
    except Exception as e:              # a bug in one point must not stop the sweep: record it
        reason = f"internal error: {type(e).__name__}: {e}"
        return Outcome(task.key, False, {}, _one_line(reason), time.perf_counter() - start)
    return Outcome(task.key, True, figures, None, time.perf_counter() - start)


def _one_line(text: str) -> str:
    return " ".join(text.split())
