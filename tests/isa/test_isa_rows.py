"""The verifier's DRAM row protocol of the pim queues (isa/rows.py): one hand-written program
per rule, each refused with the instruction, its queue and the reason, or accepted; and the
array filter first_row_violation against find_row_violation, its reference."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import Instr, MachineView, MemorySpace, VerifyError, assemble, verify
from isa.rows import ROW_CODES, find_row_violation, first_row_violation

HEADER = ".target pim\n.isa 3\n.spaces dram gbuf abuf\n"
SPACES = {"dram": MemorySpace("dram", 1 << 20, on_chip=False),
          "gbuf": MemorySpace("gbuf", 2 * 2048, on_chip=False),
          "abuf": MemorySpace("abuf", 4096, on_chip=True)}
LIMITS = {"bank": 4, "row": 64, "col": 32, "gbuf_bytes": 2048, "pim_burst_bytes": 32}
VIEW = MachineView(SPACES, frozenset({"pim0", "pim1"}), LIMITS, target="pim")


def _verify(body: str, view: MachineView = VIEW) -> None:
    verify(assemble(HEADER + body), view)


def _refused(body: str, message: str) -> VerifyError:
    with pytest.raises(VerifyError, match="^" + re.escape(message) + "$") as caught:
        _verify(body)
    return caught.value


GEMV = """\
pim0 pim.wrgb gb=0 src=abuf[0x0] bytes=64
pim0 pim.act_all row=5
pim0 pim.mac_all col=0 ncols=2 gb=0
pim0 pim.rdmac_all dst=abuf[0x100]
pim0 pim.pre_all
"""


def test_a_gemv_in_order_passes():
    _verify(GEMV + GEMV)


def test_mac_all_before_its_activate_is_refused():
    """The compiled program's lines reordered: the MAC before the row activation."""
    lines = GEMV.splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    error = _refused("\n".join(lines), "instruction 1 (pim0 pim.mac_all): bank 0 has no open row "
                                       "(no row was ever activated)")
    assert error.index == 1


def test_mac_all_after_precharge_names_the_precharge():
    _refused(GEMV + "pim0 pim.mac_all col=0 ncols=1 gb=0\n",
             "instruction 5 (pim0 pim.mac_all): bank 0 has no open row (precharged at "
             "instruction 4, not activated since)")


def test_mac_all_needs_every_bank_open():
    _refused("pim0 pim.act_all row=1\npim0 pim.pre bank=2\npim0 pim.mac_all col=0 ncols=1 gb=0\n",
             "instruction 2 (pim0 pim.mac_all): bank 2 has no open row (precharged at "
             "instruction 1, not activated since)")


def test_no_columns_issue_no_command_and_need_no_row():
    _verify("pim0 pim.mac_all col=0 ncols=0 gb=0\npim0 pim.mac bank=1 col=0 ncols=0 gb=0\n"
            "pim0 pim.rd bank=1 row=3 col=0 ncols=0 dst=abuf[0x0]\n")


def test_single_bank_mac_needs_its_bank_open():
    _verify("pim0 pim.act bank=1 row=9\npim0 pim.mac bank=1 col=0 ncols=4 gb=0\n")
    _refused("pim0 pim.act bank=1 row=9\npim0 pim.mac bank=2 col=0 ncols=4 gb=0\n",
             "instruction 1 (pim0 pim.mac): bank 2 has no open row (no row was ever activated)")


def test_activate_of_an_open_bank_is_refused():
    _refused("pim0 pim.act bank=1 row=5\npim0 pim.act bank=1 row=6\n",
             "instruction 1 (pim0 pim.act): bank 1 is open (row 5, activated at instruction 0); "
             "precharge it first")
    _refused("pim0 pim.act_all row=5\npim0 pim.act bank=3 row=6\n",
             "instruction 1 (pim0 pim.act): bank 3 is open (row 5, activated at instruction 0); "
             "precharge it first")


def test_activate_all_needs_every_bank_closed():
    _refused("pim0 pim.act bank=3 row=7\npim0 pim.act_all row=1\n",
             "instruction 1 (pim0 pim.act_all): bank 3 is open (row 7, activated at instruction "
             "0); precharge every bank (pim.pre_all) first")
    _verify("pim0 pim.act bank=3 row=7\npim0 pim.pre bank=3\npim0 pim.act_all row=1\n")


