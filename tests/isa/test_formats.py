"""Low-precision formats (isa/formats.py): elements rounded as ml_dtypes rounds them (nearest,
ties to even, checked here against a brute-force nearest), values already in a format read
back exactly, scales as the format defines them, bits per element with the scales' share."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from isa.formats import (Format, FormatError, bits_per_element, dequantize, parse_format,
                         quantize)

FLOATS = ["e4m3", "e5m2", "e3m2", "e2m3", "e2m1"]
TYPES = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2,
         "e3m2": ml_dtypes.float6_e3m2fn, "e2m3": ml_dtypes.float6_e2m3fn,
         "e2m1": ml_dtypes.float4_e2m1fn}
MX = {"mxfp8_e4m3": "e4m3", "mxfp8_e5m2": "e5m2", "mxfp6_e3m2": "e3m2", "mxfp6_e2m3": "e2m3",
      "mxfp4": "e2m1"}


def representable(element: str) -> tuple[np.ndarray, np.ndarray]:
    """Every finite value of an element type and its bit pattern (sub-byte types are stored one
    per byte: their patterns are the low bits)."""
    t = np.dtype(TYPES[element])
    bits = 1 + int(element[1]) + int(element[3])
    codes = np.arange(2 ** bits, dtype=np.uint8)
    values = codes.view(t).astype(np.float64)
    finite = np.isfinite(values)
    return values[finite], codes[finite]


@pytest.mark.parametrize("element", FLOATS)
def test_elements_round_to_the_nearest_value_ties_to_even(element):
    values, codes = representable(element)
    largest = float(ml_dtypes.finfo(TYPES[element]).max)
    distinct = np.unique(values)
    middles = (distinct[:-1] + distinct[1:]) / 2
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-largest, largest, 4000), middles, middles * (1 + 2 ** -40),
                        middles * (1 - 2 ** -40)])
    got = quantize(x, Format("t", "fp8", 8, element)).codes      # one scale: largest |x| / max
    scale = np.abs(x).max() / largest
    assert np.array_equal(got.astype(np.float64), (x / scale).astype(TYPES[element]).astype(np.float64))
    distance = np.abs(x[:, None] - values[None, :])
    nearest = distance == distance.min(axis=1, keepdims=True)
    even = nearest & (codes % 2 == 0)[None, :]
    pick = np.where(even.any(axis=1), np.argmax(even, axis=1), np.argmax(nearest, axis=1))
    direct = x.astype(TYPES[element]).astype(np.float64)
    assert np.array_equal(direct, values[pick])           # -0.0 and 0.0 compare equal


@pytest.mark.parametrize("bits, group", [(8, None), (4, 128), (4, 16), (3, 8), (2, 4), (8, 64)])
def test_integers_with_their_scales_read_back_exactly(bits, group):
    """Codes with a full-scale element in every group, times fp16 scales: quantised again,
    they give the same codes and scales, and read back to the same values."""
    rng = np.random.default_rng(bits)
    top = 2 ** (bits - 1) - 1
    length = group or 256
    codes = rng.integers(-top, top + 1, (6, 4 * length))
    codes[..., ::length] = top
    scales = rng.uniform(0.01, 2.0, (6, 4 if group else 1)).astype(np.float16).astype(np.float64)
    if group is None:
        scales[:] = scales[0, 0]
    x = (codes.reshape(6, -1, length) * scales[..., None]).reshape(codes.shape)
    q = quantize(x, f"int{bits}", group)
    assert np.array_equal(q.codes, codes) and q.codes.dtype == np.int8
    assert np.array_equal(dequantize(q), x)


@pytest.mark.parametrize("name", list(MX))
def test_mx_blocks_read_back_exactly_and_share_a_power_of_two(name):
    """Blocks of 32 representable elements whose largest has the element's top exponent, times
    a power of two: the shared exponent is found again and the values read back exactly."""
    values, _ = representable(MX[name])
    largest = values.max()
    rng = np.random.default_rng(1)
    blocks = rng.choice(values, (5, 3, 32))
    blocks[..., 0] = largest
    exponents = rng.integers(-20, 20, (5, 3))
    x = (blocks * np.exp2(exponents)[..., None]).reshape(5, 96)
    q = quantize(x, name)
    assert np.array_equal(np.log2(q.scales), exponents)
    assert np.array_equal(dequantize(q), x)


def test_mx_and_bfp_saturate_and_scale_by_their_block():
    x = np.linspace(-3.0, 5.0, 64)
    for name in ("mxfp4", "mxfp8_e4m3", "mxint8", "bfp8", "bfp4:b16"):
        q = quantize(x, name)
        back = dequantize(q)
        step = q.scales.repeat(q.group)
        assert np.isfinite(back).all() and q.scales.shape == (64 // q.group,)
        assert np.all(np.log2(q.scales) == np.round(np.log2(q.scales)))      # powers of two
        block_max = np.abs(x).reshape(-1, q.group).max(axis=1).repeat(q.group)
        if q.format.element:            # a float element rounds within 2^-(mantissa bits + 1)
            bound = block_max * (1 + 2.0 ** -(int(q.format.element[3]) + 1))
        else:                           # an integer one within half a step
            bound = block_max + step / 2
        assert np.all(np.abs(back) <= bound)
    bfp = quantize(x, "bfp8")
    assert np.all(np.abs(dequantize(bfp) - x) <= bfp.scales.repeat(32) / 2)   # half a step
    assert quantize(np.array([1e9, -1e9]), "fp8_e4m3").codes.astype(np.float64).tolist() == [448.0, -448.0]


def test_zero_blocks_and_groups_read_back_as_zero():
    for name, group in (("int4", 8), ("mxfp4", None), ("bfp8", None), ("fp8_e5m2", None)):
        assert not dequantize(quantize(np.zeros((2, 32)), name, group)).any()


@pytest.mark.parametrize("name, group, bits", [
    ("int4", 128, 4 + 16 / 128), ("int8", 4096, 8 + 16 / 4096), ("mxfp4", None, 4.25),
    ("mxfp6_e2m3", None, 6.25), ("mxfp8_e4m3", None, 8.25), ("mxint8", None, 8.25),
    ("bfp8", None, 8.25), ("bfp4:b64", None, 4.125)])
def test_bits_per_element_count_the_scales_share(name, group, bits):
    assert bits_per_element(name, group) == bits
    assert bits_per_element("fp8_e4m3", elements=1 << 20) == 8 + 32 / (1 << 20)


@pytest.mark.parametrize("call, message", [
    (lambda: parse_format("int9"), "format 'int9': integer widths are 2..8 bits"),
    (lambda: parse_format("fp8"), "format 'fp8': unknown (formats: int2..int8, fp8_e4m3"),
    (lambda: parse_format("bfp1"), "format 'bfp1': block floating point takes 2..16-bit"),
    (lambda: parse_format(8), "format: expected a name, got 8"),
    (lambda: quantize(np.ones((2, 100)), "int4", 128), "format int4: group 128 does not divide "
                                                       "the last axis (100 elements)"),
    (lambda: quantize(np.ones((2, 48)), "mxfp4"), "format mxfp4: group 32 does not divide the "
                                                  "last axis (48 elements)"),
    (lambda: quantize(np.ones(64), "mxfp4", 16), "format mxfp4: its block (32) is its scale group"),
    (lambda: quantize(np.ones(64), "fp8_e4m3", 16), "format fp8_e4m3: one scale for the tensor"),
    (lambda: quantize(np.array([1e9]), "int4"), "does not fit its fp16"),
    (lambda: bits_per_element("fp8_e5m2"), "format fp8_e5m2: one scale for the whole tensor"),
])
def test_bad_formats_and_groups_are_one_line(call, message):
    with pytest.raises(FormatError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow      # processes of their own
@pytest.mark.parametrize("fmt, group, loaded", [("int4", 32, False), ("bfp4:b16", None, False),
                                                ("mxint8", None, False), ("mxfp4", None, True),
                                                ("fp8_e4m3", None, True)])
def test_ml_dtypes_loads_for_float_elements_only(fmt, group, loaded):
    """Loading ml_dtypes' types takes about 0.6 s: integer and block formats quantise without
    it, a float element loads it."""
    import subprocess
    import sys
    code = ("import sys, numpy as np; from isa.formats import dequantize, quantize, "
            f"bits_per_element; dequantize(quantize(np.linspace(-3, 3, 64), {fmt!r}, {group})); "
            "print('ml_dtypes' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == str(loaded), proc.stderr[-2000:]
