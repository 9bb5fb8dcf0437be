"""The columns compiler/roll.py matches on, built without a Python loop per instruction: shape
ids (the encoded word with its address bits cleared), byte addresses per address operand, a
prefix hash of the semaphore balance, and each instruction's written stripes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import isa
from isa.fields import AddressKind
from isa.footprint import WRITTEN_ROLES, QueueConfig, footprints, stripes
from isa.instr import Instr
from isa.opcodes import OPCODES, OPCODES_BY_CODE, PAYLOAD_BITS, STRUCTURE

__all__ = ["Columns", "COLUMNS", "dense_ids"]

COLUMNS = 3             # the most address operands of an opcode (gather, gemm, vec)
_U64 = np.uint64
_CODE = {spec.mnemonic: spec.code for spec in OPCODES.values()}
_CONFIGURING = [_CODE[op] for op in ("dmacfg", "mcfg", "vcfg")]
_SYNC = {_CODE["signal"]: 1, _CODE["wait"]: -1}
_STRUCTURE = [_CODE[op] for op in STRUCTURE]


@dataclass(frozen=True, slots=True)
class Columns:
    """shape (n,) int64 ids; addr (n, COLUMNS) int64 byte addresses (0: none); positions:
    opcode -> field positions of its address columns; balance (n + 1,) uint64 prefix of
    signal/wait weights; write: (column, rows, row_bytes, pitch) arrays, column -1 for none;
    looped: the program already has loop words."""

    shape: np.ndarray
    addr: np.ndarray
    positions: Mapping[str, tuple[int, ...]]
    balance: np.ndarray
    write: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    looped: bool

    @staticmethod
    def of(instructions, spaces, limits: Mapping[str, int]) -> Columns:
        n = len(instructions)
        words = isa.encode(instructions, spaces)
        lo, hi = words[:, 0].copy(), words[:, 1].copy()
        del words
        codes = (hi >> _U64(56)).astype(np.int16)
        queues = ((hi >> _U64(PAYLOAD_BITS - 64)) & _U64(0xFFFF)).astype(np.int32)
        addr = np.zeros((n, COLUMNS), dtype=np.int64)
        positions: dict[str, tuple[int, ...]] = {}
        sem = np.zeros(n, dtype=np.int32)
        for code in np.unique(codes).tolist():
            spec = OPCODES_BY_CODE[code]
            rows = np.flatnonzero(codes == code)
            columns = []
            for position, (field, lsb) in enumerate(spec.layout):
                if field.name == "sem" and code in _SYNC:
                    sem[rows] = _take(lo[rows], hi[rows], lsb, field.kind.bits)[0]
                if not isinstance(field.kind, AddressKind):
                    continue
                units, glo, ghi = _take(lo[rows], hi[rows], lsb, field.kind.addr_bits)
                lo[rows], hi[rows] = glo, ghi
                addr[rows, len(columns)] = units.astype(np.int64) * field.kind.granule
                columns.append(position)
            positions[spec.mnemonic] = tuple(columns)
        shape = dense_ids(hi, lo)
        del lo, hi
        write = _writes(instructions, codes, queues, shape, positions, limits)
        return Columns(shape, addr, positions, _balance(codes, sem), write,
                       bool(np.isin(codes, _STRUCTURE).any()))


def dense_ids(*keys: np.ndarray) -> np.ndarray:
    """Equal rows of the key columns get equal ids 0, 1, ... (int64), in sorted order."""
    order = np.lexsort(keys[::-1])
    differs = np.zeros(len(order), dtype=bool)
    for key in keys:
        ordered = key[order]
        differs[1:] |= ordered[1:] != ordered[:-1]
    ids = np.empty(len(order), dtype=np.int64)
    ids[order] = np.cumsum(differs)
    return ids


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


def _balance(codes: np.ndarray, sem: np.ndarray) -> np.ndarray:
    """Prefix sums (mod 2**64) of a random weight per semaphore, + for signal, - for wait: a
    block signals each semaphore as often as it waits on it when its two ends are equal."""
    weights = np.random.default_rng(17).integers(1, 2**63, size=1 << 16, dtype=np.uint64)
    step = np.zeros(len(codes) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for code, sign in _SYNC.items():
            rows = np.flatnonzero(codes == code)
            weight = weights[sem[rows] % (1 << 16)]
            step[rows + 1] = weight if sign > 0 else _U64(0) - weight
        return np.cumsum(step, dtype=np.uint64)


def _writes(instructions, codes, queues, shape, positions, limits):
    """Per instruction: the address column it writes (-1: none) and that write's stripes
    (rows, row_bytes, pitch) under the flat program's queue configuration. A footprint depends
    on the non-address fields and the configuration only, so it is worked out once per (shape,
    configuration) pair; the configuration in force is followed through the *cfg words only."""
    n = len(codes)
    configured = np.flatnonzero(np.isin(codes, _CONFIGURING))
    known: dict[QueueConfig, int] = {QueueConfig(): 0}
    current: dict[object, QueueConfig] = {}
    after = np.zeros(n, dtype=np.int64)           # at a *cfg word: the config id it leaves
    for i in configured.tolist():
        instr = instructions[i]
        config = current[instr.queue] = current.get(instr.queue, QueueConfig()).after(instr)
        after[i] = known.setdefault(config, len(known))
    config = np.zeros(n, dtype=np.int64)          # per instruction: the config id in force
    index = np.arange(n, dtype=np.int64)
    for queue in np.unique(queues[configured]).tolist():
        on = queues == queue
        last = np.maximum.accumulate(np.where(on & np.isin(codes, _CONFIGURING), index, -1))
        chosen = on & (last >= 0)
        config[chosen] = after[last[chosen]]
    addressed = np.zeros(int(codes.max(initial=0)) + 1, dtype=bool)
    for mnemonic, columns in positions.items():
        addressed[_CODE[mnemonic]] = bool(columns)
    rows = np.flatnonzero(addressed[codes])
    column = np.full(n, -1, dtype=np.int64)
    stripe = np.ones((3, n), dtype=np.int64)
    if len(rows):
        pair = dense_ids(shape[rows], config[rows])
        firsts = np.full(int(pair.max()) + 1, -1, dtype=np.int64)
        firsts[pair] = rows                       # a row of each pair (any one will do)
        configs = list(known)
        found = np.array([_write_stripes(instructions[i], configs[config[i]],
                                         positions[instructions[i].opcode], limits)
                          for i in firsts.tolist()], dtype=np.int64).reshape(-1, 4)
        column[rows] = found[pair, 0]
        stripe[:, rows] = found[pair, 1:].T
    return column, stripe[0], stripe[1], stripe[2]


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
