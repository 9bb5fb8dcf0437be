"""`roll(program)`: the compact program that unrolls to `program` exactly (docs/isa.md, "Loops";
docs/compiler.md, "Rolling").

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from operator import attrgetter

import numpy as np

import isa
from isa.fields import AddressKind
from isa.footprint import WRITTEN_ROLES, QueueConfig, footprints, stripes
from isa.instr import Instr
from isa.opcodes import OPCODES, STRUCTURE, STRUCTURE_QUEUE
from isa.values import Queue

__all__ = ["roll", "MAX_PERIOD"]

MAX_PERIOD = 96          # the longest body found at the top level (instructions)
_COLUMNS = 3             # the most address operands of an opcode (gather, gemm, vec)
_SEQ = Queue.parse(STRUCTURE_QUEUE)
_U64 = np.uint64


@dataclass(frozen=True, slots=True)
class _Run:
    """A loop: `count` repetitions of the `period` instructions from offset `start` of its
    range; `body` the rolled first repetition (offsets from `start`)."""

    start: int
    period: int
    count: int
    body: tuple


def roll(program: isa.Program, limits: Mapping[str, int] | None = None, *,
         max_period: int = MAX_PERIOD) -> isa.Program:
    """The compact equivalent of a flat `program` (returned unchanged when it already has
    loops or nothing repeats). `limits`: the machine's (MachineView.limits), for footprints."""
    instructions = program.instructions
    opcodes = list(map(attrgetter("opcode"), instructions))
    if len(instructions) < 4 or STRUCTURE & set(opcodes):
        return program
    flat = _Flat.of(program, opcodes, limits or {})
    marks = np.zeros(len(instructions) + 1, dtype=np.int64)
    np.add.at(marks, [index for index, _ in program.ops], 1)
    segment = np.cumsum(marks)[:-1]             # op ranges: no loop crosses an op mark
    shape = flat.shape + segment * (int(flat.shape.max()) + 1)
    tree = flat.roll_range(0, len(instructions), shape, max_period)
    if not any(isinstance(node, _Run) for node in tree):
        return program
    out: list[Instr] = []
    starts: dict[int, int] = {}
    flat.emit(tree, 0, out, [], starts)
    starts[len(instructions)] = len(out)
    ops = tuple((starts[index], name) for index, name in program.ops)
    return replace(program, instructions=tuple(out), ops=ops)


