"""The dataflow machine honours a gemm's stream and preloaded flags (sim/timing.gemm_cycles):
flipping one flag of one gemm changes the PCU work by exactly what the closed form says."""
from dataclasses import replace

import pytest

from arch import load_arch
from compiler.frontend import load_model
from isa import Instr, unroll
from sim.timing import gemm_cycles
from tessel.targets import target

ARCH = load_arch("dataflow-small")


def _work(machine, program) -> float:
    return machine.start(program).costs.events.totals(slice(0, len(program.instructions)))["pcu_work_cycles"]


@pytest.mark.parametrize("flag", ["stream", "preloaded"])
def test_one_flag_changes_pcu_work_by_the_closed_form(flag):
    dataflow = target("dataflow")
    program = unroll(dataflow.compile(load_model("examples/gemm.graph").fixed_graph, ARCH).program)
    machine = dataflow.machine(ARCH)
    i = next(i for i, ins in enumerate(program.instructions) if ins.opcode == "gemm")
    mcfg = next(ins for ins in reversed(program.instructions[:i]) if ins.opcode == "mcfg")
    m, n, k = mcfg["m"], mcfg["n"], mcfg["k"]
    ins = program.instructions[i]
    assert (ins["stream"], ins["preloaded"]) == (0, 0)
    flipped = Instr(ins.opcode, ins.queue, tuple((f, 1 if f == flag else v) for f, v in ins.fields))
    changed = replace(program, instructions=program.instructions[:i] + (flipped,) + program.instructions[i + 1:])
    rows, cols = ARCH.pcu_rows, ARCH.pcu_cols
    saved = (gemm_cycles(m, n, k, rows, cols, "ws", True)
             - gemm_cycles(m, n, k, rows, cols, "ws", True, **{flag: True}))
    assert saved > 0
    assert _work(machine, program) - _work(machine, changed) == saved
