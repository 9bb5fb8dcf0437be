"""isa.numerics: bf16 round-to-nearest-even, storage conversions of every DType."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import DType
from isa.numerics import bf16_bits, codec, from_bf16_bits, from_storage, to_storage

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

BF16_INF_BITS = 0x7F80


def f32(bits: int) -> np.ndarray:
    return np.array([bits], dtype=np.uint32).view(np.float32)


def bf16_reference(x: float) -> int:
    """Nearest bf16 to x by exact rational arithmetic, ties to even; inf counts as 2**128."""
    sign = 0x8000 if np.signbit(x) else 0
    target = Fraction(abs(x))
    with np.errstate(over="ignore"):
        near = np.array([abs(x)], dtype=np.float64).astype(np.float32)
    guess = int(near.view(np.uint32)[0]) >> 16
    best = None
    for bits in range(max(guess - 1, 0), min(guess + 2, BF16_INF_BITS) + 1):
        value = Fraction(2) ** 128 if bits == BF16_INF_BITS else \
            Fraction(float(from_bf16_bits(np.array([bits], np.uint16))[0]))
        key = (abs(value - target), bits & 1)  # nearer first, then the even pattern
        if best is None or key < best[0]:
            best = (key, bits)
    return sign | best[1]


@pytest.mark.parametrize(("value_bits", "expected"), [
    (0x3F80_8000, 0x3F80),  # exact tie, kept lsb even: down
    (0x3F81_8000, 0x3F82),  # exact tie, kept lsb odd: up to even
    (0x3F80_8001, 0x3F81),  # just above the tie: up
    (0x3F80_7FFF, 0x3F80),  # just below the tie: down
    (0x3F7F_8000, 0x3F80),  # tie with odd lsb carries into the exponent (1.0)
    (0x3FFF_FFFF, 0x4000),  # carry from mantissa to exponent
    (0x7F7F_8000, 0x7F80),  # tie above the largest bf16 overflows to inf
    (0x7F7F_7FFF, 0x7F7F),  # just below it stays finite
    (0xBF81_8000, 0xBF82),  # negative tie
    (0x0000_8000, 0x0000),  # subnormal tie to even (zero)
    (0x0001_8000, 0x0002),  # subnormal tie up to even
])
def test_bf16_rounds_float32_to_nearest_even(value_bits: int, expected: int) -> None:
    assert int(bf16_bits(f32(value_bits))[0]) == expected


def test_bf16_keeps_inf_nan_and_signed_zero() -> None:
    values = np.array([np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    assert bf16_bits(values).tolist() == [0x7F80, 0xFF80, 0x0000, 0x8000]
    # NaN whose payload sits only in the low half must not truncate to inf.
    nans = np.array([0x7F80_0001, 0xFF80_0001, 0x7FC0_0000], dtype=np.uint32).view(np.float32)
    out = from_bf16_bits(bf16_bits(nans))
    assert np.isnan(out).all()
    assert np.signbit(out).tolist() == [False, True, False]
    assert np.isnan(from_bf16_bits(bf16_bits(np.array([np.nan])))).all()


def test_bf16_from_float64_rounds_once() -> None:
    # 1 + 2**-8 + 2**-30 is above the bf16 tie; via float32 RNE it would land on the tie
    # exactly (float32 drops the 2**-30) and round down to 1.0: double rounding.
    x = np.array([1 + 2**-8 + 2**-30, -(1 + 2**-8 + 2**-30), 1 + 2**-8 - 2**-40])
    assert bf16_bits(x).tolist() == [0x3F81, 0xBF81, 0x3F80]
    tiny = 2.0**-134  # half the smallest bf16 subnormal: a tie that float32 holds exactly
    near_ties = np.array([tiny * (1 + 2**-30), -tiny * (1 + 2**-30), tiny * (1 - 2**-30), tiny])
    assert bf16_bits(near_ties).tolist() == [0x0001, 0x8001, 0x0000, 0x0000]
    huge = np.array([1e300, -1e300, 3.3962e38, 3.3961e38, 1e-300, -1e-300])
    assert bf16_bits(huge).tolist() == [0x7F80, 0xFF80, 0x7F80, 0x7F7F, 0x0000, 0x8000]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1,
                max_size=20))
def test_bf16_float32_matches_exact_reference(values: list[float]) -> None:
    x = np.array(values, dtype=np.float32)
    assert bf16_bits(x).tolist() == [bf16_reference(float(v)) for v in x]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, max_value=3.5e38,
                          min_value=-3.5e38), min_size=1, max_size=20))
def test_bf16_float64_matches_exact_reference(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    assert bf16_bits(x).tolist() == [bf16_reference(v) for v in values]


def bf16_reference_vectorised(x: np.ndarray) -> np.ndarray:
    """Nearest bf16 of finite float64 |x| < 2**128 by float64 arithmetic (exact near ties)."""
    magnitude = np.abs(x)
    with np.errstate(over="ignore"):
        lo = magnitude.astype(np.float32).view(np.uint32) >> 16
    lo = lo - (bf16_value(lo) > magnitude)  # the bf16 at or below |x|
    hi = lo + 1
    below, above = magnitude - bf16_value(lo), bf16_value(hi) - magnitude
    pick = np.where((above < below) | ((above == below) & (lo % 2 == 1)), hi, lo)
    return (pick | np.where(np.signbit(x), 0x8000, 0)).astype(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    """Magnitude of bf16 bit patterns as float64, with the inf pattern counted as 2**128."""
    values = from_bf16_bits(bits.astype(np.uint16)).astype(np.float64)
    return np.where(bits == BF16_INF_BITS, 2.0**128, values)


def test_bf16_matches_reference_on_many_float32_patterns() -> None:
    bits = np.random.default_rng(7).integers(0, 1 << 32, 200_000, dtype=np.uint64)
    values = bits.astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)]
    assert (bf16_bits(values) == bf16_reference_vectorised(values.astype(np.float64))).all()


def test_bf16_matches_reference_near_float64_ties() -> None:
    rng = np.random.default_rng(8)
    below = rng.integers(0x0080, 0x7F7F, 100_000)  # normal bf16 patterns
    ties = (bf16_value(below) + bf16_value(below + 1)) / 2  # exact halfway points
    x = ties * (1 + rng.integers(-3, 4, ties.size) * 2.0**-40) * rng.choice([-1, 1], ties.size)
    x = x[np.abs(x) < 3.3e38]
    assert (bf16_bits(x) == bf16_reference_vectorised(x)).all()


def test_from_bf16_bits_is_exact_top_half() -> None:
    bits = np.arange(0, 1 << 16, 97, dtype=np.uint16)
    values = from_bf16_bits(bits)
    assert values.dtype == np.float32
    assert (values.view(np.uint32) >> 16).astype(np.uint16).tolist() == bits.tolist()
    finite = np.isfinite(values) | ~np.isnan(values)
    assert bf16_bits(values[finite]).tolist() == bits[finite].tolist()


@pytest.mark.parametrize("dtype", list(DType))
def test_storage_round_trip_and_types(dtype: DType) -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(-100, 100, size=(3, 5)).astype(np.float64)  # exact in every type
    raw = to_storage(values, dtype)
    assert raw.dtype == dtype.storage and raw.shape == (3, 5)
    back = from_storage(raw, dtype)
    assert back.dtype == (np.int64 if dtype in (DType.int8, DType.int32) else np.float64)
    np.testing.assert_array_equal(back, values)
    assert codec(dtype).itemsize == dtype.itemsize


def test_float_types_round_once_to_nearest_even() -> None:
    x = np.array([1 + 2**-11 + 2**-40, 1 + 2**-11, 1 + 3 * 2**-11, 65520.0, 1e300])
    assert from_storage(to_storage(x, "fp16"), "fp16").tolist() == \
        [1 + 2**-10, 1.0, 1 + 2**-9, np.inf, np.inf]
    y = np.array([1 + 2**-24, 1 + 3 * 2**-24, 1 + 2**-24 + 2**-50, -1e300])
    assert from_storage(to_storage(y, "fp32"), "fp32").tolist() == \
        [1.0, 1 + 2**-22, 1 + 2**-23, -np.inf]
    assert to_storage(np.array([1 + 2**-8 + 2**-30]), "bf16").tolist() == [0x3F81]


def test_integers_wrap_and_floats_round_to_even() -> None:
    ints = np.array([127, 128, 255, 256, -129, 2**40 + 5], dtype=np.int64)
    assert to_storage(ints, "int8").tolist() == [127, -128, -1, 0, 127, 5]
    assert to_storage(np.array([2**31, -2**31 - 1]), "int32").tolist() == [-2**31, 2**31 - 1]
    floats = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 127.6, 128.0, np.nan, np.inf, -np.inf, 1e20])
    assert to_storage(floats, "int8").tolist() == [0, 2, 2, 0, -2, -128, -128, 0, 0, 0, 0]
    assert to_storage(np.array([2.0**32 + 7, -(2.0**31) - 2]), "int32").tolist() == \
        [7, 2**31 - 2]


def test_integer_sources_round_once_into_float_types() -> None:
    assert from_storage(to_storage(np.array([2**24 + 1]), "fp32"), "fp32").tolist() == [2**24]
    assert to_storage(np.array([257, 259], dtype=np.int64), "bf16").tolist() == [0x4380, 0x4382]


def test_from_storage_rejects_the_wrong_storage_dtype() -> None:
    with pytest.raises(TypeError, match=r"bf16 is stored as uint16, got float32"):
        from_storage(np.zeros(2, np.float32), "bf16")


def test_unknown_dtype_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown dtype 'fp8'"):
        to_storage(np.zeros(1), "fp8")
