"""What a machine model gives the simulator: exact per-instruction cycles and event counts.

A machine model is one class per target, built complete from its arch and never changed
afterwards. `start(program)` returns a `MachineRun`: everything about that one program (its
`Costs`: per instruction its duration in the machine's clock, the shared resource it holds
(-1 for none) and its energy-relevant event counts; the state its timing hooks advance; the
totals and figures known only after the run). One machine can therefore run any number of
programs, in any order, each as if on a fresh machine. `energy_pj` turns event totals into
energy per category.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Mapping, Sequence, TypeVar

import numpy as np

import isa
from sim.result import TargetReport
from sim.engine import Timeline
from sim.machines.events import Events
from sim.reach import reached_bytes

__all__ = ["Machine", "MachineRun", "Costs"]

ArchT = TypeVar("ArchT")


@dataclass(frozen=True)
class Costs:
    durations: np.ndarray                  # int64 cycles per instruction
    resources: np.ndarray                  # shared-resource id per instruction (ints), -1 none
    events: Events                         # event name -> per-instruction count (float64)
    # durations[i] == -1: timed(i, start_cycle) gives it at issue (state-dependent timing)
    timed: Callable[[int, int], int] | None = None
    # delays[i]: a `signal`'s token lands this many cycles after it issues (data in flight)
    delays: np.ndarray | None = None
    # timed_run(indices, t): `timed` for a run of one queue's consecutive instructions at once
    timed_run: Callable[[Sequence[int], int], Sequence[int]] | None = None


class Machine(abc.ABC, Generic[ArchT]):
    """A target's timing and energy model for one architecture (immutable once built)."""

    arch: ArchT
    clock_hz: float
    units: ClassVar[tuple[str, ...]]       # unit kinds reported (dma, mxu, vpu, ...)
    # cycles that depend on state the machine keeps (open DRAM rows, the refresh schedule):
    # its programs are timed instance by instance (`start_shell`), never per pattern
    # (sim/compact_costs.py)
    state_timed: ClassVar[bool] = False
    # opcodes that close a group whose cost folds the op marks it holds in executed order (a
    # dataflow call's op marks onto its pipeline stages, each call ended by the next df.section
    # or df.run): a loop repeating op marks is priced per pattern only when each iteration
    # holds such a boundary, so that cutting it leaves every group's marks as they are
    mark_fold_boundaries: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def start(self, program: isa.Program, repeats: np.ndarray | None = None) -> MachineRun:
        """A fresh run of `program`: its costs and the state its timing hooks advance.

        repeats[i], when given, is how many instances of a longer program instruction i stands
        for (a compact program's loops cut to two iterations, sim/compact_costs.py): a machine
        whose cost for one instruction sums the work of others (a dataflow section call) weighs
        each by it; one whose costs are per instruction ignores it."""

    def start_shell(self, program: isa.Program) -> MachineRun:
        """A timing-only run of `program` as its unrolled equivalent; the run's `program` is
        what the engine and the report then take for it. Here the unrolled program itself; a
        machine that can price a program from its executed shell (`isa.executed_shell`: no
        stride applied, no new instruction objects) without reading the operands its loops
        move, or by reading them as arrays, overrides this (the PIM machine)."""
        return self.start(isa.unroll(program))

    @abc.abstractmethod
    def energy_pj(self, totals: Mapping[str, float]) -> dict[str, float]:
        """Dynamic energy per category (compute, sram, dram, vector...) from event totals."""

    @abc.abstractmethod
    def static_w(self) -> float: ...

    @abc.abstractmethod
    def mac_units(self) -> int:
        """Multiply-accumulate units that `macs` events are measured against."""


@dataclass(eq=False)
class MachineRun:
    """One program on one machine: its costs, then the hooks `sim.simulate` calls around the
    event engine. Subclasses add what their target knows only after the run."""

    machine: Machine
    program: isa.Program
    costs: Costs
    # when `program` is the executed shell of a compact program (Machine.start_shell): the
    # compact index of each executed instruction, for the engine to read the compact words
    shell_order: np.ndarray | None = None
    # when each entry of `program` may stand for several executed instructions (a shell whose
    # machine times runs of them as one): how many it executes in all
    executed: int | None = None

    def functional_models(self, memory) -> dict[str, Callable[[isa.Instr], None]]:
        """Numeric handlers for this target's ISA extension (FunctionalExecutor models=)."""
        return {}

    def held_bytes(self, view: isa.MachineView) -> dict[str, int]:
        """Bytes a numeric run allocates per memory space, from address 0: what the program's
        symbols and instruction footprints reach (`sim.reach`); a machine whose own opcodes
        reach further adds that."""
        return reached_bytes(self.program, view)

    def run_totals(self) -> dict[str, float]:
        """Called once after the run: event totals known only after it (e.g. the DRAM
        refreshes a controller issued), added to the sums of `Costs.events`."""
        return {}

    def report(self, timeline: Timeline, cycles: int) -> TargetReport | None:
        """What only this target measures (SimResult.target_report), after the run."""
        return None