def test_reads_and_writes_need_their_own_row_open():
    _verify("pim0 pim.act bank=0 row=5\npim0 pim.wr bank=0 row=5 col=0 ncols=2 src=abuf[0x0]\n"
            "pim0 pim.rd bank=0 row=5 col=2 ncols=2 dst=abuf[0x0]\n")
    _refused("pim0 pim.act bank=0 row=5\npim0 pim.rd bank=0 row=6 col=0 ncols=1 dst=abuf[0x0]\n",
             "instruction 1 (pim0 pim.rd): row 6 is not open in bank 0 (row 5 is, since "
             "instruction 0)")
    _refused("pim0 pim.wr bank=0 row=5 col=0 ncols=1 src=abuf[0x0]\n",
             "instruction 0 (pim0 pim.wr): bank 0 has no open row (no row was ever activated)")


def test_precharging_a_closed_bank_is_allowed():
    """As the DRAM model treats it: PRE of an idle bank is a no-op command slot."""
    _verify("pim0 pim.pre bank=2\npim0 pim.pre_all\npim0 pim.pre_all\npim0 pim.act bank=2 row=1\n")


def test_buffer_writes_and_accumulator_reads_need_no_row():
    _verify("pim0 pim.wrgb gb=0 src=abuf[0x0] bytes=32\npim0 pim.rdmac bank=1 dst=abuf[0x0]\n"
            "pim0 pim.rdmac_all dst=abuf[0x0]\n")


def test_each_pim_queue_is_its_own_channel():
    _refused("pim0 pim.act_all row=5\npim1 pim.mac_all col=0 ncols=1 gb=0\n",
             "instruction 1 (pim1 pim.mac_all): bank 0 has no open row (no row was ever "
             "activated)")
    _verify("pim0 pim.act_all row=5\npim1 pim.act_all row=5\npim1 pim.mac_all col=0 ncols=1 gb=0\n"
            "pim0 pim.mac_all col=0 ncols=1 gb=0\n")


def test_without_a_bank_count_the_rows_are_not_checked():
    """A machine view that gives no `bank` limit knows no DRAM banks to track."""
    limits = {k: v for k, v in LIMITS.items() if k != "bank"}
    _verify("pim0 pim.mac_all col=0 ncols=1 gb=0\n",
            MachineView(SPACES, frozenset({"pim0"}), limits, target="pim"))


# ---- first_row_violation: the array filter agrees with find_row_violation --------------------

_EXTRA = {"pim.mac": {"col": 0, "gb": 0}, "pim.mac_all": {"col": 0, "gb": 0},
          "pim.rd": {"col": 0, "dst": "abuf[0x0]"}, "pim.wr": {"col": 0, "src": "abuf[0x0]"}}
_FIELDS = {"pim.act": ("bank", "row"), "pim.act_all": ("row",), "pim.pre": ("bank",),
           "pim.pre_all": (), "pim.mac": ("bank", "ncols"), "pim.mac_all": ("ncols",),
           "pim.rd": ("bank", "row", "ncols"), "pim.wr": ("bank", "row", "ncols")}


def _agreed(steps: list[tuple[int, str, int, int, int]], banks: int) -> int | None:
    """Both checks over (queue, opcode, bank, row, ncols) steps; the position they agree on."""
    instructions = [Instr.make(op, f"pim{queue}", **_EXTRA.get(op, {}),
                               **{name: {"bank": bank, "row": row, "ncols": ncols}[name]
                                  for name in _FIELDS[op]})
                    for queue, op, bank, row, ncols in steps]
    found = find_row_violation(instructions, [op for _, op, *_ in steps], banks)
    queue, op, bank, row, ncols = zip(*steps) if steps else ((),) * 5
    fast = first_row_violation(np.array(queue, dtype=np.int64) * 7 - 3,   # any ids will do
                               np.array([ROW_CODES[o] for o in op], dtype=np.int64),
                               np.array(bank, dtype=np.int64), np.array(row, dtype=np.int64),
                               np.array(ncols, dtype=np.int64), banks)
    assert fast == (None if found is None else found[0]), (found, fast)
    return fast


