"""rtl_models/pim_bank.v against sim/machines/pim/dram.py's CommandChannel (issue cycles) and numpy (values).

Each geometry is one build and one simulation of seeded random single-bank command streams
(ACT, MAC bursts, RD, WR, WRGB, RDMAC, PRE, ...), with a MODE wherever the stream changes
between register commands (WRGB, RDMAC) and the rest, as the channel's controller issues it.
Every case has its own timing: a quarter the pim-gpt preset, the rest small random values that
make the rules interact (a mode switch of 0, no modes, in some). The oracle is the
simulator's channel model on the same stream, bank 0 of a one-bank-group channel with refresh
out of reach, where the channel rules reduce to the bank's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import arch.pim  # noqa: F401  (registers the "pim" target)
import sim.machines.pim.commands as commands
import sim.machines.pim.dram as dram
from arch import load_arch

import rtl_models.runner as runner

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(runner.missing_tools() is not None, reason=str(runner.missing_tools()))]

SEED = 20240601
CASES = 60                          # per geometry
TIMING = ("tRCD_RD", "tRCD_WR", "tRCD_MAC", "tRP", "tRAS", "tRC", "tCCD_S", "tCCD_L", "tRTP", "tCWL",
          "tBL", "tWR", "WR_GB", "tMODCH", "tRDMAC_PRE")
TIMING_MAX = 255                    # pim_bank.v's TW = 8-bit timing registers
REFRESH_OUT_OF_REACH = 1 << 17      # tREFI (its largest allowed value): no refresh falls inside a case


@dataclass(frozen=True, slots=True)
class Geometry:
    """A bank shape: the pim-gpt preset with `overrides`, and the rows the RTL keeps."""

    name: str
    rows: int                       # rows modelled in RTL (the arch's 16 K are not simulated)
    overrides: tuple[str, ...] = ()

    def arch(self, timing: dict[str, int] | None = None):
        extra = [f"timing.{k}={v}" for k, v in (timing or {}).items()]
        return load_arch("pim-gpt", ["bank_groups=1", f"timing.tREFI={REFRESH_OUT_OF_REACH}",
                                     *self.overrides, *extra])

    def parameters(self) -> dict[str, int]:
        a = self.arch()
        return {"ROWS": self.rows, "COLS": a.columns, "LANES": a.macs_per_bank_per_access,
                "GB_COLS": a.gbuf_bytes // a.burst_bytes}


GEOMETRIES = {g.name: g for g in (
    Geometry("aim", rows=8),        # the preset: 64 columns of 16 lanes, 2 KB global buffer
    Geometry("narrow", rows=4, overrides=("macs_per_bank_per_access=4", "burst_bytes=8",
                                          "row_bytes=64", "gbuf_bytes=64")),
)}


# ---- stimulus ------------------------------------------------------------------------------

def random_timing(rng: np.random.Generator) -> dict[str, int]:
    """Small values that make the rules interact; tRRD and tFAW stay implied by tRC."""
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))    # noqa: E731
    t = {"tRCD_RD": r(1, 12), "tRCD_WR": r(1, 12), "tRCD_MAC": r(1, 16), "tRP": r(1, 10),
         "tRAS": r(1, 16), "tCCD_S": r(1, 4), "tCCD_L": r(1, 6), "tRTP": r(1, 8), "tCWL": r(1, 6),
         "tBL": r(1, 4), "tWR": r(1, 10), "WR_GB": r(1, 16), "tMODCH": r(0, 12)}
    t["tRC"] = r(t["tRAS"], t["tRAS"] + 10)
    t["tRDMAC_PRE"] = r(0, t["tRAS"])
    t["tRRD_S"] = r(1, t["tRC"])
    t["tRRD_L"] = r(t["tRRD_S"], t["tRC"])
    t["tFAW"] = r(1, 4 * t["tRC"])
    return t


def _lanes(rng, n: int) -> list[int]:
    return rng.integers(-(1 << 15), 1 << 15, size=n).tolist()


def random_commands(rng: np.random.Generator, p: dict[str, int], n: int) -> list[dict]:
    """A legal single-bank stream: rows opened and closed, MAC bursts against written gbuf."""
    cmds: list[dict] = []
    open_row, written = None, []
    while len(cmds) < n:
        u = rng.random()
        if not written or u < 0.08:
            gb = int(rng.integers(p["GB_COLS"]))
            cmds.append({"kind": "WRGB", "gb": gb, "data": _lanes(rng, p["LANES"])})
            written.append(gb)
        elif open_row is None:
            if u < 0.8:
                open_row = int(rng.integers(p["ROWS"]))
                cmds.append({"kind": "ACT", "row": open_row})
            else:
                cmds.append({"kind": "PRE" if u < 0.9 else "RDMAC"})
        elif u < 0.5:
            col = int(rng.integers(p["COLS"]))
            for j in range(int(rng.integers(1, 7))):
                cmds.append({"kind": "MAC", "col": (col + j) % p["COLS"],
                             "gb": int(rng.choice(written))})
        elif u < 0.6:
            cmds.append({"kind": "RD", "col": int(rng.integers(p["COLS"]))})
        elif u < 0.7:
            cmds.append({"kind": "WR", "col": int(rng.integers(p["COLS"])),
                         "data": _lanes(rng, p["LANES"])})
        elif u < 0.85:
            cmds.append({"kind": "RDMAC"})
        else:
            cmds.append({"kind": "PRE"})
            open_row = None
    return cmds + [{"kind": "RDMAC"}]


def with_modes(cmds: list[dict], modes: bool) -> list[dict]:
    """The stream with a MODE before each command of the other mode (the controller's)."""
    if not modes:
        return cmds
    out, register = [], False
    for c in cmds:
        if (c["kind"] in commands.REGISTER) != register:
            out.append({"kind": "MODE"})
            register = not register
        out.append(c)
    return out


def make_stimulus(geometry: Geometry, seed: int, cases: int) -> dict:
    rng = np.random.default_rng(seed)
    p = geometry.parameters()
    preset = geometry.arch().timing
    out = []
    for i in range(cases):
        timing = ({k: getattr(preset, k) for k in TIMING} if i % 4 == 0 else random_timing(rng))
        array = rng.integers(-(1 << 15), 1 << 15, size=(p["ROWS"], p["COLS"], p["LANES"]))
        cmds = random_commands(rng, p, int(rng.integers(20, 61)))
        out.append({"timing": timing, "array": array.tolist(),
                    "commands": with_modes(cmds, timing["tMODCH"] > 0)})
    return {"cases": out}


# ---- the oracles ---------------------------------------------------------------------------

def _wrap32(x: int) -> int:
    return int(np.array(x, dtype=np.int64).astype(np.int32))


def expected_values(case: dict) -> tuple[list[list[int]], list[int]]:
    """(RD data, RDMAC results) of the stream in numpy: int16 lanes, int32 accumulator."""
    array = np.array(case["array"], dtype=np.int64)
    gbuf: dict[int, np.ndarray] = {}
    row, acc, reads, macs = None, 0, [], []
    for c in case["commands"]:
        k = c["kind"]
        if k == "ACT":
            row = c["row"]
        elif k == "PRE":
            row = None
        elif k == "RD":
            reads.append(array[row, c["col"]].tolist())
        elif k == "WR":
            array[row, c["col"]] = c["data"]
        elif k == "MAC":
            acc = _wrap32(acc + int(np.dot(array[row, c["col"]], gbuf[c["gb"]])))
        elif k == "RDMAC":
            macs.append(acc)
            acc = 0
        elif k == "WRGB":
            gbuf[c["gb"]] = np.array(c["data"], dtype=np.int64)
    return reads, macs


def expected_issue_cycles(geometry: Geometry, case: dict) -> list[int]:
    """The simulator's channel model on the same stream (bank 0)."""
    a = geometry.arch(case["timing"])
    assert a.timing.tRRD_L <= a.timing.tRC and a.timing.tFAW <= 4 * a.timing.tRC, \
        "tRRD/tFAW would constrain one bank beyond tRC; the bank does not model them"
    stream = [commands.Command(c["kind"], 0, c.get("row"), c.get("col", 0))
              for c in case["commands"]]
    return list(dram.CommandChannel(a).run(stream).issue_cycles)


def mismatches(geometry: Geometry, stimulus: dict, results: dict) -> list[str]:
    """Every case where the RTL and the oracles disagree, with what is needed to replay it."""
    out = []
    for i, (case, got) in enumerate(zip(stimulus["cases"], results["cases"], strict=True)):
        if got["stuck"]:
            out.append(f"case {i}: command {got['stuck']} never issued")
            continue
        if got["timed_issue_cycles"] != got["issue_cycles"]:
            out.append(f"case {i}: the issue_cycle register {got['issue_cycles']} disagrees with "
                       f"the edges counted by the bench {got['timed_issue_cycles']}")
        want = expected_issue_cycles(geometry, case)
        if got["issue_cycles"] != want:
            j = next(j for j, (g, w) in enumerate(zip(got["issue_cycles"], want)) if g != w)
            out.append(f"case {i} (timing {case['timing']}): command {j} "
                       f"{case['commands'][j]['kind']} issued at {got['issue_cycles'][j]}, "
                       f"CommandChannel says {want[j]}; stream "
                       f"{[c['kind'] for c in case['commands'][:j + 1]]}")
        reads, macs = expected_values(case)
        if got["rd_data"] != reads:
            out.append(f"case {i}: RD data {got['rd_data']} != numpy {reads}")
        if got["mac_results"] != macs:
            out.append(f"case {i}: RDMAC results {got['mac_results']} != numpy {macs}")
    return out


# ---- tests ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def bank_run(request):
    """One build and one simulation per geometry: (geometry, stimulus, results)."""
    geometry = GEOMETRIES[request.param]
    stimulus = make_stimulus(geometry, SEED + list(GEOMETRIES).index(geometry.name), CASES)
    bench = runner.Bench("pim_bank", geometry.parameters())
    return geometry, stimulus, runner.run_bench(bench, stimulus).results


def test_stimulus_covers_every_command_and_timing_fits_the_rtl(bank_run):
    geometry, stimulus, _ = bank_run
    assert len(stimulus["cases"]) >= 50
    kinds = {c["kind"] for case in stimulus["cases"] for c in case["commands"]}
    assert kinds == {"ACT", "PRE", "RD", "WR", "MAC", "RDMAC", "WRGB", "MODE"}
    assert all((0 if k in ("tMODCH", "tRDMAC_PRE") else 1) <= case["timing"][k] <= TIMING_MAX
               for case in stimulus["cases"] for k in TIMING)
    assert {case["timing"]["tMODCH"] > 0 for case in stimulus["cases"]} == {True, False}


def test_issue_cycles_and_values_match_the_simulator(bank_run):
    geometry, stimulus, results = bank_run
    problems = mismatches(geometry, stimulus, results)
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:10])


def test_the_controller_inserts_the_modes_the_bench_was_given(bank_run):
    """The channel model on the stream without its MODEs issues the same MODEs itself."""
    geometry, stimulus, _ = bank_run
    for case in stimulus["cases"]:
        bare = [c for c in case["commands"] if c["kind"] != "MODE"]
        got = dram.CommandChannel(geometry.arch(case["timing"])).run(
            [commands.Command(c["kind"], 0, c.get("row"), c.get("col", 0)) for c in bare])
        given = expected_issue_cycles(geometry, case)
        assert list(got.issue_cycles) == [t for t, c in zip(given, case["commands"])
                                          if c["kind"] != "MODE"]
        assert got.stats.counts.get("MODE", 0) == len(case["commands"]) - len(bare)


def test_a_one_cycle_change_to_the_channel_model_is_reported(bank_run, monkeypatch):
    geometry, stimulus, results = bank_run
    earliest = dram.ChannelState._earliest
    monkeypatch.setattr(dram.ChannelState, "_earliest",
                        lambda self, c: earliest(self, c) + (c.kind == "MAC"))
    problems = mismatches(geometry, stimulus, results)
    assert problems and all("CommandChannel says" in p for p in problems)
