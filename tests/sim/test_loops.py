"""A program with loops simulates exactly as its unrolled equivalent: cycles, energy, unit busy
cycles, per-op tables and final memory, on random loop programs (sim/simulate.py unrolls once,
after verifying the compact program)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arch import load_arch
from isa import DType, Program, Symbol, assemble, unroll, verify
from isa.numerics import to_storage
from sim.compact_costs import PatternCosts, pattern_costs
from sim.simulate import simulate
from tessel.attention import _op_bytes
from tessel.targets import TARGETS
from tests.isa.isa_strategies import LOOP_ITEMS, loop_body

ARCH = load_arch("systolic-128")
MACHINE = TARGETS["systolic"].machine(ARCH)
PREAMBLE = """.target systolic
.isa 3
.spaces dram sram acc
dma0 dmacfg src_stride=0 dst_stride=0
vpu0 vcfg rows=1 cols=32 dtype=bf16 out=bf16 imm=2.0
"""
SOURCE = Symbol("x", "dram", 0, (1 << 15,), DType.bf16)        # the first 64 KiB of DRAM


def _vec(draw, depth: int) -> list[str]:
    moves = lambda choices: "".join(f"+={draw(st.sampled_from(choices))}" for _ in range(depth))
    return [f"dma0 signal sem=9", f"vpu0 wait sem=9",
            f"vpu0 vec func=muli bcast=none dst=sram[{draw(st.integers(64, 127)) * 64:#x}]"
            f"{moves([0, 64, 4096])} a=sram[{draw(st.integers(0, 63)) * 64:#x}]"
            f"{moves([0, 64, 192])} b=sram[0x0]"]


@st.composite
def _programs(draw) -> Program:
    lines = draw(loop_body(items={**LOOP_ITEMS, "vec": _vec}, marks=True))
    program = assemble(PREAMBLE + ".op start\n" + "\n".join(lines) + "\n")
    data = to_storage(np.random.default_rng(7).normal(size=SOURCE.shape), DType.bf16)
    return Program(program.target, program.isa_version, program.spaces, (SOURCE,),
                   program.instructions, {"x": data}, program.ops)


def _memory(memory) -> dict[str, bytes]:
    return {space: memory.read_bytes(f"{space}[0x0]", held).tobytes()
            for space, held in memory.held.items()}


@settings(max_examples=40, deadline=None, database=None)
@given(program=_programs())
@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_a_loop_program_simulates_as_its_unrolled_equivalent(program):
    try:
        verify(program, ARCH.machine_view())
    except ValueError:
        return                              # the verifier's own equivalence: tests/isa
    compact = simulate(program, MACHINE)
    flat = simulate(unroll(program), MACHINE)
    assert compact.result.to_json() == flat.result.to_json()
    assert compact.result.instructions == len(unroll(program).instructions)
    assert _memory(compact.memory) == _memory(flat.memory)


@settings(max_examples=40, deadline=None, database=None)
@given(lines=loop_body(items={**LOOP_ITEMS, "vec": _vec}))
def test_timing_only_a_loop_program_is_timed_per_pattern_as_its_unrolled_equivalent(lines):
    """Timing only, a compact program is timed by the periodic engine, never unrolled, and
    every report field equals the unrolled program's."""
    _timed_per_pattern_alike(".op start\n" + "\n".join(lines))


def _timed_per_pattern_alike(text: str) -> Program | None:
    """The program of `text` (after the preamble), timed per pattern with every report field
    equal to its unrolled equivalent's; None when the verifier refuses it."""
    program = assemble(PREAMBLE + text + "\n")
    try:
        verify(program, ARCH.machine_view())
    except ValueError:
        return None
    assert isinstance(pattern_costs(MACHINE, program), PatternCosts)
    compact = simulate(program, MACHINE, functional=False)
    flat = simulate(unroll(program), MACHINE, functional=False)
    assert compact.result.to_json() == flat.result.to_json()
    return program


@st.composite
def _layer_programs(draw) -> str:
    """A top-level loop whose iterations have ops of their own (templated names, as a model's
    layers), random nested loops inside, and marked work after it."""
    items = {**LOOP_ITEMS, "vec": _vec}
    body = draw(loop_body(1, items)) if draw(st.booleans()) else []     # the op before's words
    body += [".op layers.{+%d}.a" % draw(st.integers(0, 3)), *draw(loop_body(1, items))]
    if draw(st.booleans()):
        body += [".op layers.{+0}.b", *draw(loop_body(1, items))]
    tail = draw(loop_body(0, items)) if draw(st.booleans()) else []     # the last op's words
    tail += [".op tail", *draw(loop_body(0, items))] if draw(st.booleans()) else []
    return "\n".join([f".loop count={draw(st.integers(1, 12))}", *body, ".endloop", *tail])


@pytest.mark.slow
@settings(max_examples=60, deadline=None, database=None)
@given(text=_layer_programs())
def test_ops_of_their_own_per_iteration_are_timed_per_pattern_exactly(text):
    """Per-iteration ops (marks inside a loop body): the periodic engine gives each skipped
    iteration's ops their own spans, and every report field equals the unrolled program's."""
    program = _timed_per_pattern_alike(".op start\ndma0 dmacfg src_stride=0 dst_stride=0\n" + text)
    if program is not None:
        assert _op_bytes(program) == _op_bytes(unroll(program))   # the attention report's
