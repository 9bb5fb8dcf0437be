"""Machine models, one per target, behind a registry: MACHINES["systolic"](arch)."""
from sim.machines.base import MACHINES, Costs, Machine
from sim.machines import pim as _pim, systolic as _systolic  # noqa: F401  (register themselves)
from sim.machines import dataflow as _dataflow  # noqa: F401  (registers itself)

__all__ = ["MACHINES", "Machine", "Costs"]
