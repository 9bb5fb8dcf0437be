"""`roll(program)`: the compact program that unrolls to `program` exactly (docs/isa.md, "Loops"
and "Compiled programs are compact").

One target-independent pass after lowering. Inside each op's instruction range it finds runs of
a repeated block — same opcodes, queues and non-address fields, address fields in the same space
moving by a constant delta per repetition — and writes each run as one `loop` whose strides are
those deltas; bodies are rolled again (inner loops), so `isa.unroll(roll(p)) == p`.

Matching is vectorised (numpy): instructions become a shape id (the encoded word with address
bits masked) and an address matrix; for each period p, a run from s repeats c times when the
shapes agree p apart for (c-1)p positions and the p-apart deltas agree for (c-2)p. A run is a
loop only where the verifier accepts it: every iteration's signals balance its waits, and no
moving write overlaps its next iteration (isa/loop_checks.py's rule, with the flat program's
queue configuration). Greedy left to right: at each start the run covering most instructions
(ties: the smaller period), kept when it saves words.

Cost: no Python loop per instruction (compiler/roll_columns.py builds the columns; footprints
are worked out once per shape and queue configuration); a period is looked at further only
where its shapes repeat for a whole period; bodies are memoised by what their rolling reads, so
equal bodies in every layer roll once. A large program is first rolled on a sample of windows
and left flat when that saves under MIN_SAVING (PIM: a 6 M-instruction program would save 1 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

import isa
from compiler.roll_columns import COLUMNS, Columns, dense_ids
from isa.instr import Instr
from isa.loop_checks import overlaps
from isa.loops import loop_words

__all__ = ["roll", "MAX_PERIOD", "MIN_SAVING"]

MAX_PERIOD = 96          # the longest body found at the top level (instructions)
SAMPLE = (16, 2048)      # programs over twice this many instructions are first rolled on a
                         # sample: this many windows of this many instructions, evenly spread;
MIN_SAVING = 0.1         # they stay flat when the sample saves less than this part of its words
PIECE = 1 << 15          # instructions matched at once (whole op ranges; see _pieces)
_U64 = np.uint64


@dataclass(frozen=True, slots=True)
class _Run:
    """A loop: `count` repetitions of the `period` instructions from offset `start` of its
    range; `body` the rolled first repetition (offsets from `start`); `strides` its stride
    words."""

    start: int
    period: int
    count: int
    body: tuple
    strides: int


def roll(program: isa.Program, limits: Mapping[str, int] | None = None, *,
         max_period: int = MAX_PERIOD) -> isa.Program:
    """The compact equivalent of a flat `program`; `program` itself when it already has loops,
    nothing repeats, or it is large and a sample of it rolls to less than MIN_SAVING (PIM
    programs: their row and column numbers are not addresses, so they barely repeat, and
    rolling all of them would cost far more than it saves). `limits`: the machine's
    (MachineView.limits), for footprints."""
    instructions = program.instructions
    n = len(instructions)
    marks = [index for index, _ in program.ops]
    windows, width = SAMPLE
    if n > 2 * windows * width:                 # a cheap look before the whole program
        starts = np.linspace(0, n - width, windows).astype(np.int64).tolist()
        sample = [x for s in starts for x in instructions[s:s + width]]
        cuts = sorted({k * width for k in range(windows)}
                      | {k * width + m - s for k, s in enumerate(starts) for m in marks
                         if s <= m < s + width})
        tried = _Flat.rolled(sample, program.spaces, cuts, limits or {}, max_period)
        if tried is None or _size(tried[1]) > (1 - MIN_SAVING) * len(sample):
            return program
    found = _Flat.rolled(instructions, program.spaces, marks, limits or {}, max_period)
    if found is None or _size(found[1]) == n:
        return program
    flat, pieces = found
    out: list[Instr] = []
    starts_at: dict[int, int] = {}
    for base, tree in pieces:
        flat.emit(tree, base, out, [], starts_at)
    starts_at[n] = len(out)
    ops = tuple((starts_at[index], name) for index, name in program.ops)
    return replace(program, instructions=tuple(out), ops=ops)


class _Flat:
    """The flat program as columns (compiler/roll_columns.py) and a memo of rolled bodies."""

    def __init__(self, instructions, columns: Columns) -> None:
        self.instructions = instructions
        self.shape = columns.shape
        self.addr = columns.addr
        self.positions = columns.positions
        self.balance = columns.balance
        self.write = columns.write
        weights = np.random.default_rng(17).integers(1, 2**63, size=COLUMNS, dtype=np.uint64)
        with np.errstate(over="ignore"):
            self.key = (self.addr.astype(np.uint64) * (weights | _U64(1))).sum(
                axis=1, dtype=np.uint64)
        column, rows, row_bytes, pitch = self.write
        self.extent = (rows - 1) * np.maximum(pitch, 1) + row_bytes   # a shift this far is safe
        self.memo: dict[bytes, tuple] = {}

    @staticmethod
    def rolled(instructions, spaces, marks, limits, max_period: int):
        """The flat program and its trees of runs, one per piece of whole op ranges (op marks
        `marks`: no loop crosses one) as (first instruction, tree); None when it has loops
        already."""
        n = len(instructions)
        if n < 4:
            return None
        columns = Columns.of(instructions, spaces, limits)
        if columns.looped:
            return None
        flat = _Flat(instructions, columns)
        step = np.zeros(n + 1, dtype=np.int64)
        np.add.at(step, marks, 1)
        segment = np.cumsum(step)[:-1]          # op ranges
        shape = flat.shape + segment * (int(flat.shape.max()) + 1)
        cuts = np.flatnonzero(np.diff(segment)) + 1
        pieces = tuple((lo, flat.roll_range(lo, hi, shape[lo:hi], max_period))
                       for lo, hi in _pieces(cuts, n))
        return flat, pieces

    def roll_range(self, lo: int, hi: int, shape: np.ndarray, max_period: int) -> tuple:
        """Instructions [lo, hi) (shape ids `shape`, one per instruction) as a tree of offsets
        from `lo` (ints) and runs."""
        cover, period = self.best(lo, hi, shape, max_period)
        found = np.flatnonzero(cover)
        nodes: list = []
        s, k = 0, 0
        m = hi - lo
        while True:
            k = int(np.searchsorted(found, s))
            if k == len(found):
                nodes.extend(range(s, m))
                return tuple(nodes)
            t = int(found[k])
            nodes.extend(range(s, t))
            p = int(period[t])
            c = int(cover[t]) // p
            c = self.steady(lo + t, p, c)
            body = self.body(lo + t, p, shape[t:t + p]) if c > 1 else ()
            strides = self.strides(lo + t, p, body) if c > 1 else 0
            if c > 1 and c * p - p - 1 - strides > 0:
                nodes.append(_Run(t, p, c, body, strides))
                s = t + c * p
            else:
                nodes.append(t)
                s = t + 1

    def steady(self, start: int, p: int, count: int) -> int:
        """How many of `count` repetitions from `start` really move by constant deltas (the
        address hash can collide; the exact rows decide)."""
        block = self.addr[start:start + count * p].reshape(count, p, COLUMNS)
        delta = np.diff(block, axis=0)
        same = (delta == delta[:1]).all(axis=(1, 2))
        return count if same.all() else int(np.argmin(same)) + 1

    def body(self, start: int, p: int, shape: np.ndarray) -> tuple:
        """The first repetition [start, start + p) (shape ids `shape`) rolled, its instructions
        told apart also by the delta of each address to the next repetition, so that an inner
        loop's instructions move alike in every enclosing loop. Memoised by what the rolling
        reads: which instructions are alike (each named by the first of its kind), addresses
        relative to that first one, written stripes and the semaphore balance."""
        if p < 4:
            return tuple(range(p))
        rows = slice(start, start + p)
        deltas = self.addr[start + p:start + 2 * p] - self.addr[rows]
        inner = dense_ids(shape, *deltas.T)
        _, first, which = np.unique(inner, return_index=True, return_inverse=True)
        kind = first[which.reshape(-1)].astype(np.int64)
        rel = self.addr[rows] - self.addr[start + kind]
        key = b"".join(a.tobytes() for a in (kind, rel, *(w[rows] for w in self.write),
                                                self.balance[start:start + p + 1]
                                                - self.balance[start]))
        tree = self.memo.get(key)
        if tree is None:
            tree = self.memo[key] = self.roll_range(start, start + p, kind, p // 2)
        return tree

    def strides(self, start: int, p: int, body: tuple) -> int:
        """Stride words of a loop of period p from `start`: its body's moving operands."""
        deltas = self.addr[start + p:start + 2 * p] - self.addr[start:start + p]
        moving = np.count_nonzero(deltas, axis=1)
        return int(sum(moving[x] for x in _leaves(body, 0)))

    def best(self, lo: int, hi: int, shape: np.ndarray, max_period: int):
        """Per start in [lo, hi): the most instructions a run covers and its period. A period
        is looked at further only where its shapes repeat for a whole period somewhere."""
        m = hi - lo
        cover = np.zeros(m, dtype=np.int64)
        period = np.zeros(m, dtype=np.int64)
        addr = self.addr[lo:hi]
        key = self.key[lo:hi]                   # a hash of the address row, linear in it
        balance = self.balance[lo:hi + 1]
        column, rows, row_bytes, pitch = (w[lo:hi] for w in self.write)
        extent = self.extent[lo:hi]
        written = column >= 0
        waddr = addr[np.arange(m), np.where(written, column, 0)]
        for p in range(1, min(max_period, m // 2) + 1):
            starts = m - 2 * p + 1
            same = shape[p:] == shape[:-p]
            runs = _run_lengths(same)
            if not (runs[:starts] >= p).any():
                continue
            shift = np.abs(waddr[p:] - waddr[:-p])
            risky = np.flatnonzero(same & written[:-p] & (shift > 0) & (shift < extent[:-p]))
            hit = risky[overlaps(rows[risky], row_bytes[risky], pitch[risky], shift[risky])]
            if len(hit):
                same[hit] = False
                runs = _run_lengths(same)
            a = int(np.argmax(runs[:starts] >= p))   # the first start that can repeat
            with np.errstate(over="ignore"):
                delta = key[a + p:] - key[a:-p]
            steady = np.append(delta[p:] == delta[:-p], False)   # confirmed exactly in `steady`
            c = np.minimum(runs[a:starts] // p + 1, _run_lengths(steady) // p + 2)
            c[balance[a + p:p + starts] != balance[a:starts]] = 1
            better = np.flatnonzero((c >= 2) & (c * p > cover[a:starts])) + a
            cover[better] = c[better - a] * p
            period[better] = p
        return cover, period

    def emit(self, tree: tuple, base: int, out: list, where: list, starts: dict | None) -> None:
        """Append the words of `tree` (offsets from flat index `base`) to `out`, and to `where`
        the flat index of each (None for loop words); `starts`: top-level flat -> word index."""
        for node in tree:
            if not isinstance(node, _Run):
                if starts is not None:
                    starts[base + node] = len(out)
                out.append(self.instructions[base + node])
                where.append(base + node)
                continue
            start = base + node.start
            if starts is not None:
                starts[start] = len(out)
            body: list[Instr] = []
            flat: list[int | None] = []
            self.emit(node.body, start, body, flat, None)
            header = loop_words(node.count, len(body), self.strides_of(start, node.period, body, flat))
            out.extend(header)
            out.extend(body)
            where.extend([None] * len(header) + flat)

    def strides_of(self, start: int, p: int, body: list[Instr],
                   flat: list[int | None]) -> list[tuple[int, int, int]]:
        """(body word, field position, delta) of the loop of period p from flat `start` (body
        words `body`, their flat indices `flat`)."""
        deltas = self.addr[start + p:start + 2 * p] - self.addr[start:start + p]
        found = []
        for at, x in enumerate(flat):
            if x is None:
                continue
            for column, position in enumerate(self.positions[body[at].opcode]):
                delta = int(deltas[x - start, column])
                if delta:
                    found.append((at, position, delta))
        return found


def _pieces(cuts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """[0, n) cut at some of `cuts` (op marks) into pieces of about PIECE instructions (one op
    range may be longer): rolling each apart is exact, since no loop crosses an op mark, and
    keeps the arrays of a pass small (cache-sized, and little memory beside the program's)."""
    pieces, lo = [], 0
    while lo < n:
        k = int(np.searchsorted(cuts, lo + PIECE, side="right"))
        if lo + PIECE >= n:
            hi = n
        elif k and cuts[k - 1] > lo:
            hi = int(cuts[k - 1])
        else:
            hi = int(cuts[k]) if k < len(cuts) else n
        pieces.append((lo, hi))
        lo = hi
    return pieces


def _size(pieces: tuple) -> int:
    """Words of a rolled program given as pieces (first instruction, tree)."""
    return sum(_words(tree) for _, tree in pieces)


def _words(tree: tuple) -> int:
    """Words of a rolled tree: instructions stored once, loop headers and stride words."""
    return sum(1 + node.strides + _words(node.body) if isinstance(node, _Run) else 1
               for node in tree)


def _leaves(tree: tuple, base: int):
    """Offsets (from the range start) of the instructions a tree stores once."""
    for node in tree:
        if isinstance(node, _Run):
            yield from _leaves(node.body, base + node.start)
        else:
            yield base + node


def _run_lengths(flags: np.ndarray) -> np.ndarray:
    """For each i, how many of flags[i], flags[i+1], ... are True before the first False."""
    n = len(flags)
    index = np.arange(n, dtype=np.int64)
    stops = np.where(flags, n, index)
    next_false = np.minimum.accumulate(stops[::-1])[::-1]
    return next_false - index