def _legal(rows: list[int | None], banks: int) -> list[tuple[str, int, int, int]]:
    """Every (opcode, bank, row, ncols) a channel whose banks hold `rows` accepts (rows 0-3)."""
    out = [("pim.pre", b, 0, 0) for b in range(banks)] + [("pim.pre_all", 0, 0, 0)]
    out += [(op, b, r, 0) for op in ("pim.mac", "pim.rd", "pim.wr")
            for b in range(banks) for r in range(4)]
    out += [("pim.mac_all", 0, 0, 0)] + [("pim.mac_all", 0, 0, 1)] * (None not in rows)
    if all(r is None for r in rows):
        out += [("pim.act_all", 0, r, 0) for r in range(4)]
    for b, open_row in enumerate(rows):
        if open_row is None:
            out += [("pim.act", b, r, 0) for r in range(4)]
        else:
            out += [("pim.mac", b, 0, 1), ("pim.rd", b, open_row, 1), ("pim.wr", b, open_row, 1)]
    return out


def _apply(rows: list[int | None], op: str, bank: int, row: int) -> None:
    """A channel's open rows after a legal instruction."""
    if op == "pim.act":
        rows[bank] = row
    elif op == "pim.pre":
        rows[bank] = None
    elif op in ("pim.act_all", "pim.pre_all"):
        rows[:] = [row if op == "pim.act_all" else None] * len(rows)


@st.composite
def _programs(draw) -> tuple[list[tuple[int, str, int, int, int]], int]:
    """Mostly legal programs of up to 60 steps over 1-3 channels of 2-4 banks: each step a
    legal instruction for its channel's state, or (one in ten) any instruction at all. A step
    is one drawn integer, cut into its choices, so that long programs draw fast."""
    banks = draw(st.integers(2, 4))
    queues = draw(st.integers(1, 3))
    size = draw(st.integers(0, 60))
    state = [[None] * banks for _ in range(queues)]
    steps = []
    for bits in draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=size, max_size=size)):
        bits, queue = divmod(bits, queues)
        bits, die = divmod(bits, 10)
        if die < 9:
            options = _legal(state[queue], banks)
            op, bank, row, ncols = options[bits % len(options)]
            _apply(state[queue], op, bank, row)
        else:
            bits, code = divmod(bits, len(ROW_CODES))
            bits, bank = divmod(bits, banks)
            op, row, ncols = sorted(ROW_CODES)[code], bits % 4, bits // 4 % 2
        steps.append((queue, op, bank, row, ncols))
    return steps, banks


@settings(max_examples=300, deadline=None)
@given(_programs())
@pytest.mark.slow      # about 1-2 s: the fast tier stays under 30 s
def test_first_row_violation_agrees_with_find_row_violation(program):
    _agreed(*program)


def test_first_row_violation_explicit_cases():
    assert _agreed([], 4) is None
    assert _agreed([(0, "pim.act", 2, 1, 0), (0, "pim.act_all", 0, 3, 0)], 4) == 1
    assert _agreed([(0, "pim.act_all", 0, 3, 0), (0, "pim.pre", 1, 0, 0),
                    (0, "pim.mac_all", 0, 0, 1)], 4) == 2
    assert _agreed([(0, "pim.act", 0, 5, 0), (0, "pim.wr", 0, 5, 1), (0, "pim.rd", 0, 6, 1)],
                   4) == 2
    assert _agreed([(0, "pim.mac", 1, 0, 0), (0, "pim.mac_all", 0, 0, 0), (0, "pim.rd", 3, 2, 0),
                    (0, "pim.wr", 3, 2, 0)], 4) is None
    assert _agreed([(0, "pim.pre", 2, 0, 0), (0, "pim.pre_all", 0, 0, 0),
                    (0, "pim.act", 2, 1, 0)], 4) is None
    assert _agreed([(0, "pim.act_all", 0, 1, 0), (1, "pim.act", 0, 1, 0),
                    (0, "pim.mac_all", 0, 0, 1), (1, "pim.mac_all", 0, 0, 1),
                    (0, "pim.rd", 3, 1, 1)], 4) == 3


def test_first_row_violation_refuses_a_bad_code_or_bank():
    with pytest.raises(ValueError, match="^code 8 is not a ROW_CODES code \\(0-7\\)$"):
        first_row_violation(np.zeros(1), np.array([8]), np.zeros(1), np.zeros(1), np.ones(1), 4)
    with pytest.raises(ValueError, match="^bank 4 is outside the channel's 4 banks$"):
        first_row_violation(np.zeros(1), np.array([ROW_CODES["pim.mac"]]), np.array([4]),
                            np.zeros(1), np.ones(1), 4)
