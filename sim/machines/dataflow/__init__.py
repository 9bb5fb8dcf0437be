"""The dataflow target's machine and its section pipeline timing."""
from sim.machines.dataflow.machine import DataflowMachine

__all__ = ["DataflowMachine"]
