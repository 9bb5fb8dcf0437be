"""Numeric execution of the tile ISA: byte-addressed memories and one instruction at a time.

    memory = Memory({"dram": 1 << 30, "sram": 1 << 20, "acc": 1 << 18})
    memory.load_program_data(program)
    executor = FunctionalExecutor(program, memory)
    for index in schedule:               # any order that keeps each queue's program order
        executor.execute(index)
    result = memory.read_symbol(program, "out")

Semantics are those of docs/isa.md. Arithmetic is done in float64 (exact integer arithmetic for
integer tiles where the result stays integer) and rounded once to the destination type by
`isa.numerics`. Timing is not modelled here; the machine models in sim/machines decide when
each instruction runs. PIM and dataflow opcodes have no numeric model yet and raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from isa import Addr, ConfigError, DType, Instr, Program, Queue, QueueConfig, gather_row_bytes
from isa.footprint import loadp_rows, storeq_qcfg
from isa.opcodes import OPCODES, VEC_BINARY, VEC_IMMEDIATE, VEC_UNARY
from isa.numerics import Codec, codec
from isa.packing import pack_patterns, packed_row_bytes, unpack_patterns, unpack_planes
from isa.qformats import (CodeFormat, code_format, code_patterns, code_values, formats_args,
                          group_error, scale_patterns, scale_values)

__all__ = ["FunctionalError", "Memory", "FunctionalExecutor"]

_INDEX_STORAGE = np.dtype("<i4")  # gather indices are int32 (docs/isa.md, gather)
_GELU_SCALE = math.sqrt(2.0 / math.pi)  # tanh form of GELU: Hendrycks & Gimpel 2016, eq. 2
_GELU_CUBIC = 0.044715  # same source; GPT-2's gelu_new uses these constants


class FunctionalError(ValueError):
    """A program that cannot be executed numerically; `index` is the instruction, when known."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class Memory:
    """One zeroed byte buffer per named memory space; reads and writes dense typed tiles.

    spaces: name -> the space's size in bytes. held: name -> how many of its first bytes are
    allocated (default: all). A simulator allocates only what a program can reach (its
    symbols and instruction footprints), not a 16 GiB DRAM; an access beyond the space is an
    error naming the space's size, one inside the space but beyond `held` an error naming
    both. Nothing wraps or grows.
    """

    __slots__ = ("_buffers", "_sizes")

    def __init__(self, spaces: Mapping[str, int], held: Mapping[str, int] | None = None) -> None:
        buffers, sizes = {}, {}
        for name, size_bytes in spaces.items():
            if type(name) is not str or not name:
                raise FunctionalError(f"memory space name {name!r} must be a non-empty str")
            if type(size_bytes) is not int or size_bytes < 0:
                raise FunctionalError(f"memory space {name}: size {size_bytes!r} must be a "
                                      f"non-negative int (bytes)")
            allocated = size_bytes if held is None else held.get(name, 0)
            if type(allocated) is not int or not 0 <= allocated <= size_bytes:
                raise FunctionalError(f"memory space {name}: held {allocated!r} must be an int "
                                      f"in [0, {size_bytes}] (bytes)")
            buffers[name] = np.zeros(allocated, dtype=np.uint8)
            sizes[name] = size_bytes
        unknown = [name for name in held or () if name not in sizes]
        if unknown:
            raise FunctionalError(f"held: no memory space {unknown[0]} "
                                  f"(spaces: {' '.join(sizes)})")
        self._buffers: dict[str, np.ndarray] = buffers
        self._sizes: dict[str, int] = sizes

    @property
    def spaces(self) -> dict[str, int]:
        """Space name -> size in bytes."""
        return dict(self._sizes)

    @property
    def held(self) -> dict[str, int]:
        """Space name -> bytes allocated (from address 0)."""
        return {name: buffer.size for name, buffer in self._buffers.items()}

    def read_bytes(self, addr: Addr | str, size_bytes: int) -> np.ndarray:
        """A copy of `size_bytes` bytes at `addr` (uint8)."""
        return _span(self._buffers, self._sizes, Addr.of(addr), size_bytes, "read").copy()

    def write_bytes(self, addr: Addr | str, data: np.ndarray | bytes) -> None:
        """Store raw bytes at `addr`."""
        raw = np.frombuffer(bytes(data), np.uint8) if isinstance(data, bytes) else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        _span(self._buffers, self._sizes, Addr.of(addr), raw.size, "write")[:] = raw

    def read(self, addr: Addr | str, shape: int | tuple[int, ...],
             dtype: DType | str) -> np.ndarray:
        """The dense row-major tile of `shape` at `addr`: float64, or int64 for integer types."""
        found = codec(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shape)
        raw = _span(self._buffers, self._sizes, Addr.of(addr), count * found.itemsize, "read")
        return found.decode(raw.view(found.storage)).reshape(shape)

    def write(self, addr: Addr | str, values: np.ndarray, dtype: DType | str) -> None:
        """Round `values` to `dtype` (isa.numerics rules) and store them densely at `addr`."""
        found = codec(dtype)
        values = np.asarray(values).reshape(-1)
        raw = _span(self._buffers, self._sizes, Addr.of(addr), values.size * found.itemsize, "write")
        with np.errstate(all="ignore"):
            raw.view(found.storage)[:] = found.encode(values)

    def load_program_data(self, program: Program) -> None:
        """Copy each array of `program.data` to its symbol's place (bf16 as uint16 bits)."""
        for name, array in (program.data or {}).items():
            try:
                symbol = program.symbol(name)
            except KeyError:
                raise FunctionalError(f"data {name}: no symbol of that name") from None
            if array.shape != symbol.shape:
                raise FunctionalError(f"data {name}: shape {array.shape} but the symbol is "
                                      f"{symbol.shape}")
            if array.dtype != symbol.dtype.storage:
                raise FunctionalError(f"data {name}: dtype {array.dtype} but a {symbol.dtype} "
                                      f"symbol is stored as {symbol.dtype.storage}")
            where = Addr(symbol.space, symbol.addr)
            raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            _span(self._buffers, self._sizes, where, raw.size, f"data {name}")[:] = raw

    def read_symbol(self, program: Program, name: str) -> np.ndarray:
        """The current value of symbol `name` (float64, or int64 for integer types)."""
        symbol = program.symbol(name)
        return self.read(Addr(symbol.space, symbol.addr), symbol.shape, symbol.dtype)


