"""Composition of experts on the dataflow target: how long switching to each model takes.

The experts' weights live in DDR; a switch copies one expert's weights into HBM (a df.xfer
program, timed by the dataflow machine). A GPU switching models reloads the weights from
host memory over PCIe instead. `tessel coe` prints both, expert by expert.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arch.dataflow import DataflowArch
from compiler.frontend import load_model
from compiler.ir import GraphError
from sim.simulate import simulate

__all__ = ["PCIE_GBPS", "Expert", "Switch", "expert", "switch_times"]

# A GPU switching models reloads weights from host memory over PCIe, per direction
# (reference/dataflow.md: Gen4 x16 about 32 GB/s, Gen5 x16 about 64 GB/s).
PCIE_GBPS = {"gen4": 32.0, "gen5": 64.0}


@dataclass(frozen=True, slots=True)
class Expert:
    name: str
    weight_bytes: int        # BF16


@dataclass(frozen=True, slots=True)
class Switch:
    """Switching to one expert: on the dataflow chip (DDR -> HBM) and on a GPU (PCIe)."""

    expert: Expert
    switch_s: float
    gpu_pcie_s: float

    def to_json(self) -> dict:
        return {"expert": self.expert.name, "weight_bytes": self.expert.weight_bytes,
                "switch_s": self.switch_s, "gpu_pcie_s": self.gpu_pcie_s}


def expert(name: str) -> Expert:
    """A model preset of any family (or HF directory), with its BF16 bytes: every parameter,
    all experts of a mixture-of-experts model (a switch loads the whole model)."""
    model = load_model(name)
    if model.config is None:
        raise GraphError(f"expert '{name}' is a .graph file: experts are model presets or "
                         "Hugging Face directories")
    return Expert(name, model.config.n_params * 2)


def switch_times(experts: Sequence[Expert], arch: DataflowArch, pcie: str) -> list[Switch]:
    """Each switch in order, timed by simulating the switch program on `arch`."""
    if not experts:
        raise GraphError("--models: give at least one expert")
    # the dataflow target's modules, imported here: the CLI imports PCIE_GBPS for every command
    from compiler.targets.dataflow.coe import switch_program
    from sim.machines import DataflowMachine
    program = switch_program([(e.name, e.weight_bytes) for e in experts], arch)
    result = simulate(program, DataflowMachine(arch), functional=False).result
    span = {o.name: o.cycles / result.clock_hz for o in result.ops}   # op "switch.i": the i-th switch
    return [Switch(e, span[f"switch.{i}"], e.weight_bytes / (PCIE_GBPS[pcie] * 1e9))
            for i, e in enumerate(experts)]
