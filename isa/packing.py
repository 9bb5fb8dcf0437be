"""Narrow integer codes packed into bytes, as `loadq` reads them from off-chip memory.

A row of `cols` N-bit two's-complement codes (N = 2..8) takes ceil(cols * N / 8) bytes: code c
occupies bits [c * N, (c + 1) * N) of the row, least significant bit first (code 0 in the low
bits of byte 0, as GPTQ/Marlin-style int4 packing puts the first element in the low nibble).
Each row starts on a byte, so a window of columns starting at column c0 starts on a byte only
when c0 * N is a multiple of 8 (the compiler's concern). Whole-array numpy: no per-code loops.
"""
from __future__ import annotations

import numpy as np

from isa.errors import IsaError

__all__ = ["PACKED_BITS", "packed_row_bytes", "pack_rows", "unpack_rows"]

PACKED_BITS = range(2, 9)       # the widths a row of codes may have


def _check_bits(bits: int) -> None:
    if bits not in PACKED_BITS:
        raise IsaError(f"packed codes are 2..8 bits wide, not {bits}")


def packed_row_bytes(cols: int, bits: int) -> int:
    """Bytes of one packed row of `cols` codes of `bits` bits."""
    _check_bits(bits)
    return -(-cols * bits // 8)


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes [..., cols] (each in -(2^(bits-1))..2^(bits-1)-1) as uint8 [..., row bytes]."""
    _check_bits(bits)
    codes = np.asarray(codes)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if codes.size and (codes.min() < low or codes.max() > high):
        raise IsaError(f"codes outside the {bits}-bit range {low}..{high}")
    cols = codes.shape[-1]
    unsigned = (codes.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)
    bitplanes = np.unpackbits(unsigned[..., None], axis=-1, bitorder="little")[..., :bits]
    flat = bitplanes.reshape(*codes.shape[:-1], cols * bits)
    return np.packbits(flat, axis=-1, bitorder="little")


def unpack_rows(data: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """uint8 [..., row bytes] back to int8 codes [..., cols] (sign-extended)."""
    _check_bits(bits)
    data = np.asarray(data, dtype=np.uint8)
    need = packed_row_bytes(cols, bits)
    if data.shape[-1] < need:
        raise IsaError(f"{cols} codes of {bits} bits need {need} bytes a row, got {data.shape[-1]}")
    flat = np.unpackbits(data[..., :need], axis=-1, bitorder="little")[..., :cols * bits]
    planes = flat.reshape(*data.shape[:-1], cols, bits)
    unsigned = np.packbits(planes, axis=-1, bitorder="little")[..., 0].astype(np.int16)
    return np.where(unsigned >= 1 << (bits - 1), unsigned - (1 << bits), unsigned).astype(np.int8)
