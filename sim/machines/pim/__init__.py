"""The PIM-DRAM target's machine: DRAM command rules and state, channels, numerics."""
from sim.machines.pim.machine import PimMachine

__all__ = ["PimMachine"]
