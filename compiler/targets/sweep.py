"""A tile sweep emitted as a loop once it is seen to repeat (docs/isa.md, "Compiled programs
are compact").

A target's lowering sweeps tiles with Python loops that emit, per iteration, the same
instructions with addresses moved by a constant: once the rings, configuration registers and
every other piece of emission state are back where they were, nothing but the tile's position
changes. `Emitter.sweep(items)` yields the items as a plain loop would and, after each
iteration, looks back over the last three periods of p iterations (p <= MAX_PERIOD): when they
are word for word alike, every address moving by the same delta from each period to the next,
the emission state (`Emitter.sweep_key`) is the same at all four period boundaries, and the
items themselves move by a constant per iteration, the three periods become one `loop` over the
stretch of items that keeps moving so, and the iterations in between are never emitted: the
lowering's code for them is not run at all, which is what makes a 70 B model's program cost
its distinct patterns rather than its tiles.

Why this is exact: an iteration's words are a function of the emission state at its start and
of its item, addresses affine in the item's numbers (tile origins times strides). With the same
state at the start of every period and items moving by a constant, period k + 1 is period k
moved by the same deltas, and the state after it is the same again; so the loop unrolls to what
the plain loop would have emitted. Rings count their slots (`Ring.uses`): their state is the
slot in turn and whether the first round is over, and the counts are moved on by the skipped
periods. The last item is emitted on its own (a lowering may treat it apart, e.g. the last
piece frees an accumulator slot) unless the caller declares the items `uniform`: what an
item emits depends on the state and the item alone, never on where it stands among the
items (a model's layers, whose items hold all their emission reads; attention heads). Tests
compile every target's models both ways and compare the unrolled program with the flat one
(`flat_emission`). A loop is made only where the verifier takes it: each iteration balances
its semaphores (equal state ensures it) and no moving write overlaps its own previous
iteration (checked here with the verifier's rule). What moves is an address, or a pim
instruction's DRAM row, column or global-buffer offset (isa.opcodes.MOVING_INTS).

Op marks and stores in a period (a sweep over a model's layers, compiler/targets/layers.py)
must sit at the same offsets in the three periods with the same names, or names whose one
decimal number grows by a constant a period (a layer number): the loop's marks then carry it
as a template (`layers.{+3}.mlp`, docs/isa.md), and the stores of the periods not emitted are
recorded under their names (`Emitter.replay_stores`), so that whatever reads them after the
loop waits as it would after flat emission.
"""
from __future__ import annotations

import contextlib
import re
import dataclasses
import enum
import functools
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

from isa import Addr, Instr, IsaError
from isa.footprint import WRITTEN_ROLES, QueueConfig, footprints, stripes
from isa.loop_checks import CONFIG_OPCODES, overlaps
from isa.loops import loop_words, mark_name
from isa.opcodes import MOVING_INTS, OPCODES, STRUCTURE

Emitter = Any       # compiler.targets.emit.Emitter, which imports this module

__all__ = ["sweep", "flat_emission", "flat", "MAX_PERIOD", "LOOK"]

MAX_PERIOD = 4       # iterations per period looked for (rings of 2 slots alternate: 2)
LOOK = 24            # iterations a sweep looks back at before it stops looking
T = TypeVar("T")

_FLAT: ContextVar[bool] = ContextVar("flat_emission", default=False)


def flat() -> bool:
    """Whether emission is flat here (`flat_emission`)."""
    return _FLAT.get()


@contextlib.contextmanager
def flat_emission() -> Iterator[None]:
    """Inside the block every sweep emits all its iterations (the reference the compact
    programs are tested against, and what `tessel compile --unroll` means)."""
    token = _FLAT.set(True)
    try:
        yield
    finally:
        _FLAT.reset(token)


