"""A target's compilation as one named chain of steps, each returning a frozen, dumpable result.

    PIPELINE = Pipeline("systolic", (Step("precision", ...), Step("storage", ...), ..., Step("emit", ...)))
    lowered = compile_graph(PIPELINE, graph, arch)            # every step; the last one's result
    print(dump_after(PIPELINE, graph, arch, None, "storage"))  # stop after a step and show it

A step is a function of the `Compilation` so far (graph, arch, operand type and the results of
the earlier steps, by step name); nothing is planned inside a constructor, so every decision
can be printed and bisected on its own.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol

Progress = Callable[[str, int], None]   # progress(step about to run, steps done)

from isa import DType

from arch import TargetArch

from compiler.errors import CompileError
from compiler.ir import Graph

__all__ = ["Step", "Pipeline", "Compilation", "Dumpable", "compile_graph", "dump_after",
           "tool_version"]


class Dumpable(Protocol):
    """A step's result: frozen, and readable as text."""

    def dump(self) -> str: ...


@dataclass(frozen=True)
class Compilation:
    """What a step sees: the graph, the architecture, the operand type, earlier results, and
    the plan of the quantisation recipe the program follows (compiler/quant/plan.py; None:
    full precision)."""

    graph: Graph
    arch: TargetArch
    dtype: DType
    results: Mapping[str, Dumpable]
    quant: Any = None

    def __getitem__(self, step: str) -> Any:
        return self.results[step]


@dataclass(frozen=True)
class Step:
    """One named stage: `run(compilation) -> frozen result with .dump()`."""

    name: str
    run: Callable[[Compilation], Dumpable]


@dataclass(frozen=True)
class Pipeline:
    """A target's steps in order; the last one returns the compiled `Lowered`."""

    target: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        names = self.names
        if not names:
            raise ValueError(f"pipeline '{self.target}' has no steps")
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline '{self.target}' repeats a step name: {', '.join(names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def run(self, graph: Graph, arch, dtype: DType | None = None, until: str | None = None,
            progress: Progress | None = None, quant=None) -> Compilation:
        """Run the steps in order (up to and including `until`); dtype defaults to the arch's.
        progress(name, k) is told before step k (0-based) runs."""
        if until is not None and until not in self.names:
            raise CompileError(f"unknown step '{until}' for target '{self.target}' "
                               f"(steps: {', '.join(self.names)})")
        results: dict[str, Dumpable] = {}
        state = Compilation(graph, arch, dtype or DType(arch.dtype), MappingProxyType(results), quant)
        for k, step in enumerate(self.steps):
            if progress is not None:
                progress(step.name, k)
            results[step.name] = step.run(state)
            if step.name == until:
                break
        return state


def compile_graph(pipeline: Pipeline, graph: Graph, arch, dtype: DType | None = None, *,
                  progress: Progress | None = None, quant=None) -> Any:
    """Every step of `pipeline`: the compiled program (a `compiler.targets.Lowered`), which
    records the architecture it was compiled for (its whole field table) and the tool version,
    so that a program file is simulated on the machine it was made for. The program is the
    one the target lowered, its tile sweeps already loops wherever they repeat
    (compiler/targets/sweep.py; flat under `flat_emission`); `tessel compile` passes it through
    the roll pass (compiler/roll.py), which rolls a program that has no loops yet."""
    lowered = pipeline.run(graph, arch, dtype, progress=progress, quant=quant)[pipeline.names[-1]]
    program = dataclasses.replace(lowered.program, arch=dataclasses.asdict(arch),
                                  tool_version=tool_version())
    return dataclasses.replace(lowered, program=program)


@functools.cache
def tool_version() -> str | None:
    """The installed tessel's version (pyproject.toml, through the package metadata); None
    when it runs from a source tree that was never installed."""
    try:
        return metadata.version("tessel")
    except metadata.PackageNotFoundError:
        return None


def dump_after(pipeline: Pipeline, graph: Graph, arch, dtype: DType | None, step: str,
               quant=None) -> str:
    """Run `pipeline` through `step` and return that step's result as text."""
    return pipeline.run(graph, arch, dtype, until=step, quant=quant)[step].dump()
