"""Every target is complete: one record names its architecture class and preset, pipeline,
machine and report lines, and they agree with each other."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import isa
from arch import ARCH_CLASSES, TargetArch
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.phase import decode
from sim.machines.base import Machine
from tessel.targets import TARGETS, target

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_every_target_is_complete(name):
    t = TARGETS[name]
    assert t.name == name == t.pipeline.target
    assert ARCH_CLASSES[name] is t.arch_class
    arch = t.load_arch()
    assert isinstance(arch, t.arch_class) and isinstance(arch, TargetArch) and arch.name == t.default_preset
    assert t.pipeline.names[-1] == "emit" and issubclass(t.machine, Machine)
    program = isa.unroll(t.compile(load_model("gpt2").graph(decode(4)), arch).program)
    assert program.target == name
    assert {str(ins.queue) for ins in program.instructions} == set(arch.queues)
    assert [str(ins.queue) for ins in program.instructions if ins.opcode == "halt"] == list(arch.queues)
    result = t.simulate(program, arch, functional=False).result
    assert result.cycles > 0 and isinstance(t.report_rows(result), list)


def test_unknown_targets_and_foreign_presets_are_refused():
    with pytest.raises(CompileError, match="unknown target 'tpu' \\(one of systolic, pim, dataflow\\)"):
        target("tpu")
    with pytest.raises(CompileError, match="architecture 'sn40l' is for target 'dataflow', not 'pim'"):
        TARGETS["pim"].load_arch("sn40l")


def test_no_target_is_named_anywhere_else():
    """The Makefile's default presets come from the record too (tessel picks the default)."""
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"systolic-128|pim-gpt|sn40l", makefile)
