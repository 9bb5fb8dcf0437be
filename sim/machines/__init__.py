"""Machine models, one folder per target (systolic/, pim/, dataflow/); base.py is what every
machine gives the simulator. Which machine times which target: tessel/targets.py."""
from sim.machines.base import Costs, Machine, MachineRun
from sim.machines.dataflow import DataflowMachine
from sim.machines.pim import PimMachine
from sim.machines.systolic import SystolicMachine

__all__ = ["Machine", "MachineRun", "Costs", "SystolicMachine", "PimMachine", "DataflowMachine"]
