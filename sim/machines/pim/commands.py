"""DRAM commands of one PIM channel: kinds, the timing rules they obey, stats and errors.

Ground truth. `CommandChannel(arch).run(commands, start_cycle)` issues one channel's commands
in order (an in-order queue, no reordering), each at the earliest cycle every rule allows
(all times in DRAM cycles; `arch.timing`; the rules are implemented in
sim/machines/pim/dram.py):

    every command  >= previous issue + 1 (one command per cycle), >= last REF + tRFC,
                   >= last MODE + tMODCH
    MODE           switches the channel between bank mode and register mode (AiM's TMOD):
                   WRGB, RDMAC and RDMAC_ALL (the global buffer and the MAC results) issue in
                   register mode, every other command in bank mode; before a command of the
                   other mode the controller issues a MODE, as early as the rules above allow
                   (the channel starts in bank mode; tMODCH = 0 means no modes, no MODE)
    ACT b          bank idle; >= PRE b + tRP, ACT b + tRC, last ACT of b's bank group + tRRD_L,
                   any ACT + tRRD_S, 4th-last ACT + tFAW
    ACT_ALL        all banks idle; >= every PRE + tRP, last ACT + max(tRC, tRRD_L, tFAW)
                   (AiM's ACT16 waits tRC after any ACT; it counts as four ACTs for tFAW)
    PRE b          open: >= ACT b + tRAS, RD/MAC b + tRTP, WR b + tCWL + tBL + tWR (write
                   recovery counts from the write's last data), RDMAC b + tRDMAC_PRE (0 on the
                   presets: the result is read from registers); idle: a no-op slot
    PRE_ALL        the PRE rule over every open bank
    RD/WR/MAC b    bank open; >= ACT b + tRCD (RD: tRCD_RD; WR: tRCD_WR; MAC: tRCD_MAC)
    MAC_ALL        every bank open; >= every ACT + tRCD_MAC
    column kinds   RD WR MAC MAC_ALL RDMAC RDMAC_ALL WRGB: >= last column + tCCD_S and >= last
                   column of a shared bank group + tCCD_L (all-bank kinds hold every group, WRGB
                   none); MAC and MAC_ALL also >= last WRGB + WR_GB (its data in the buffer)
    REF            PRE_ALL of open rows first; >= every PRE + tRP, last ACT + tRC

Refresh: REF k is due at cycle k*tREFI (k >= 1). Those due before `start_cycle` were done on
time while the channel idled. Before each command, if its earliest cycle is >= the due cycle,
the controller refreshes first (in register mode a MODE, then PRE_ALL of open rows at >= due,
REF: bank commands), then resumes; a RD, WR,
MAC or MAC_ALL whose row the refresh closed first gets it reopened (ACT_ALL when every bank
was open to one row, else ACT per bank). A 'REF' in the stream refreshes at once (an extra
REF; the schedule stays). The end cycle is max(issue + tail): tail tCL + tBL for RD, RD_MAC
for RDMAC/RDMAC_ALL, WR_GB for WRGB, 1 otherwise. A RD/WR/MAC/MAC_ALL is a row miss when it
is the first column command since its row opened (the one that paid for the ACT), else a hit.

Fast paths, exact against this model: `ChannelState.run_plans` (sim/machines/pim/dram.py:
column runs in closed form, lockstep for all-bank commands; runs met before replayed,
sim/machines/pim/run_memo.py; what the simulator uses) and
sim/machines/pim/gemv.py (whole GEMV tile streams in closed form, for the bandwidth self-test).

ISA -> commands (one pim queue = one channel): pim.act/act_all/pre/pre_all -> ACT, ACT_ALL,
PRE, PRE_ALL; pim.mac/mac_all -> ncols x MAC/MAC_ALL; pim.wrgb -> ceil(bytes/burst_bytes) x
WRGB; pim.rdmac/rdmac_all -> RDMAC/RDMAC_ALL; pim.wr/rd -> ncols x WR/RD.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from arch.pim import PimArch

__all__ = ["Command", "DramError", "DramStats", "CommandResult", "Tally", "KINDS", "ALL_BANK",
           "ROW_ACCESS", "REGISTER", "NEVER", "FOREVER", "command_tails", "refresh_schedule",
           "validate_command"]

KINDS = ("ACT", "ACT_ALL", "PRE", "PRE_ALL", "MAC", "MAC_ALL", "RD", "WR", "WRGB", "RDMAC",
         "RDMAC_ALL", "REF", "MODE")
REGISTER = frozenset({"WRGB", "RDMAC", "RDMAC_ALL"})            # issue in register mode
ALL_BANK = frozenset({"ACT_ALL", "PRE_ALL", "MAC_ALL", "RDMAC_ALL"})
ROW_ACCESS = frozenset({"RD", "WR", "MAC", "MAC_ALL"})         # need an open row
NEVER = -(1 << 60)                                              # "long ago": no constraint
FOREVER = 1 << 62                                               # "never due": no refresh


class DramError(ValueError):
    """A command stream that breaks the DRAM protocol; names the command index."""


class Command(NamedTuple):
    """One DRAM command; `row` of a column command, when given, must be the open row."""

    kind: str
    bank: int = 0
    row: int | None = None
    col: int = 0


@dataclass(frozen=True, slots=True)
class DramStats:
    start_cycle: int
    end_cycle: int
    row_hits: int
    row_misses: int
    counts: dict[str, int]                  # issued commands by kind, the controller's included
    refresh_cycles: tuple[int, ...]         # issue cycle of every REF

    @property
    def cycles(self) -> int:
        return self.end_cycle - self.start_cycle


@dataclass(frozen=True, slots=True)
class CommandResult:
    issue_cycles: tuple[int, ...]           # one per stream command
    stats: DramStats


@dataclass(slots=True)
class Tally:
    """A channel's running counts while it issues; `stats()` freezes them."""

    start: int
    end: int
    hits: int = 0
    misses: int = 0
    counts: Counter = field(default_factory=Counter)
    refs: list[int] = field(default_factory=list)
    # remembered runs replayed, counted but not yet added (the memo's fast path):
    # id(delta) -> [delta, times], delta = (counts by kind as pairs, hits, misses)
    replayed: dict[int, list] = field(default_factory=dict)

    def snapshot(self) -> tuple[dict, int, int]:
        """(counts by kind, hits, misses) now: `delta_since` gives a run's own."""
        return dict(self.counts), self.hits, self.misses

    def delta_since(self, snapshot: tuple[dict, int, int]) -> tuple:
        """What was issued since `snapshot`: (counts by kind as pairs, hits, misses), a
        remembered run's delta (`replay`)."""
        counts, hits, misses = snapshot
        issued = tuple((k, n - counts.get(k, 0)) for k, n in self.counts.items()
                       if n != counts.get(k, 0))
        return issued, self.hits - hits, self.misses - misses

    def replay(self, delta: tuple) -> None:
        """A remembered run's delta issued once more, counted now and added when read."""
        times = self.replayed.get(id(delta))
        if times is None:
            self.replayed[id(delta)] = [delta, 1]
        else:
            times[1] += 1

    def add_replays(self) -> None:
        """Add the replayed runs' counts: each run's delta times its replays."""
        for (issued, hits, misses), times in self.replayed.values():
            for kind, n in issued:
                self.counts[kind] += n * times
            self.hits += hits * times
            self.misses += misses * times
        self.replayed.clear()

    def stats(self) -> DramStats:
        self.add_replays()
        counts = {k: self.counts[k] for k in KINDS if self.counts[k]}
        return DramStats(self.start, self.end, self.hits, self.misses, counts, tuple(self.refs))