class _Flat:
    """The flat program as columns: shape ids, byte addresses per address operand, a hash of
    the semaphore balance so far, and which deltas would make a write overlap itself."""

    def __init__(self, instructions, shape, addr, positions, balance, write) -> None:
        self.instructions = instructions
        self.shape = shape                  # (n,) int64
        self.addr = addr                    # (n, _COLUMNS) int64 byte addresses (0: none)
        self.positions = positions          # opcode -> field positions of its address columns
        self.balance = balance              # (n + 1,) uint64 prefix of signal/wait weights
        self.write = write                  # (column, rows, row_bytes, pitch) arrays
        weights = np.random.default_rng(17).integers(1, 2**63, size=_COLUMNS, dtype=np.uint64)
        with np.errstate(over="ignore"):
            self.key = (addr.astype(np.uint64) * (weights | _U64(1))).sum(axis=1, dtype=np.uint64)
        self.memo: dict[bytes, tuple] = {}

    @staticmethod
    def of(program: isa.Program, opcodes: list[str], limits: Mapping[str, int]) -> _Flat:
        instructions = program.instructions
        n = len(instructions)
        words = isa.encode(instructions, program.spaces)
        lo, hi = words[:, 0].copy(), words[:, 1].copy()
        codes = (hi >> _U64(56)).astype(np.int64)
        addr = np.zeros((n, _COLUMNS), dtype=np.int64)
        positions: dict[str, tuple[int, ...]] = {}
        for code in np.unique(codes).tolist():
            spec = isa.opcodes.OPCODES_BY_CODE[code]
            rows = np.flatnonzero(codes == code)
            columns = []
            for position, (field, lsb) in enumerate(spec.layout):
                if not isinstance(field.kind, AddressKind):
                    continue
                bits = field.kind.addr_bits
                units, glo, ghi = _take(lo[rows], hi[rows], lsb, bits)
                lo[rows], hi[rows] = glo, ghi
                addr[rows, len(columns)] = units.astype(np.int64) * field.kind.granule
                columns.append(position)
            positions[spec.mnemonic] = tuple(columns)
        keys = np.stack([hi, lo], axis=1)
        _, shape = np.unique(keys, axis=0, return_inverse=True)
        shape = shape.reshape(-1).astype(np.int64)
        return _Flat(instructions, shape, addr, positions, _balance(instructions, opcodes),
                     _writes(instructions, opcodes, positions, limits))

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
            if c > 1 and c * p - p - 1 - self.strides(lo + t, p, body) > 0:
                nodes.append(_Run(t, p, c, body))
                s = t + c * p
            else:
                nodes.append(t)
                s = t + 1

    def steady(self, start: int, p: int, count: int) -> int:
        """How many of `count` repetitions from `start` really move by constant deltas (the
        address hash can collide; the exact rows decide)."""
        block = self.addr[start:start + count * p].reshape(count, p, _COLUMNS)
        delta = np.diff(block, axis=0)
        same = (delta == delta[:1]).all(axis=(1, 2))
        return count if same.all() else int(np.argmin(same)) + 1

    def body(self, start: int, p: int, shape: np.ndarray) -> tuple:
        """The first repetition [start, start + p) (shape ids `shape`) rolled, its instructions
        told apart also by the delta of each address to the next repetition, so that an inner
        loop's instructions move alike in every enclosing loop (memoised by content)."""
        if p < 4:
            return tuple(range(p))
        deltas = self.addr[start + p:start + 2 * p] - self.addr[start:start + p]
        rel = self.addr[start:start + p] - self.addr[start]
        column, rows, row_bytes, pitch = (w[start:start + p] for w in self.write)
        key = b"".join(a.tobytes() for a in (shape, deltas, rel, column, rows, row_bytes, pitch,
                                                self.balance[start:start + p + 1]
                                                - self.balance[start]))
        tree = self.memo.get(key)
        if tree is None:
            inner = np.unique(np.column_stack([shape, deltas]), axis=0, return_inverse=True)[1]
            tree = self.roll_range(start, start + p, inner.reshape(-1).astype(np.int64), p // 2)
            self.memo[key] = tree
        return tree

    def strides(self, start: int, p: int, body: tuple) -> int:
        """Stride words of a loop of period p from `start`: its body's moving operands."""
        deltas = self.addr[start + p:start + 2 * p] - self.addr[start:start + p]
        moving = np.count_nonzero(deltas, axis=1)
        return int(sum(moving[x] for x in _leaves(body, 0)))

    def best(self, lo: int, hi: int, shape: np.ndarray, max_period: int):
        """Per start in [lo, hi): the most instructions a run covers and its period."""
        m = hi - lo
        cover = np.zeros(m, dtype=np.int64)
        period = np.zeros(m, dtype=np.int64)
        addr = self.addr[lo:hi]
        key = self.key[lo:hi]                   # a hash of the address row, linear in it
        balance = self.balance[lo:hi + 1]
        column, rows, row_bytes, pitch = (w[lo:hi] for w in self.write)
        written = column >= 0
        waddr = addr[np.arange(m), np.where(written, column, 0)]
        for p in range(1, min(max_period, m // 2) + 1):
            same = shape[p:] == shape[:-p]
            shift = np.abs(waddr[p:] - waddr[:-p])
            moving = written[:-p] & (shift > 0)
            if moving.any():
                same &= ~(moving & _overlaps(rows[:-p], row_bytes[:-p], pitch[:-p], shift))
            with np.errstate(over="ignore"):
                delta = key[p:] - key[:-p]
            steady = np.append(delta[p:] == delta[:-p], False)   # confirmed exactly in `steady`
            starts = m - 2 * p + 1
            runs = _run_lengths(same)[:starts]
            c = np.minimum(runs // p + 1, _run_lengths(steady)[:starts] // p + 2)
            c = np.where(balance[p:p + starts] == balance[:starts], c, 1)
            better = (c >= 2) & (c * p > cover[:len(c)])
            cover[:len(c)] = np.where(better, c * p, cover[:len(c)])
            period[:len(c)] = np.where(better, p, period[:len(c)])
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
            strides = self.stride_words(start, node.period, body, flat)
            out.append(Instr("loop", _SEQ, (("count", node.count), ("body", len(body)))))
            out.extend(strides)
            out.extend(body)
            where.extend([None] * (1 + len(strides)) + flat)

    def stride_words(self, start: int, p: int, body: list[Instr],
                     flat: list[int | None]) -> list[Instr]:
        """The stride words of the loop of period p from flat `start` (body words `body`, their
        flat indices `flat`)."""
        deltas = self.addr[start + p:start + 2 * p] - self.addr[start:start + p]
        words = []
        for at, x in enumerate(flat):
            if x is None:
                continue
            for column, position in enumerate(self.positions[body[at].opcode]):
                delta = int(deltas[x - start, column])
                if delta:
                    words.append(Instr("stride", _SEQ, (("at", at), ("field", position),
                                                        ("delta", delta))))
        return words


def _leaves(tree: tuple, base: int):
    """Offsets (from the range start) of the instructions a tree stores once."""
    for node in tree:
        if isinstance(node, _Run):
            yield from _leaves(node.body, base + node.start)
        else:
            yield base + node


def _take(lo: np.ndarray, hi: np.ndarray, lsb: int, bits: int):
    """The `bits` bits at `lsb` of (lo, hi) as uint64, and the words with them cleared."""
    mask = (1 << bits) - 1
    if lsb >= 64:
        shift = _U64(lsb - 64)
        return (hi >> shift) & _U64(mask), lo, hi & ~(_U64(mask) << shift)
    low_mask = _U64(mask & ((1 << (64 - lsb)) - 1))
    value = (lo >> _U64(lsb)) & low_mask
    lo = lo & ~(low_mask << _U64(lsb))
    if lsb + bits > 64:
        high_bits = lsb + bits - 64
        value |= (hi & _U64((1 << high_bits) - 1)) << _U64(64 - lsb)
        hi = hi & ~_U64((1 << high_bits) - 1)
    return value, lo, hi


def _balance(instructions, opcodes: list[str]) -> np.ndarray:
    """Prefix sums (mod 2**64) of a random weight per semaphore, + for signal, - for wait: a
    block signals each semaphore as often as it waits on it when its two ends are equal."""
    weights = np.random.default_rng(17).integers(1, 2**63, size=1 << 16, dtype=np.uint64)
    sync = [i for i, op in enumerate(opcodes) if op in ("signal", "wait")]
    step = np.zeros(len(instructions) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in sync:
            weight = weights[instructions[i]["sem"] % (1 << 16)]
            step[i + 1] = weight if opcodes[i] == "signal" else _U64(0) - weight
        return np.cumsum(step, dtype=np.uint64)


def _writes(instructions, opcodes: list[str], positions, limits):
    """Per instruction: the address column it writes (-1: none) and that write's stripes
    (rows, row_bytes, pitch) under the flat program's queue configuration."""
    n = len(instructions)
    column = np.full(n, -1, dtype=np.int64)
    rows = np.ones(n, dtype=np.int64)
    row_bytes = np.ones(n, dtype=np.int64)
    pitch = np.ones(n, dtype=np.int64)
    configs: dict[Queue, QueueConfig] = {}
    seen: dict[tuple[int, int], tuple] = {}
    for i, instr in enumerate(instructions):
        op = opcodes[i]
        if op in ("dmacfg", "mcfg", "vcfg"):
            configs[instr.queue] = configs.get(instr.queue, QueueConfig()).after(instr)
            continue
        if not positions.get(op):
            continue
        config = configs.get(instr.queue, QueueConfig())
        key = (id(instr), id(config))
        found = seen.get(key)
        if found is None:
            found = seen[key] = _write_stripes(instr, config, positions[op], limits)
        if found[0] >= 0:
            column[i], rows[i], row_bytes[i], pitch[i] = found
    return column, rows, row_bytes, pitch


def _write_stripes(instr: Instr, config: QueueConfig, columns, limits) -> tuple:
    try:
        found = footprints(instr, config, limits)
    except isa.IsaError:
        return (-1, 1, 1, 1)
    names = [OPCODES[instr.opcode].fields[p].name for p in columns]
    for footprint in found:
        if footprint.role in WRITTEN_ROLES:
            r, b, pitch = stripes(instr, config, footprint)
            return (names.index(footprint.role), r, b, pitch)
    return (-1, 1, 1, 1)


def _overlaps(rows, row_bytes, pitch, shift):
    """isa.loop_checks.overlaps, elementwise."""
    pitch = np.maximum(pitch, 1)
    nearest = shift // pitch
    hit = np.zeros(len(shift), dtype=bool)
    for j in (nearest, nearest + 1):
        j = np.clip(j, 1 - rows, rows - 1)
        hit |= np.abs(shift - j * pitch) < row_bytes
    return hit


def _run_lengths(flags: np.ndarray) -> np.ndarray:
    """For each i, how many of flags[i], flags[i+1], ... are True before the first False."""
    n = len(flags)
    index = np.arange(n, dtype=np.int64)
    stops = np.where(flags, n, index)
    next_false = np.minimum.accumulate(stops[::-1])[::-1]
    return next_false - index
