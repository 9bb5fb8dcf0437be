"""A spec's points (grid or seeded random sample) and its tasks: point x model x phase (x
recipe, with a `quant` list), or point x model with a `[serve]` table.

Each task carries its store key: sha256 of the canonical JSON of the point (target, base
file digest, field values), the model (preset name or file digest), the phase and the
tool version, so results are reused exactly when all of these are the same. A serving task
adds its serve settings and workload (a trace by its digest); the other tasks' identities
have no such entry, so their keys are those of sweeps before `[serve]` existed; likewise a
recipe other than `none` adds its name (and a recipe file's digest).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import tessel
from compiler.phase import Phase
from tessel.sweep.serving import ServeSpec
from tessel.sweep.spec import SweepSpec

__all__ = ["Task", "points", "tasks", "tool_version"]

# The code a result depends on: a change to any of these files is a new tool version.
_SOURCES = ("arch", "compiler", "isa", "sim", "tessel/driver.py", "tessel/sweep/metrics.py",
            "tessel/serve")


@dataclass(frozen=True, slots=True)
class Task:
    key: str
    target: str
    base: str
    point: tuple[tuple[str, Any], ...]      # (dotted field, value) in parameter order
    model: str                              # for load_model
    model_label: str
    phase: Phase | None
    routing: str | None = None              # mixture-of-experts models: the routing policy
    serve: ServeSpec | None = None          # a serving task (phase None): what it serves, and how
    quant: str | None = None                # the recipe its program is compiled under (None: none)
    quant_label: str | None = None          # as the spec writes it; None: the spec has no quant axis

    @property
    def overrides(self) -> tuple[str, ...]:
        """The point as the arch loader's `key=value` overrides (values as TOML literals)."""
        return tuple(f"{field}={json.dumps(value)}" for field, value in self.point)

    @property
    def phase_label(self) -> str:
        if self.serve is not None:
            return "serve"
        return str(self.phase) if self.phase else "fixed graph"


def points(spec: SweepSpec) -> list[tuple[tuple[str, Any], ...]]:
    """The grid in parameter order, or `samples` distinct grid points drawn with the seed."""
    sizes = [len(p.values) for p in spec.parameters]
    if spec.sampling.method == "grid":
        indices = list(itertools.product(*(range(n) for n in sizes)))
    else:
        total = 1
        for n in sizes:
            total *= n
        drawn = sorted(random.Random(spec.sampling.seed).sample(range(total), spec.sampling.samples))
        indices = [_digits(i, sizes) for i in drawn]
    return [tuple((field, value) for p, i in zip(spec.parameters, index)
                  for field, value in zip(p.fields, p.values[i])) for index in indices]


def _digits(number: int, sizes: list[int]) -> tuple[int, ...]:
    """Grid index `number` (row-major, last parameter fastest) as one index per parameter."""
    digits = []
    for n in reversed(sizes):
        number, digit = divmod(number, n)
        digits.append(digit)
    return tuple(reversed(digits))


def tasks(spec: SweepSpec, version: str | None = None) -> list[Task]:
    version = version or tool_version()
    out = []
    for point in points(spec):
        for model in spec.models:
            for phase in (spec.phases if model.phased and spec.serve is None else (None,)):
                for quant in spec.quant or (None,):
                    identity = {"target": spec.target, "base": spec.base_sha256, "point": dict(point),
                                "model": model.digest, "phase": asdict(phase) if phase else None,
                                "tool": version}
                    if model.routing is not None:    # dense models' keys stay as they were
                        identity["routing"] = [model.routing, spec.routing_digest]
                    if spec.serve is not None:       # so do the keys of phase and .graph tasks
                        identity["serve"] = spec.serve.identity()
                    if quant is not None and quant.recipe is not None:   # and of `none`
                        identity["quant"] = [quant.label, quant.digest]
                    key = hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())
                    out.append(Task(key.hexdigest(), spec.target, spec.base, point, model.spec,
                                    model.label, phase, model.routing, spec.serve,
                                    None if quant is None else quant.recipe,
                                    None if quant is None else quant.label))
    return out


@lru_cache(maxsize=1)
def tool_version() -> str:
    """Package version + a digest of the sources that compute a result (compiler, simulator,
    architectures, ISA, driver, metric names, serving): results of other code are never reused."""
    root = Path(tessel.__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in sorted(f for name in _SOURCES for f in (root / name, *(root / name).rglob("*"))):
        if source.suffix in (".py", ".lark") and source.is_file():
            digest.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
    return f"{tessel.__version__}+{digest.hexdigest()[:12]}"
