"""128-bit instruction words: numpy-vectorised encoder and decoder driven by the opcode table.

Word layout (bit 127 = MSB): opcode[127:120] | unit[119:116] | index[115:104] | payload[103:0],
fields packed from bit 103 down in table order, unused low bits zero. A word is stored as
16 little-endian bytes; arrays here are shape (n, 2) of little-endian uint64: [low, high].
Instructions are grouped by opcode and each field is packed or unpacked as one numpy column.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from isa.bulk import no_gc
from isa.errors import DecodeError, FieldError
from isa.fields import SPACE_BITS, ColumnError
from isa.instr import Instr
from isa.opcodes import OPCODES, OPCODES_BY_CODE, PAYLOAD_BITS, OpSpec
from isa.values import Queue, Unit

__all__ = ["encode", "decode", "encode_word", "decode_word", "WORD_BYTES"]

WORD_BYTES = 16
_U64 = np.uint64
_QUEUE_LSB = PAYLOAD_BITS  # 104: queue field sits right above the payload
_OPCODE_LSB = PAYLOAD_BITS + 16  # 120


def _put(lo: np.ndarray, hi: np.ndarray, value: np.ndarray, lsb: int, bits: int) -> None:
    """OR `value` (< 2**bits) into bits [lsb, lsb+bits) of the (lo, hi) word columns."""
    if lsb >= 64:
        hi |= value << _U64(lsb - 64)
    else:
        lo |= value << _U64(lsb)
        if lsb + bits > 64:
            hi |= value >> _U64(64 - lsb)


def _get(lo: np.ndarray, hi: np.ndarray, lsb: int, bits: int) -> np.ndarray:
    """Bits [lsb, lsb+bits) of the (lo, hi) word columns as uint64."""
    mask = _U64((1 << bits) - 1)
    if lsb >= 64:
        return (hi >> _U64(lsb - 64)) & mask
    if lsb + bits <= 64:
        return (lo >> _U64(lsb)) & mask
    return ((lo >> _U64(lsb)) | (hi << _U64(64 - lsb))) & mask


def _where(index: int, instr: Instr) -> str:
    return f"instruction {index} ({instr.queue} {instr.opcode})"


def encode(instructions: Sequence[Instr], spaces: Sequence[str]) -> np.ndarray:
    """Encode instructions into an (n, 2) '<u8' array; FieldError names the instruction."""
    with no_gc():
        return _encode(instructions, spaces)


def _check_spaces(spaces: Sequence[str]) -> None:
    if len(spaces) > 1 << SPACE_BITS:
        raise FieldError(f"{len(spaces)} memory spaces do not fit a {SPACE_BITS}-bit space index")


def _encode(instructions: Sequence[Instr], spaces: Sequence[str]) -> np.ndarray:
    _check_spaces(spaces)
    count = len(instructions)
    lo = np.zeros(count, dtype=_U64)
    hi = np.zeros(count, dtype=_U64)
    space_index = {name: i for i, name in enumerate(spaces)}
    opcodes = [instr.opcode for instr in instructions]
    try:
        codes = np.array([_CODE_OF[op] for op in opcodes], dtype=np.int64)
    except (KeyError, TypeError):
        bad = next(i for i, op in enumerate(opcodes) if op not in _CODE_OF)
        raise FieldError(f"{_where(bad, instructions[bad])}: unknown opcode {opcodes[bad]!r}",
                         bad) from None
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds) if count else []:
        spec = OPCODES[opcodes[rows[0]]]
        row_list = rows.tolist()
        members = [instructions[i] for i in row_list]
        glo, ghi = _encode_group(spec, members, row_list, space_index)
        lo[rows] = glo
        hi[rows] = ghi
    out = np.empty((count, 2), dtype="<u8")
    out[:, 0] = lo
    out[:, 1] = hi
    return out


_CODE_OF = {op.mnemonic: op.code for op in OPCODES.values()}


def _encode_group(spec: OpSpec, members: list[Instr], rows: list[int],
                  space_index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pack one opcode's instructions column by column."""
    queues = [m.queue for m in members]
    ids = np.fromiter(map(id, queues), dtype=_U64, count=len(queues))
    _, first, which = np.unique(ids, return_index=True, return_inverse=True)
    for position in first.tolist():
        if not isinstance(queues[position], Queue):
            raise FieldError(f"instruction {rows[position]}: queue {queues[position]!r} is not a "
                             "Queue", rows[position])
    codes = np.array([queues[p].code for p in first.tolist()], dtype=_U64)
    hi = codes[which.reshape(-1)] << _U64(_QUEUE_LSB - 64)
    hi |= _U64(spec.code << (_OPCODE_LSB - 64))
    lo = np.zeros(len(members), dtype=_U64)
    tuples = [m.fields for m in members]
    width = len(spec.fields)
    if set(map(len, tuples)) != {width}:
        position = next(p for p, fields in enumerate(tuples) if len(fields) != width)
        names = " ".join(str(pair[0]) for pair in tuples[position])
        raise FieldError(f"{_where(rows[position], members[position])}: fields ({names}) "
                         f"differ from {spec.mnemonic}'s ({' '.join(spec.names)})", rows[position])
    columns = list(zip(*tuples)) if width else []
    for (field, lsb), column in zip(spec.layout, columns):
        try:
            names, values = zip(*column)
        except (TypeError, ValueError):
            raise FieldError(f"{_where(rows[0], members[0])}: fields must be (name, value) "
                             "pairs", rows[0]) from None
        if names.count(field.name) != len(names):
            position = next(p for p, n in enumerate(names) if n != field.name)
            raise FieldError(f"{_where(rows[position], members[position])}: field "
                             f"{names[position]!r} where {spec.mnemonic} has {field.name!r}",
                             rows[position])
        try:
            raw = field.kind.to_raw(field.name, values, space_index)
        except ColumnError as error:
            raise FieldError(f"{_where(rows[error.position], members[error.position])}: "
                             f"{error.message}", rows[error.position]) from None
        _put(lo, hi, raw, lsb, field.kind.bits)
    return lo, hi


