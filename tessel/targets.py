"""Every target in one record: its architecture class and default preset, its compiler
pipeline, its machine model and its lines in the text report.

A target is declared here and nowhere else: the command line's choices, the default preset,
compilation, simulation and the report all read `TARGETS`. Its queue names come from its
architecture (`arch.queues`), which the compiler and the verifier both read.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable, Mapping, Sequence

import isa
from arch import DataflowArch, PimArch, SystolicArch, TargetArch, build_with_overrides, load_arch
from compiler.errors import CompileError
from compiler.ir import Graph
from compiler.pipeline import Pipeline, compile_graph
from compiler.targets import Lowered
from sim.compact_costs import PatternCosts, timing_plan
from sim import machines
from sim.machines import Machine
from sim.result import SimResult
from sim.simulate import Simulation, simulate
from tessel.budget import check_simulation, out_of_memory_is_an_error
from tessel.report_rows import dataflow_rows, no_rows, pim_rows

__all__ = ["Target", "TARGETS", "target"]


@dataclass(frozen=True)
class Target:
    name: str
    arch_class: type                              # what its TOML files describe (arch/)
    default_preset: str                           # arch/configs/<preset>.toml
    lowering: str                                 # its package, whose PIPELINE are its compiler steps
    machine_class: str                            # its timing, energy, numerics: a sim.machines name
    report_rows: Callable[[SimResult], list[str]]  # its own lines in the text report
    default_link: str                             # arch/configs/links/<preset>.toml: several devices
    one_sequence: bool = False                    # attention of batch 1 only (PIM's KV layout)
    # what of a recipe's stored weights it runs: None, no quantised programs; else a check,
    # fn(arch, {weight: StoredFormat}), that refuses in one line what it does not run
    check_quantised: Callable[[TargetArch, Mapping[str, object], Graph], None] | None = None

    @property
    def pipeline(self) -> Pipeline:
        """Its compiler steps (compiler/targets/<name>/), imported when first asked for: a run
        on one target does not import the others' lowerings."""
        return import_module(self.lowering).PIPELINE

    @property
    def machine(self) -> type[Machine]:
        """Its machine model (sim/machines/<name>/), imported when first asked for (by
        sim.machines, which knows where each lives)."""
        return getattr(machines, self.machine_class)

    def load_arch(self, spec: str | None = None, overrides: Sequence[str] = ()) -> TargetArch:
        """The given preset or .toml file (default: the target's preset), with overrides."""
        arch = load_arch(spec or self.default_preset, overrides)
        if arch.target != self.name:
            raise CompileError(f"architecture '{arch.name}' is for target '{arch.target}', "
                               f"not '{self.name}'")
        return arch

    def recorded_arch(self, table: Mapping[str, object], source: str,
                      overrides: Sequence[str] = ()) -> TargetArch:
        """The architecture a program file records (its field table), with overrides,
        validated like a preset; `source` names it in errors."""
        return build_with_overrides(self.arch_class, table, source, overrides)

    def compile(self, graph: Graph, arch: TargetArch, dtype: isa.DType | None = None, *,
                progress: Callable[[str, int], None] | None = None, quant=None) -> Lowered:
        """Every step of the pipeline; progress(step, steps done) before each. quant: a
        recipe's plan (compiler/quant/plan.py), refused by a target that stores no
        quantised weights (its lowering would read them at full precision)."""
        if quant is not None and self.check_quantised is None:
            raise CompileError(f"target '{self.name}' cannot run quantised programs yet "
                               f"(recipe {quant.recipe.name!r})")
        return compile_graph(self.pipeline, graph, arch, dtype, progress=progress, quant=quant)

    def simulate(self, program: isa.Program, arch: TargetArch, *, functional: bool,
                 assumptions: tuple[str, ...] = (),
                 progress: Callable[[str, int], None] | None = None) -> Simulation:
        """Simulate `program`, unless it would not fit in memory (tessel/budget.py);
        progress(stage, instructions started) as sim/simulate.py tells it."""
        machine = self.machine(arch)
        patterns = None if functional else timing_plan(machine, program)
        check_simulation(program, functional, per_pattern=isinstance(patterns, PatternCosts))
        with out_of_memory_is_an_error():
            return simulate(program, machine, functional=functional, assumptions=assumptions,
                            progress=progress, patterns=patterns)


def _any_quantised(arch: TargetArch, formats: Mapping[str, object], graph: Graph) -> None:
    """A target whose loads dequantise (loadq) runs every stored format."""


def narrow_mac_quantised(arch: TargetArch, formats: Mapping[str, object], graph: Graph) -> None:
    """Every stored format (loadq), and a matmul of two quantised operands on the array's
    narrow MACs only (its `mac_formats`): the systolic array, the dataflow PCUs."""
    from compiler.passes.quantised_values import check_mac_formats
    check_mac_formats(graph, formats, arch)


def pim_quantised(arch: TargetArch, formats: Mapping[str, object], graph: Graph) -> None:
    from compiler.targets.pim.placement import check_quantised
    for name, fmt in formats.items():
        check_quantised(arch, name, fmt)


TARGETS: dict[str, Target] = {t.name: t for t in (
    # a TPU-style pod slice, CENT's CXL fabric of PIM devices, SN40L's sockets (docs/links.md)
    Target("systolic", SystolicArch, "systolic-128", "compiler.targets.systolic",
           "SystolicMachine", no_rows, "tpu-v4-ici",
           check_quantised=narrow_mac_quantised),
    Target("pim", PimArch, "pim-gpt", "compiler.targets.pim", "PimMachine",
           pim_rows, "cxl-cent", one_sequence=True, check_quantised=pim_quantised),
    Target("dataflow", DataflowArch, "sn40l", "compiler.targets.dataflow",
           "DataflowMachine", dataflow_rows, "sn40l-rdn",
           check_quantised=narrow_mac_quantised),
)}


def target(name: str) -> Target:
    """The target called `name`; an unknown one is an error listing the targets."""
    if name not in TARGETS:
        raise CompileError(f"unknown target '{name}' (one of {', '.join(TARGETS)})")
    return TARGETS[name]
