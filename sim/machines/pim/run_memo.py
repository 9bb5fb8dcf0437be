"""Runs a PIM channel has timed before, replayed (ChannelState's memo): the fast path that
times a whole run of pim instructions at once when its channel stays in lockstep.

A run is remembered by its plans, the rows open and the state relative to its start (or
by its plans' row-free forms and pattern of equal rows, or by the run before it and the
distance), and replayed where the same plans meet the same relative state: the DRAM rules
are max-plus in the cycles and read row numbers only to compare them, so the whole run
shifts with its start (the reasoning in detail: `run_plans`). `RunMemo` is mixed into
`ChannelState` (sim/machines/pim/dram.py), whose rules it calls for a run not met.
"""
from __future__ import annotations

from collections import deque
from itertools import chain, repeat
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np

from sim.machines.pim.commands import DramStats

__all__ = ["PlanForms", "RunMemo", "row_pattern"]

_INLINE = frozenset({"ACT_ALL", "PRE_ALL", "MAC_ALL", "RDMAC_ALL", "WRGB"})   # closed forms:
                                                     # the lockstep kinds but REF and MODE
_ANY_ROW = frozenset({"PRE_ALL", "RDMAC_ALL", "WRGB"})   # need no row open nor closed
_AFTER = "after"                 # the memo keys of runs looked up by the run before them
_DATA_READY = 10                 # data_ready's place among `_relative`'s cycles