def decode(words: np.ndarray | bytes, spaces: Sequence[str]) -> tuple[Instr, ...]:
    """Decode an (n, 2) uint64 array (or raw little-endian bytes) into instructions.

    Identical words decode to one shared (immutable) Instr. DecodeError names the first bad
    instruction: unknown opcode or unit, enum code or space index out of range, NaN
    immediate, or non-zero padding bits.
    """
    with no_gc():
        return _decode(words, spaces)


def _decode(words: np.ndarray | bytes, spaces: Sequence[str]) -> tuple[Instr, ...]:
    _check_spaces(spaces)
    if isinstance(words, (bytes, bytearray, memoryview)):
        words = np.frombuffer(words, dtype="<u8").reshape(-1, 2)
    words = np.ascontiguousarray(words, dtype="<u8").reshape(-1, 2)
    if len(words) == 0:
        return ()
    lo, hi, first, inverse = _unique_words(words)
    codes = hi >> _U64(_OPCODE_LSB - 64)
    units = (hi >> _U64(_QUEUE_LSB + 12 - 64)) & _U64(0xF)
    known = np.isin(codes, np.array(list(OPCODES_BY_CODE), dtype=_U64))
    errors: list[tuple[int, str]] = []
    if not known.all():
        bad = int(np.argmin(np.where(known, len(words), first)))
        errors.append((int(first[bad]), f"unknown opcode {int(codes[bad]):#04x}"))
    if (units >= len(Unit)).any():
        bad = int(np.argmin(np.where(units >= len(Unit), first, len(words))))
        errors.append((int(first[bad]), f"unknown unit {int(units[bad])} in the queue field"))
    if errors:
        index, message = min(errors)
        raise DecodeError(f"instruction {index}: {message}", index)
    decoded: list[Instr | None] = [None] * len(lo)
    for code in np.unique(codes).tolist():
        spec = OPCODES_BY_CODE[code]
        rows = np.nonzero(codes == code)[0]
        try:
            group = _decode_group(spec, lo[rows], hi[rows], spaces)
        except ColumnError:
            errors.append(_first_error(spec, lo, hi, rows[np.argsort(first[rows])], first, spaces))
            continue
        for row, instr in zip(rows.tolist(), group):
            decoded[row] = instr
    if errors:
        index, message = min(errors)
        instr_queue = _queue_of(int(words[index, 1]))
        mnemonic = OPCODES_BY_CODE[int(words[index, 1]) >> 56].mnemonic
        raise DecodeError(f"instruction {index} ({instr_queue} {mnemonic}): {message}", index)
    return tuple([decoded[i] for i in inverse.tolist()])


