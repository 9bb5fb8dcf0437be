"""The verifier's proof by iterations (isa.sync.completes_by_iterations): whenever it says a
compact program's queues all run to their end, the walk over the executed instructions finds
no blocked wait (it is sound); where it cannot prove it, the verifier walks the executed
instructions, so what the verifier accepts is unchanged (tests/isa/test_isa_loops.py)."""
from __future__ import annotations

from operator import attrgetter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import assemble
from isa.loop_checks import Executed
from isa.loops import loop_structure
from isa.sync import SYNC_OPCODES, completes_by_iterations, find_blocked_wait

QUEUES = ("dma0", "dma1", "mxu0", "vpu0")
HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"


@st.composite
def _lines(draw, depth: int = 0) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 4 if depth < 2 else 3))
        if choice == 4:
            lines += [f".loop count={draw(st.integers(1, 5))}", *draw(_lines(depth + 1)), ".endloop"]
        else:
            op = "signal" if choice < 2 else "wait"
            lines.append(f"{draw(st.sampled_from(QUEUES))} {op} sem={draw(st.integers(0, 2))}")
    return lines


def _verdicts(text: str) -> tuple[bool, bool]:
    program = assemble(text)
    instructions = program.instructions
    opcodes = list(map(attrgetter("opcode"), instructions))
    structure = loop_structure(instructions, opcodes)
    run = Executed(instructions, structure, SYNC_OPCODES, opcodes)
    return (completes_by_iterations(instructions, structure, opcodes),
            find_blocked_wait(run.instructions) is None)


@settings(max_examples=200, deadline=None, database=None)
@given(lines=_lines(), halts=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(QUEUES)),
                                      max_size=2),
       closing=st.booleans())
@pytest.mark.slow      # about 0.5-0.8 s: the fast tier stays under 30 s
def test_what_iterations_prove_the_executed_walk_confirms(lines, halts, closing):
    # halts anywhere at the top level, and every queue's closing halt (as compiled programs end)
    depth, top = 0, []
    for k, line in enumerate(lines):
        depth += line.startswith(".loop") - (line == ".endloop")
        top.append(k + 1 if depth == 0 else None)
    for at, queue in sorted(halts, reverse=True):
        spots = [k for k in top if k is not None and k <= at] or [0]
        lines = lines[:spots[-1]] + [f"{queue} halt"] + lines[spots[-1]:]
    lines = lines + ([f"{q} halt" for q in QUEUES] if closing else [])
    proven, completes = _verdicts(HEADER + "\n".join(lines) + "\n")
    assert completes or not proven


def test_closing_halts_leave_a_program_provable():
    body = "dma0 signal sem=1\n.loop count=3\nmxu0 wait sem=1\nmxu0 signal sem=1\n.endloop\n"
    closing = "".join(f"{q} halt\n" for q in QUEUES)
    assert _verdicts(HEADER + body + closing) == (True, True)
    # a halt before its queue's last sync word is not a closing one: not proven, still walked
    assert _verdicts(HEADER + "mxu0 halt\n" + body + closing)[0] is False


PIPELINE = HEADER + """mxu0 signal sem=1
mxu0 signal sem=1
.loop count=1000
dma0 wait sem=1
dma0 signal sem=2
mxu0 wait sem=2
mxu0 signal sem=1
.endloop
dma0 wait sem=1
dma0 wait sem=1
"""


def test_a_credit_pipeline_is_proven_from_one_iteration():
    assert _verdicts(PIPELINE) == (True, True)


def test_a_wait_on_a_later_stretch_is_not_proven_but_still_completes():
    # vpu0 waits before the loop for a token the loop's last queue gives: barriers cannot
    # show it, the executed walk does
    text = HEADER + "vpu0 wait sem=3\n" + PIPELINE.removeprefix(HEADER) + "dma0 signal sem=3\n"
    assert _verdicts(text) == (False, True)


def test_a_semaphore_two_queues_wait_on_is_left_to_the_executed_walk():
    text = HEADER + "dma0 signal sem=0\ndma0 signal sem=0\nmxu0 wait sem=0\nvpu0 wait sem=0\n"
    assert _verdicts(text) == (False, True)
