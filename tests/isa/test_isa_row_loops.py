"""The row protocol over loops checked compact (isa/row_loops.py): `rows_hold` says a program
holds exactly when the unrolled program does, and the verifier's verdict and message are those
of the exact pass over the executed order (which it still runs for a program that fails)."""

from __future__ import annotations

import re
import sys
from operator import attrgetter
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import VerifyError, assemble, unroll, verify
from isa.loops import loop_structure
from isa.row_loops import rows_hold
from isa.rows import find_row_violation
from tests.isa.isa_strategies import PIM_ROW_ITEMS, loop_body
from tests.isa.test_isa_rows import HEADER, LIMITS, VIEW

BANKS = LIMITS["bank"]
_VERIFY = sys.modules["isa.verify"]


def _holds(program) -> bool:
    opcodes = list(map(attrgetter("opcode"), program.instructions))
    structure = loop_structure(program.instructions, opcodes, program.ops)
    return rows_hold(program.instructions, opcodes, structure, BANKS)


def _unrolled_holds(program) -> bool:
    flat = unroll(program).instructions
    return find_row_violation(flat, [i.opcode for i in flat], BANKS) is None


def _message(program) -> str | None:
    try:
        verify(program, VIEW)
    except VerifyError as error:
        return str(error)
    return None


def _exact_message(program) -> str | None:
    """The verifier's message with the compact check taken out: the executed-order pass."""
    with mock.patch.object(_VERIFY, "rows_hold", lambda *_: False):
        return _message(program)


def _agrees(text: str) -> str | None:
    """Check one program every way; the verifier's message (None: valid)."""
    program = assemble(HEADER + text)
    holds = _holds(program)
    assert holds == _unrolled_holds(program)
    message = _message(program)
    assert message == _exact_message(program)
    assert (message is None) == holds
    return message