def sweep(em: Emitter, items: Sequence[T], key: Sequence | None = None,
          uniform: bool = False) -> Iterator[T]:
    """`items` one by one, as `for item in items` would, except that a stretch proven to repeat
    is emitted as one loop and its items are skipped (module docstring). `key[j]`, when
    given, is what item j's emission reads, in place of the item itself (a layer's ops carry
    names that differ; what they read are addresses and shapes). `uniform`: the last item
    may be in a loop too (module docstring)."""
    n = len(items)
    if n < 4 + (not uniform) or _FLAT.get():   # three periods of one (and the last item)
        yield from items
        return
    numbers = _Numbers(items if key is None else key)
    i = 0
    while i < n:
        starts: list[int] = []          # per iteration since the last loop: first word
        keys: list[tuple] = []          # ... the emission state at its start
        counts: list[tuple] = []        # ... the rings' slot counts
        configs: list[dict] = []        # ... the queues' configuration registers
        marks: list[int] = []           # ... its first op mark, its first store token
        stores: list[int] = []
        links: list[int] = []           # ... its first all-reduce token
        first = i
        now = None                      # the state after the last iteration, if worked out:
        while i < n:                    # nothing is emitted before the next one starts
            starts.append(len(em.instructions))
            key_now, counts_now = now if now is not None else (em.sweep_key(), em.sweep_counts())
            keys.append(key_now)
            counts.append(counts_now)
            configs.append(em.queue_configs())
            marks.append(len(em.op_starts))
            stores.append(em.store_tokens)
            links.append(em.link_tokens)
            yield items[i]
            i += 1
            now = None
            if not 3 <= i - first <= LOOK:      # three periods of one at least
                continue
            now = em.sweep_key(), em.sweep_counts()
            found = _period(em, n if uniform else n - 1, numbers, first, i, starts, keys, counts,
                            configs, *now)
            if found is not None:
                named = _names(em, found[0], i - first - 3 * found[0], starts, marks, stores, links)
                if named is not None:
                    i = _commit(em, first, i, starts, counts, marks, stores, *found, *named)
                    break
        else:
            return


def _period(em: Emitter, last: int, numbers, first: int, i: int, starts: list[int],
            keys: list[tuple], counts: list[tuple], configs: list[dict], now: tuple,
            counts_now: tuple):
    """(period, strides, loop count) for the last three periods before iteration i, the loop
    ending before item `last`, or None (`now`, `counts_now`: the state after iteration i - 1)."""
    for p in range(1, MAX_PERIOD + 1):
        s = i - 3 * p
        if s < first:
            return None
        k = s - first
        if not (keys[k] == keys[k + p] == keys[k + 2 * p] == now):
            continue
        if numbers[s] is None or numbers[s + 1] is None or numbers[s + 1][1] != numbers[s][1] \
                or len(numbers[s + 1][0]) != len(numbers[s][0]):
            continue
        words = em.instructions
        ends = starts[k + p], starts[k + 2 * p], len(words)
        b0, b1, b2 = (words[a:b] for a, b in zip((starts[k], *ends[:2]), ends))
        strides = _strides(b0, b1, b2)
        if strides is None:
            continue
        count = _moving(numbers, s, p, last)
        room = em.sweep_room(counts_now, counts[k + 2 * p])
        if room is not None:
            count = min(count, 3 + room)
        if count < 3 or _overlapping(b0, strides, configs[k]):
            continue
        return p, strides, count
    return None


class _Numbers:
    """`_numbers` of each item, worked out when first asked for, and how far the items from
    a start keep moving by one step (asked again and again while a sweep looks for periods)."""

    def __init__(self, items: Sequence) -> None:
        self.items = items
        self.found: dict[int, tuple | None] = {}
        self.runs: dict[int, int] = {}
        self._steady: np.ndarray | None | bool = False      # False: not worked out yet

    def __getitem__(self, k: int):
        if k not in self.found:
            self.found[k] = _numbers(self.items[k])
        return self.found[k]

    def run_end(self, s: int, last: int) -> int:
        """The last item j < last such that items s..j move by the step from s to s + 1."""
        if self._steady is False:       # only once a period is found: most sweeps end first
            self._steady = _steady(self.items)
        if self._steady is not None:
            return min(s + 1 + int(self._steady[s]), last - 1)
        if s not in self.runs:
            ints, rest = self[s]
            step = [b - a for a, b in zip(ints, self[s + 1][0])]
            j = s + 1
            while j + 1 < last:
                nxt = self[j + 1]
                if nxt is None or nxt[1] != rest or len(nxt[0]) != len(step) or any(
                        b - a != d for a, b, d in zip(self[j][0], nxt[0], step)):
                    break
                j += 1
            self.runs[s] = j
        return self.runs[s]


