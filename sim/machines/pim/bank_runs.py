"""Single-bank runs a PIM channel has timed before, replayed (ChannelState's memo, beside the
lockstep runs of sim/machines/pim/run_memo.py): the KV cache's writes, one bank's ACT, WR
and PRE between two GEMVs, are a fifth of a prefill's runs and were the most of its channel
time when timed command by command.

A run of single-bank commands (ACT, PRE, RD, WR, each naming its bank) reads and writes only
its banks' cycles and rows, the channel's bus, last REF, MODE and ACTs, and its banks' groups'
last ACT and column cycles. Relative to the run's start those, its banks' open and closed rows
as a pattern of equality with the plans' rows, and the mode decide every command's cycle, as
long as no refresh falls due inside the run: the rules are max-plus in the cycles, and a cycle
further back than the longest timing parameter binds nothing. So a run is remembered by its
plans' row-free forms, its banks, that pattern and that relative state, and replayed only
where it ends before the next refresh is due (a run that met one is not remembered).
"""
from __future__ import annotations

from itertools import repeat
from typing import Sequence

import numpy as np

from sim.machines.pim.commands import NEVER
from sim.machines.pim.run_memo import row_pattern

__all__ = ["BankRuns"]

_BANKS = "banks"                 # the memo keys of single-bank runs


class BankRuns:
    """ChannelState's memo of single-bank runs (its `runs` and `forms`, shared by a
    program's channels)."""

    def _timed_banks(self, indices: Sequence[int], plans: Sequence[tuple],
                     banks: tuple[int, ...], t: int) -> np.ndarray:
        """The cycles of a run of single-bank plans on `banks` from t (the channel idle until
        t, not in lockstep), replayed or timed by the rules and remembered. A run met before
        that a refresh now falls inside replays the instructions that end before it is due
        (a run of their own, remembered) and times the rest by the rules."""
        forms, plan_rows = self.forms.of(plans, tuple(map(id, plans)))
        rows = (*map(self.open.__getitem__, banks), *map(self.memo.__getitem__, banks), *plan_rows)
        distinct, number = row_pattern(rows)
        groups = tuple(dict.fromkeys(map(self.group.__getitem__, banks)))
        key = (_BANKS, forms, banks, tuple(map(number.__getitem__, rows)),
               self._bank_relative(banks, groups, t),
               tuple(map(self.fresh.__getitem__, banks)), self.register_mode)
        seen = self.runs.get(key)
        if seen is not None:
            if t + seen[1] <= self.due:                 # its last command before the REF
                self._bank_replay(seen, banks, groups, distinct, t)
                return seen[0]
            ends = np.cumsum(seen[0])
            k = int(np.searchsorted(ends, self.due - t, "right"))   # those ending before it
            if 0 < k < len(plans):
                head = self._timed_banks(indices[:k], plans[:k], self.forms.banks_of(
                    plans[:k], tuple(map(id, plans[:k]))), t)
                rest = self._issue_plans(indices[k:], plans[k:], t + int(ends[k - 1]))
                return np.concatenate([head, rest])
        due, refs, tally = self.due, len(self.tally.refs), self.tally
        before, n_open = tally.snapshot(), self.n_open
        ready, end = self.data_ready, tally.end          # maxima: the run's own kept apart
        self.data_ready = tally.end = NEVER
        took = np.array(self._issue_plans(indices, plans, t), np.int64)
        own_ready, own_end = self.data_ready, tally.end
        self.data_ready, tally.end = max(ready, own_ready), max(end, own_end)
        if self.due != due or len(tally.refs) != refs or self.lock:
            return took                                  # a refresh fell inside: not kept
        took.setflags(write=False)
        after_rows = (*map(self.open.__getitem__, banks), *map(self.memo.__getitem__, banks))
        self.runs[key] = (took, int(took.sum()), self._bank_relative(banks, groups, t),
                          tuple(map(self.fresh.__getitem__, banks)),
                          tuple(-1 if r is None else number[r] for r in after_rows),
                          self.register_mode, self.n_open - n_open,
                          None if own_ready == NEVER else own_ready - t, own_end - t,
                          tally.delta_since(before))
        return took

    def _bank_cycles(self, banks: tuple[int, ...], groups: tuple[int, ...]) -> tuple[int, ...]:
        """Every cycle a single-bank run on `banks` (in `groups`) reads or writes."""
        return (self.bus, self.ref, self.mode_at, self.act_any, self.col_any, *self.faw,
                *map(self.act_grp.__getitem__, groups), *map(self.col_grp.__getitem__, groups),
                *(values[b] for values in (self.pre, self.act, self.rd, self.wr, self.rdmac)
                  for b in banks))

    def _bank_relative(self, banks: tuple[int, ...], groups: tuple[int, ...], t: int) -> tuple:
        """`_bank_cycles` relative to t, those too far back to bind anything as that far."""
        return tuple(map(max, map((-t).__add__, self._bank_cycles(banks, groups)),
                         repeat(-self._horizon)))

    def _bank_replay(self, seen: tuple, banks: tuple[int, ...], groups: tuple[int, ...],
                     rows: list[int], t: int) -> None:
        """The state after a remembered single-bank run from t; `rows` this run's rows in
        the order its key numbered them."""
        _, _, after, fresh, row_numbers, mode, opened, ready, end, delta = seen
        cycles = list(map(t.__add__, after))
        self.bus, self.ref, self.mode_at, self.act_any, self.col_any = cycles[:5]
        self.faw.extend(cycles[5:9])
        at = 9
        for values, width in ((self.act_grp, len(groups)), (self.col_grp, len(groups))):
            for g, v in zip(groups, cycles[at:at + width]):
                values[g] = v
            at += width
        n = len(banks)
        for values in (self.pre, self.act, self.rd, self.wr, self.rdmac):
            for b, v in zip(banks, cycles[at:at + n]):
                values[b] = v
            at += n
        for b, f, o, m in zip(banks, fresh, row_numbers[:n], row_numbers[n:]):
            self.fresh[b] = f
            self.open[b] = None if o < 0 else rows[o]
            self.memo[b] = None if m < 0 else rows[m]
        self.register_mode = mode
        self.n_open += opened
        if ready is not None:
            self.data_ready = max(self.data_ready, t + ready)
        self.tally.end = max(self.tally.end, t + end)
        self.tally.replay(delta)
