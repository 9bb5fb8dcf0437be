"""The row protocol of the pim queues (isa/rows.py) over a compact program's loops, without
unrolling them: `rows_hold` decides it at a cost per compact row instruction, not per executed
one.

Per pim queue (channel), each bank is closed or holds an open row. What one iteration of a
body opens and closes (its *effect*) does not depend on the state it starts in: the last
act, pre, act_all or pre_all of a bank sets it, and banks and queues never move. So iteration
k >= 1 of a loop starts in the loop's entry state overlaid with the effect of iteration k-1,
and a body is checked twice: once for iteration 0 from the entry state, once for every later
iteration at a time, its rows affine in the iteration numbers (`_Row`). Once in all where the
entry state is the k >= 1 one at k = 0 (a body that closes what it opens, or opens nothing).
Nested loops compose the same way, each loop's effect worked out once. Two affine rows are
equal in every iteration exactly when they are the same expression, each iteration number
left free taking two values or more, so the check is exact: True when every executed row
instruction is legal, else False. The verifier then runs the exact pass over the executed
order, which names the first violation (isa/verify.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from isa.instr import Instr
from isa.loops import Loop, Structure
from isa.rows import ROW_CODES, ROW_FIELDS

__all__ = ["rows_hold"]

_ACT, _ACT_ALL, _PRE, _PRE_ALL, _MAC, _MAC_ALL, _RD, _WR = (
    ROW_CODES[op] for op in ("pim.act", "pim.act_all", "pim.pre", "pim.pre_all", "pim.mac",
                             "pim.mac_all", "pim.rd", "pim.wr"))
_ALL_BANKS = frozenset({_ACT_ALL, _PRE_ALL, _MAC_ALL})

# A row: an int, or (constant, ((loop header, coefficient), ...)) in header order with every
# coefficient nonzero: constant + sum(coefficient * that loop's iteration).
_Row = int | tuple[int, tuple[tuple[int, int], ...]]
# A bank: None (closed) or its open row. A channel: [default bank, {bank: bank unlike it}].
# A binding: loop header -> (offset, free): an iteration fixed at `offset`, or free (two
# values or more) and read at iteration + offset.
_FREE = (0, True)
_CLOSED = [None, {}]       # a channel no word has touched (read only)
_ENTRY = object()          # in an effect: a bank as the body found it (none of its words set it)
_Word = tuple[int, int, int, _Row, int]     # code, channel, bank, row, ncols


def rows_hold(instructions: Sequence[Instr], opcodes: Sequence[str], structure: Structure,
              banks: int) -> bool:
    """Whether every executed row instruction of the compact program `instructions` (loops
    `structure`, `opcodes[i]` its opcodes) keeps the row protocol of channels of `banks`
    banks; False too where a bank field is outside them (the exact pass says why)."""
    plan = _plan(instructions, opcodes, structure, banks)
    return plan is not None and _Rows(plan, banks).run(None, {}, {})


def _plan(instructions: Sequence[Instr], opcodes: Sequence[str], structure: Structure,
          banks: int) -> dict[int | None, list] | None:
    """Per block (None: the top level, else a loop's header) its row words and the loops
    directly in it that hold row words, in program order; None where a bank is outside
    `banks`."""
    rows = np.array([op in ROW_CODES for op in opcodes], bool)
    innermost = np.full(len(opcodes), -1, np.int64)       # header of each word's innermost loop
    for loop in structure.loops:                          # outer first: inner loops overwrite
        innermost[loop.body_start:loop.body_end] = loop.header
    items: dict[int | None, list[tuple[int, _Word | Loop]]] = {None: []}
    items.update((loop.header, []) for loop in structure.loops)
    strided = structure.strided()
    channels: dict[object, int] = {}                      # queue -> its channel's number
    shared: dict[int, _Word] = {}                         # id(instruction) -> its word, unmoved
    for index, header in zip(np.flatnonzero(rows).tolist(), innermost[rows].tolist()):
        instr = instructions[index]
        if index in strided:
            word = _word(instr, strided[index], channels)
        else:
            word = shared.get(id(instr))
            if word is None:
                word = shared[id(instr)] = _word(instr, {}, channels)
        if not 0 <= word[2] < banks:
            return None
        items[header if header >= 0 else None].append((index, word))
    holding = set()                                       # loops with row words inside
    for loop in reversed(structure.loops):                # inner loops before their outer ones
        if items[loop.header] or loop.header in holding:
            holding.add(loop.header)
            if loop.parent is not None:
                holding.add(loop.parent)
            items[loop.parent].append((loop.header, loop))
    return {block: [item for _, item in sorted(found, key=itemgetter(0))]
            for block, found in items.items() if block is None or block in holding}


def _word(instr: Instr, moves, channels: dict[object, int]) -> _Word:
    """A row instruction as (code, channel, bank, row, ncols), its row affine in every loop
    that moves it (0 where it has no such field); `channels` numbers the queues (equal queues
    are one channel)."""
    bank_at, row_at, ncols_at = ROW_FIELDS[instr.opcode]
    code = ROW_CODES[instr.opcode]
    row: _Row = 0
    if row_at is not None:
        row = instr.fields[row_at][1]
        if row_at in moves:                               # outermost first: header order
            row = (row, tuple((loop.header, delta) for loop, delta in moves[row_at]))
    return (code, channels.setdefault(instr.queue, len(channels)),
            0 if code in _ALL_BANKS else instr.fields[bank_at][1], row,
            instr.fields[ncols_at][1] if ncols_at is not None else 0)


def _bind(row, binding: dict[int, tuple[int, bool]]):
    """`row` (or a closed bank, None) under `binding`; a loop it does not name stays free."""
    if type(row) is not tuple:
        return row
    constant, terms = row
    kept = []
    for header, coefficient in terms:
        offset, free = binding.get(header, _FREE)
        constant += coefficient * offset
        if free:
            kept.append((header, coefficient))
    return (constant, tuple(kept)) if kept else constant


def _put(rows: dict, default, bank: int, value) -> None:
    """Set `bank` of a channel to `value`, kept out of `rows` where it is the default."""
    if value == default:
        rows.pop(bank, None)
    else:
        rows[bank] = value


def _every(channel: list, banks: int, opened: bool) -> bool:
    """Whether every bank of `channel` is open (`opened`) or every one closed."""
    default, rows = channel
    if len(rows) < banks and (default is not None) != opened:
        return False
    return all((value is not None) == opened for value in rows.values())


def _overlay(state: dict, effect: dict, binding: dict[int, tuple[int, bool]], fresh) -> None:
    """`state` after `effect` (its rows under `binding`); a channel `state` lacks starts with
    every bank `fresh`."""
    for number, (default, rows) in effect.items():
        rows = {bank: _bind(value, binding) for bank, value in rows.items()}
        if default is _ENTRY:
            base, before = state.get(number, (fresh, {}))
            rows = {**before, **rows}
        else:
            base = _bind(default, binding)
        state[number] = [base, {bank: value for bank, value in rows.items() if value != base}]


def _copy(state: dict) -> dict:
    return {number: [default, dict(rows)] for number, (default, rows) in state.items()}


class _Rows:
    """The check over `plan` (block: None for the top level, else a loop header -> its row
    words and the loops directly in it that hold row words, in program order)."""

    def __init__(self, plan: dict[int | None, list], banks: int) -> None:
        self.plan = plan
        self.banks = banks
        self.effects: dict[int, dict] = {}

    def run(self, block: int | None, state: dict, binding: dict) -> bool:
        """Check `block` once from `state` (channel number -> its banks; left as the block
        leaves it) with its loops' iterations `binding`; False at the first illegal word."""
        for item in self.plan[block]:
            if type(item) is tuple:
                if not self.step(state, item, binding):
                    return False
            elif not self.loop(item, state, binding):
                return False
        return True

    def step(self, state: dict, word: _Word, binding: dict) -> bool:
        code, number, bank, row, ncols = word
        channel = state.get(number)
        if channel is None:
            channel = state[number] = [None, {}]
        if code == _ACT_ALL:
            if not _every(channel, self.banks, False):
                return False
            state[number] = [_bind(row, binding), {}]
        elif code == _PRE_ALL:
            state[number] = [None, {}]
        elif code == _MAC_ALL:
            return not ncols or _every(channel, self.banks, True)
        elif code == _PRE:
            _put(channel[1], channel[0], bank, None)
        else:
            now = channel[1].get(bank, channel[0])
            if code == _ACT:
                if now is not None:
                    return False
                _put(channel[1], channel[0], bank, _bind(row, binding))
            elif ncols and (now is None or code != _MAC and now != _bind(row, binding)):
                return False
        return True

    def loop(self, loop: Loop, state: dict, binding: dict) -> bool:
        """Check every iteration of `loop` from `state`, and leave `state` as the loop does."""
        header, count = loop.header, loop.count
        if count == 1:
            return self.run(header, state, {**binding, header: (0, False)})
        effect = self.effect(loop)
        at_zero = _copy(state)                  # the iteration k >= 1 start, read at k = 0
        _overlay(at_zero, effect, {**binding, header: (-1, False)}, None)
        later = _copy(state)                    # iteration k >= 1 starts after k - 1's effect
        if all(at_zero.get(number, _CLOSED) == state.get(number, _CLOSED) for number in effect):
            _overlay(later, effect, {**binding, header: (-1, True)}, None)
            held = self.run(header, later, {**binding, header: _FREE})
        elif count == 2:
            _overlay(later, effect, {**binding, header: (0, False)}, None)
            held = (self.run(header, _copy(state), {**binding, header: (0, False)})
                    and self.run(header, later, {**binding, header: (1, False)}))
        else:
            _overlay(later, effect, {**binding, header: (-1, True)}, None)
            held = (self.run(header, _copy(state), {**binding, header: (0, False)})
                    and self.run(header, later, {**binding, header: _FREE}))
        _overlay(state, effect, {**binding, header: (count - 1, False)}, None)
        return held

    def effect(self, loop: Loop) -> dict:
        """What one iteration of `loop` leaves set: channel number -> [default, {bank: row}],
        the default _ENTRY where no all-bank word sets it; rows affine in the loops around."""
        found = self.effects.get(loop.header)
        if found is not None:
            return found
        found = {}
        for item in self.plan[loop.header]:
            if type(item) is not tuple:
                _overlay(found, self.effect(item), {item.header: (item.count - 1, False)},
                         _ENTRY)
                continue
            code, number, bank, row, _ = item
            if code in (_ACT_ALL, _PRE_ALL):
                found[number] = [row if code == _ACT_ALL else None, {}]
            elif code in (_ACT, _PRE):
                channel = found.setdefault(number, [_ENTRY, {}])
                _put(channel[1], channel[0], bank, row if code == _ACT else None)
        self.effects[loop.header] = found
        return found