def _steady(items: Sequence) -> np.ndarray | None:
    """For a sweep over ints or equal-length tuples of ints (tile origins and sizes): per
    start s, how many steps after s -> s + 1 repeat it exactly (numpy, once per sweep);
    None for other items (read one by one)."""
    if isinstance(items, range):
        return np.arange(len(items) - 2, -1, -1, dtype=np.int64)[:max(len(items) - 1, 0)]
    try:
        table = np.array(items, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    if table.dtype != np.int64 or table.ndim not in (1, 2) or len(items) < 2 \
            or any(type(x) is bool or (type(x) is tuple and any(type(y) is not int for y in x))
                   or type(x) not in (int, tuple) for x in items):
        return None
    table = table.reshape(len(items), -1)
    step = np.diff(table, axis=0)
    same = np.all(step[1:] == step[:-1], axis=1)          # step s + 1 equals step s
    runs = np.zeros(len(same) + 1, dtype=np.int64)        # steps after s equal to step s
    for k in range(len(same) - 1, -1, -1):
        runs[k] = runs[k + 1] + 1 if same[k] else 0
    return runs


def _numbers(item) -> tuple[tuple[int, ...], tuple] | None:
    """An item as (its integers in order, everything else): tuples and dataclasses (a tile's
    Matrix, say) are read field by field; ints must move by a constant per iteration, the rest
    (names, flags, None) must stay equal. None for what cannot be read so (emitted flat)."""
    if type(item) is int:
        return (item,), ()
    if type(item) is tuple and all(type(x) is int for x in item):
        return item, ()
    ints: list[int] = []
    rest: list = []

    def read(part) -> bool:
        if isinstance(part, bool) or part is None or isinstance(part, (str, enum.Enum)):
            rest.append(part)
        elif isinstance(part, int):
            ints.append(part)
        elif isinstance(part, tuple):
            return all(read(x) for x in part)
        else:
            names = _field_names(type(part))
            return names is not None and all(read(getattr(part, name)) for name in names)
        return True

    return (tuple(ints), tuple(rest)) if read(item) else None


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names in order (None: not a dataclass), looked up once a class."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def _moving(numbers: _Numbers, s: int, p: int, last: int) -> int:
    """Periods of p from item s whose items keep moving by the constant of the first step
    (their other parts equal), ending before item `last`."""
    return (numbers.run_end(s, last) + 1 - s) // p


def _strides(b0: list[Instr], b1: list[Instr], b2: list[Instr]) -> list[tuple[int, int, int]] | None:
    """(word, field position, delta) of every address (or integer a loop may move: a pim
    instruction's DRAM row, column or global-buffer offset) that moves from b0 to b1 to b2 by
    one delta, when the three are otherwise equal word for word; None when they are not."""
    if not len(b0) == len(b1) == len(b2):
        return None
    out = []
    for at, (x0, x1, x2) in enumerate(zip(b0, b1, b2)):
        if x0 is x1 and x1 is x2:
            continue
        if not (x0.opcode == x1.opcode == x2.opcode and x0.queue == x1.queue == x2.queue):
            return None
        for position, ((name, v0), (_, v1), (_, v2)) in enumerate(zip(x0.fields, x1.fields, x2.fields)):
            if v0 == v1 == v2:
                continue
            if type(v0) is int and type(v1) is int and type(v2) is int \
                    and (x0.opcode, name) in MOVING_INTS:
                delta = v1 - v0
                if v2 - v1 != delta:
                    return None
                out.append((at, position, delta))
                continue
            if not (type(v0) is Addr and type(v1) is Addr and type(v2) is Addr) \
                    or not v0.space == v1.space == v2.space or x0.opcode in STRUCTURE:
                return None
            delta = v1.addr - v0.addr
            if v2.addr - v1.addr != delta:
                return None
            out.append((at, position, delta))
    return out


def _overlapping(body: list[Instr], strides, config: dict) -> bool:
    """Whether a moving write of `body` would overlap its previous iteration (the verifier's
    rule, isa/loop_checks.py): each instruction under its queue's configuration at that point."""
    moving = {}
    for at, position, delta in strides:
        moving.setdefault(at, {})[OPCODES[body[at].opcode].fields[position].name] = abs(delta)
    config = dict(config)               # queue text -> its registers, as the emitter keeps them
    for at, instr in enumerate(body):   # only a moving word or a *cfg needs its queue's
        if at in moving:
            registers = config.get(str(instr.queue), _RESET)
            try:
                found = footprints(instr, registers)
            except IsaError:            # a register it needs is unset: the verifier's to say
                return True
            for footprint in found:
                shift = moving[at].get(footprint.role)
                if footprint.role in WRITTEN_ROLES and shift \
                        and overlaps(*stripes(instr, registers, footprint), shift):
                    return True
        if instr.opcode in CONFIG_OPCODES:
            queue = str(instr.queue)
            config[queue] = config.get(queue, _RESET).after(instr)
    return False


_RESET = QueueConfig()


def _names(em: Emitter, p: int, k: int, starts: list[int], marks: list[int],
           stores: list[int], links: list[int]):
    """(op marks of the first period as (offset, name), names of its stores, names of its
    all-reduces) with a name template `{+N}` where a name moves on by one per iteration (a
    model's layer number), when the three periods from iteration k mark their ops at the same
    offsets and store (and all-reduce) the same buffers but for such a number; None otherwise
    (no loop)."""
    ops = em.op_starts
    bounds = [(marks[k + j * p], marks[k + (j + 1) * p] if j < 2 else len(ops)) for j in range(3)]
    periods = [[(index - starts[k + j * p], name) for index, name in ops[a:b]]
               for j, (a, b) in enumerate(bounds)]
    if not len(periods[0]) == len(periods[1]) == len(periods[2]):
        return None
    marked = []
    for (a, x), (b, y), (c, z) in zip(*periods):
        name = _template((x, y, z))
        if not a == b == c or name is None:
            return None
        marked.append((a, name))
    stored = _logged(em.stores_since(stores[k]), stores, em.store_tokens, p, k)
    reduced = _logged(em.links_since(links[k]), links, em.link_tokens, p, k)
    return None if stored is None or reduced is None else (marked, stored, reduced)


def _logged(log: list[str], tokens: list[int], top: int, p: int, k: int) -> list[str] | None:
    """The names a token log (stores, all-reduces) records in each of the three periods from
    iteration k, as one list of templates, or None when the periods differ."""
    base = tokens[k]
    spans = [(tokens[k + j * p] - base, (tokens[k + (j + 1) * p] if j < 2 else top) - base)
             for j in range(3)]
    names = [log[a:b] for a, b in spans]
    if not len(names[0]) == len(names[1]) == len(names[2]):
        return None
    templates = [_template(three) for three in zip(*names)]
    return None if None in templates else templates


_NUMBER = re.compile(r"(\d+)")


def _template(names: tuple[str, str, str]) -> str | None:
    """The name of three consecutive periods as one: itself when they are equal; with one
    decimal number that grows by S > 0 a period written `{+N}` (S = 1) or `{+N*S}` (N its
    first value); None otherwise."""
    if names[0] == names[1] == names[2]:
        return names[0]
    if any("{" in name or "}" in name for name in names):
        return None
    parts = [_NUMBER.split(name) for name in names]
    if not len(parts[0]) == len(parts[1]) == len(parts[2]):
        return None
    moving = None
    for j, (a, b, c) in enumerate(zip(*parts)):
        if a == b == c:
            continue
        if j % 2 == 0 or moving is not None or str(int(a)) != a \
                or not 0 < int(b) - int(a) == int(c) - int(b):
            return None
        moving = j
    step = int(parts[1][moving]) - int(parts[0][moving])
    template = list(parts[0])
    template[moving] = "{+" + parts[0][moving] + ("" if step == 1 else f"*{step}") + "}"
    return "".join(template)


def _commit(em: Emitter, first: int, i: int, starts: list[int], counts: list[tuple],
            marks: list[int], stores: list[int], p: int, strides, count: int,
            marked: list[tuple[int, str]], stored: list[str], reduced: list[str]) -> int:
    """Replace the three emitted periods before iteration i by a loop of `count` periods (its
    op marks templated), move the counters on by the periods not emitted, record the stores
    and all-reduces they would have made, and return the next item's index."""
    s = i - 3 * p
    k = s - first
    body = em.instructions[starts[k]:starts[k + p]]
    header = loop_words(count, len(body), strides)
    del em.instructions[starts[k]:]
    em.instructions.extend(header)
    em.instructions.extend(body)
    del em.op_starts[marks[k]:]
    em.op_starts.extend((starts[k] + len(header) + offset, name) for offset, name in marked)
    now = em.sweep_counts()
    em.advance_counts(now, counts[k + 2 * p], count - 3)
    em.replay_stores([mark_name(name, j) for j in range(3, count) for name in stored])
    em.replay_links([mark_name(name, j) for j in range(3, count) for name in reduced])
    return s + count * p
