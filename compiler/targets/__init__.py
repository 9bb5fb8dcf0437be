"""Per-target compilation behind one registry: TARGETS[name](graph, arch, dtype) -> Lowered.

Each target is a package exposing its `PIPELINE` (named steps, compiler/pipeline.py) and the
preset it compiles for by default; the lowering contract they share is in base.py.
"""
from functools import partial

from compiler.errors import CompileError
from compiler.pipeline import Pipeline, compile_graph
from compiler.targets import dataflow, pim, systolic
from compiler.targets.base import Lowered

__all__ = ["TARGETS", "DEFAULT_ARCH", "PIPELINES", "CompileError", "Lowered"]

PIPELINES: dict[str, Pipeline] = {t.PIPELINE.target: t.PIPELINE for t in (systolic, pim, dataflow)}
DEFAULT_ARCH = {t.PIPELINE.target: t.DEFAULT_ARCH for t in (systolic, pim, dataflow)}
TARGETS = {name: partial(compile_graph, pipeline) for name, pipeline in PIPELINES.items()}
