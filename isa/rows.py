"""The DRAM row protocol of the pim queues, checked in program order, without timing.

Each pim queue is one DRAM channel; each bank of it is closed or holds one open row:

    pim.act bank row     the bank closed           -> it opens `row`
    pim.act_all row      every bank closed         -> every bank opens `row`
    pim.pre bank         any (closed: a no-op)     -> the bank closed
    pim.pre_all          any                       -> every bank closed
    pim.mac bank         the bank open             (ncols > 0; with ncols = 0 no command issues)
    pim.mac_all          every bank open           (ncols > 0)
    pim.rd/wr bank row   the bank open with `row`  (ncols > 0)
    pim.wrgb, pim.rdmac, pim.rdmac_all: no row open nor closed

These are the rules the PIM machine's DRAM model (sim/machines/pim/commands.py, dram.py)
raises DramError for. The refreshes its controller inserts close rows and reopen them before
their next access, so they never change what is open in program order; a program that passes
here never meets a DramError.

`first_row_violation` is the same check over arrays (numpy), a fast filter for the verifier's
~10^5-10^6 executed row instructions: only when it finds a violation does `find_row_violation`
run, for the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from isa.instr import Instr
from isa.opcodes import OPCODES

__all__ = ["ROW_CODES", "ROW_FIELDS", "ROW_OPCODES", "find_row_violation", "first_row_violation"]

ROW_CODES = {op: code for code, op in enumerate(("pim.act", "pim.act_all", "pim.pre",
                                                  "pim.pre_all", "pim.mac", "pim.mac_all",
                                                  "pim.rd", "pim.wr"))}
ROW_OPCODES = frozenset(ROW_CODES)
# Per row opcode, the positions of its bank, row and ncols fields (None: it has none).
ROW_FIELDS = {op: tuple(OPCODES[op].names.index(name) if name in OPCODES[op].names else None
                        for name in ("bank", "row", "ncols")) for op in ROW_CODES}
_ACT, _ACT_ALL, _PRE, _PRE_ALL, _MAC, _MAC_ALL, _RD, _WR = ROW_CODES.values()
_NAMES_A_BANK = np.array([code in (_ACT, _PRE, _MAC, _RD, _WR) for code in ROW_CODES.values()])
_AT = {op: {name: k for k, name in enumerate(OPCODES[op].names)} for op in ROW_OPCODES}
_NEVER = -1                  # `since` of a bank no command has touched


class _Channel:
    """One pim queue's banks: the open row of each (None: closed) and the instruction that
    last opened or closed it; `open` counts the open banks."""

    __slots__ = ("rows", "since", "open")

    def __init__(self, banks: int) -> None:
        self.rows: list[int | None] = [None] * banks
        self.since = [_NEVER] * banks
        self.open = 0


def find_row_violation(instructions: Sequence[Instr], opcodes: Sequence[str], banks: int,
                       name: Callable[[int], str] = "instruction {}".format
                       ) -> tuple[int, str] | None:
    """(index, reason) of the first instruction that breaks the row protocol, else None.

    `opcodes[i]` is `instructions[i].opcode` (the caller's whole-list pass); `banks` the
    banks of a channel; `name(i)` names instruction i in a reason. One pass over the row
    instructions only (most pim programs are ~10^5 all-bank commands), each all-bank command
    O(banks)."""
    mac_all_cols = _AT["pim.mac_all"]["ncols"]
    channels: dict[object, _Channel] = {}
    channel_of: dict[int, _Channel] = {}            # id(queue) -> its channel (equal queues share)
    for i in [i for i, op in enumerate(opcodes) if op in ROW_OPCODES]:
        ins = instructions[i]
        op = opcodes[i]
        channel = channel_of.get(id(ins.queue))
        if channel is None:
            channel = channel_of[id(ins.queue)] = channels.setdefault(ins.queue, _Channel(banks))
        if op == "pim.mac_all":
            if channel.open != banks and ins.fields[mac_all_cols][1]:
                return i, _closed_bank(channel, channel.rows.index(None), name)
        elif op == "pim.act_all":
            if channel.open:
                return i, _open_bank(channel, next(b for b, r in enumerate(channel.rows)
                                                   if r is not None), "every bank (pim.pre_all)",
                                 name)
            channel.rows = [ins.fields[0][1]] * banks
            channel.since = [i] * banks
            channel.open = banks
        elif op == "pim.pre_all":
            channel.rows = [None] * banks
            channel.since = [i] * banks
            channel.open = 0
        else:
            reason = _single_bank(channel, i, op, ins.fields, name)
            if reason is not None:
                return i, reason
    return None


def _single_bank(channel: _Channel, i: int, op: str, fields,
                 name: Callable[[int], str]) -> str | None:
    """Check and apply one single-bank row instruction; the reason it is refused, or None."""
    at = _AT[op]
    bank = fields[at["bank"]][1]
    row = channel.rows[bank]
    if op == "pim.act":
        if row is not None:
            return _open_bank(channel, bank, "it", name)
        channel.rows[bank], channel.since[bank] = fields[at["row"]][1], i
        channel.open += 1
    elif op == "pim.pre":
        if row is not None:
            channel.rows[bank], channel.since[bank] = None, i
            channel.open -= 1
    elif fields[at["ncols"]][1]:                           # pim.mac, pim.rd, pim.wr
        if row is None:
            return _closed_bank(channel, bank, name)
        if op != "pim.mac" and fields[at["row"]][1] != row:
            return (f"row {fields[at['row']][1]} is not open in bank {bank} (row {row} is, "
                    f"since {name(channel.since[bank])})")
    return None


def _closed_bank(channel: _Channel, bank: int, name: Callable[[int], str]) -> str:
    since = channel.since[bank]
    how = ("no row was ever activated" if since == _NEVER
           else f"precharged at {name(since)}, not activated since")
    return f"bank {bank} has no open row ({how})"


def _open_bank(channel: _Channel, bank: int, what: str, name: Callable[[int], str]) -> str:
    return (f"bank {bank} is open (row {channel.rows[bank]}, activated at "
            f"{name(channel.since[bank])}); precharge {what} first")


def first_row_violation(channel: np.ndarray, code: np.ndarray, bank: np.ndarray, row: np.ndarray,
                        ncols: np.ndarray, banks: int) -> int | None:
    """Position of the first row instruction that breaks the protocol (the one
    find_row_violation names), else None.

    Arrays, one entry per row instruction in executed (program) order: channel id (any ints;
    equal ints = same pim queue), ROW_CODES code, bank (ignored for the all-bank codes), row
    (used for act/act_all/rd/wr), ncols (used for mac/mac_all/rd/wr; 0 = no command issues, so
    no check). The fast filter: it finds a violation exactly when find_row_violation does, at
    the same position, but gives no reason; the caller reruns that pass for the message."""
    channel, code, bank, row, ncols = (np.asarray(a) for a in (channel, code, bank, row, ncols))
    if channel.ndim != 1 or any(a.shape != channel.shape for a in (code, bank, row, ncols)):
        raise ValueError(f"first_row_violation takes 1-d arrays of one length, not shapes "
                         f"{[a.shape for a in (channel, code, bank, row, ncols)]}")
    unknown = (code < 0) | (code >= len(ROW_CODES))
    if unknown.any():
        raise ValueError(f"code {code[unknown][0]} is not a ROW_CODES code "
                         f"(0-{len(ROW_CODES) - 1})")
    outside = _NAMES_A_BANK[code] & ((bank < 0) | (bank >= banks))
    if outside.any():
        raise ValueError(f"bank {bank[outside][0]} is outside the channel's {banks} banks")
    order = np.argsort(channel, kind="stable")          # each channel's instructions, in order
    ordered = channel[order]
    bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    del ordered
    firsts = []
    for start, stop in zip([0, *bounds], [*bounds, len(order)]):
        mine = order[start:stop]
        found = _first_in_channel(code[mine], bank[mine], row[mine], ncols[mine], banks)
        if found is not None:
            firsts.append(mine[found])
    return int(min(firsts)) if firsts else None


def _first_in_channel(code: np.ndarray, bank: np.ndarray, row: np.ndarray, ncols: np.ndarray,
                      banks: int) -> int | None:
    """first_row_violation within one channel, in O(n log n) whatever its banks.

    A bank's state before an instruction is that left by the last instruction that opened or
    closed it: the later of the last all-bank act/pre and the last act/pre of that bank, both
    running maxima (of 1-based positions; 0 is the reset, every bank closed). The all-bank
    checks read the number of open banks: set by act_all/pre_all, then +1 per act, -1 per pre
    of an open bank. Every act is taken to open its bank, though the reference stops at an
    illegal one: the state before the first violation is the same, and only that is reported."""
    steps = len(code)
    at = np.arange(1, steps + 1)
    act, act_all, pre, pre_all = (code == c for c in (_ACT, _ACT_ALL, _PRE, _PRE_ALL))
    opened = np.concatenate(([False], act | act_all))     # by setter: it opened its bank(s)
    opened_row = np.concatenate(([0], row))
    last_all = _before(np.where(act_all | pre_all, at, 0))
    # Each bank's own act/pre: one running max over the instructions that name a bank, sorted
    # by bank, the banks kept apart by an offset of bank * (steps + 1).
    named = np.flatnonzero(_NAMES_A_BANK[code])
    named = named[np.argsort(bank[named], kind="stable")]
    offset = bank[named].astype(np.int64) * (steps + 1)
    last_own = np.zeros(steps, np.int64)
    last_own[named] = np.maximum(_before(np.where((act | pre)[named], offset + at[named], offset)),
                                 offset) - offset
    own = np.maximum(last_own, last_all)                   # read where an instruction names a bank
    own_open, own_row = opened[own], opened_row[own]
    change = act.astype(np.int64) - (pre & own_open)
    changes = np.concatenate(([0], np.cumsum(change)))    # [k]: the sum over positions 1..k
    open_banks = np.where(opened[last_all], banks, 0) + changes[:-1] - changes[last_all]
    issues = ncols != 0
    bad = ((act & own_open)
           | (act_all & (open_banks > 0))
           | ((code == _MAC) & issues & ~own_open)
           | ((code == _MAC_ALL) & issues & (open_banks < banks))
           | (((code == _RD) | (code == _WR)) & issues & ~(own_open & (own_row == row))))
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def _before(setters: np.ndarray) -> np.ndarray:
    """At each position, the largest of `setters` strictly before it (0 at the first)."""
    before = np.zeros_like(setters)
    np.maximum.accumulate(setters[:-1], out=before[1:])
    return before
