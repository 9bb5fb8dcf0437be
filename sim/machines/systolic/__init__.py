"""The systolic-array target's machine."""
from sim.machines.systolic.machine import SystolicMachine

__all__ = ["SystolicMachine"]
