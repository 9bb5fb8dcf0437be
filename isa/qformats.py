"""The code formats `loadq` reads (and, for integers, `pim.qmode`): how many bits a code takes,
what number its bit pattern stands for, and the type of its scales (docs/isa.md, "Quantised
loads"). The values are those of isa/formats.py (ml_dtypes' element types, OCP MX's e8m0):

    int2..int8     two's-complement integers; scales fp16 (per column, or one)
    fp8_e4m3/e5m2  float8_e4m3fn / float8_e5m2 elements; one fp32 scale
    mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4
                   OCP MX float elements (8, 6, 4 bits); e8m0 scales 2^(byte - 127), one per
                   32 rows (the block along the contracted axis) and column
    mxint8         int8 elements with an implicit 2^-6; e8m0 scales
    bfp2..bfp8     block floating point: N-bit integers sharing an e8m0 scale 2^(byte - 127)
                   per block; the block is the instruction's scale group (a qcfg's `group`
                   rows, a storeq's row of `cols` values, a vquant's `group` columns), so one
                   code format serves isa/formats.py's bfp<N>:b<B> for every B

Decoding floats needs ml_dtypes (0.6 s to import): it is imported on the first float code only.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from isa.errors import IsaError

__all__ = ["CodeFormat", "QFORMATS", "MX_BLOCK", "code_format", "code_values", "code_patterns",
           "scale_values", "scale_patterns", "mode_bits", "mode_name", "INT_FORMATS", "group_error",
           "formats_args"]

_SCALE_BYTES = {"fp16": 2, "fp32": 4, "e8m0": 1}
_E8M0_BIAS = 127                # an e8m0 byte b stands for 2^(b - 127) (OCP MX v1.0)
MX_BLOCK = 32                   # OCP MX v1.0: elements sharing one e8m0 scale (isa/formats.py's,
                                # which imports ml_dtypes)


@dataclass(frozen=True, slots=True)
class CodeFormat:
    name: str
    bits: int
    element: str                # int | bfp | mxint8 | a float element: e4m3 e5m2 e3m2 e2m3 e2m1
    scale: str                  # fp16 | fp32 | e8m0

    @property
    def scale_bytes(self) -> int:
        return _SCALE_BYTES[self.scale]

    @property
    def integer(self) -> bool:
        return self.element == "int"

    @property
    def signed_codes(self) -> bool:
        """Codes are plain two's-complement integers (int<N>, bfp<N>, mxint8's int8)."""
        return self.element in ("int", "bfp", "mxint8")


_TABLE = {f.name: f for f in (
    *(CodeFormat(f"int{b}", b, "int", "fp16") for b in range(2, 9)),
    CodeFormat("fp8_e4m3", 8, "e4m3", "fp32"), CodeFormat("fp8_e5m2", 8, "e5m2", "fp32"),
    CodeFormat("mxfp8_e4m3", 8, "e4m3", "e8m0"), CodeFormat("mxfp8_e5m2", 8, "e5m2", "e8m0"),
    CodeFormat("mxfp6_e3m2", 6, "e3m2", "e8m0"), CodeFormat("mxfp6_e2m3", 6, "e2m3", "e8m0"),
    CodeFormat("mxfp4", 4, "e2m1", "e8m0"), CodeFormat("mxint8", 8, "mxint8", "e8m0"),
    *(CodeFormat(f"bfp{b}", b, "bfp", "e8m0") for b in range(2, 9)))}
QFORMATS = tuple(_TABLE)
INT_FORMATS = tuple(f"int{b}" for b in range(2, 9))     # what pim.qmode's MAC lanes may read


def code_format(name: str) -> CodeFormat:
    found = _TABLE.get(name)
    if found is None:
        raise IsaError(f"code format {name!r} is not one of {', '.join(QFORMATS)}")
    return found


def mode_bits(fmt: str) -> int:
    """Bits of the weight element a `pim.qmode` fmt makes the MACs read: 16 for bf16, N for
    int<N> (the verifier admits no other)."""
    return 16 if fmt == "bf16" else code_format(fmt).bits


def mode_name(bits: int) -> str:
    """The `pim.qmode` fmt of a MAC reading `bits`-bit elements."""
    return "bf16" if bits == 16 else f"int{bits}"


def group_error(name: str, group: int) -> str | None:
    """Why a row of values cannot be rounded to code format `name` in scale groups of `group`
    values (0: one scale for them all), or None: int<N> takes either, fp8 one scale, an MX
    format its block of 32, bfp<N> any block (its group is its block)."""
    fmt = code_format(name)
    if fmt.scale == "fp32" and group:
        return f"{name} takes one scale for the tile (group must be 0)"
    if fmt.element == "bfp" and not group:
        return f"{name} scales blocks of `group` values (group must be its block, > 0)"
    if fmt.scale == "e8m0" and fmt.element != "bfp" and group != MX_BLOCK:
        return f"{name} scales blocks of {MX_BLOCK} (group must be {MX_BLOCK})"
    return None


def formats_args(name: str, group: int) -> tuple[str, int | None]:
    """isa/formats.py's (format, group) for values rounded to code format `name` in scale
    groups of `group` (group_error has admitted it): an MX format or fp8 takes its own groups
    (None), bfp<N> names its block (bfp4:b16), int<N> takes the group (None for 0: one
    scale)."""
    fmt = code_format(name)
    if fmt.element == "bfp":
        return f"{name}:b{group}", None
    if fmt.scale != "fp16" or not group:
        return name, None
    return name, group


@cache
def _element_type(name: str) -> np.dtype:
    """A float code format's ml_dtypes element type, as isa.formats names it (imported here
    only: it loads ml_dtypes)."""
    from isa.formats import parse_format
    return parse_format(name).element_type


def _mxint8_fraction() -> int:
    from isa.formats import MXINT8_FRACTION
    return MXINT8_FRACTION


def code_values(patterns: np.ndarray, fmt: CodeFormat) -> np.ndarray:
    """The float64 numbers of `bits`-bit patterns (uint8, low bits) before their scales."""
    p = np.asarray(patterns, np.uint8)
    if fmt.signed_codes:
        signed = p.astype(np.int16)
        signed = np.where(signed >= 1 << (fmt.bits - 1), signed - (1 << fmt.bits), signed)
        return signed.astype(np.float64) / (2 ** _mxint8_fraction() if fmt.element == "mxint8" else 1)
    return p.view(_element_type(fmt.name)).astype(np.float64)


def code_patterns(codes: np.ndarray, fmt: CodeFormat) -> np.ndarray:
    """isa.formats' codes (integers, or ml_dtypes floats) as their bit patterns, uint8."""
    c = np.asarray(codes)
    if fmt.signed_codes:
        return (c.astype(np.int16) & ((1 << fmt.bits) - 1)).astype(np.uint8)
    return np.ascontiguousarray(c.astype(_element_type(fmt.name))).view(np.uint8)


def scale_values(raw: np.ndarray, fmt: CodeFormat) -> np.ndarray:
    """Scales from their bytes [..., scale_bytes] (little-endian), as float64."""
    raw = np.ascontiguousarray(np.asarray(raw, np.uint8))
    if fmt.scale == "e8m0":
        return np.exp2(raw[..., 0].astype(np.float64) - _E8M0_BIAS)
    return raw.view("<f2" if fmt.scale == "fp16" else "<f4")[..., 0].astype(np.float64)


def scale_patterns(scales: np.ndarray, fmt: CodeFormat) -> np.ndarray:
    """Scales (float64, each one the format's scale type holds exactly) as stored: fp16 or
    fp32 arrays, or e8m0 exponent bytes (uint8)."""
    s = np.asarray(scales, np.float64)
    if fmt.scale == "e8m0":
        exponent = np.log2(s)
        if not np.array_equal(exponent, np.round(exponent)):
            raise IsaError(f"{fmt.name}: an e8m0 scale must be a power of two")
        return (exponent + _E8M0_BIAS).astype(np.uint8)
    return s.astype(np.float16 if fmt.scale == "fp16" else np.float32)
