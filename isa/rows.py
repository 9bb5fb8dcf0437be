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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from isa.instr import Instr
from isa.opcodes import OPCODES

__all__ = ["ROW_OPCODES", "find_row_violation"]

ROW_OPCODES = frozenset({"pim.act", "pim.act_all", "pim.pre", "pim.pre_all", "pim.mac",
                         "pim.mac_all", "pim.rd", "pim.wr"})
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
