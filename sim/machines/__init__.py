"""Machine models, one per target, in an explicit registry: MACHINES["systolic"](arch)."""
from sim.machines.base import Costs, Machine
from sim.machines.dataflow import DataflowMachine
from sim.machines.pim import PimMachine
from sim.machines.systolic import SystolicMachine

__all__ = ["MACHINES", "Machine", "Costs"]

MACHINES: dict[str, type[Machine]] = {"systolic": SystolicMachine, "pim": PimMachine,
                                      "dataflow": DataflowMachine}