def _span(buffers: Mapping[str, np.ndarray], sizes: Mapping[str, int], addr: Addr,
          size_bytes: int, role: str) -> np.ndarray:
    """The bytes [addr, addr + size_bytes) of addr's space, as a writable view (`sizes`: the
    spaces' full sizes; the buffers may hold less)."""
    buffer = buffers.get(addr.space)
    if buffer is None:
        raise FunctionalError(f"{role}: no memory space {addr.space} "
                              f"(spaces: {' '.join(buffers)})")
    start = addr.addr
    end = start + size_bytes
    if end > buffer.size:
        size = sizes[addr.space]
        if end > size:
            raise FunctionalError(f"{role}: address range {addr.space}[{start:#x}, {end:#x}) "
                                  f"exceeds space {addr.space} of {size} bytes")
        raise FunctionalError(f"{role}: address range {addr.space}[{start:#x}, {end:#x}) is "
                              f"beyond the {buffer.size} bytes held for space {addr.space} (what "
                              f"the program's symbols and instructions reach)")
    return buffer[start:end]


class _QueueState:
    """Configuration registers of one queue, with the mcfg/vcfg/qcfg fields decoded once."""

    __slots__ = ("src_pitch", "dst_pitch", "mcfg", "vcfg", "qcfg", "gemm", "vec", "quant")

    def __init__(self) -> None:
        self.src_pitch = 0
        self.dst_pitch = 0
        self.mcfg: Instr | None = None
        self.vcfg: Instr | None = None
        self.qcfg: Instr | None = None
        self.gemm: tuple[int, int, int, Codec, Codec] | None = None  # m, n, k, dtype, acc
        self.vec: tuple[int, int, Codec, Codec, float] | None = None  # rows, cols, dtype, out, imm
        # loadq's, loadp's and storeq's code format, dtype, cols, step, scales address, group
        # and pitch
        self.quant: tuple[CodeFormat, Codec, int, int, Addr, int, int] | None = None


_Handler = Callable[[Instr, _QueueState], None]


