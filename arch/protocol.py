"""What every target architecture offers the compiler, the simulator and the reports.

Each target's dataclass (SystolicArch, PimArch, DataflowArch) satisfies `TargetArch`;
code that works on any target types its argument with it instead of `Any`, and reads
target-specific fields only through the target's own class.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import isa

__all__ = ["TargetArch"]


@runtime_checkable
class TargetArch(Protocol):
    name: str                      # preset name or file stem, as reports show it
    target: str                    # the target it describes ("systolic", "pim", "dataflow")
    dtype: str                     # default operand and storage type

    @property
    def queues(self) -> tuple[str, ...]:
        """The unit queues, in the order programs end them."""

    def machine_view(self) -> isa.MachineView:
        """What the program verifier needs to know of this machine."""

    def summary(self) -> str:
        """One line for reports."""
