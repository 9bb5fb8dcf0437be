"""The verifier's row protocol (isa/rows.py) against the DRAM model it mirrors: on random pim
streams, legal or not, `isa.verify` refuses a program exactly when the simulator, run without
the verifier, raises DramError (fast path and command-by-command ground truth alike)."""

from __future__ import annotations

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

import isa
from arch import load_arch
from sim.engine import simulate_events
from sim.machines.pim import PimMachine
from sim.machines.pim.commands import DramError

ARCH = load_arch("pim-gpt")
BANKS = st.sampled_from([0, 1, ARCH.banks - 1])
ROWS = st.sampled_from([3, 4])
NCOLS = st.integers(0, 3)
ABUF = isa.Addr("abuf", 0)

_OPS = {
    "pim.act": st.fixed_dictionaries({"bank": BANKS, "row": ROWS}),
    "pim.act_all": st.fixed_dictionaries({"row": ROWS}),
    "pim.pre": st.fixed_dictionaries({"bank": BANKS}),
    "pim.pre_all": st.just({}),
    "pim.mac": st.fixed_dictionaries({"bank": BANKS, "col": st.just(0), "ncols": NCOLS,
                                      "gb": st.just(0)}),
    "pim.mac_all": st.fixed_dictionaries({"col": st.just(0), "ncols": NCOLS, "gb": st.just(0)}),
    "pim.rd": st.fixed_dictionaries({"bank": BANKS, "row": ROWS, "col": st.just(0),
                                     "ncols": NCOLS, "dst": st.just(ABUF)}),
    "pim.wr": st.fixed_dictionaries({"bank": BANKS, "row": ROWS, "col": st.just(0),
                                     "ncols": NCOLS, "src": st.just(ABUF)}),
    "pim.wrgb": st.fixed_dictionaries({"gb": st.just(0), "src": st.just(ABUF),
                                       "bytes": st.just(64)}),
    "pim.rdmac": st.fixed_dictionaries({"bank": BANKS, "dst": st.just(ABUF)}),
}


@st.composite
def _instruction(draw) -> isa.Instr:
    opcode = draw(st.sampled_from(sorted(_OPS)))
    queue = draw(st.sampled_from(["pim0", "pim1"]))
    return isa.Instr.make(opcode, queue, **draw(_OPS[opcode]))


def _dram_error(program: isa.Program, exact: bool) -> bool:
    """Whether the machine, never asked to verify, meets a DramError running `program`."""
    costs = PimMachine(ARCH, exact_dram=exact).start(program).costs
    try:
        simulate_events(program, costs.durations, costs.resources, None, costs.timed,
                        costs.delays, None if exact else costs.timed_run)
    except DramError:
        return True
    return False


# Short streams: they end long before the first refresh (tREFI cycles), which could close a
# row the program left open and so let the model accept an activate the protocol refuses.
@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(_instruction(), max_size=12))
def test_verify_refuses_exactly_what_the_dram_model_raises_for(instructions):
    program = isa.Program("pim", isa.ISA_VERSION, ("dram", "gbuf", "abuf"), (),
                          tuple(instructions))
    try:
        isa.verify(program, ARCH.machine_view())
        refused = False
    except isa.VerifyError as error:
        assert "open" in str(error), error              # only the row protocol can refuse here
        refused = True
    assert _dram_error(program, exact=False) == refused
    assert _dram_error(program, exact=True) == refused
