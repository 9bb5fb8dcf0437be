"""The verifier's DRAM row protocol of the pim queues (isa/rows.py): one hand-written program
per rule, each refused with the instruction, its queue and the reason, or accepted."""

from __future__ import annotations

import re

import pytest

from isa import MachineView, MemorySpace, VerifyError, assemble, verify

HEADER = ".target pim\n.isa 2\n.spaces dram gbuf abuf\n"
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