def command_tails(t) -> dict[str, int]:
    """Cycles from each kind's issue until it is done (its data returned or written)."""
    return {**dict.fromkeys(KINDS, 1), "RD": t.tCL + t.tBL, "RDMAC": t.RD_MAC,
            "RDMAC_ALL": t.RD_MAC, "WRGB": t.WR_GB}


def refresh_schedule(t, start: int) -> tuple[int, int]:
    """(last REF before start or NEVER, next due cycle) for a channel idle until `start`."""
    if start < 0:
        raise DramError(f"start_cycle={start} must be >= 0")
    k = max(1, -(-start // t.tREFI))
    return ((k - 1) * t.tREFI if k >= 2 else NEVER), k * t.tREFI


def validate_command(arch: PimArch, i: int, c: Command) -> Command:
    """`c` (command `i` of a stream) if its kind, bank, row and column exist in `arch`."""
    a = arch
    if c.kind not in KINDS:
        raise DramError(f"command {i}: unknown kind {c.kind!r} (kinds: {' '.join(KINDS)})")
    if c.kind not in ALL_BANK and not 0 <= c.bank < a.banks:
        raise DramError(f"command {i} ({c.kind}): bank {c.bank} outside 0..{a.banks - 1}")
    if c.kind in ("ACT", "ACT_ALL") and (c.row is None or not 0 <= c.row < a.rows):
        raise DramError(f"command {i} ({c.kind}): row {c.row!r} outside 0..{a.rows - 1}")
    if c.kind in ROW_ACCESS and not 0 <= c.col < a.columns:
        raise DramError(f"command {i} ({c.kind}): col {c.col} outside 0..{a.columns - 1}")
    return c
