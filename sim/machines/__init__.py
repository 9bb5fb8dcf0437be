"""Machine models, one folder per target (systolic/, pim/, dataflow/); base.py is what every
machine gives the simulator. Which machine times which target: tessel/targets.py."""
from importlib import import_module

from sim.machines.base import Costs, Machine, MachineRun

_MACHINES = {"SystolicMachine": "sim.machines.systolic", "PimMachine": "sim.machines.pim",
             "DataflowMachine": "sim.machines.dataflow"}


def __getattr__(name: str):
    """A machine class, imported on first use (a run imports only its own target's model)."""
    if name in _MACHINES:
        return getattr(import_module(_MACHINES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Machine", "MachineRun", "Costs", "SystolicMachine", "PimMachine", "DataflowMachine"]
