"""The command-level DRAM model of one PIM channel: `CommandChannel` (a whole stream) and
`ChannelState` (the per-bank state it keeps, fed command by command or run by run).

The rules, refresh and the ISA -> command mapping are in sim/machines/pim/commands.py.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Iterable, Sequence

from arch.pim import PimArch
from sim.machines.pim.commands import (
    ALL_BANK, NEVER, REGISTER, ROW_ACCESS, Command, CommandResult, DramError, Tally, command_tails,
    refresh_schedule, validate_command)
from sim.machines.pim.bank_runs import BankRuns
from sim.machines.pim.run_memo import PlanForms, RunMemo

__all__ = ["CommandChannel", "ChannelState"]

_COLUMN = ROW_ACCESS | {"RDMAC", "RDMAC_ALL", "WRGB"}
_READS = frozenset({"RD", "RDMAC", "RDMAC_ALL"})                 # data returns to the host
_LOCKSTEP = frozenset({"ACT_ALL", "PRE_ALL", "MAC_ALL", "RDMAC_ALL", "WRGB", "REF", "MODE"})
_MODE = Command("MODE")


class CommandChannel:
    """The command-level model of one channel (sim/machines/pim/commands.py gives every rule)."""

    def __init__(self, arch: PimArch) -> None:
        self.arch = arch

    def run(self, commands: Iterable[Sequence], start_cycle: int = 0) -> CommandResult:
        return ChannelState(self.arch, start_cycle).execute(commands)


class ChannelState(RunMemo, BankRuns):
    """State of one channel: per-bank last-command cycles, open rows, refresh schedule.

    `CommandChannel.run` feeds it a whole stream; the PIM machine keeps one per channel for
    a whole program and feeds it run by run (`run_plans`; the ground truth: `idle_until`
    and `issue` per command).

    Lockstep (`lockstep=True`, the fast path): from an ACT_ALL of a closed channel until the
    next single-bank command, every bank holds the same row and the same last ACT, PRE,
    column and write cycles, so the state is kept as one scalar per array (`_lock_*`) and
    the all-bank commands (ACT_ALL, PRE_ALL, MAC_ALL, RDMAC_ALL, WRGB, REF) are timed from
    those. The all-bank rules read only maxima over the banks, which the scalars are. At
    entry the PRE, column and write cycles become their maxima: a bank's old values can
    no longer bind (its close waited tRTP / tWR after them and the ACT_ALL tRP after that,
    so they fall before ACT + tRAS; a PRE only counts once it closes a bank again). The
    first single-bank command writes the scalars back to the arrays and goes on by the
    general rules, so lockstep yields the same cycles (tests/sim/machines/pim/test_channel.py)."""

    def __init__(self, arch: PimArch, start: int, *, lockstep: bool = False) -> None:
        self.arch, self.t, n = arch, arch.timing, arch.banks
        self.tail = command_tails(self.t)
        self.group = [arch.bank_group(b) for b in range(n)]
        self.open: list[int | None] = [None] * n
        self.memo: list[int | None] = [None] * n       # row a refresh closed, to reopen
        self.n_open = 0
        self.act, self.pre, self.rd, self.wr, self.rdmac = ([NEVER] * n for _ in range(5))
        self.fresh = [False] * n
        self.faw = deque([NEVER] * 4, maxlen=4)
        self.act_any = self.col_any = self.wg = NEVER
        self.act_grp = [NEVER] * arch.bank_groups       # last ACT per bank group (tRRD_L)
        self.col_grp = [NEVER] * arch.bank_groups
        self.register_mode, self.mode_at = False, NEVER  # the channel's mode, its last MODE
        self.modes = arch.timing.tMODCH > 0
        self.bus = start - 1
        self.ref, self.due = refresh_schedule(self.t, start)
        self.tally = Tally(start, start)
        self.data_ready = 0                             # when every read so far has returned
        self.lockstep, self.lock = lockstep, False
        self._lock_row = self._lock_memo = None
        self._lock_act = self._lock_pre = self._lock_rd = self._lock_wr = self._lock_rdmac = NEVER
        self._lock_fresh = False
        t = self.t
        self._act_all_gap = max(t.tRC, t.tRRD_L, t.tFAW)
        self._wr_pre = t.wr_to_pre
        # lockstep runs already timed, shared by the channels of one program (PimMachine's
        # `_run`): run_plans' memo; `forms` numbers each plan's row-free form for its key
        self.runs: dict | None = None
        self._after: tuple[int, int] | None = None      # (id of the last run remembered, its start)
        self._pending: tuple | None = None   # (a remembered run, its start): cycles unwritten
        self.forms: PlanForms | None = None
        # how far back a cycle can still bind a command: the longest distance a rule adds
        # to one (tREFI is none: refreshes fall due by `due`, which the memos key apart)
        self._horizon = 1 + max(self._act_all_gap, self._wr_pre, *self.tail.values(),
                                *(v for f in dataclasses.fields(t) if f.name != "tREFI"
                                  and isinstance(v := getattr(t, f.name), int)))

    def execute(self, commands: Iterable[Sequence]) -> CommandResult:
        issued = [self.issue(i, validate_command(self.arch, i, Command(*raw))) for i, raw in enumerate(commands)]
        return CommandResult(tuple(issued), self.stats())

    def idle_until(self, cycle: int) -> None:
        """Nothing arrives before `cycle`: refreshes due earlier happen on time meanwhile."""
        self.settle()
        while self.due < cycle:
            if self.lock:
                self._refresh_lock(self.due)
            else:
                self._refresh(self.due)
            self.due += self.t.tREFI
            if self.due < cycle and self.lockstep:
                self._idle_refreshes(cycle)
        if self.bus < cycle - 1:
            self.bus = cycle - 1

    def _idle_refreshes(self, cycle: int) -> None:
        """The refreshes due before `cycle` after one just issued, in closed form where each
        issues at its due cycle: every bank closed and in bank mode (no PRE or MODE first),
        and the next due binding alone. Then so does every later one, as nothing else issues
        (the REF before binds tRFC < tREFI later, every other cycle is older). A channel left
        idle through a vector phase meets thousands (the fast path's; ground truth: one by
        one)."""
        t = self.t
        if self.register_mode or t.tRFC >= t.tREFI or (
                self._lock_row is not None if self.lock else self.n_open):
            return
        last_pre = self._lock_pre if self.lock else max(self.pre)
        due = self.due
        if max(due, self._base(), last_pre + t.tRP, self.act_any + t.tRC) != due:
            return
        last = due + (cycle - 1 - due) // t.tREFI * t.tREFI
        self.tally.refs.extend(range(due, last + 1, t.tREFI))
        self.tally.counts["REF"] += (last - due) // t.tREFI + 1
        self.ref = self.bus = last
        self.tally.end = max(self.tally.end, last + 1)
        self.due = last + t.tREFI

    def issue(self, i: int, cmd: Command) -> int:
        """Issue one validated command (after any refresh it meets); returns its cycle."""
        while True:
            if self.lock:                               # (a reopening ACT_ALL may enter it)
                if cmd.kind in _LOCKSTEP:
                    return self._issue_lock(i, cmd)
                self._unlock()
            head = self._reopen(i, cmd) or cmd
            if self._switches(head.kind):
                head = _MODE
            e = self._earliest(head)
            if e >= self.due:
                self._refresh(self.due)
                self.due += self.t.tREFI
                continue
            if head.kind == "REF":
                e = self._refresh(e)
            else:
                self._apply(i, head, e)
            if head is cmd:
                return e

    def _switches(self, kind: str) -> bool:
        """Whether a command of `kind` needs a MODE first (it issues in the other mode)."""
        return self.modes and kind != "MODE" and (kind in REGISTER) != self.register_mode

    def _base(self) -> int:
        """The rules every command obeys: the bus, the last REF and the last MODE."""
        t = self.t
        return max(self.bus + 1, self.ref + t.tRFC, self.mode_at + t.tMODCH)

    def _switch(self, e: int) -> None:
        """A MODE issued at e."""
        self.register_mode = not self.register_mode
        self.mode_at = self.bus = e
        self.tally.counts["MODE"] += 1
        self.tally.end = max(self.tally.end, e + 1)

    def issue_run(self, i: int, cmd: Command, n: int, step: int) -> int:
        """n column commands like `cmd` back to back, in closed form; returns the last cycle.

        After the first, every rule binding a column command of the run is relative to its
        predecessor (bus, tCCD_S, tCCD_L) or already met (tRCD, WR_GB), so the others issue
        one per `step` until a refresh falls due; the refresh is then taken command by command."""
        e = self.issue(i, cmd)
        left = n - 1
        while left:
            k = min(left, (self.due - 1 - e) // step)
            if k > 0:
                e += k * step
                if self.lock:
                    self._apply_lock(cmd, e)
                else:
                    self._apply(i, cmd, e)
                self.tally.counts[cmd.kind] += k - 1
                if cmd.kind in ROW_ACCESS:
                    self.tally.hits += k - 1
                left -= k
            if left:
                e = self.issue(i, cmd)
                left -= 1
        return e

    def _banks(self, c: Command) -> range | tuple[int, ...]:
        if c.kind in ALL_BANK:
            return range(self.arch.banks)
        return () if c.kind == "WRGB" else (c.bank,)

    def _reopen(self, i: int, c: Command) -> Command | None:
        """The ACT the controller inserts for a row that a refresh closed, if any."""
        if c.kind not in ROW_ACCESS or (c.kind == "MAC_ALL" and self.n_open == self.arch.banks):
            return None
        closed = [b for b in self._banks(c) if self.open[b] is None]
        if not closed:
            return None
        for b in closed:
            if self.memo[b] is None:
                raise DramError(f"command {i} ({c.kind}): bank {b} has no open row")
        rows = {self.memo[b] for b in closed}
        if len(closed) == self.arch.banks and len(rows) == 1:
            return Command("ACT_ALL", row=rows.pop())
        return Command("ACT", closed[0], self.memo[closed[0]])

    def _pre_ready(self, b: int) -> int:
        t = self.t
        return max(self.act[b] + t.tRAS, self.rd[b] + t.tRTP, self.wr[b] + self._wr_pre,
                   self.rdmac[b] + t.tRDMAC_PRE)

    def _earliest(self, c: Command) -> int:
        t, k = self.t, c.kind
        e = self._base()
        if k == "ACT":
            b = c.bank
            return max(e, self.pre[b] + t.tRP, self.act[b] + t.tRC, self.act_any + t.tRRD_S,
                       self.act_grp[self.group[b]] + t.tRRD_L, self.faw[0] + t.tFAW)
        if k == "ACT_ALL":
            return max(e, max(self.pre) + t.tRP, self.act_any + self._act_all_gap)
        if k == "PRE_ALL" and self.n_open == self.arch.banks:       # every bank: the maxima
            return max(e, max(self.act) + t.tRAS, max(self.rd) + t.tRTP,
                       max(self.wr) + self._wr_pre, max(self.rdmac) + t.tRDMAC_PRE)
        if k in ("PRE", "PRE_ALL"):
            return max([e] + [self._pre_ready(b) for b in self._banks(c)
                              if self.open[b] is not None])
        if k in ("REF", "MODE"):
            return e                                    # _refresh adds its own waits
        banks = self._banks(c)
        if k in ALL_BANK:
            e = max(e, self.col_any + t.tCCD_S, max(self.col_grp) + t.tCCD_L)
        elif banks:
            e = max(e, self.col_any + t.tCCD_S, self.col_grp[self.group[c.bank]] + t.tCCD_L)
        else:
            e = max(e, self.col_any + t.tCCD_S)
        if k == "RD":
            e = max(e, self.act[c.bank] + t.tRCD_RD)
        elif k == "WR":
            e = max(e, self.act[c.bank] + t.tRCD_WR)
        elif k == "MAC_ALL":
            e = max(e, self.wg, max(self.act) + t.tRCD_MAC)
        elif k == "MAC":
            e = max(e, self.wg, self.act[c.bank] + t.tRCD_MAC)
        return e

    def _apply(self, i: int, c: Command, e: int) -> None:
        k, banks = c.kind, self._banks(c)
        n = self.arch.banks
        if k == "MODE":
            self._switch(e)
            return
        if k == "ACT_ALL" and not self.n_open and self.lockstep:   # every bank: lockstep
            self._lock_pre, self._lock_rd, self._lock_wr = max(self.pre), max(self.rd), max(self.wr)
            self._lock_rdmac = max(self.rdmac)
            self.lock = True
            self._apply_lock(c, e)
            return
        if k == "ACT_ALL" and not self.n_open:                     # every bank at once
            self.open, self.memo = [c.row] * n, [None] * n
            self.act, self.fresh = [e] * n, [True] * n
            self.n_open = n
            self.act_any = e
            self.act_grp = [e] * self.arch.bank_groups
            self.faw.extend((e, e, e, e))
        elif k == "PRE_ALL" and self.n_open == n:
            self.pre, self.open, self.memo = [e] * n, [None] * n, [None] * n
            self.n_open = 0
        elif k in ("MAC_ALL", "RDMAC_ALL"):
            if k == "MAC_ALL":
                if any(self.fresh):
                    self.tally.misses += 1
                    self.fresh = [False] * n
                else:
                    self.tally.hits += 1
                self.rd = [e] * n
            else:
                self.rdmac = [e] * n
            self.col_any = e
            self.col_grp = [e] * self.arch.bank_groups
        elif k in ("ACT", "ACT_ALL"):
            busy = [b for b in banks if self.open[b] is not None]
            if busy:
                raise DramError(f"command {i} ({k}): bank {busy[0]} is open; precharge it first")
            for b in banks:
                self.open[b], self.memo[b], self.act[b], self.fresh[b] = c.row, None, e, True
            self.n_open += len(banks)
            self.act_any = e
            for g in {self.group[b] for b in banks}:
                self.act_grp[g] = e
            self.faw.extend([e] * (4 if k == "ACT_ALL" else 1))
        elif k in ("PRE", "PRE_ALL"):
            for b in banks:
                if self.open[b] is not None:
                    self.pre[b], self.open[b] = e, None
                    self.n_open -= 1
                self.memo[b] = None
        elif k in _COLUMN:
            if k in ROW_ACCESS:
                self._access(i, c, banks, e)
            if k == "WRGB":
                self.wg = e + self.t.WR_GB
            elif k == "RDMAC":
                self.rdmac[c.bank] = e
            self.col_any = e
            for g in ({self.group[b] for b in banks} if len(banks) < self.arch.banks
                      else range(self.arch.bank_groups)):
                self.col_grp[g] = e
        self.bus = e
        self.tally.counts[k] += 1
        self.tally.end = max(self.tally.end, e + self.tail[k])
        if k in _READS:
            self.data_ready = max(self.data_ready, e + self.tail[k])

    def _access(self, i: int, c: Command, banks, e: int) -> None:
        for b in banks:
            if c.row is not None and self.open[b] != c.row:
                raise DramError(f"command {i} ({c.kind}): row {c.row} is not open in bank {b} "
                                f"(open: {self.open[b]})")
        if any(self.fresh[b] for b in banks):
            self.tally.misses += 1
        else:
            self.tally.hits += 1
        last = self.wr if c.kind == "WR" else self.rd
        for b in banks:
            self.fresh[b], last[b] = False, e

    # -- lockstep: the all-bank rules on one scalar per per-bank array --------------------

    def _unlock(self) -> None:
        """Back to per-bank arrays (every bank gets the scalars) before a single-bank command."""
        n = self.arch.banks
        self.open, self.memo = [self._lock_row] * n, [self._lock_memo] * n
        self.act, self.pre = [self._lock_act] * n, [self._lock_pre] * n
        self.rd, self.wr = [self._lock_rd] * n, [self._lock_wr] * n
        self.rdmac = [self._lock_rdmac] * n
        self.fresh = [self._lock_fresh] * n
        self.act_grp = [self.act_any] * self.arch.bank_groups     # lockstep's ACTs are ACT_ALLs
        self.lock = False

    def _issue_lock(self, i: int, cmd: Command) -> int:
        """`issue` in lockstep: the same loop with the scalar rules."""
        while True:
            head = cmd
            if cmd.kind == "MAC_ALL" and self._lock_row is None:      # a refresh closed it
                if self._lock_memo is None:
                    self._unlock()
                    return self.issue(i, cmd)       # the general rules name the error
                head = Command("ACT_ALL", row=self._lock_memo)
            if head.kind == "ACT_ALL" and self._lock_row is not None:
                self._unlock()
                return self.issue(i, cmd)           # the general rules name the error
            if self._switches(head.kind):
                head = _MODE
            e = self._lock_earliest(head.kind)
            if e >= self.due:
                self._refresh_lock(self.due)
                self.due += self.t.tREFI
                continue
            if head.kind == "REF":
                e = self._refresh_lock(e)
            elif head.kind == "MODE":
                self._switch(e)
            else:
                self._apply_lock(head, e)
            if head is cmd:
                return e

    def _lock_earliest(self, kind: str) -> int:
        """The earliest cycle of an all-bank command (or REF or MODE) by the lockstep rules (the
        row checks and the mode are the caller's)."""
        t = self.t
        e = self._base()
        if kind == "MAC_ALL":
            return max(e, self.col_any + t.tCCD_S, max(self.col_grp) + t.tCCD_L, self.wg,
                       self._lock_act + t.tRCD_MAC)
        if kind == "RDMAC_ALL":
            return max(e, self.col_any + t.tCCD_S, max(self.col_grp) + t.tCCD_L)
        if kind == "PRE_ALL":
            if self._lock_row is None:
                return e
            return max(e, self._lock_act + t.tRAS, self._lock_rd + t.tRTP, self._lock_wr + self._wr_pre,
                       self._lock_rdmac + t.tRDMAC_PRE)
        if kind == "ACT_ALL":
            return max(e, self._lock_pre + t.tRP, self.act_any + self._act_all_gap)
        if kind == "WRGB":
            return max(e, self.col_any + t.tCCD_S)
        return e                                                    # REF, MODE

    def _apply_lock(self, c: Command, e: int, n: int = 1) -> None:
        """The state after n commands like `c` (a column run when n > 1), the last at e."""
        k, tally = c.kind, self.tally
        if k == "MAC_ALL":
            if self._lock_fresh:
                tally.misses += 1
                tally.hits += n - 1
                self._lock_fresh = False
            else:
                tally.hits += n
            self._lock_rd = self.col_any = e
            self.col_grp = [e] * self.arch.bank_groups
        elif k == "RDMAC_ALL":
            self._lock_rdmac = self.col_any = e
            self.col_grp = [e] * self.arch.bank_groups
            self.data_ready = max(self.data_ready, e + self.t.RD_MAC)
        elif k == "PRE_ALL":
            if self._lock_row is not None:
                self._lock_pre, self._lock_row = e, None
                self.n_open = 0
            self._lock_memo = None
        elif k == "ACT_ALL":
            self._lock_row, self._lock_memo, self._lock_act, self._lock_fresh = c.row, None, e, True
            self.n_open = self.arch.banks
            self.act_any = e
            self.faw.extend((e, e, e, e))
        else:                                                       # WRGB
            self.wg = e + self.t.WR_GB
            self.col_any = e
        self.bus = e
        tally.counts[k] += n
        end = e + self.tail[k]
        if end > tally.end:
            tally.end = end

    def _refresh_lock(self, not_before: int) -> int:
        """`_refresh` in lockstep."""
        t = self.t
        self._to_bank_mode(not_before)
        if self._lock_row is not None:
            p = max(not_before, self._base(), self._lock_act + t.tRAS,
                    self._lock_rd + t.tRTP, self._lock_wr + self._wr_pre,
                    self._lock_rdmac + t.tRDMAC_PRE)
            self._lock_memo, self._lock_row, self._lock_pre = self._lock_row, None, p
            self._closed_all(p)
        return self._ref(not_before, self._lock_pre)

    def _refresh(self, not_before: int) -> int:
        """Close open rows, then REF; returns the REF cycle."""
        self._to_bank_mode(not_before)
        opened = [b for b in range(self.arch.banks) if self.open[b] is not None]
        if opened:
            p = max(not_before, self._base(), *(self._pre_ready(b) for b in opened))
            for b in opened:
                self.memo[b], self.open[b], self.pre[b] = self.open[b], None, p
            self._closed_all(p)
        return self._ref(not_before, max(self.pre))

    def _to_bank_mode(self, not_before: int) -> None:
        """The controller's MODE before a refresh's bank commands, in register mode."""
        if self.modes and self.register_mode:
            self._switch(max(not_before, self._base()))

    def _closed_all(self, p: int) -> None:
        """The controller's PRE_ALL before a REF issued at p."""
        self.n_open = 0
        self.bus = p
        self.tally.counts["PRE_ALL"] += 1
        self.tally.end = max(self.tally.end, p + 1)

    def _ref(self, not_before: int, last_pre: int) -> int:
        """REF once every bank is closed (the last PRE at `last_pre`); returns its cycle."""
        t, tally = self.t, self.tally
        r = max(not_before, self._base(), last_pre + t.tRP, self.act_any + t.tRC)
        self.ref = self.bus = r
        tally.counts["REF"] += 1
        tally.refs.append(r)
        tally.end = max(tally.end, r + 1)
        return r
