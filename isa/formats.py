"""Low-precision value formats: a tensor quantised into narrow elements with their scales, and
read back. Element rounding is ml_dtypes' (round to nearest, ties to even); every format
saturates at its largest magnitude instead of overflowing. Facts: shared/reference/quant.md.

    int<N>       N-bit signed integers (N = 2..8), symmetric: codes in [-(2^(N-1) - 1), 2^(N-1) - 1],
                 one fp16 scale per tensor, per channel or per group of g along the last axis
    fp8_e4m3     float8_e4m3fn / float8_e5m2 elements, one fp32 scale per tensor
    fp8_e5m2
    mxfp8_e4m3   OCP MX: blocks of 32 along the last axis share an e8m0 scale 2^e,
    mxfp8_e5m2   e = floor(log2(max |x| of the block)) - emax of the element (microxcaling's
    mxfp6_e3m2   shared exponent), clamped to e8m0's 2^-127..2^127; elements float8/6/4
    mxfp6_e2m3   or, for mxint8, int8 with an implicit 2^-6 (symmetric, as microxcaling)
    mxfp4
    mxint8
    bfp<N>       block floating point: blocks of 32 (bfp<N>:b<B> for B) share an 8-bit exponent,
                 each element an N-bit signed integer mantissa (N = 2..16), symmetric

`quantize(x, fmt, group=None)` gives a `Quantized` (codes, scales, the format and the group);
`dequantize` reads it back as float64; `bits_per_element` counts the scales' share. A bad
format or a group that does not divide the axis is a FormatError of one line.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from isa.errors import IsaError

__all__ = ["Format", "FormatError", "Quantized", "parse_format", "quantize", "dequantize",
           "bits_per_element"]

MX_BLOCK = 32                   # OCP MX v1.0: elements sharing one e8m0 scale
SCALE_BITS = {"int": 16, "fp8": 32, "mx": 8, "bfp": 8}    # bits of one scale, by kind
_E8M0_RANGE = (-127, 127)
MXINT8_FRACTION = 6            # MXINT8: an element is int8 x 2^-6

_FLOAT_ELEMENTS = {             # name -> ml_dtypes element type
    "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "e3m2": "float6_e3m2fn",
    "e2m3": "float6_e2m3fn", "e2m1": "float4_e2m1fn",
}


@cache
def _ml_dtypes():
    """ml_dtypes, imported where a float element is first needed: loading its types takes about
    0.6 s, which integer and block formats (and timing-only runs) do without."""
    import ml_dtypes
    return ml_dtypes
_MX = {"mxfp8_e4m3": "e4m3", "mxfp8_e5m2": "e5m2", "mxfp6_e3m2": "e3m2", "mxfp6_e2m3": "e2m3",
       "mxfp4": "e2m1", "mxint8": None}


class FormatError(IsaError):
    """A format that does not exist, or a scale group that does not fit the tensor."""


@dataclass(frozen=True, slots=True)
class Format:
    name: str                   # as written
    kind: str                   # int | fp8 | mx | bfp
    bits: int                   # bits of one element
    element: str | None = None  # float elements: e4m3, e5m2, e3m2, e2m3, e2m1
    block: int | None = None    # mx, bfp: elements sharing one scale

    @property
    def element_type(self) -> np.dtype | None:
        return np.dtype(getattr(_ml_dtypes(), _FLOAT_ELEMENTS[self.element])) if self.element else None

    @property
    def largest(self) -> float:
        """The largest element magnitude (before its scale)."""
        if self.element:
            return float(_ml_dtypes().finfo(self.element_type).max)
        if self.name == "mxint8":
            return 127 / 2 ** MXINT8_FRACTION
        return float(2 ** (self.bits - 1) - 1)


def parse_format(text: str) -> Format:
    """The format `text` names (the module's table), or a FormatError naming it."""
    if not isinstance(text, str):
        raise FormatError(f"format: expected a name, got {text!r}")
    if m := re.fullmatch(r"int(\d+)", text):
        bits = int(m.group(1))
        if not 2 <= bits <= 8:
            raise FormatError(f"format {text!r}: integer widths are 2..8 bits")
        return Format(text, "int", bits)
    if m := re.fullmatch(r"fp8_(e4m3|e5m2)", text):
        return Format(text, "fp8", 8, m.group(1))
    if text in _MX:
        element = _MX[text]
        bits = 8 if element is None else 1 + int(element[1]) + int(element[3])
        return Format(text, "mx", bits, element, MX_BLOCK)
    if m := re.fullmatch(r"bfp(\d+)(?::b(\d+))?", text):
        bits, block = int(m.group(1)), int(m.group(2) or MX_BLOCK)
        if not 2 <= bits <= 16 or block < 1:
            raise FormatError(f"format {text!r}: block floating point takes 2..16-bit elements "
                              "and blocks of at least 1")
        return Format(text, "bfp", bits, None, block)
    raise FormatError(f"format {text!r}: unknown (formats: int2..int8, fp8_e4m3, fp8_e5m2, "
                      f"{', '.join(_MX)}, bfp<N>[:b<B>])")


@dataclass(frozen=True, slots=True)
class Quantized:
    format: Format
    codes: np.ndarray           # the elements: ml_dtypes floats or int8/int16 integers, x's shape
    scales: np.ndarray          # one per scale group, float; the groups along the last axis
    group: int | None           # elements a scale covers along the last axis (None: the tensor)


def quantize(x: np.ndarray, fmt: Format | str, group: int | None = None) -> Quantized:
    """`x` in format `fmt`. `group`: for int<N>, the elements of the last axis one scale covers
    (None: one scale for the tensor; the axis's length: one per channel); mx and bfp take their
    block (a group given to them is refused), fp8 one scale for the tensor."""
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    x = np.asarray(x, dtype=np.float64)
    if fmt.kind in ("mx", "bfp"):
        if group is not None:
            raise FormatError(f"format {fmt.name}: its block ({fmt.block}) is its scale group; "
                              f"group {group} does not apply")
        group = fmt.block
    elif fmt.kind == "fp8" and group is not None:
        raise FormatError(f"format {fmt.name}: one scale for the tensor; group {group} does not apply")
    blocks = _blocks(x, group, fmt)
    amax = np.max(np.abs(blocks), axis=-1, keepdims=True)
    if fmt.kind in ("int", "fp8"):
        scale = np.where(amax > 0, amax / fmt.largest, 1.0)
        with np.errstate(over="ignore"):
            scale = scale.astype(np.float16 if fmt.kind == "int" else np.float32).astype(np.float64)
        if not np.isfinite(scale).all():
            width = "fp16" if fmt.kind == "int" else "fp32"
            raise FormatError(f"format {fmt.name}: a scale of {float(amax.max() / fmt.largest):.4g} "
                              f"does not fit its {width}")
        scale = np.where(scale > 0, scale, np.finfo(np.float16).tiny)   # an fp16 that underflowed
    else:                                # a power of two: e8m0's, or bfp's shared exponent
        emax = math.floor(math.log2(fmt.largest)) if fmt.kind == "mx" else fmt.bits - 2
        with np.errstate(divide="ignore"):
            exponent = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - emax
        exponent = np.where(amax > 0, exponent, _E8M0_RANGE[0])
        scale = np.exp2(np.clip(exponent, *_E8M0_RANGE))
    codes = _elements(blocks / scale, fmt).reshape(x.shape)
    return Quantized(fmt, codes, scale[..., 0], group)


def dequantize(q: Quantized) -> np.ndarray:
    """The float64 values `q` stands for: each element times its scale."""
    values = q.codes.astype(np.float64)
    if q.format.name == "mxint8":
        values = values / 2 ** MXINT8_FRACTION
    blocks = _blocks(values, q.group, q.format)
    return (blocks * q.scales[..., None]).reshape(q.codes.shape)


def bits_per_element(fmt: Format | str, group: int | None = None, elements: int | None = None) -> float:
    """Bits one element takes with its share of the scales: an element's bits plus a scale's
    over the elements it covers (`group`, the format's block, or `elements`: the tensor's)."""
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    covered = fmt.block or group or elements
    if covered is None:
        raise FormatError(f"format {fmt.name}: one scale for the whole tensor: give its elements")
    return fmt.bits + SCALE_BITS[fmt.kind] / covered


def _blocks(x: np.ndarray, group: int | None, fmt: Format) -> np.ndarray:
    """`x` as [..., groups, group] along its last axis (one group: the whole tensor)."""
    if group is None:
        return x.reshape(1, -1)
    length = x.shape[-1] if x.ndim else 1
    if group < 1 or length % group:
        raise FormatError(f"format {fmt.name}: group {group} does not divide the last axis "
                          f"({length} elements)")
    return x.reshape(*x.shape[:-1], length // group, group)


def _elements(scaled: np.ndarray, fmt: Format) -> np.ndarray:
    """Scaled values as the format's elements, saturating at its largest magnitude."""
    if fmt.element:
        largest = fmt.largest
        return np.clip(scaled, -largest, largest).astype(fmt.element_type)
    if fmt.name == "mxint8":
        scaled = scaled * 2 ** MXINT8_FRACTION
        largest = 127
    else:
        largest = 2 ** (fmt.bits - 1) - 1
    return np.clip(np.rint(scaled), -largest, largest).astype(np.int8 if fmt.bits <= 8 else np.int16)