CASES = [
    # Nested loops, act_all rows moving with both, every bank closed between iterations.
    ("""\
.loop count=3
  .loop count=4
    pim0 pim.act_all row=5+=1+=4
    pim0 pim.mac_all col=0 ncols=2 gb=0
    pim0 pim.pre_all
  .endloop
.endloop
""", None),
    # A write whose row moves with the act's stride, and one whose row moves with another.
    ("""\
.loop count=4
  pim0 pim.act bank=1 row=9+=2
  pim0 pim.wr bank=1 row=9+=2 col=0 ncols=1 src=abuf[0x0]
  pim0 pim.pre bank=1
.endloop
""", None),
    ("""\
.loop count=4
  pim0 pim.act bank=1 row=9+=2
  pim0 pim.wr bank=1 row=9+=1 col=0 ncols=1 src=abuf[0x0]
  pim0 pim.pre bank=1
.endloop
""", "instruction 4 (pim0 pim.wr) in loop at 0, iteration 1: row 10 is not open in bank 1 "
     "(row 11 is, since instruction 3 in loop at 0, iteration 1)"),
    # A different stride is no violation where the loop runs once.
    ("""\
.loop count=1
  pim0 pim.act bank=1 row=9+=2
  pim0 pim.wr bank=1 row=9+=1 col=0 ncols=1 src=abuf[0x0]
  pim0 pim.pre bank=1
.endloop
""", None),
    # A body that leaves its bank open for the next iteration, which closes it first.
    ("""\
.loop count=5
  pim0 pim.pre bank=2
  pim0 pim.act bank=2 row=3+=1
  pim0 pim.rd bank=2 row=3+=1 col=0 ncols=1 dst=abuf[0x0]
.endloop
pim0 pim.rd bank=2 row=7 col=0 ncols=1 dst=abuf[0x0]
""", None),
    ("""\
.loop count=5
  pim0 pim.act bank=2 row=3+=1
  pim0 pim.rd bank=2 row=3+=1 col=0 ncols=1 dst=abuf[0x0]
.endloop
""", "instruction 3 (pim0 pim.act) in loop at 0, iteration 1: bank 2 is open (row 3, activated "
     "at instruction 3 in loop at 0, iteration 0); precharge it first"),
    # A read of the row the previous iteration opened: every iteration's rows line up...
    ("""\
pim0 pim.act bank=0 row=7
.loop count=3
  pim0 pim.rd bank=0 row=7+=1 col=0 ncols=1 dst=abuf[0x0]
  pim0 pim.pre bank=0
  pim0 pim.act bank=0 row=8+=1
.endloop
""", None),
    # ... but for the last iteration, where the row opened moves two rows.
    ("""\
pim0 pim.act bank=0 row=7
.loop count=3
  pim0 pim.rd bank=0 row=7 col=0 ncols=1 dst=abuf[0x0]
  pim0 pim.pre bank=0
  pim0 pim.act bank=0 row=7+=1
.endloop
""", "instruction 3 (pim0 pim.rd) in loop at 1, iteration 2: row 7 is not open in bank 0 (row 8 "
     "is, since instruction 5 in loop at 1, iteration 1)"),
    # First wrong in iteration 1 of the inner loop of iteration 1 of the outer one.
    ("""\
pim0 pim.act bank=0 row=10
.loop count=3
  .loop count=3
    pim0 pim.wr bank=0 row=10+=1+=1 col=0 ncols=1 src=abuf[0x0]
    pim0 pim.pre bank=0
    pim0 pim.act bank=0 row=11+=1
  .endloop
  pim0 pim.pre bank=0
  pim0 pim.act bank=0 row=11+=1
.endloop
""", "instruction 7 (pim0 pim.wr) in loop at 1, iteration 1, loop at 4, iteration 1: row 12 is "
     "not open in bank 0 (row 11 is, since instruction 9 in loop at 1, iteration 1, loop at 4, "
     "iteration 0)"),
    # The all-bank rules across iterations: one bank left closed, or one left open.
    ("""\
pim1 pim.act_all row=4
.loop count=2
  pim1 pim.mac_all col=0 ncols=1 gb=0
  pim1 pim.pre bank=3
.endloop
""", "instruction 2 (pim1 pim.mac_all) in loop at 1, iteration 1: bank 3 has no open row "
     "(precharged at instruction 3 in loop at 1, iteration 0, not activated since)"),
    ("""\
.loop count=3
  pim1 pim.act bank=1 row=4
  .loop count=2
    pim0 pim.act_all row=6
    pim0 pim.pre_all
  .endloop
  pim1 pim.pre_all
  pim1 pim.act_all row=6
  pim1 pim.pre_all
.endloop
""", None),
    # Channels apart: what pim0 opens is nothing to pim1, in any iteration.
    ("""\
pim0 pim.act_all row=2
.loop count=3
  pim0 pim.mac_all col=0 ncols=1 gb=0
  pim1 pim.mac bank=0 col=0 ncols=1 gb=0
.endloop
""", "instruction 3 (pim1 pim.mac) in loop at 1, iteration 0: bank 0 has no open row (no row "
     "was ever activated)"),
]


@pytest.mark.parametrize("text, message", CASES)
def test_loops_of_row_words_agree_with_their_unrolled_program(text, message):
    assert _agrees(text) == message


def test_a_zero_count_loop_is_refused_before_the_rows():
    with pytest.raises(VerifyError, match=re.escape("loop at 0: count 0 (a loop runs its body "
                                                    "at least once)")):
        verify(assemble(HEADER + ".loop count=0\npim0 pim.mac_all col=0 ncols=1 gb=0\n"
                        ".endloop\n"), VIEW)


def test_a_valid_program_is_never_unrolled_for_its_rows():
    """10^9 executed GEMVs: checked per compact word, or this would not end."""
    program = assemble(HEADER + """\
.loop count=1000
  .loop count=1000
    pim0 pim.wrgb gb=0 src=abuf[0x0] bytes=64
    .loop count=1000
      pim0 pim.act_all row=3
      pim0 pim.mac_all col=0 ncols=2 gb=0
      pim0 pim.pre_all
    .endloop
  .endloop
.endloop
""")
    with mock.patch.object(_VERIFY, "unrolled_order", side_effect=AssertionError("unrolled")):
        verify(program, VIEW)


@settings(max_examples=120, deadline=None)
@given(st.integers(2, 4), loop_body(depth=1, items=PIM_ROW_ITEMS))
def test_random_loops_of_row_words_agree_with_their_unrolled_program(count, lines):
    """A loop of 2-4 iterations around random nested loops of row words (about two in five
    hold; one in five first fails in a later iteration of some loop)."""
    _agrees("\n".join([f".loop count={count}", *lines, ".endloop"]) + "\n")