def _first_error(spec: OpSpec, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray,
                 first: np.ndarray, spaces: Sequence[str]) -> tuple[int, str]:
    """Slow path once a group failed: decode its words one by one in program order."""
    for row in rows.tolist():
        try:
            _decode_group(spec, lo[row:row + 1], hi[row:row + 1], spaces)
        except ColumnError as error:
            return int(first[row]), error.message
    raise AssertionError("a group failed but none of its words does")


def _unique_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct words (lo, hi), the first index of each and each word's distinct position."""
    lo_all = words[:, 0].astype(_U64)
    hi_all = words[:, 1].astype(_U64)
    order = np.lexsort((lo_all, hi_all))  # stable: the first of equal words comes first
    lo_sorted, hi_sorted = lo_all[order], hi_all[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (lo_sorted[1:] != lo_sorted[:-1]) | (hi_sorted[1:] != hi_sorted[:-1])
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return lo_sorted[starts], hi_sorted[starts], order[starts], inverse


def _queue_of(high: int) -> Queue:
    key = (high >> (_QUEUE_LSB - 64)) & 0xFFFF
    return Queue(Unit(key >> 12), key & 0xFFF)


def _decode_group(spec: OpSpec, lo: np.ndarray, hi: np.ndarray,
                  spaces: Sequence[str]) -> list[Instr]:
    """Unpack one opcode's words; ColumnError positions index into this group."""
    layout = spec.layout
    padding_bits = layout[-1][1] if layout else PAYLOAD_BITS
    if padding_bits:
        stray = _get(lo, hi, 0, min(padding_bits, 64)) != 0
        if padding_bits > 64:
            stray |= _get(lo, hi, 64, padding_bits - 64) != 0
        if stray.any():
            raise ColumnError(int(np.argmax(stray)), "non-zero padding bits")
    keys, key_of = np.unique((hi >> _U64(_QUEUE_LSB - 64)) & _U64(0xFFFF), return_inverse=True)
    queue_objects = [_queue_of(k << (_QUEUE_LSB - 64)) for k in keys.tolist()]
    queues = [queue_objects[k] for k in key_of.reshape(-1).tolist()]
    columns = []
    for field, lsb in layout:
        # Operand values repeat; build each distinct (name, value) pair once and share it.
        distinct, which = np.unique(_get(lo, hi, lsb, field.kind.bits), return_inverse=True)
        which = which.reshape(-1)
        try:
            values = field.kind.from_raw(field.name, distinct, spaces)
        except ColumnError as error:
            raise ColumnError(int(np.argmax(which == error.position)), error.message) from None
        pairs = list(zip(repeat(field.name), values))
        columns.append([pairs[i] for i in which.tolist()])
    fields = list(zip(*columns)) if columns else [()] * len(queues)
    return list(map(Instr, repeat(spec.mnemonic), queues, fields))


def encode_word(instr: Instr, spaces: Sequence[str]) -> int:
    """One instruction as a 128-bit integer."""
    low, high = encode([instr], spaces)[0].tolist()
    return high << 64 | low


def decode_word(word: int, spaces: Sequence[str]) -> Instr:
    """One 128-bit integer as an instruction."""
    if not 0 <= word < 1 << 128:
        raise DecodeError(f"word {word:#x} does not fit 128 bits")
    mask = (1 << 64) - 1
    return decode(np.array([[word & mask, word >> 64]], dtype="<u8"), spaces)[0]
