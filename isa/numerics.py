"""Number formats of the tile ISA: how values are rounded into, and read out of, memory.

Every conversion rounds once, to nearest with ties to even (IEEE default):

- fp32, fp16: numpy's own casts from float64, which round correctly in one step.
- bf16: stored as its uint16 bit pattern (`DType.storage`). `bf16_bits` rounds float64 to
  float32, then float32 to bf16 to nearest-even; where the first step lands exactly on a bf16
  tie without being exact, it is nudged one float32 ulp toward the true value (the sticky bit
  of round-to-odd: Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved
  algorithms using rounding to odd", IEEE TC 2008), so the two steps equal one correct
  rounding. NaN stays NaN (quietened, sign kept), inf stays inf, overflow gives inf.
- int8, int32: like integer hardware, values wrap modulo 2**bits (two's complement). Integer
  arrays are cast as they are; float arrays are first rounded to the nearest integer (ties to
  even), and NaN or +-inf become 0.

Reading (`from_storage`) gives float64 for the float types and int64 for the integer types.
All functions are vectorised and raise no numpy warnings for inf/NaN/overflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from isa.values import DType

__all__ = ["bf16_bits", "from_bf16_bits", "to_storage", "from_storage", "Codec", "codec"]

_HALF_SHIFT = np.uint32(16)  # bf16 is the top 16 bits of a float32
_LOW_HALF_MASK = np.uint32(0xFFFF)
_BF16_TIE = np.uint32(0x8000)  # low half exactly halfway between two bf16 values
_BF16_QUIET_BIT = np.uint32(0x0040)  # top mantissa bit of bf16: set on NaN so it stays NaN
_BF16_HALF_ULP = np.uint32(0x7FFF)  # low 16 bits of float32 that round down when the kept lsb is 0


def _float32_bits_for_bf16(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 bits whose bf16 nearest-even rounding is that of x itself.

    float32 rounding (nearest-even) only misleads the second rounding when it lands exactly
    on a bf16 tie (low 16 bits 0x8000) without being exact; those few are nudged one float32
    ulp toward x, the sticky bit of round-to-odd.
    """
    near = x.astype(np.float32)
    bits = near.view(np.uint32)
    tie = bits & _LOW_HALF_MASK == _BF16_TIE
    if tie.any():
        back = near.astype(np.float64)
        up = tie & (np.abs(x) > np.abs(back))
        down = tie & (np.abs(x) < np.abs(back))
        bits = bits + up.astype(np.uint32) - down.astype(np.uint32)
    return bits


def _bf16_bits_of_float32_bits(bits: np.ndarray) -> np.ndarray:
    lsb = (bits >> _HALF_SHIFT) & np.uint32(1)
    rounded = ((bits + _BF16_HALF_ULP + lsb) >> _HALF_SHIFT).astype(np.uint16)
    nan = np.isnan(bits.view(np.float32))
    if nan.any():  # keep NaN a NaN (its payload may sit in the dropped half): quieten it
        rounded[nan] = ((bits[nan] >> _HALF_SHIFT) | _BF16_QUIET_BIT).astype(np.uint16)
    return rounded


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round `x` (any float or integer array) to bf16, nearest-even; the uint16 bit patterns."""
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        if x.dtype == np.float32 or x.dtype == np.float16:
            bits = x.astype(np.float32).view(np.uint32)
        else:
            bits = _float32_bits_for_bf16(x.astype(np.float64, copy=False))
        return _bf16_bits_of_float32_bits(bits)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """The float32 values of bf16 bit patterns (exact: bf16 is the top half of a float32)."""
    return (np.asarray(bits).astype(np.uint32) << np.uint32(16)).view(np.float32)


def _wrap_int(storage: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    modulus = float(1 << (8 * storage.itemsize))

    def encode(values: np.ndarray) -> np.ndarray:
        if values.dtype.kind in "iub":
            return values.astype(storage)
        finite = np.where(np.isfinite(values), np.rint(values), 0.0)
        # fmod is exact, so the residue is the true one even above 2**63.
        return np.fmod(finite, modulus).astype(np.int64).astype(storage)
    return encode


def _encode_float(storage: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    def encode(values: np.ndarray) -> np.ndarray:
        if values.dtype.kind in "iub":  # through float64 (exact below 2**53): one rounding
            values = values.astype(np.float64)
        return values.astype(storage)
    return encode


def _decode_float(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float64)


def _decode_bf16(raw: np.ndarray) -> np.ndarray:
    return from_bf16_bits(raw).astype(np.float64)


def _decode_int(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.int64)


def _encode_bf16(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float32 or values.dtype == np.float16:
        return _bf16_bits_of_float32_bits(values.astype(np.float32).view(np.uint32))
    return _bf16_bits_of_float32_bits(_float32_bits_for_bf16(values.astype(np.float64, copy=False)))


class Codec(NamedTuple):
    """How one DType sits in memory. `encode` and `decode` assume the caller has silenced
    numpy floating-point warnings (`np.errstate(all="ignore")`); use to/from_storage otherwise."""

    dtype: DType
    storage: np.dtype
    itemsize: int
    is_int: bool
    encode: Callable[[np.ndarray], np.ndarray]  # float64/int64 values -> storage array
    decode: Callable[[np.ndarray], np.ndarray]  # storage array -> float64/int64 values


def _make_codecs() -> dict[DType, Codec]:
    codecs = {}
    for dtype in DType:
        storage = dtype.storage
        is_int = storage.kind == "i"
        if dtype is DType.bf16:
            encode, decode = _encode_bf16, _decode_bf16
        elif is_int:
            encode, decode = _wrap_int(storage), _decode_int
        else:
            encode, decode = _encode_float(storage), _decode_float
        codecs[dtype] = Codec(dtype, storage, dtype.itemsize, is_int, encode, decode)
    return codecs


_CODECS = _make_codecs()


def codec(dtype: DType | str) -> Codec:
    """The Codec of `dtype` (a DType or its name)."""
    return _CODECS[DType.of(dtype)]


_CHUNK = 1 << 20  # elements encoded at once: a 10^8-element tensor needs no 10^8-element temporaries


def to_storage(values: np.ndarray, dtype: DType | str) -> np.ndarray:
    """Round `values` to `dtype` once (see the module docstring); an array of `dtype.storage`.
    Every conversion is elementwise, so large arrays are encoded a chunk at a time."""
    found, values = codec(dtype), np.asarray(values)
    with np.errstate(all="ignore"):
        if values.size <= _CHUNK:
            return found.encode(values)
        out = np.empty(values.shape, found.storage)
        flat, into = values.reshape(-1), out.reshape(-1)
        for lo in range(0, values.size, _CHUNK):
            into[lo:lo + _CHUNK] = found.encode(flat[lo:lo + _CHUNK])
        return out


def from_storage(raw: np.ndarray, dtype: DType | str) -> np.ndarray:
    """The values held in a `dtype.storage` array: float64, or int64 for the integer types."""
    found = codec(dtype)
    raw = np.asarray(raw)
    if raw.dtype != found.storage:
        raise TypeError(f"from_storage: {found.dtype} is stored as {found.storage}, "
                        f"got {raw.dtype}")
    return found.decode(raw)