class RunMemo:
    """ChannelState's memo of lockstep runs (its `runs`, `forms`, `_after` and `_pending`)."""

    def run_plans(self, indices: Sequence[int], plans: Sequence[tuple], t: int) -> np.ndarray:
        """The fast path for a run of instructions issued back to back from cycle t: each
        plan's (command, repeat, step) triples as runs (`issue_run`); returns each
        instruction's cycles (a read-only int64 array). In lockstep, a command or column run
        of the all-bank kinds that ends before the next refresh falls due is timed in closed
        form; anything else (a
        refresh due, a row a refresh closed, an ACT_ALL of an open row, which the general rules
        name as an error) goes through `issue` / `issue_run`.

        A run that starts and ends in lockstep is remembered (`runs`) and replayed where the
        same plans, up to their row numbers, meet the same relative state as far from a
        refresh. Its key is the plans' row-free forms (`PlanForms`), the pattern of equal rows
        among the open and memo rows and the plans' rows (each row numbered by first
        appearance), the state relative to t and the cycles to the next refresh. That is
        exact: the rules are max-plus in the cycles and the refreshes come every tREFI, so the
        whole run shifts with t; and no rule reads a row number but to compare it with another
        (an open row, a refresh's memo), so a run with other rows in the same pattern issues
        every command at the same cycles, and ends with the rows the pattern names (the
        channels of a GEMV run the same plans in step; a layer runs the last one's rows moved)."""
        return self._timed(indices, tuple(map(id, plans)), lambda: plans, t)

    def run_numbered(self, indices: Sequence[int], numbers: np.ndarray, table: Sequence[tuple],
                     t: int) -> np.ndarray:
        """`run_plans` of the plans table[numbers] (one int array of plan numbers): a run met
        before is looked up by the numbers' bytes, no Python per instruction."""
        return self._timed(indices, numbers.tobytes(),
                           lambda: list(map(table.__getitem__, numbers.tolist())), t)

    def replay_after(self, ids: Hashable, t: int) -> np.ndarray | None:
        """The cycles of the run `ids` (as `_timed` takes them) from t where it follows the
        last run at a distance met before and no refresh falls due before t (a GEMV's
        channels in step: most runs), its cycles left pending (`settle`); else None, the
        state untouched. The shell's bursts call it first, before anything is built."""
        after = self._after
        if after is None or not self.lock or self.runs is None or self.due < t:
            return None
        found = self.runs.get((_AFTER, ids, self._lock_row, self._lock_memo, after[0],
                               t - after[1]))
        if found is None:
            return None
        self._replay_rest(*found, t)
        self._pending = found[0], t             # its cycles written when first read
        self._after = (id(found[0]), t)
        return found[0][0]

    def _timed(self, indices: Sequence[int], ids: Hashable, plans_of: Callable[[], Sequence[tuple]],
               t: int) -> np.ndarray:
        """run_plans of the plans `plans_of()` gives, `ids` their identity (equal ids: the
        same plan objects in the same order); the plans are only listed for a run not met.

        Where the last run left the state (a remembered run replayed or recorded, `_after`),
        the state at t is that run's end moved by t minus its start, refreshes between
        included: so the same plans after the same run at the same distance are looked up
        without working out the relative state (`_AFTER` keys)."""
        took = self.replay_after(ids, t)
        if took is not None:
            return took
        after = None
        if self.runs is not None and self.lock and self._after is not None:
            last, began = self._after
            after = (_AFTER, ids, self._lock_row, self._lock_memo, last, t - began)
            found = self.runs.get(after)
            if found is not None:           # (a refresh falls due before t)
                self.idle_until(t)
                self._replay(*found, t)
                self._after = (id(found[0]), t)
                return found[0][0]
        self._after = None
        self.idle_until(t)
        if self.runs is not None and ids not in self.forms.not_single_bank:
            plans = plans_of()          # a run of single-bank commands (sim/.../bank_runs.py)
            banks = self.forms.banks_of(plans, tuple(map(id, plans)))
            if banks is not None:
                if self.lock:           # as its first command would (`issue`)
                    self._unlock()
                return self._timed_banks(indices, plans, banks, t)
            self.forms.not_single_bank.add(ids)
        start, key, tally = t, None, self.tally
        if self.runs is not None and self.lock:
            # first by the plans themselves and the rows open (the commonest hit, and cheap),
            # then by their forms and pattern of rows: the two kinds of key differ in length
            relative = self._relative(t)
            at = (ids, self._lock_row, self._lock_memo, relative, self.due - t)
            seen = self.runs.get(at)
            if seen is not None:
                self._replay(*seen, t)
                self._follow(after, seen, start)
                return seen[0][0]
            plans = plans_of()
            forms, rows = self.forms.of(plans, tuple(map(id, plans)))
            rows = (self._lock_row, self._lock_memo, *rows)
            distinct, number = row_pattern(rows)
            key = (forms, tuple(map(number.__getitem__, rows)), relative, self.due - t)
            seen = self.runs.get(key)
            if seen is not None:
                self.runs[at] = seen, distinct
                self._replay(seen, distinct, t)
                self._follow(after, self.runs[at], start)
                return seen[0]
            before, refs = tally.snapshot(), len(tally.refs)
        else:
            plans = plans_of()
        out = self._issue_plans(indices, plans, t)
        if key is not None and self.lock and self._lock_row in number \
                and self._lock_memo in number:     # (always: every row came from the key's)
            took = np.array(out, np.int64)
            took.setflags(write=False)
            seen = self.runs[key] = (took, self._relative(start), self.due - start,
                                     tally.delta_since(before), tuple(r - start for r in tally.refs[refs:]),
                                     number[self._lock_row], number[self._lock_memo])
            self.runs[at] = seen, distinct
            self._follow(after, self.runs[at], start)
            return took
        return np.array(out, np.int64)

    def _issue_plans(self, indices: Sequence[int], plans: Sequence[tuple], t: int) -> list[int]:
        """Each plan's cycles issued back to back from t: the lockstep closed forms where
        they hold, else the rules (`issue`, `issue_run`)."""
        out = []
        for i, plan in zip(indices, plans):
            last = t - 1
            for cmd, n, step in plan:
                kind = cmd[0]
                if self.lock and kind in _INLINE and (
                        kind in _ANY_ROW or (self._lock_row is None) == (kind == "ACT_ALL")):
                    if self._switches(kind):
                        m = self._lock_earliest("MODE")
                        if m < self.due:
                            self._switch(m)
                    if not self._switches(kind):
                        end = self._lock_earliest(kind) + (n - 1) * step
                        if end < self.due:
                            self._apply_lock(cmd, end, n)
                            last = end
                            continue
                last = self.issue(i, cmd) if n == 1 else self.issue_run(i, cmd, n, step)
            out.append(last + 1 - t)
            t = last + 1
        return out

    def _follow(self, after: tuple | None, found: tuple, start: int) -> None:
        """The run `found` (a remembered run and its rows) began at `start`: remembered under
        `after` (the run before it and the distance) and made the run the next one follows."""
        if after is not None:
            self.runs[after] = found
        self._after = (id(found[0]), start)

    # -- lockstep runs remembered: the state relative to a run's start ---------------------

    def _relative(self, t: int) -> tuple:
        """Everything but rows that the lockstep rules read or a later command could, relative
        to cycle t (cycles more than the longest timing parameter before t can no longer bind
        anything issued from t on: they count as that far back)."""
        cycles = (self.bus, self.ref, self.col_any, self.wg, self._lock_act, self._lock_pre,
                  self._lock_rd, self._lock_wr, self._lock_rdmac, self.act_any, self.data_ready,
                  self.tally.end, self.mode_at, *self.col_grp, *self.faw)
        # max(x - t, -horizon) for each, in C-level maps (run once for every run timed)
        return (tuple(map(max, map((-t).__add__, cycles), repeat(-self._horizon))),
                self._lock_fresh, self.n_open, self.register_mode)

    def _replay(self, seen: tuple, rows: list[int], t: int) -> None:
        """The state after a remembered run from cycle t, its counts and its refreshes; `rows`:
        this run's rows in order of first appearance (the numbers its key gave them)."""
        self._replay_rest(seen, rows, t)
        self._replay_times(seen, t)

    def _replay_times(self, seen: tuple, t: int) -> None:
        """The cycles of the state after a remembered run from cycle t."""
        (self.bus, self.ref, self.col_any, self.wg, self._lock_act, self._lock_pre,
         self._lock_rd, self._lock_wr, self._lock_rdmac, self.act_any, self.data_ready,
         self.tally.end, self.mode_at, *rest) = map(t.__add__, seen[1][0])
        groups = self.arch.bank_groups
        self.col_grp = rest[:groups]
        self.faw = deque(rest[groups:], maxlen=4)

    def settle(self) -> None:
        """Write the cycles of a replay left pending (`_pending`) into the state: before
        anything but the next lookup reads it."""
        if self._pending is not None:
            self._replay_times(*self._pending)
            self._pending = None

    def stats(self) -> DramStats:
        """The counts and cycles of everything issued so far."""
        self.settle()
        return self.tally.stats()

    def ready_at(self) -> int:
        """When every read issued so far has returned (a pending replay's, unwritten)."""
        if self._pending is not None:
            seen, t = self._pending
            return t + seen[1][0][_DATA_READY]
        return self.data_ready

    def _replay_rest(self, seen: tuple, rows: list[int], t: int) -> None:
        """Everything but the cycles of the state after a remembered run from cycle t: its
        rows, banks open, mode, refresh schedule and counts."""
        _, (_, fresh, n_open, mode), due, delta, refs, row, memo = seen
        self.register_mode = mode
        self._lock_row = None if row < 0 else rows[row]
        self._lock_memo = None if memo < 0 else rows[memo]
        self._lock_fresh, self.n_open = fresh, n_open
        self.due = t + due
        self.tally.replay(delta)                    # counts added when read (Tally.stats)
        if refs:
            self.tally.refs.extend(map(t.__add__, refs))


