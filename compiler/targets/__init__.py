"""Per-target lowering behind one registry: TARGETS[name](graph, arch, dtype) -> Lowered."""
from compiler.targets.emit import CompileError
from compiler.targets.pim import lower as lower_pim
from compiler.targets.systolic import Lowered, lower as lower_systolic

TARGETS = {"systolic": lower_systolic, "pim": lower_pim}
DEFAULT_ARCH = {"systolic": "systolic-128", "pim": "pim-gpt"}

__all__ = ["TARGETS", "DEFAULT_ARCH", "CompileError", "Lowered"]
from compiler.targets.dataflow import lower as lower_dataflow  # noqa: E402
TARGETS["dataflow"], DEFAULT_ARCH["dataflow"] = lower_dataflow, "sn40l"
