"""Narrow codes packed into bytes, as `loadq` reads them from off-chip memory: integers, or
the bit patterns of narrow floats (isa/qformats.py).

A row of `cols` N-bit two's-complement codes (N = 2..8) takes ceil(cols * N / 8) bytes: code c
occupies bits [c * N, (c + 1) * N) of the row, least significant bit first (code 0 in the low
bits of byte 0, as GPTQ/Marlin-style int4 packing puts the first element in the low nibble).
Each row starts on a byte, so a window of columns starting at column c0 starts on a byte only
when c0 * N is a multiple of 8 (the compiler's concern). Whole-array numpy: no per-code loops.
"""
from __future__ import annotations

import numpy as np

from isa.errors import IsaError

__all__ = ["PACKED_BITS", "packed_row_bytes", "pack_rows", "unpack_rows", "pack_patterns",
           "unpack_patterns"]

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