class PlanForms:
    """Each plan's row-free form, numbered, and its rows (ChannelState.run_plans' memo key):
    its commands' kinds, banks, repeats and steps, without their rows and columns (no rule
    reads a column; rows enter the key as a pattern). Shared by the channels of one program;
    plans are held for the program's run, so their ids stay theirs. `plans`: those known
    beforehand (the others are added when first met)."""

    def __init__(self, plans: Iterable[tuple | None] = ()) -> None:
        self._form: dict[int, int] = {}             # id(plan) -> its form's number
        self._rows: dict[int, tuple] = {}           # id(plan) -> its commands' rows
        self._numbers: dict[tuple, int] = {}
        self._banks: dict[int, dict[int, None] | None] = {}     # id(plan) -> its banks or None
        self.not_single_bank: set = set()           # the ids of runs banks_of found None for
        for plan in plans:
            if plan is not None:
                self._add(plan)

    def of(self, plans: Sequence[tuple], ids: tuple[int, ...]) -> tuple[tuple[int, ...], tuple]:
        """(the plans' form numbers, their rows in order); `ids`: the plans' ids."""
        try:
            forms = tuple(map(self._form.__getitem__, ids))
        except KeyError:
            for plan in plans:
                if id(plan) not in self._form:
                    self._add(plan)
            forms = tuple(map(self._form.__getitem__, ids))
        return forms, tuple(chain.from_iterable(map(self._rows.__getitem__, ids)))

    def banks_of(self, plans: Sequence[tuple], ids: tuple[int, ...]) -> tuple[int, ...] | None:
        """The banks the plans' commands name, in order of first use, when every command is
        a single-bank one (sim/machines/pim/bank_runs.py); else None."""
        banks: dict[int, None] = {}
        for plan, key in zip(plans, ids):
            own = self._banks.get(key, ())
            if own == ():
                own = self._banks[key] = _single_banks(plan)
            if own is None:
                return None
            banks.update(own)
        return tuple(banks)

    def _add(self, plan: tuple) -> None:
        form = tuple((cmd.kind, cmd.bank, n, step) for cmd, n, step in plan)
        self._form[id(plan)] = self._numbers.setdefault(form, len(self._numbers))
        self._rows[id(plan)] = tuple(cmd.row for cmd, _, _ in plan if cmd.row is not None)


def row_pattern(rows: Sequence[int | None]) -> tuple[list[int], dict[int | None, int]]:
    """(the distinct rows in order of first appearance, each row's number among them, None's
    -1): the memos key rows by this pattern of equality, not by their numbers."""
    distinct = dict.fromkeys(rows)
    distinct.pop(None, None)
    number = dict(zip(distinct, range(len(distinct))))
    number[None] = -1
    return list(distinct), number


_SINGLE_BANK = frozenset({"ACT", "PRE", "RD", "WR"})


def _single_banks(plan: tuple) -> dict[int, None] | None:
    """The banks of a plan of single-bank commands, in order (a dict as an ordered set); None
    when a command is of another kind."""
    if any(cmd.kind not in _SINGLE_BANK or cmd.bank is None for cmd, _, _ in plan):
        return None
    return dict.fromkeys(cmd.bank for cmd, _, _ in plan)
