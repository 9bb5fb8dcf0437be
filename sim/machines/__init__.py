"""Machine models, one per target, behind a registry: MACHINES["systolic"](arch)."""
from sim.machines.base import MACHINES, Costs, Machine
from sim.machines import systolic as _systolic  # noqa: F401  (registers itself)
from sim.machines import dataflow as _dataflow  # noqa: F401  (registers itself)

__all__ = ["MACHINES", "Machine", "Costs"]
