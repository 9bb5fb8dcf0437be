"""compiler/roll.py: `tessel compile` writes compact programs, and `isa.unroll` of the compact program
is the flat one exactly (instructions, op marks, symbols); the compact program verifies exactly
when the flat one does, and simulates to the same report."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import isa
from isa.instr import Instr
from arch import load_arch
from compiler.frontend import Model, load_model
from compiler.phase import decode, prefill
from compiler.roll import SAMPLE, roll
from compiler.targets.sweep import flat_emission
from isa.loops import loop_structure
from sim.simulate import simulate
from tessel.cli import main
from tessel.targets import TARGETS
from tests.families.tiny import TINY
from tests.isa.isa_strategies import loop_body
from tests.sim.test_scalesim_validation import gemm_graph

PREAMBLE = """.target systolic
.isa 3
.spaces dram sram acc
dma0 dmacfg src_stride=0 dst_stride=0
"""
VIEW = load_arch("systolic-128").machine_view()


def _rolled(text: str) -> tuple[isa.Program, isa.Program]:
    flat = isa.assemble(PREAMBLE + text)
    compact = roll(flat, VIEW.limits)
    assert isa.unroll(compact) == flat
    return flat, compact


def _loops(program: isa.Program) -> list[isa.Instr]:
    return [i for i in program.instructions if i.opcode == "loop"]


def _load(dst: int, src: int, rows: int = 1) -> str:
    return f"dma0 load dst=sram[{dst:#x}] src=dram[{src:#x}] rows={rows} row_bytes=64\n"


def test_a_strided_run_becomes_one_loop_with_its_strides():
    flat, compact = _rolled(".op a\n" + "".join(_load(0x40 * k, 0x100 * k) for k in range(8)))
    assert len(compact.instructions) == 1 + 1 + 2 + 1       # dmacfg, loop, 2 strides, load
    assert [(i["count"], i["body"]) for i in _loops(compact)] == [(8, 1)]
    assert compact.ops == ((1, "a"),)
    isa.verify(compact, VIEW)


def test_ring_slots_alternate_with_a_period_of_two():
    text = "".join(_load(0x40 * (k % 2), 0x100 * k) for k in range(10))
    _, compact = _rolled(".op a\n" + text)
    assert [(i["count"], i["body"]) for i in _loops(compact)] == [(5, 2)]


def test_inner_runs_roll_inside_outer_bodies():
    blocks = []
    for j in range(6):
        blocks += [_load(0x40 * k, 0x1000 * j + 0x40 * k) for k in range(6)]
        blocks.append(f"dma1 store dst=dram[{0x100000 + 0x100 * j:#x}] src=sram[0x0] rows=1 row_bytes=64\n")
    _, compact = _rolled(".op a\n" + "".join(blocks))
    assert [(i["count"], i["body"]) for i in _loops(compact)] == [(6, 5), (6, 1)]
    isa.verify(compact, VIEW)


def test_no_loop_crosses_an_op_mark():
    text = "".join(f".op op{k}\n" + _load(0x40 * k, 0x100 * k) for k in range(6))
    flat, compact = _rolled(text)
    assert compact == flat


def test_a_write_that_would_overlap_its_next_iteration_is_not_a_loop_of_it():
    # each load writes 2 rows (128 bytes) and moves 64: the verifier refuses a loop of one load,
    # so the run is rolled two loads per iteration (each then moves 128 bytes)
    text = ".op a\n" + "".join(_load(0x40 * k, 0x100 * k, rows=2) for k in range(8))
    _, compact = _rolled(text)
    assert [(i["count"], i["body"]) for i in _loops(compact)] == [(4, 2)]
    isa.verify(compact, VIEW)


def test_a_body_whose_signals_do_not_balance_its_waits_is_not_rolled():
    text = ".op a\n" + "dma1 signal sem=1\n" * 6 + "dma0 wait sem=1\n" * 6
    flat, compact = _rolled(text)
    assert not _loops(compact)


@settings(max_examples=60, deadline=None, database=None)
@given(lines=loop_body(marks=True), seed=st.integers(0, 3))
def test_random_flat_programs_with_planted_runs_roll_back_exactly(lines, seed):
    planted = isa.assemble(PREAMBLE + ".op start\n" + "\n".join(lines) + "\n")
    try:
        flat = isa.unroll(planted)
    except isa.LoopError:
        assume(False)                       # a planted address left its field
    compact = roll(flat, VIEW.limits, max_period=4 + seed * 8)
    assert isa.unroll(compact) == flat
    try:
        isa.verify(flat, VIEW)
    except isa.VerifyError:
        return
    isa.verify(compact, VIEW)


def _large(count: int, load) -> isa.Program:
    head = isa.assemble(PREAMBLE + ".op a\n")
    loads = [Instr.make("load", "dma0", **load(k)) for k in range(count)]
    return replace(head, instructions=head.instructions + tuple(loads), ops=((1, "a"),))


@pytest.mark.slow      # a 70k-instruction program (about 1.5 s)
def test_a_large_program_whose_sample_barely_rolls_stays_flat():
    count = 2 * SAMPLE[0] * SAMPLE[1] + 1000
    flat = _large(count, lambda k: dict(dst="sram[0x0]", src="dram[0x0]", rows=1 + k % 250,
                                         row_bytes=64 + 64 * (k // 250 % 250)))
    assert roll(flat, VIEW.limits) is flat


@pytest.mark.slow      # a 70k-instruction program (about 1.5 s)
def test_a_large_program_that_repeats_is_rolled_whole():
    count = 2 * SAMPLE[0] * SAMPLE[1] + 1000
    flat = _large(count, lambda k: dict(dst=f"sram[{0x40 * (k % 2):#x}]",
                                         src=f"dram[{0x100 * k:#x}]", rows=1, row_bytes=64))
    compact = roll(flat, VIEW.limits)
    assert [(i["count"], i["body"]) for i in _loops(compact)] == [(count // 2, 2)]
    assert isa.unroll(compact) == flat


def _check(target: str, model: Model, phase, *, rolled: bool = True) -> isa.Program:
    arch = TARGETS[target].load_arch()
    with flat_emission():           # the roll pass takes flat programs
        flat = TARGETS[target].compile(model.graph(phase), arch).program
    compact = roll(flat, arch.machine_view().limits)
    if rolled:
        assert _loops(compact) and len(compact.instructions) < len(flat.instructions)
    else:
        assert compact is flat
    assert isa.unroll(compact) == flat
    isa.verify(compact, arch.machine_view())
    isa.verify(flat, arch.machine_view())
    return compact


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("phase", [prefill(8), decode(8)], ids=["prefill-8", "decode-8"])
def test_gpt2_programs_are_compact_and_unroll_to_the_flat_program(target, phase):
    # PIM prefill (422k instructions) is over the sample size and its sample barely rolls
    # (row and column numbers are not addresses): it stays flat
    rolled = not (target == "pim" and phase.kind == "prefill")
    _check(target, load_model("gpt2"), phase, rolled=rolled)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow"])
@pytest.mark.parametrize("family", sorted(f for f, c in TINY.items() if not c.num_experts))
def test_tiny_families_roll_exactly(target, family):
    _check(target, Model(family, TINY[family]), prefill(8))


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
def test_compact_and_unrolled_programs_report_the_same(target):
    arch = TARGETS[target].load_arch()
    with flat_emission():
        flat = TARGETS[target].compile(load_model("gpt2").graph(decode(8)), arch).program
    compact = roll(flat, arch.machine_view().limits)
    assert _loops(compact)
    machine = TARGETS[target].machine
    reports = [simulate(p, machine(arch), functional=False).result.to_json() for p in (compact, flat)]
    assert reports[0] == reports[1]


def test_three_deep_loops_move_alike_in_every_enclosing_loop(tmp_path):
    # a 100x200x30 GEMM on a 32x32 output-stationary array rolls three loops deep; an inner
    # body's instructions must agree on the deltas of every enclosing loop, not only the next
    arch = load_arch("systolic-128", ["rows=32", "cols=32", "dataflow=os"])
    graph = load_model(str(gemm_graph(tmp_path, 100, 200, 30))).fixed_graph
    with flat_emission():
        flat = TARGETS["systolic"].compile(graph, arch).program
    compact = roll(flat, arch.machine_view().limits)
    structure = loop_structure(compact.instructions)
    assert max(len(structure.chain(loop.body_start)) for loop in structure.loops) >= 2   # nested
    assert isa.unroll(compact) == flat
    isa.verify(compact, arch.machine_view())


def test_compile_writes_loops_unless_told_to_unroll(tmp_path):
    args = ["compile", "--model", "tests/fixtures/tiny-gpt2", "--phase", "decode", "--kv", "4",
            "--target", "systolic"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "-o", str(tmp_path / "c.tasm")]) == 0
        assert main([*args, "--unroll", "-o", str(tmp_path / "f.tasm")]) == 0
    compact, flat = (isa.load(tmp_path / name) for name in ("c.tasm", "f.tasm"))
    assert ".loop" in (tmp_path / "c.tasm").read_text()
    assert ".loop" not in (tmp_path / "f.tasm").read_text()
    assert isa.unroll(compact) == flat
