"""tessel.budget: a run that would not fit in memory is refused before it starts, in one line
that gives the estimate and the memory available (the machine's memory is faked small)."""
import re
from pathlib import Path

import pytest

import isa
import tessel.budget as budget
from arch import load_arch
from compiler.frontend import Model
from sim.compact_costs import timed_per_pattern
from sim.machines.pim import PimMachine
from sim.machines.systolic import SystolicMachine
from tessel.cli import main
from tessel.targets import TARGETS

GPT2_PIM_DECODE = ["sim", "--model", "gpt2", "--target", "pim", "--phase", "decode", "--kv", "16",
                   "--gpu", "none", "--no-functional"]      # 52,138 instructions


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _fake_memory(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(budget, "available_bytes", lambda: nbytes)


def _never(*args, **kwargs):
    raise AssertionError("the run started")


def test_a_program_too_large_to_simulate_is_stopped_while_compiling(monkeypatch, capsys):
    _fake_memory(monkeypatch, budget.BASE_BYTES + 10_000 * budget.SIM_BYTES_PER_INSTRUCTION)
    monkeypatch.setattr(PimMachine, "start", _never)
    monkeypatch.setattr(PimMachine, "start_shell", _never)
    assert main(GPT2_PIM_DECODE) == 2
    err = _one_error_line(capsys)
    assert re.search(r"compilation stopped after [\d,]+ instructions \(x 128 bytes each to "
                     r"simulate\), more than the [\d.]+ MiB available to it: simulate timing only "
                     r"\(--no-functional\), a shorter --seq or --kv, or a smaller model", err), err
    stopped = int(re.search(r"after ([\d,]+)", err).group(1).replace(",", ""))
    assert 10_000 < stopped < 52_187        # early: at the first op boundary past the limit


@pytest.mark.slow      # about 1 s: the fast tier stays under 30 s
def test_a_compiled_program_is_refused_before_it_is_simulated(monkeypatch, capsys, tmp_path):
    program = tmp_path / "decode.tbin"
    assert main(["compile", "--model", "gpt2", "--target", "pim", "--phase", "decode", "--kv", "16",
                 "-o", str(program)]) == 0
    capsys.readouterr()
    _fake_memory(monkeypatch, budget.BASE_BYTES + 50_000 * budget.SIM_BYTES_PER_INSTRUCTION)
    monkeypatch.setattr(PimMachine, "start", _never)
    monkeypatch.setattr(PimMachine, "start_shell", _never)
    assert main(["sim", str(program)]) == 2
    assert re.search(r"error: this run needs about [\d.]+ MiB \(52,187 instructions x 128 bytes\), "
                     r"more than the [\d.]+ MiB available to it: simulate timing only",
                     _one_error_line(capsys))


def test_a_numeric_run_reserves_its_weights_before_making_them(monkeypatch, capsys):
    _fake_memory(monkeypatch, 600 << 20)     # gpt2's weights (fp32) and the f64 embedding: 769 MiB
    monkeypatch.setattr(Model, "load_weights", _never)
    monkeypatch.setattr(SystolicMachine, "start", _never)
    assert main(["sim", "--model", "gpt2", "--phase", "decode", "--kv", "4", "--gpu", "none"]) == 2
    assert re.search(r"error: this run needs more than [\d.]+ MiB \(weights, reference and data "
                     r"769\.\d MiB\), "
                     r"more than the 600\.0 MiB available to it: simulate timing only "
                     r"\(--no-functional\)", _one_error_line(capsys))


def test_tessel_compile_stops_a_program_too_large_to_write(monkeypatch, capsys, tmp_path):
    _fake_memory(monkeypatch, budget.BASE_BYTES + 10_000 * budget.COMPILE_BYTES_PER_INSTRUCTION)
    out = tmp_path / "p.tbin"
    assert main(["compile", "--model", "gpt2", "--target", "pim", "--phase", "decode", "--kv", "16",
                 "-o", str(out)]) == 2
    assert "bytes each to compile)" in _one_error_line(capsys)
    assert not out.exists()


def test_available_memory_honours_an_address_space_limit(monkeypatch):
    unlimited = budget.available_bytes()
    monkeypatch.setattr(budget.resource, "getrlimit",
                        lambda which: (1 << 40, budget.resource.RLIM_INFINITY))   # 1 TiB: room
    assert budget.available_bytes() == pytest.approx(unlimited, rel=0.05)
    monkeypatch.setattr(budget.resource, "getrlimit", lambda which: (0, budget.resource.RLIM_INFINITY))
    assert budget.available_bytes() < unlimited / 2        # only what the process holds


@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_running_out_of_memory_anyway_is_one_line(monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(PimMachine, "start", exhausted)
    monkeypatch.setattr(PimMachine, "start_shell", exhausted)   # a compact program's timing
    assert main(GPT2_PIM_DECODE) == 2
    assert re.search(r"error: this run ran out of memory \([\d.]+ [GM]iB available to it now\): "
                     r"simulate timing only", _one_error_line(capsys))


def test_a_compact_program_timed_per_pattern_is_priced_by_its_words(monkeypatch):
    """The 1.2 M-instruction example in 18 words: unrolled it would need 1.2 M x 128 bytes;
    timed per pattern, 18 words and a 16-byte log entry an instance at most."""
    text = (Path(__file__).parents[2] / "examples/double_buffered_loop.tasm").read_text()
    program = isa.assemble(text, filename="double_buffered_loop.tasm")
    executed = isa.executed_count(program)
    _fake_memory(monkeypatch, budget.BASE_BYTES + executed * 32)
    budget.check_simulation(program, numerics=False, per_pattern=True)
    with pytest.raises(budget.MemoryBudgetError, match="1,200,006 instructions x 128 bytes"):
        budget.check_simulation(program, numerics=False)
    machine = TARGETS["systolic"].machine(load_arch("systolic-128"))
    assert timed_per_pattern(machine, program)
    small = isa.assemble(text.replace("count=100000", "count=10"), filename="small.tasm")
    assert not timed_per_pattern(machine, isa.unroll(small))          # flat: nothing to time
