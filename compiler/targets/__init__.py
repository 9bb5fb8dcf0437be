"""Per-target lowering, one package per target (systolic/, pim/, dataflow/), each exposing its
`PIPELINE` of named steps (compiler/pipeline.py); base.py is the lowering contract they share.
Which targets exist, and their default presets, is declared once: tessel/targets.py.
"""
from compiler.errors import CompileError
from compiler.targets.base import Lowered

__all__ = ["CompileError", "Lowered"]