class FunctionalExecutor:
    """Executes instructions of `program` on `memory`, one at a time, by index.

    The caller runs each queue's instructions in program order; queues may interleave in any
    order (their data dependencies go through semaphores, which only the timing model sees).
    """

    __slots__ = ("_instructions", "_buffers", "_sizes", "_queues", "_dispatch")

    def __init__(self, program: Program, memory: Memory, *,
                 models: Mapping[str, Callable[[Instr], None]] | None = None) -> None:
        """models: handlers for opcodes without a built-in model (pim.*, df.*), each called
        with the instruction; a FunctionalError it raises gets the instruction's name."""
        missing = [name for name in program.spaces if name not in memory._buffers]
        if missing:
            raise FunctionalError(f"program: space {missing[0]} is not in memory "
                                  f"(spaces: {' '.join(memory._buffers)})")
        self._instructions = program.instructions
        self._buffers = memory._buffers
        self._sizes = memory._sizes
        self._queues: dict[Queue, _QueueState] = {}
        handlers: dict[str, _Handler] = {
            "halt": _nothing, "signal": _nothing, "wait": _nothing,
            "dmacfg": _dmacfg, "mcfg": _mcfg, "vcfg": _vcfg, "qcfg": _qcfg, "mfmt": _nothing,
            "load": self._copy_rows, "store": self._copy_rows, "gather": self._gather,
            "gatherw": self._gather, "loadq": self._loadq, "loadp": self._loadp,
            "storeq": self._storeq,
            "gemm": self._gemm, "vec": self._vec, "red": self._red, "vquant": self._vquant,
        }
        for opcode, model in (models or {}).items():
            if opcode not in OPCODES or opcode in handlers:
                extensions = " ".join(op for op in OPCODES if op not in handlers)
                raise FunctionalError(f"models: {opcode!r} is not an opcode without a built-in "
                                      f"model ({extensions})")
            handlers[opcode] = _adapt(model)
        self._dispatch = {op: handlers.get(op, _no_model) for op in OPCODES}

    def config(self, queue: Queue | str) -> QueueConfig:
        """The configuration registers of `queue` as they stand now."""
        state = self._queues.get(Queue.of(queue)) or _QueueState()
        return QueueConfig(state.src_pitch, state.dst_pitch, state.mcfg, state.vcfg, state.qcfg)

    def execute(self, index: int) -> None:
        """Apply instruction `index` to memory (and to its queue's configuration)."""
        instructions = self._instructions
        if not 0 <= index < len(instructions):
            raise FunctionalError(f"instruction {index}: out of range (the program has "
                                  f"{len(instructions)} instructions)", index)
        instr = instructions[index]
        state = self._queues.get(instr.queue)
        if state is None:
            state = self._queues[instr.queue] = _QueueState()
        try:
            self._dispatch[instr.opcode](instr, state)
        except FunctionalError as error:
            raise FunctionalError(f"instruction {index} ({instr.queue} {instr.opcode}): {error}",
                                  index) from None

    # ---- memory access ---------------------------------------------------------------------

    def _tile(self, addr: Addr, count: int, found: Codec, role: str) -> np.ndarray:
        raw = _span(self._buffers, self._sizes, addr, count * found.itemsize, role)
        return found.decode(raw.view(found.storage))

    def _put(self, addr: Addr, values: np.ndarray, found: Codec, role: str) -> None:
        raw = _span(self._buffers, self._sizes, addr, values.size * found.itemsize, role)
        raw.view(found.storage)[:] = found.encode(values).reshape(-1)

    def _rows(self, addr: Addr, rows: int, row_bytes: int, pitch: int, role: str) -> np.ndarray:
        """A (rows, row_bytes) uint8 view of rows `pitch` bytes apart starting at `addr`."""
        span = _span(self._buffers, self._sizes, addr, (rows - 1) * pitch + row_bytes, role)
        if pitch == row_bytes:
            return span.reshape(rows, row_bytes)
        buffer = self._buffers[addr.space]
        if pitch > row_bytes and addr.addr + rows * pitch <= buffer.size:
            return buffer[addr.addr:addr.addr + rows * pitch].reshape(rows, pitch)[:, :row_bytes]
        return np.lib.stride_tricks.as_strided(span, (rows, row_bytes), (pitch, 1))

    # ---- data movement -----------------------------------------------------------------------

    def _copy_rows(self, instr: Instr, state: _QueueState) -> None:
        """load/store: dst[r*dst_pitch : +row_bytes] = src[r*src_pitch : +row_bytes]."""
        (_, dst), (_, src), (_, rows), (_, row_bytes) = instr.fields
        if rows == 0 or row_bytes == 0:
            return
        src_pitch = state.src_pitch or row_bytes
        dst_pitch = state.dst_pitch or row_bytes
        if src_pitch == dst_pitch == row_bytes:
            size_bytes = rows * row_bytes
            _span(self._buffers, self._sizes, dst, size_bytes, "dst")[:] = \
                _span(self._buffers, self._sizes, src, size_bytes, "src")
            return
        source = self._rows(src, rows, row_bytes, src_pitch, "src")
        target = self._rows(dst, rows, row_bytes, dst_pitch, "dst")
        if dst_pitch >= row_bytes:
            target[...] = source
        else:  # destination rows overlap: later rows win, as in the pseudo-code
            source = source.copy()
            for r in range(rows):
                target[r] = source[r]

    def _loadq(self, instr: Instr, state: _QueueState) -> None:
        """dst row r = dtype(value(unpack(src row r)) * scales), the product exact in float64
        (a code of at most 8 significant bits times an fp16, fp32 or power-of-two scale),
        rounded once to dtype; pitches from dmacfg as for load."""
        if state.quant is None:
            raise FunctionalError("loadq before any qcfg on this queue")
        fmt, _, cols, *_ = state.quant
        (_, dst), (_, src), (_, rows) = instr.fields
        if rows == 0:
            return
        packed = packed_row_bytes(cols, fmt.bits)
        codes = code_values(unpack_patterns(self._rows(src, rows, packed, state.src_pitch or packed,
                                                       "src"), fmt.bits, cols), fmt)
        self._put_scaled(dst, codes, state)

    def _loadp(self, instr: Instr, state: _QueueState) -> None:
        """dst row r = dtype(code * scales), code the middle of the W-bit codes the top
        `planes` bit planes of src row r stand for (compiler/quant/nested.py's nested_read),
        the product exact in float64 and rounded once as loadq's; src rows src_pitch apart
        (0: W * plane_bytes, a stored weight's whole rows), dst rows as for loadq."""
        try:
            found = loadp_rows(instr, QueueConfig(state.src_pitch, qcfg=state.qcfg))
        except ConfigError as error:
            raise FunctionalError(str(error)) from None
        (_, dst), (_, src), (_, rows), (_, planes), (_, plane_bytes) = instr.fields
        if rows == 0:
            return
        cols, k = state.quant[2], found.bits - planes
        top = unpack_planes(self._rows(src, rows, found.span, found.stride, "src"), planes, cols,
                            plane_bytes)
        middle = (1 << k) // 2 - (1 << (found.bits - 1))   # 2^(k-1) (k >= 1) - 2^(W-1)
        self._put_scaled(dst, top.astype(np.float64) * (1 << k) + middle, state)

    def _put_scaled(self, dst: Addr, codes: np.ndarray, state: _QueueState) -> None:
        """dst row r = dtype(codes[r] * its scales): the qcfg's scale rows as loadq reads them,
        the product exact in float64, rounded once; rows dst_pitch apart (0: dense)."""
        fmt, out, cols, step, scales, group, pitch = state.quant
        rows, row_bytes, size = codes.shape[0], cols * out.itemsize, fmt.scale_bytes
        if group:           # scale row j for rows j*group ..: pitch scales apart
            starts = [Addr(scales.space, scales.addr + j * pitch * size)
                      for j in range((rows - 1) // group + 1)]
            per_row = np.stack([scale_values(self._rows(at, cols, size, step, "scales"), fmt)
                                for at in starts])
            scale = np.repeat(per_row, group, axis=0)[:rows]
        else:
            scale = scale_values(self._rows(scales, cols, size, step, "scales"), fmt)
        with np.errstate(all="ignore"):
            values = np.ascontiguousarray(out.encode(codes * scale))
        target = self._rows(dst, rows, row_bytes, state.dst_pitch or row_bytes, "dst")
        encoded = values.view(np.uint8).reshape(rows, row_bytes)
        if (state.dst_pitch or row_bytes) >= row_bytes:
            target[...] = encoded
        else:  # destination rows overlap: later rows win, as in the pseudo-code
            for r in range(rows):
                target[r] = encoded[r]

    def _storeq(self, instr: Instr, state: _QueueState) -> None:
        """The src rows (of dtype) as isa.formats.quantize makes each row group, a tensor of
        its own (`_quantise_blocks`): dst row r = its codes packed (isa/packing.py), scale row
        j = the group's scale at the qcfg's scales + j*pitch*size(scale); pitches from dmacfg
        as for store. A loadq of the same rows under the same qcfg reads back dequantize."""
        try:
            storeq_qcfg(instr, QueueConfig(qcfg=state.qcfg))
        except ConfigError as error:
            raise FunctionalError(str(error)) from None
        fmt, item, cols, _, scales, group, pitch = state.quant
        (_, dst), (_, src), (_, rows) = instr.fields
        if rows == 0:
            return
        packed, row_bytes = packed_row_bytes(cols, fmt.bits), cols * item.itemsize
        raw = self._rows(src, rows, row_bytes, state.src_pitch or row_bytes, "src")
        tile = item.decode(np.ascontiguousarray(raw).view(item.storage))
        codes, scale = _quantise_groups(tile, fmt, group or rows)
        encoded = pack_patterns(code_patterns(codes, fmt), fmt.bits)
        target = self._rows(dst, rows, packed, state.dst_pitch or packed, "dst")
        if (state.dst_pitch or packed) >= packed:
            target[...] = encoded
        else:  # destination rows overlap: later rows win, as in the pseudo-code
            for r in range(rows):
                target[r] = encoded[r]
        size = fmt.scale_bytes
        stored = scale_patterns(scale, fmt)
        stored = stored.astype(stored.dtype.newbyteorder("<")).view(np.uint8).reshape(-1, size)
        if pitch == 0:      # every scale row at `scales` (group 0: there is one): the last wins
            stored = stored[-1:]
        self._rows(scales, len(stored), size, pitch * size or size, "scales")[...] = stored

    def _gather(self, instr: Instr, state: _QueueState) -> None:
        """dst[i*w : (i+1)*w] = table[idx[i]*pitch : idx[i]*pitch + w]: pitch = dmacfg
        src_stride, w = dst_stride (a column slice of each row) or the whole row."""
        (_, dst), (_, table), (_, idx), (_, n) = instr.fields
        try:
            row_bytes = gather_row_bytes(QueueConfig(state.src_pitch, state.dst_pitch))
        except ConfigError as e:
            raise FunctionalError(str(e)) from None
        pitch = state.src_pitch
        if n == 0:
            return
        index_bytes = n * _INDEX_STORAGE.itemsize
        indices = _span(self._buffers, self._sizes, idx, index_bytes, "idx").view(_INDEX_STORAGE)
        _span(self._buffers, self._sizes, table, 0, "table")  # the space exists
        size = self._sizes[table.space]
        low, high = int(indices.min()), int(indices.max())
        if low < 0:
            raise FunctionalError(f"idx: index {low} is negative")
        end = high * pitch + row_bytes
        if table.addr + end > size:
            start = table.addr + high * pitch
            raise FunctionalError(f"table: row {high} at {table.space}[{start:#x}, "
                                  f"{start + row_bytes:#x}) exceeds space {table.space} of "
                                  f"{size} bytes")
        rows = _span(self._buffers, self._sizes, table, end, "table")
        if row_bytes == pitch:
            picked = rows.reshape(high + 1, row_bytes)[indices]
        else:
            picked = rows[(indices.astype(np.int64) * pitch)[:, None] + np.arange(row_bytes)]
        _span(self._buffers, self._sizes, dst, n * row_bytes, "dst").reshape(n, row_bytes)[...] = picked

    # ---- arithmetic ------------------------------------------------------------------------

    def _gemm(self, instr: Instr, state: _QueueState) -> None:
        """C = (C if accumulate else 0) + A @ (B.T if transpose_b else B), rounded to acc."""
        if state.gemm is None:
            raise FunctionalError("gemm before any mcfg on this queue")
        m, n, k, item, acc = state.gemm
        (_, c), (_, a), (_, b), (_, accumulate), (_, transpose_b) = instr.fields[:5]
        left = self._tile(a, m * k, item, "a").reshape(m, k)
        right = self._tile(b, k * n, item, "b")
        right = right.reshape(n, k).T if transpose_b else right.reshape(k, n)
        with np.errstate(all="ignore"):
            product = _matmul(left, right, item)
            if accumulate:
                product = self._tile(c, m * n, acc, "c").reshape(m, n) + product
            self._put(c, product, acc, "c")

    def _vec(self, instr: Instr, state: _QueueState) -> None:
        """dst as [rows, cols] of out = f(A, B broadcast per bcast) or f(A, imm) or f(A)."""
        if state.vec is None:
            raise FunctionalError("vec before any vcfg on this queue")
        rows, cols, item, out, imm = state.vec
        (_, func), (_, bcast), (_, dst), (_, a), (_, b) = instr.fields
        tile = self._tile(a, rows * cols, item, "a").reshape(rows, cols)
        kind, function = _VEC_FUNCS[func]
        with np.errstate(all="ignore"):
            if kind == "binary":
                shape = _BCAST_SHAPES[bcast](rows, cols)
                other = self._tile(b, shape[0] * shape[1], item, "b").reshape(shape)
                result = function(tile, other)
            elif kind == "immediate":
                result = function(tile, imm)
            else:
                result = function(tile)
            self._put(dst, result, out, "dst")

    def _red(self, instr: Instr, state: _QueueState) -> None:
        """dst[r] (of out) = func(src[r, 0:cols] (of dtype)) for r in range(rows); func sum/max."""
        if state.vec is None:
            raise FunctionalError("red before any vcfg on this queue")
        rows, cols, item, out, _ = state.vec
        (_, func), (_, dst), (_, src) = instr.fields
        tile = self._tile(src, rows * cols, item, "src").reshape(rows, cols)
        with np.errstate(all="ignore"):
            if func == "sum":
                result = tile.sum(axis=1)
            elif cols:
                result = tile.max(axis=1)
            else:  # max over no elements: its identity
                result = np.full(rows, -np.inf)
            self._put(dst, result, out, "dst")

    def _vquant(self, instr: Instr, state: _QueueState) -> None:
        """dst (of out) = out(dequantize(quantize(src, fmt, group))): isa/formats.py's rounding
        itself, on the tile decoded to float64; its one rounding to out is the codec's."""
        if state.vec is None:
            raise FunctionalError("vquant before any vcfg on this queue")
        rows, cols, item, out, _ = state.vec
        (_, fmt), (_, group), (_, dst), (_, src) = instr.fields
        if rows * cols == 0:
            return
        from isa.formats import FormatError, dequantize, quantize   # ml_dtypes: 0.6 s, only here
        tile = self._tile(src, rows * cols, item, "src").reshape(rows, cols)
        # a group the format does not take is refused as verify refuses it; MX's and bfp's
        # blocks are the format's own, one scale for the tile is no group (formats_args)
        try:
            if (why := group_error(fmt, group)) is not None:
                raise FormatError(f"group={group}: {why}")
            values = dequantize(quantize(tile, *formats_args(fmt, group)))
        except FormatError as error:
            raise FunctionalError(str(error)) from None
        with np.errstate(all="ignore"):
            self._put(dst, values, out, "dst")


# ---- configuration and no-op handlers --------------------------------------------------------

def _nothing(instr: Instr, state: _QueueState) -> None:
    """halt, signal, wait: ordering only (the timing model), no data; mfmt: timing only."""


def _no_model(instr: Instr, state: _QueueState) -> None:
    raise FunctionalError(f"no functional model for {instr.opcode} on this machine")


def _adapt(model: Callable[[Instr], None]) -> _Handler:
    def handler(instr: Instr, state: _QueueState) -> None:
        model(instr)
    return handler


def _dmacfg(instr: Instr, state: _QueueState) -> None:
    (_, state.src_pitch), (_, state.dst_pitch) = instr.fields


def _mcfg(instr: Instr, state: _QueueState) -> None:
    (_, m), (_, n), (_, k), (_, dtype), (_, acc) = instr.fields
    state.mcfg = instr
    state.gemm = (m, n, k, codec(dtype), codec(acc))


def _vcfg(instr: Instr, state: _QueueState) -> None:
    (_, rows), (_, cols), (_, dtype), (_, out), (_, imm) = instr.fields
    state.vcfg = instr
    state.vec = (rows, cols, codec(dtype), codec(out), float(imm))


def _qcfg(instr: Instr, state: _QueueState) -> None:
    (_, fmt), (_, dtype), (_, cols), (_, step), (_, scales), (_, group), (_, pitch) = instr.fields
    state.qcfg = instr
    state.quant = (code_format(fmt), codec(dtype), cols, step, scales, group, pitch)


# ---- numeric kernels -------------------------------------------------------------------------

def _quantise_groups(tile: np.ndarray, fmt: CodeFormat, group: int) -> tuple[np.ndarray, ...]:
    """isa.formats.quantize of each `group` rows of `tile` [rows, cols] (the last group may be
    short) as a tensor of its own: the codes [rows, cols] and one scale a group. Full groups go
    at once, each a row of a [groups, group*cols] block (`_quantise_blocks`)."""
    rows, cols = tile.shape
    full = rows // group * group
    parts = [tile[:full].reshape(-1, group * cols)] if full else []
    if full < rows:
        parts.append(tile[full:].reshape(1, -1))
    from isa.formats import FormatError                         # ml_dtypes: 0.6 s, only here
    try:
        found = [_quantise_blocks(part, fmt) for part in parts]
    except FormatError as error:
        raise FunctionalError(str(error)) from None
    return (np.concatenate([codes.reshape(-1, cols) for codes, _ in found]),
            np.concatenate([scales for _, scales in found]))


def _quantise_blocks(blocks: np.ndarray, fmt: CodeFormat) -> tuple[np.ndarray, np.ndarray]:
    """isa.formats.quantize of each row of `blocks` as one tensor: int<N> as one scale group
    per row (the same arithmetic), MX its own blocks (a row is one block of 32: storeq_qcfg),
    bfp a block of the row's length, fp8 (one scale per tensor only) a row at a time. The
    codes, and the scales as a vector."""
    from isa.formats import quantize                            # ml_dtypes: 0.6 s, only here
    if fmt.scale == "fp32":
        found = [quantize(block, fmt.name) for block in blocks]
        return np.stack([q.codes for q in found]), np.concatenate([q.scales for q in found])
    q = quantize(blocks, *formats_args(fmt.name, blocks.shape[1]))
    return q.codes, q.scales.reshape(-1)


def _matmul(left: np.ndarray, right: np.ndarray, item: Codec) -> np.ndarray:
    """left @ right in float64, or exactly for integer tiles (int64, wrapping like int32 adders)."""
    if not item.is_int:
        return left @ right
    if item.itemsize == 1:
        # |int8 * int8| <= 2**14 and k < 2**16 (U16), so every sum stays below 2**30: exact in
        # float64, where BLAS is ~20x faster than numpy's int64 matmul.
        return (left.astype(np.float64) @ right.astype(np.float64)).astype(np.int64)
    return left @ right  # int64 products wrap mod 2**64, so residues mod 2**32 stay exact


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(x)


def _recip(x: np.ndarray) -> np.ndarray:
    return 1.0 / x


def _gelu(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); gelu(-inf) = -0 (the limit), not NaN."""
    x = x.astype(np.float64, copy=False)
    y = 0.5 * x * (1.0 + np.tanh(_GELU_SCALE * (x + _GELU_CUBIC * x * x * x)))
    return np.where(x == -np.inf, -0.0, y)


def _copy(x: np.ndarray) -> np.ndarray:
    return x


# Integer tiles stay int64 for add/sub/mul/max/copy (exact, wrapping on store); every other
# function, and any float tile, computes in float64.
_VEC_FUNCS: dict[str, tuple[str, Callable]] = {
    "add": ("binary", np.add), "sub": ("binary", np.subtract), "mul": ("binary", np.multiply),
    "div": ("binary", np.true_divide), "max": ("binary", np.maximum),
    "addi": ("immediate", np.add), "muli": ("immediate", np.multiply),
    "exp": ("unary", np.exp), "rsqrt": ("unary", _rsqrt), "recip": ("unary", _recip),
    "gelu": ("unary", _gelu), "tanh": ("unary", np.tanh), "copy": ("unary", _copy),
}
assert [f for f, (kind, _) in _VEC_FUNCS.items() if kind == "binary"] == list(VEC_BINARY)
assert [f for f, (kind, _) in _VEC_FUNCS.items() if kind == "immediate"] == list(VEC_IMMEDIATE)
assert [f for f, (kind, _) in _VEC_FUNCS.items() if kind == "unary"] == list(VEC_UNARY)

_BCAST_SHAPES: dict[str, Callable[[int, int], tuple[int, int]]] = {
    "none": lambda rows, cols: (rows, cols),
    "row": lambda rows, cols: (rows, 1),
    "col": lambda rows, cols: (1, cols),
    "scalar": lambda rows, cols: (1, 1),
}
