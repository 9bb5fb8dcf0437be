"""Narrow codes packed into bytes, as `loadq` reads them from off-chip memory: integers, or
the bit patterns of narrow floats (isa/qformats.py).

A row of `cols` N-bit two's-complement codes (N = 2..8) takes ceil(cols * N / 8) bytes: code c
occupies bits [c * N, (c + 1) * N) of the row, least significant bit first (code 0 in the low
bits of byte 0, as GPTQ/Marlin-style int4 packing puts the first element in the low nibble).
Each row starts on a byte, so a window of columns starting at column c0 starts on a byte only
when c0 * N is a multiple of 8 (the compiler's concern). Whole-array numpy: no per-code loops.

Bit-nested weights (`loadp`) are stored as bit planes instead: a row of `cols` W-bit
offset-binary codes u is W planes of ceil(cols / 8) bytes, most significant first; plane p
holds bit W-1-p of every u, column c at bit c % 8 of byte c // 8 (LSB first, as above). Reading
the first b planes reads the top b bits of every code, b/W of the row's bytes.
"""
from __future__ import annotations

import numpy as np

from isa.errors import IsaError

__all__ = ["PACKED_BITS", "packed_row_bytes", "pack_rows", "unpack_rows", "pack_patterns",
           "unpack_patterns", "plane_row_bytes", "pack_planes", "unpack_planes"]

PACKED_BITS = range(2, 9)       # the widths a row of codes may have


def _check_bits(bits: int) -> None:
    if bits not in PACKED_BITS:
        raise IsaError(f"packed codes are 2..8 bits wide, not {bits}")


def packed_row_bytes(cols: int, bits: int) -> int:
    """Bytes of one packed row of `cols` codes of `bits` bits."""
    _check_bits(bits)
    return -(-cols * bits // 8)


def pack_patterns(patterns: np.ndarray, bits: int) -> np.ndarray:
    """Bit patterns [..., cols] (the low `bits` bits of each uint8) as uint8 [..., row bytes]."""
    _check_bits(bits)
    patterns = np.asarray(patterns, np.uint8)
    if patterns.size and int(patterns.max()) >> bits:
        raise IsaError(f"bit patterns wider than {bits} bits")
    cols = patterns.shape[-1]
    bitplanes = np.unpackbits(patterns[..., None], axis=-1, bitorder="little")[..., :bits]
    return np.packbits(bitplanes.reshape(*patterns.shape[:-1], cols * bits), axis=-1,
                       bitorder="little")


def unpack_patterns(data: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """uint8 [..., row bytes] back to `cols` bit patterns a row, uint8 (low bits)."""
    _check_bits(bits)
    data = np.asarray(data, dtype=np.uint8)
    need = packed_row_bytes(cols, bits)
    if data.shape[-1] < need:
        raise IsaError(f"{cols} codes of {bits} bits need {need} bytes a row, got {data.shape[-1]}")
    flat = np.unpackbits(data[..., :need], axis=-1, bitorder="little")[..., :cols * bits]
    return np.packbits(flat.reshape(*data.shape[:-1], cols, bits), axis=-1,
                       bitorder="little")[..., 0]


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes [..., cols] (each in -(2^(bits-1))..2^(bits-1)-1) as uint8 [..., row bytes]."""
    _check_bits(bits)
    codes = np.asarray(codes)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if codes.size and (codes.min() < low or codes.max() > high):
        raise IsaError(f"codes outside the {bits}-bit range {low}..{high}")
    return pack_patterns((codes.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8), bits)


def unpack_rows(data: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """uint8 [..., row bytes] back to int8 codes [..., cols] (sign-extended)."""
    unsigned = unpack_patterns(data, bits, cols).astype(np.int16)
    return np.where(unsigned >= 1 << (bits - 1), unsigned - (1 << bits), unsigned).astype(np.int8)


def plane_row_bytes(cols: int) -> int:
    """Bytes of one bit plane of a row of `cols` codes: one bit a column."""
    return -(-cols // 8)


def pack_planes(u: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes u [..., cols] (each in 0..2^bits - 1) as their `bits` bit planes, most
    significant first: uint8 [..., bits * plane_row_bytes(cols)], plane p at p * that."""
    _check_bits(bits)
    u = np.asarray(u)
    if u.size and (u.min() < 0 or u.max() >> bits):
        raise IsaError(f"unsigned codes outside the {bits}-bit range 0..{(1 << bits) - 1}")
    shifts = np.arange(bits - 1, -1, -1)[:, None]          # plane p: bit bits-1-p
    planes = (u.astype(np.uint16)[..., None, :] >> shifts) & 1
    packed = np.packbits(planes.astype(np.uint8), axis=-1, bitorder="little")
    return packed.reshape(*u.shape[:-1], -1)


def unpack_planes(data: np.ndarray, planes: int, cols: int, plane_bytes: int) -> np.ndarray:
    """The top `planes` bits of each of `cols` codes a row, as integers 0..2^planes - 1
    (uint8 [..., cols]), from rows [..., >= (planes-1) * plane_bytes + plane_row_bytes(cols)]
    whose planes lie `plane_bytes` apart (a column tile's within a wider weight's rows)."""
    data = np.asarray(data, dtype=np.uint8)
    width = plane_row_bytes(cols)
    if not 1 <= planes <= 8:
        raise IsaError(f"a row has 1 to 8 bit planes, not {planes}")
    if plane_bytes < width:
        raise IsaError(f"planes {plane_bytes} bytes apart overlap: {cols} columns take {width}")
    need = (planes - 1) * plane_bytes + width
    if data.shape[-1] < need:
        raise IsaError(f"{planes} planes {plane_bytes} bytes apart need {need} bytes a row, "
                       f"got {data.shape[-1]}")
    stacked = np.stack([data[..., p * plane_bytes:p * plane_bytes + width]
                        for p in range(planes)], axis=-2)
    bits = np.unpackbits(stacked, axis=-1, bitorder="little")[..., :cols]
    weights = (1 << np.arange(planes - 1, -1, -1, dtype=np.uint16))[:, None]
    return (bits * weights).sum(axis=-2).astype(np.uint8)
