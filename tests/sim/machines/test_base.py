"""Machines are immutable: one machine object runs any programs, in any order, each with
exactly the numbers a fresh machine gives it (MachineRun holds all per-program state)."""
import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from tessel.targets import TARGETS
from sim.simulate import simulate

PRESETS = {"systolic": "systolic-128", "pim": "pim-gpt", "dataflow": "sn40l"}


def _programs(target, arch):
    model = load_model("tests/fixtures/tiny-gpt2")
    return [TARGETS[target].compile(model.graph(phase), arch).program for phase in (decode(16), prefill(8))]


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_one_machine_runs_programs_back_to_back_as_fresh_machines_do(target):
    arch = load_arch(PRESETS[target])
    first, second = _programs(target, arch)
    fresh = [simulate(p, TARGETS[target].machine(arch), functional=False).result.to_json()
             for p in (first, second)]
    machine = TARGETS[target].machine(arch)
    state = dict(vars(machine))
    reused = [simulate(p, machine, functional=False).result.to_json()
              for p in (first, second, first, second)]
    assert reused == fresh + fresh
    assert vars(machine) == state                   # nothing was stored on the machine
    assert fresh[0] != fresh[1]                     # the two programs really differ
