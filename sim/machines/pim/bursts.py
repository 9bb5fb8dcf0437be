"""Bursts: the stretches of one channel's DRAM-timed instructions in a PIM program's executed
order, each scheduled as one entry.

In executed order, a pim queue's planned instructions (every one its channel times but a
`signal`) come in long stretches: one channel's rows of a GEMV. The engine starts each one
where the one before ends, and nothing on another queue can move it meanwhile (sim/engine.py,
`timed_run`), so a stretch is one busy interval of its queue and its channel times it as the
run of its members (ChannelState.run_numbered). Scheduled as one entry, a burst gives every
report field the per-instruction schedule gives: the spans and busy cycles of ops (a burst
never crosses an op mark), the energy events (its members' sums: whole numbers, exact), the
MAC cycles per plan (its members' plans counted) and the idle share; and the engine, the
costs and the report handle one entry where there were up to hundreds of instructions, which
is what makes a 66-million-instruction prefill fit in memory and time
(tests/sim/machines/pim/test_shell.py holds every figure equal to the unrolled program's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Bursts", "find_bursts"]

_CHUNK = 1 << 20          # executed instructions gathered at a time (bounded temporaries)


@dataclass(frozen=True, eq=False)
class Bursts:
    """The bursts of an executed order and the shell entries they leave.

    `kept`: the executed index of each entry (ascending): every instruction outside a burst
    and each burst's first member. Per burst: `first` and `end` (its members are executed
    instructions [first, end)), `entry` (its entry), `channel` (its pim queue's index).
    `plan_at`: per executed instruction its plan (-1: none), `n_plans` the plans'
    number."""

    kept: np.ndarray
    first: np.ndarray
    end: np.ndarray
    entry: np.ndarray
    channel: np.ndarray
    plan_at: np.ndarray
    n_plans: int

    @property
    def executed(self) -> int:
        return len(self.plan_at)

    def sums(self, per_plan: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """Per burst, the sum over its members of per_plan[plan] (times scale[member], an
        executed instruction's factor, when given), as int64. `per_plan` holds whole
        numbers, zero for a `signal`'s plan."""
        values = np.append(np.asarray(per_plan, np.int64), 0)        # plan -1: nothing
        out = np.empty(len(self.first), np.int64)
        for b, c, lo, hi in self._chunks():
            v = np.take(values, self.plan_at[lo:hi])
            if scale is not None:
                v *= scale[lo:hi]
            out[b:c] = np.add.reduceat(v, self.first[b:c] - lo)
        return out

    def sums_of(self, per_plan: Sequence[np.ndarray]) -> list[np.ndarray]:
        """`sums(column)` of each of the per-plan columns (whole numbers, none negative), in
        fewer passes: columns share one int64 as bit fields, each as wide as its largest
        value times the longest burst needs, so no field's sum carries into the next."""
        longest = int((self.end - self.first).max(initial=1))
        out: list[np.ndarray | None] = [None] * len(per_plan)
        word: list[tuple[int, int]] = []          # (column, its field's lowest bit)
        words = [word]
        top = 0
        for c, column in enumerate(per_plan):
            if np.min(column, initial=0) < 0:
                raise ValueError(f"per-plan column {c} has a negative value: not packable")
            bits = (max(int(np.max(column, initial=0)), 1) * longest).bit_length()
            if top + bits > 62:
                word, top = [], 0
                words.append(word)
            word.append((c, top))
            top += bits
        for word in filter(None, words):
            packed = sum(np.asarray(per_plan[c], np.int64) << at for c, at in word)
            total = self.sums(packed)
            for (c, at), (_, above) in zip(word, [*word[1:], (None, 63)]):
                out[c] = (total >> at) & ((1 << (above - at)) - 1)
        return out

    def plan_counts(self, channels: int, issued: np.ndarray) -> np.ndarray:
        """[channel, plan] -> how many members of the `issued` bursts (a mask per burst) ran
        that plan."""
        size = self.n_plans + 1                                         # + plan -1
        counts = np.zeros(channels * size, np.int64)
        for b, c, lo, hi in self._chunks():
            lengths = np.diff(np.append(self.first[b:c], hi))
            mine = np.repeat(self.channel[b:c] * size, lengths)
            codes = mine + np.where(self.plan_at[lo:hi] >= 0, self.plan_at[lo:hi], self.n_plans)
            weights = None if issued[b:c].all() else np.repeat(issued[b:c], lengths)
            counts += np.bincount(codes, weights, minlength=channels * size).astype(np.int64)
        return counts.reshape(channels, size)[:, :self.n_plans]

    def _chunks(self):
        """(first burst, end burst, first executed, end executed) of runs of whole bursts
        about _CHUNK instructions long: each from one burst's first member to the next's
        (the instructions between bursts have no plan that counts)."""
        first, n, b = self.first, self.executed, 0
        while b < len(first):
            c = max(b + 1, int(np.searchsorted(first, first[b] + _CHUNK)))
            yield b, c, int(first[b]), int(first[c]) if c < len(first) else n
            b = c


def find_bursts(plan_at: np.ndarray, timed_plan: np.ndarray, queue_of: np.ndarray,
                queue_index: np.ndarray, marks: Sequence[int]) -> Bursts:
    """The bursts of an executed order: `plan_at` per executed instruction its plan (-1:
    none), `timed_plan` per plan whether it is a DRAM-timed one (not a `signal`'s),
    `queue_of` per executed instruction its queue's number (equal numbers: one queue) and
    `queue_index` per queue number the pim queue's index; `marks` the executed indices of op
    marks, where a burst always starts."""
    n = len(plan_at)
    timed = np.append(timed_plan, False)[plan_at]                       # plan -1: not timed
    head = timed.copy()
    head[1:] &= ~(timed[:-1] & (queue_of[1:] == queue_of[:-1]))
    at = np.array([m for m in marks if m < n], np.int64)
    head[at] = timed[at]
    kept = np.flatnonzero(~timed | head)
    del timed
    entry = np.flatnonzero(head[kept])
    del head
    first = kept[entry]
    end = np.append(kept, n)[entry + 1]
    return Bursts(kept, first, end, entry, queue_index[queue_of[first]], plan_at,
                  len(timed_plan))
