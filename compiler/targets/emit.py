"""Building programs: an instruction list with op marks, semaphores, slot rings, DMA helpers.

Targets emit instructions in one valid sequential order (every wait after its matching
signal), so the program cannot deadlock; at run time each queue runs ahead as far as its
tokens allow, which is what overlaps loads, compute and stores.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import isa
from isa import Addr, Instr, Queue
from isa.footprint import QueueConfig
from isa.loop_checks import CONFIG_OPCODES
from isa.loops import loop_words
from isa.opcodes import LINK_QUEUE, OPCODES

from compiler.errors import CompileError, InstructionLimitError
from compiler.passes.quantised import StoredFormat
from compiler.passes.storage import View
from compiler.targets import sweep as _sweep

__all__ = ["Emitter", "Ring", "RingSpec", "ring_specs", "Matrix", "symbol_name", "view_matrix",
           "view_batches", "padded_view", "matrix_pairs", "instruction_limit"]

_LIMIT: ContextVar[int | None] = ContextVar("instruction_limit", default=None)


@contextlib.contextmanager
def instruction_limit(count: int | None) -> Iterator[None]:
    """Inside the block, an emitter that has more than `count` instructions at an op boundary
    raises InstructionLimitError: a caller that knows how many instructions it can afford
    stops a compilation that would exceed them before it exhausts the machine (the check is
    per op, so a program may overshoot by at most one op's instructions)."""
    token = _LIMIT.set(count)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def symbol_name(value: str) -> str:
    """The program symbol of a graph value's buffer (symbols cannot contain '-')."""
    return value.replace("-", "_")


_FIELD_ORDER = {op: spec.names for op, spec in OPCODES.items()}
T = TypeVar("T")


class Tracked:
    """An object whose state shapes what the emitter emits next (a ring's turn, a unit's last
    configuration, a packer's slot), tracked by the emitter (`Emitter.track`) so that a sweep
    sees when it is back where it was (compiler/targets/sweep.py). `sweep_key()`: the state
    that must be equal; `sweep_counts()`: counters that move by a constant per period and
    enter what is emitted only affinely (a slot's fill level), moved on by `sweep_set`;
    `sweep_room(per_period)`: how many more periods they may move before a threshold changes
    what is emitted (None: no limit)."""

    def sweep_key(self) -> object:
        raise NotImplementedError

    def sweep_counts(self) -> tuple[int, ...]:
        return ()

    def sweep_set(self, counts: Sequence[int]) -> None:
        pass

    def sweep_room(self, per_period: Sequence[int]) -> int | None:
        return None


class _LinkTokens(Tracked):
    """The link queue's collectives, in program order: `go` (this rank's part is stored) and
    `done` (the result is in place), one token each per collective, and the symbol of each (`log`, as
    the store tokens'; a sweep replays the symbols of the periods it does not emit). One
    queue reads reduced values: a `done` token taken by another would be lost to it."""

    def __init__(self, go: int, done: int) -> None:
        self.go, self.done = go, done
        self.signalled = self.waited = 0
        self.log: list[str] = []
        self.ready: dict[str, int] = {}      # symbol -> the done token of its last collective
        self.reader: str | None = None

    def record(self, symbol: str) -> None:
        self.log.append(symbol)
        self.ready[symbol] = len(self.log)

    def before_read(self, em: "Emitter", queue: str, symbol: str) -> None:
        token = self.ready.get(symbol, 0)
        if token <= self.waited:
            return
        if self.reader not in (None, queue):
            raise CompileError(f"'{symbol}': collectives' results read by queues {self.reader} "
                               f"and {queue}; one queue must take the link's tokens")
        self.reader = queue
        while self.waited < token:
            em.emit(queue, "wait", sem=self.done)
            self.waited += 1

    def sweep_key(self) -> object:
        return self.go, self.done, self.signalled - self.waited

    def sweep_counts(self) -> tuple[int, ...]:
        return self.signalled, self.waited

    def sweep_set(self, counts: Sequence[int]) -> None:
        self.signalled, self.waited = counts


@dataclass(frozen=True, slots=True)
class Matrix:
    """A 2-D window of a DRAM buffer: rows of `cols` contiguous elements, `stride` apart."""

    symbol: str
    offset: int          # elements from the buffer start
    rows: int
    cols: int
    stride: int          # elements between row starts

    def block(self, r0: int, rows: int, c0: int, cols: int) -> "Matrix":
        return Matrix(self.symbol, self.offset + r0 * self.stride + c0, rows, cols, self.stride)


def view_matrix(view: View) -> Matrix:
    """A value's view as rows of contiguous elements (leading axes merged)."""
    shape = view.rows()
    if shape is None:
        raise CompileError(f"value in '{view.buffer}' has no row-major 2-D layout "
                           f"(shape {list(view.shape)}, strides {list(view.strides)})")
    rows, cols, stride = shape
    return Matrix(symbol_name(view.buffer), view.offset, rows, cols, stride)


def view_batches(view: View, keep: int) -> list[View]:
    """Sub-views indexed over all but the last `keep` axes."""
    lead = view.shape[:-keep] if keep else view.shape
    out = []
    for index in itertools.product(*map(range, lead)):
        offset = view.offset + sum(i * s for i, s in zip(index, view.strides))
        out.append(View(view.buffer, view.shape[-keep:], view.strides[-keep:], offset))
    return out


def padded_view(view: View, rank: int) -> View:
    """`view` with leading axes of size 1 added up to `rank` (numpy's broadcasting)."""
    pad = rank - len(view.shape)
    return View(view.buffer, (1,) * pad + view.shape, (0,) * pad + view.strides, view.offset)


def matrix_pairs(a: View, b: View) -> list[tuple[Matrix, Matrix]]:
    """Two views of one shape as row-major matrix pairs: whole when both merge their leading
    axes into rows, else one pair per 2-D batch."""
    if a.rows() is not None and b.rows() is not None:
        return [(view_matrix(a), view_matrix(b))]
    return [(view_matrix(x), view_matrix(y)) for x, y in zip(view_batches(a, 2), view_batches(b, 2))]


_RESET = QueueConfig()         # a queue's registers before its first *cfg
_MAX_PITCH = (1 << 16) - 1     # qcfg's pitch: scales between a weight's scale rows (U16)


class Emitter:
    """Accumulates instructions, op boundaries and semaphore ids for one program."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.instructions: list[Instr] = []
        self.op_starts: list[tuple[int, str]] = []
        self._sems = 0
        self._strides: dict[str, tuple[int, int]] = {}
        self._store_sem = self.semaphore()
        self._stores_signalled = 0
        self._stores_waited: dict[str, int] = {}
        self._ready_token: dict[str, int] = {}     # buffer -> token number of its last store
        self.addresses: dict[str, int] = {}        # DRAM symbol -> byte address
        self.itemsize: dict[str, int] = {}
        self.quantised: dict[str, tuple[StoredFormat, int, isa.DType]] = {}  # codes symbol ->
                                                   # (format, scales' address, loaded type)
        self._interned: dict[tuple, Instr] = {}
        self._made: dict[tuple, Instr] = {}
        self._limit = _LIMIT.get()
        self._barrier: tuple[int, dict[str, int]] | None = None
        self._store_log: list[str] = []             # the symbol of every store token, in order
        self._pending: dict[str, int] = {}          # symbol -> token some waiting queue lacks
        self._config: dict[str, QueueConfig] = {}   # queue -> its configuration registers now
        self._config_key: dict[str, int] = {}       # the number of the same but qcfg (`sweep_key`)
        self._configs: dict[QueueConfig, QueueConfig] = {}   # one object per configuration
        self._numbers: dict[QueueConfig, int] = {}  # a configuration but qcfg -> its number
        self._steps: dict[tuple[int, int], tuple] = {}      # `_configure`'s, by identity
        self._tracked: list[Tracked] = []
        self._link: _LinkTokens | None = None       # the collectives' tokens, once there is one
        self.link_reader: str | None = None         # the queue that waits for them (None: the
                                                    # one that reads a result first)

    # -- sweeps (compiler/targets/sweep.py) ----------------------------------------------
    def track(self, obj: Tracked) -> None:
        """Count `obj`'s state in `sweep_key`: every object whose state changes what is emitted
        must be tracked, or a sweep could take two different states for one."""
        self._tracked.append(obj)

    def untrack(self, *objs: Tracked) -> None:
        """Stop counting objects that will emit nothing more (a finished kernel's rings)."""
        gone = {id(obj) for obj in objs}
        self._tracked = [obj for obj in self._tracked if id(obj) not in gone]

    def align_rings(self) -> None:
        """Every ring on to its slot 0 (`Ring.align`): a model's layers each start so, so that
        a layer whose rings take an odd number of slots still emits what the one before did
        (one layer a loop period, not two)."""
        for obj in self._tracked:
            if isinstance(obj, Ring):
                obj.align()

    def sweep(self, items: Sequence[T], key: Sequence | None = None,
              uniform: bool = False) -> Iterator[T]:
        """`for item in em.sweep(items)`: the items as a plain loop would see them, except that
        a stretch seen to repeat becomes one loop and is not run again (`key`: what each
        item's emission reads, when not the item itself; `uniform`: no item's emission
        depends on its place among them, so the last may be in a loop too)."""
        return _sweep.sweep(self, items, key, uniform)

    def sweep_key(self) -> tuple:
        """Everything that decides what is emitted next, but counters (the tracked objects',
        the store tokens') and the instructions and op marks so far. The store ordering
        enters relative to the tokens signalled: how far each waiting queue is behind, and
        how far behind each pending store is (which symbol it is, the sweep checks by name).
        The qcfg register is left out: every loadq is emitted after its own qcfg, so nothing
        emitted reads it, and its scales address moves with the tiles like any operand (a pim
        queue's mode, the same register, is the PIM lowering's own tracked state)."""
        top = self._stores_signalled
        return (self._sems, len(self.addresses), frozenset(self._strides.items()),
                tuple(sorted((q, top - n) for q, n in self._stores_waited.items())),
                tuple(sorted(top - t for t in self._pending.values())),
                self._barrier is None, frozenset(self._config_key.items()),
                tuple(obj.sweep_key() for obj in self._tracked))

    def sweep_counts(self) -> tuple[tuple[int, ...], ...]:
        return (self._stores_signalled, *(n for _, n in sorted(self._stores_waited.items()))), \
            *(obj.sweep_counts() for obj in self._tracked)

    def sweep_room(self, now: tuple, before: tuple) -> int | None:
        """Periods the counters may still move on from `now`, each by `now - before`."""
        rooms = [obj.sweep_room([a - b for a, b in zip(x, y)])
                 for obj, x, y in zip(self._tracked, now[1:], before[1:]) if x]
        rooms = [r for r in rooms if r is not None]
        return min(rooms) if rooms else None

    def advance_counts(self, now: tuple, before: tuple, periods: int) -> None:
        """Move the counters on by `periods` more steps of `now - before`."""
        moved = [a + periods * (a - b) for a, b in zip(now[0], before[0])]
        self._stores_signalled = moved[0]
        for q, n in zip(sorted(self._stores_waited), moved[1:]):
            self._stores_waited[q] = n
        for obj, x, y in zip(self._tracked, now[1:], before[1:]):
            if x:
                obj.sweep_set([a + periods * (a - b) for a, b in zip(x, y)])

    @property
    def store_tokens(self) -> int:
        """Store tokens signalled so far (each store's symbol is in `stores_since`)."""
        return len(self._store_log)

    def stores_since(self, token: int) -> list[str]:
        """The symbols of the store tokens after `token`, in order."""
        return self._store_log[token:]

    def replay_stores(self, names: list[str]) -> None:
        """Record the next store tokens as stores of `names` (those of loop iterations a sweep
        did not emit, as their lowering would have recorded them; the signalled count has
        been moved on past them already), and which of them a waiting queue still lacks."""
        low = min(self._stores_waited.values(), default=0)
        self._pending = {s: t for s, t in self._pending.items() if t > low}
        for name in names:
            self._store_log.append(name)
            token = len(self._store_log)
            self._ready_token[name] = token
            if token > low:
                self._pending[name] = token
            else:
                self._pending.pop(name, None)

    @property
    def link_tokens(self) -> int:
        """All-reduces emitted so far (each one's symbol is in `links_since`)."""
        return len(self._link.log) if self._link is not None else 0

    def links_since(self, token: int) -> list[str]:
        return self._link.log[token:] if self._link is not None else []

    def replay_links(self, names: list[str]) -> None:
        """Record the next collectives as those of `names` (a sweep's periods not emitted; the
        counters have been moved on past them already), as `replay_stores` does stores."""
        for name in names:
            self._link.record(name)

    def queue_configs(self) -> dict[str, QueueConfig]:
        return dict(self._config)

    def queue_config(self, queue: str) -> QueueConfig | None:
        """The queue's configuration registers now (None: never configured)."""
        return self._config.get(queue)

    def semaphore(self) -> int:
        self._sems += 1
        if self._sems > 0xFFFF:
            raise CompileError("program needs more than 65536 semaphores")
        return self._sems - 1

    def emit(self, queue: str, opcode: str, **fields) -> None:
        """Append one instruction; equal ones (same queue, opcode and operands, compared with
        their types) share one checked object, as in `emit_fast`."""
        key = (queue, opcode, *fields.items(), *map(type, fields.values()))
        instr = self._made.get(key)
        if instr is None:
            instr = self._made[key] = Instr.make(opcode, queue, **fields)
        self.instructions.append(instr)
        if opcode in CONFIG_OPCODES:
            self._configure(queue, instr)

    def _configure(self, queue: str, instr: Instr) -> None:
        """The queue's registers after the *cfg `instr`. Configurations and instructions are
        shared objects, so each (configuration, instruction) step is worked out once, by
        identity; `sweep_key` then compares numbers, not configurations field by field."""
        before = self._config.get(queue, _RESET)
        step = self._steps.get((id(before), id(instr)))
        if step is None:                # both kept in the step: their ids are not reused
            config = before.after(instr)
            config = self._configs.setdefault(config, config)
            bare = config if config.qcfg is None else QueueConfig(
                config.src_stride, config.dst_stride, config.mcfg, config.vcfg)
            step = self._steps[id(before), id(instr)] = (
                before, instr, config, self._numbers.setdefault(bare, len(self._numbers)))
        self._config[queue], self._config_key[queue] = step[2], step[3]

    def emit_repeated(self, count: int, moves: dict[str, int], queue: str, opcode: str,
                      **fields) -> None:
        """One instruction `count` times, the address fields named in `moves` moving by that
        many bytes each time: one loop of one word (every instance, under `flat_emission`)."""
        moving = {name: delta for name, delta in moves.items() if delta}
        if count > 1 and moving and not _sweep.flat():
            names = _FIELD_ORDER[opcode]
            self.instructions.extend(loop_words(count, 1, [(0, names.index(name), delta)
                                                               for name, delta in moving.items()]))
            self.emit(queue, opcode, **fields)
            return
        for k in range(count):
            self.emit(queue, opcode, **{**fields, **{name: fields[name] + k * delta
                                                      for name, delta in moving.items()}})

    def emit_fast(self, queue: str, opcode: str, *values) -> None:
        """Hot loops: operands already canonical (ints, Addr) in the opcode's field order.
        They are not range-checked here: `isa.verify` (run by every simulation and every
        `tessel compile`) checks each field against its width and the machine's limits."""
        key = (queue, opcode, values)
        instr = self._interned.get(key)
        if instr is None:           # equal instructions share one object (fewer objects to
            instr = self._interned[key] = Instr(opcode, Queue.parse(queue),   # check and time)
                                                tuple(zip(_FIELD_ORDER[opcode], values)))
        self.instructions.append(instr)

    def place(self, symbol: isa.Symbol) -> None:
        """Make a placed buffer addressable by DMA (its byte address and element size)."""
        self.addresses[symbol.name] = symbol.addr
        self.itemsize[symbol.name] = symbol.dtype.itemsize

    def begin_op(self, name: str) -> None:
        count = len(self.instructions)
        if self._limit is not None and count > self._limit:
            raise InstructionLimitError(count, self._limit)
        self.op_starts.append((count, name))

    def barrier(self, queues: tuple[str, ...]) -> None:
        """Every queue of `queues` waits until all of them have reached this point: the rest
        signal the first, which then releases each (semaphores made on first use)."""
        first, rest = queues[0], queues[1:]
        if self._barrier is None:
            self._barrier = (self.semaphore(), {q: self.semaphore() for q in rest})
        arrive, go = self._barrier
        for q in rest:
            self.emit(q, "signal", sem=arrive)
        for q in rest:
            self.emit(first, "wait", sem=arrive)
        for q in rest:
            self.emit(first, "signal", sem=go[q])
            self.emit(q, "wait", sem=go[q])

    # -- DMA between DRAM buffers and on-chip tiles --------------------------------------
    def pitch(self, queue: str, src: int, dst: int) -> None:
        """Set the queue's DMA row pitches (bytes), emitting dmacfg only when they change."""
        if self._strides.get(queue, (0, 0)) != (src, dst):
            self._strides[queue] = (src, dst)
            self.emit(queue, "dmacfg", src_stride=src, dst_stride=dst)

    def space_of(self, symbol: str) -> str:
        """The memory space a placed symbol lives in (every one in DRAM here)."""
        return "dram"

    def dram(self, m: Matrix) -> Addr:
        if m.symbol in self.quantised:
            raise CompileError(f"'{m.symbol}' is stored quantised: only a load reads it "
                               "(dequantised, loadq)")
        return Addr(self.space_of(m.symbol), self.addresses[m.symbol] + m.offset * self.itemsize[m.symbol])

    def place_quantised(self, codes: isa.Symbol, scales: isa.Symbol, fmt: StoredFormat,
                        dtype: isa.DType) -> None:
        """A weight stored as packed codes and their scales (compiler/passes/quantised.py), both
        in one space: a `load` of a window of it dequantises to `dtype` (qcfg + loadq)."""
        self.place(codes)
        self.place(scales)
        self.quantised[codes.name] = (fmt, scales.addr, dtype)

    def load(self, queue: str, dst: Addr, m: Matrix) -> None:
        """DMA a DRAM window into a dense on-chip tile."""
        if m.symbol in self.quantised:
            if self.quantised[m.symbol][0].layout == "rows":
                self._rows_quantised(queue, "loadq", m, dst)
            else:
                self._load_quantised(queue, dst, m)
            return
        size = self.itemsize[m.symbol]
        self.pitch(queue, m.stride * size if m.rows > 1 else 0, 0)
        self.emit(queue, "load", dst=dst, src=self.dram(m), rows=m.rows, row_bytes=m.cols * size)

    def _load_quantised(self, queue: str, dst: Addr, m: Matrix) -> None:
        """A window of a quantised weight, dequantised on the way in: a qcfg (the scale row of
        its first rows' group, and how later groups' rows follow: `group` rows a scale row,
        `pitch` scales apart) and a loadq, for the rows up to the first group boundary and
        again for the rest. The qcfg is emitted before every loadq, never elided when
        unchanged, so that what is emitted does not depend on the register (a sweep's state
        leaves it out, `sweep_key`)."""
        fmt, scales, dtype = self.quantised[m.symbol]
        if m.rows > 1 and m.stride != fmt.cols:
            raise CompileError(f"'{m.symbol}': a window with rows {m.stride} elements apart; its "
                               f"quantised rows hold {fmt.cols}")
        first, c0 = divmod(m.offset, fmt.cols)
        if (c0 % 8 if fmt.layout == "planes" else c0 * fmt.bits % 8) or c0 + m.cols > fmt.cols:
            raise CompileError(f"'{m.symbol}': a tile at column {c0} of {m.cols} columns does not "
                               f"start on a byte of its {fmt.format} codes, or runs past its "
                               f"{fmt.cols} columns")
        base, size, space = self.addresses[m.symbol], dtype.itemsize, self.space_of(m.symbol)
        size_of = fmt.code.scale_bytes
        strided = not fmt.per_tensor and fmt.cols <= _MAX_PITCH   # scale rows a qcfg can step
        r = 0
        while r < m.rows:
            row = first + r                 # over the weight's leading axes too: the scale
            lead = fmt.group - row % fmt.group      # rows run on, one per group, across them
            n = m.rows - r if strided and lead == fmt.group else min(m.rows - r, lead)
            at = scales if fmt.per_tensor else scales + size_of * ((row // fmt.group) * fmt.cols + c0)
            group = fmt.group if n > fmt.group else 0
            self.pitch(queue, fmt.row_bytes if n > 1 else 0, 0)
            self.emit(queue, "qcfg", fmt=fmt.format, dtype=dtype, cols=m.cols,
                      step=0 if fmt.per_tensor else size_of, scales=Addr(space, at),
                      group=group, pitch=fmt.cols if group else 0)
            at_dst = Addr(dst.space, dst.addr + r * m.cols * size)
            if fmt.layout == "planes":          # the top read_bits planes of each code's row
                self.emit(queue, "loadp", dst=at_dst, src=Addr(space, base + row * fmt.row_bytes + c0 // 8),
                          rows=n, planes=fmt.read_bits or fmt.bits, plane_bytes=-(-fmt.cols // 8))
            else:
                self.emit(queue, "loadq", dst=at_dst,
                          src=Addr(space, base + row * fmt.row_bytes + c0 * fmt.bits // 8), rows=n)
            r += n

    def _rows_quantised(self, queue: str, op: str, m: Matrix, tile: Addr) -> None:
        """A window of a KV cache stored as codes with a scale per `group` columns of each row
        (compiler/passes/quantised.py, layout "rows"), read (loadq) or written (storeq) a
        column group at a time: a qcfg of `group` columns with one scale a row (step 0), the
        next row's `pitch` = cols / group scales on; the dense on-chip tile's rows lie
        m.cols values apart."""
        fmt, scales, dtype = self.quantised[m.symbol]
        g, size = fmt.group, dtype.itemsize
        first, c0 = divmod(m.offset, fmt.cols)
        if (m.rows > 1 and m.stride != fmt.cols) or c0 % g or m.cols % g:
            raise CompileError(f"'{m.symbol}': a window of {m.rows} x {m.cols} at column {c0} does "
                               f"not take whole {g}-column scale groups of its {fmt.format} rows")
        base, space = self.addresses[m.symbol], self.space_of(m.symbol)
        per_row = fmt.cols // g                         # scales a row
        tile_pitch, code_pitch = (m.cols * size, fmt.row_bytes) if m.rows > 1 else (0, 0)
        if op == "loadq":
            self.pitch(queue, code_pitch, tile_pitch)
        else:
            self.pitch(queue, tile_pitch, code_pitch)
        for c in range(c0, c0 + m.cols, g):
            self.emit(queue, "qcfg", fmt=fmt.format, dtype=dtype, cols=g, step=0,
                      scales=Addr(space, scales + fmt.code.scale_bytes * (first * per_row + c // g)),
                      group=1, pitch=per_row)
            codes = Addr(space, base + first * fmt.row_bytes + c * fmt.bits // 8)
            on_chip = Addr(tile.space, tile.addr + (c - c0) * size)
            if op == "loadq":
                self.emit(queue, "loadq", dst=on_chip, src=codes, rows=m.rows)
            else:
                self.emit(queue, "storeq", dst=codes, src=on_chip, rows=m.rows)

    def store(self, queue: str, m: Matrix, src: Addr) -> None:
        """DMA a dense on-chip tile into a DRAM window (a narrow KV cache's: storeq)."""
        if m.symbol in self.quantised:
            if self.quantised[m.symbol][0].layout != "rows":
                raise CompileError(f"'{m.symbol}': a store into a weight stored as codes")
            self._rows_quantised(queue, "storeq", m, src)
            return
        size = self.itemsize[m.symbol]
        self.pitch(queue, 0, m.stride * size if m.rows > 1 else 0)
        self.emit(queue, "store", dst=self.dram(m), src=src, rows=m.rows, row_bytes=m.cols * size)

    # -- ordering DRAM reads after the stores that produce them --------------------------
    def stored(self, queue: str, symbol: str) -> None:
        """After the last store of `symbol`: one token on the store semaphore."""
        self.emit(queue, "signal", sem=self._store_sem)
        self._stores_signalled += 1
        self._ready_token[symbol] = self._stores_signalled
        self._store_log.append(symbol)
        self._pending[symbol] = self._stores_signalled

    def link_collective(self, writer: str, symbol: str, **coll) -> None:
        """A collective on `symbol` in place on the link queue (`coll` with the fields `coll`:
        an all-reduce, all-gather or all-to-all): it starts once `writer`, which stored this
        rank's part last, signals it, and the queue that reads the result waits for it there
        (`before_read`), so neither waits for the link meanwhile (one half's all-reduce runs
        under the other half's compute, compiler/parallel/overlap.py). One pair of semaphores
        for every collective, so that layers emit alike."""
        if self._link is None:
            self._link = _LinkTokens(self.semaphore(), self.semaphore())
            self.track(self._link)
        link = self._link
        self.emit(writer, "signal", sem=link.go)
        self.emit(LINK_QUEUE, "wait", sem=link.go)
        self.emit(LINK_QUEUE, "coll", **coll)
        self.emit(LINK_QUEUE, "signal", sem=link.done)
        link.signalled += 1
        link.record(symbol)

    def link_wait(self, queue: str, symbol: str) -> None:
        """`queue` waits until the link's last collective of `symbol` (if any) is done."""
        if self._link is not None:
            self._link.before_read(self, queue, symbol)

    def before_read(self, queue: str, symbol: str) -> None:
        """Before `queue` first loads `symbol`: wait until its producer's store has finished
        (and, for a collective's result, the link's collective)."""
        if self.link_reader in (None, queue):
            self.link_wait(queue, symbol)
        token = self._ready_token.get(symbol)
        done = self._stores_waited.get(queue, 0)
        while token is not None and done < token:
            self.emit(queue, "wait", sem=self._store_sem)
            done += 1
        if done != self._stores_waited.get(queue, 0) or queue not in self._stores_waited:
            self._stores_waited[queue] = done
            low = min(self._stores_waited.values())
            self._pending = {s: t for s, t in self._pending.items() if t > low}

    def program(self, spaces: tuple[str, ...], symbols: tuple[isa.Symbol, ...],
                queues: tuple[str, ...], data=None) -> isa.Program:
        """The program, once every op is emitted (each queue halts). The emitter hands its
        instruction list over: a target's lowering objects refer to each other, so without
        the cyclic collector (paused while compiling) they, and the list, outlive the call."""
        for q in queues:
            self.emit(q, "halt")
        if self._limit is not None and len(self.instructions) > self._limit:
            raise InstructionLimitError(len(self.instructions), self._limit)
        instructions = tuple(self.instructions)
        self.instructions = []
        self._interned.clear()
        self._made.clear()
        return isa.Program(self.target, isa.ISA_VERSION, spaces, symbols, instructions,
                           data, ops=tuple(self.op_starts))


@dataclass(frozen=True, slots=True)
class RingSpec:
    """Where a ring's slots sit and which queues pass them: a planning result, no semaphores."""

    name: str
    space: str
    base: int            # byte address of slot 0
    slot_bytes: int
    slots: int
    producer: str
    consumer: str

    def dump(self) -> str:
        return (f"{self.name}: {self.space}[{self.base:#x}] {self.slots} x {self.slot_bytes:,} bytes, "
                f"{self.producer} -> {self.consumer}")


def ring_specs(space: str, area_bytes: int, shares: dict[str, float],
               queues: dict[str, tuple[str, str]], align: int) -> tuple[tuple[RingSpec, ...], int]:
    """Double-buffered rings packed from address 0 of `space`, ring r taking `shares[r]` of
    `area_bytes` per slot (aligned down); returns the rings (in `queues` order) and the first
    byte after them."""
    out, base = [], 0
    for name, (producer, consumer) in queues.items():
        slot = int(area_bytes * shares[name]) // align * align
        out.append(RingSpec(name, space, base, slot, 2, producer, consumer))
        base += 2 * slot
    return tuple(out), base


class Ring(Tracked):
    """`slots` equal on-chip slots passed from one producer queue to one consumer queue.

    acquire() gives the next slot (waiting for its free token once every slot has been
    used), filled() hands it over, take() waits for it on the consumer, release() frees it.
    Building a ring takes its two semaphores from the emitter (so build order numbers them).
    """

    def __init__(self, em: Emitter, spec: RingSpec) -> None:
        self.em, self.spec = em, spec
        self.space, self.base, self.slot_bytes, self.slots = spec.space, spec.base, spec.slot_bytes, spec.slots
        self.producer, self.consumer = spec.producer, spec.consumer
        self.full, self.free = em.semaphore(), em.semaphore()
        self.uses = 0
        em.track(self)

    def sweep_key(self) -> tuple[bool, int]:
        """The slot in turn and whether the first round is over (acquire waits from then on)."""
        return self.uses >= self.slots, self.uses % self.slots

    def sweep_counts(self) -> tuple[int]:
        return (self.uses,)

    def sweep_set(self, counts: Sequence[int]) -> None:
        (self.uses,) = counts

    def acquire(self) -> Addr:
        if self.uses >= self.slots:
            self.em.emit(self.producer, "wait", sem=self.free)
        slot = self.uses % self.slots
        self.uses += 1
        return Addr(self.space, self.base + slot * self.slot_bytes)

    def align(self) -> None:
        """Pass over the slots left in this round (acquired and at once freed, nothing in
        them), so that the next acquire gets slot 0: a layer that starts every ring at slot 0
        emits what the layer before emitted, whatever its count of uses (compiler/targets/
        layers.py)."""
        while self.uses % self.slots:
            if self.uses >= self.slots:
                self.em.emit(self.producer, "wait", sem=self.free)
            self.uses += 1
            self.em.emit(self.consumer, "signal", sem=self.free)

    def filled(self) -> None:
        self.em.emit(self.producer, "signal", sem=self.full)

    def take(self) -> None:
        self.em.emit(self.consumer, "wait", sem=self.full)

    def release(self) -> None:
        self.em.emit(self.consumer, "signal", sem=self.free)

