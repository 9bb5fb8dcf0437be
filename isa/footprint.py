"""Memory footprints of instructions: which bytes of which space each operand touches.

A footprint depends on the operands and on the queue's configuration registers (strides from
`dmacfg`, shapes from `mcfg`/`vcfg`/`qcfg`), tracked by `QueueConfig`. `verify` uses footprints
for bounds and direction checks; a simulator can use them to size transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from isa.errors import IsaError
from isa.instr import Instr
from isa.opcodes import OPCODES, VEC_BINARY
from isa.qformats import MX_BLOCK, code_format, mode_bits
from isa.packing import packed_row_bytes, plane_row_bytes
from isa.values import Addr, DType

__all__ = ["Footprint", "QueueConfig", "footprints", "gather_row_bytes", "loadq_row_bytes",
           "scale_bytes", "ConfigError", "WRITTEN_ROLES", "is_written", "stripes", "storeq_qcfg",
           "storeq_scale_bytes", "PlaneRows", "loadp_rows"]

INDEX_BYTES = 4  # gather indices are int32
PIM_ACC_BYTES = 4  # one fp32 MAC accumulator per bank


class ConfigError(IsaError):
    """An instruction that needs configuration its queue does not have (gemm before mcfg)."""


class Footprint(NamedTuple):
    """Operand `role` touches [addr, addr + size_bytes); on_chip says where it must live
    (True: on-chip, False: off-chip, None: either)."""

    role: str
    addr: Addr
    size_bytes: int
    on_chip: bool | None


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Configuration registers of one queue; reset state: dense strides, no mcfg, vcfg or qcfg.
    `qcfg` holds the queue's quantisation setting: a DMA queue's last qcfg, a pim queue's
    last pim.qmode (none: BF16 MACs), or a matrix queue's last mfmt (none: the operand type)."""

    src_stride: int = 0
    dst_stride: int = 0
    mcfg: Instr | None = None
    vcfg: Instr | None = None
    qcfg: Instr | None = None

    def after(self, instr: Instr) -> QueueConfig:
        """The configuration once `instr` has issued (unchanged unless it is a *cfg)."""
        op = instr.opcode          # the constructor, not dataclasses.replace: simulators call
        if op == "dmacfg":         # this for every *cfg of a program
            return QueueConfig(instr["src_stride"], instr["dst_stride"], self.mcfg, self.vcfg,
                               self.qcfg)
        if op == "mcfg":
            return QueueConfig(self.src_stride, self.dst_stride, instr, self.vcfg, self.qcfg)
        if op == "vcfg":
            return QueueConfig(self.src_stride, self.dst_stride, self.mcfg, instr, self.qcfg)
        if op == "qcfg" or op == "pim.qmode" or op == "mfmt":
            return QueueConfig(self.src_stride, self.dst_stride, self.mcfg, self.vcfg, instr)
        return self


Limits = Mapping[str, int]
# The roles an instruction writes (every other footprint is read): load/store/gather/vec/red/
# vquant/loadq/loadp/storeq/pim.rd/pim.rdmac/df.* destinations, gemm's c and a collective's
# buffer.
# A storeq's "scales" are written too (`is_written`), but not here: "scales" names the qcfg's
# field, which a qcfg and a loadq read, and a role here is a field of the instruction itself.
WRITTEN_ROLES = frozenset({"dst", "c", "buf"})


def is_written(opcode: str, role: str) -> bool:
    """Whether footprint `role` of an `opcode` instruction is a write: WRITTEN_ROLES, and the
    scale rows a storeq writes at its qcfg's address."""
    return role in WRITTEN_ROLES or (role == "scales" and opcode == "storeq")


def footprints(instr: Instr, config: QueueConfig, limits: Limits | None = None) -> list[Footprint]:
    """Footprints of `instr` issued on a queue configured as `config`; empty ones omitted.

    limits supplies `pim_burst_bytes` and `bank` (PIM footprints that need them are omitted
    when absent). ConfigError when a needed mcfg/vcfg/dmacfg is missing.
    """
    found = _RULES[instr.opcode](instr, config, limits or {})
    return [f for f in found if f.size_bytes > 0]


def _extent_bytes(rows: int, row_bytes: int, pitch: int) -> int:
    """Bytes from the first to the last byte of `rows` rows at `pitch` (0 = dense)."""
    if rows == 0 or row_bytes == 0:
        return 0
    return (rows - 1) * (pitch or row_bytes) + row_bytes


def stripes(instr: Instr, config: QueueConfig, footprint: Footprint) -> tuple[int, int, int]:
    """`footprint` of `instr` as (rows, row_bytes, pitch): the bytes it really touches, which
    a pitched load/store/loadq/loadp/storeq side leaves gaps between (a loop may interleave its
    iterations' rows there), as do a storeq's scale rows `pitch` scales apart (a KV cache's
    scales of one token and head among the other heads'); a loadp's source row is the span of
    the planes it reads (gaps between them included); every other footprint is one dense
    row."""
    if instr.opcode == "storeq" and footprint.role == "scales":
        qcfg = config.qcfg
        size = code_format(qcfg["fmt"]).scale_bytes
        return scale_rows(qcfg, instr["rows"]), scale_bytes(qcfg), qcfg["pitch"] * size or size
    if footprint.role not in ("dst", "src") or instr.opcode not in _PITCHED:
        return 1, footprint.size_bytes, footprint.size_bytes
    pitch = config.dst_stride if footprint.role == "dst" else config.src_stride
    if instr.opcode == "loadp":
        found = loadp_rows(instr, config)
        if footprint.role == "src":
            return instr["rows"], found.span, found.stride
        return instr["rows"], found.written, pitch or found.written
    if instr.opcode in ("loadq", "storeq"):
        packed, values = loadq_row_bytes(instr, config)
        row_bytes = packed if (footprint.role == "dst") == (instr.opcode == "storeq") else values
    else:
        row_bytes = instr["row_bytes"]
    return instr["rows"], row_bytes, pitch or row_bytes


_PITCHED = frozenset({"load", "store", "loadq", "loadp", "storeq"})   # rows at dmacfg's pitches


def _none(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    return []


def _load(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    rows, row_bytes = instr["rows"], instr["row_bytes"]
    dst_bytes = _extent_bytes(rows, row_bytes, config.dst_stride)
    src_bytes = _extent_bytes(rows, row_bytes, config.src_stride)
    return [Footprint("dst", instr["dst"], dst_bytes, True),
            Footprint("src", instr["src"], src_bytes, False)]


def _store(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    rows, row_bytes = instr["rows"], instr["row_bytes"]
    dst_bytes = _extent_bytes(rows, row_bytes, config.dst_stride)
    src_bytes = _extent_bytes(rows, row_bytes, config.src_stride)
    return [Footprint("dst", instr["dst"], dst_bytes, False),
            Footprint("src", instr["src"], src_bytes, True)]


def pim_lanes_per_bf16(config: QueueConfig) -> int:
    """Inputs a pim queue's MAC reads per BF16 weight lane under its mode (pim.qmode): 1 for
    BF16, 16 / N for N-bit codes (a burst holds 16 / N times as many)."""
    mode = config.qcfg
    if mode is None or mode.opcode != "pim.qmode":
        return 1
    return 16 // mode_bits(mode["fmt"])


@lru_cache(maxsize=1024)
def _qcfg_geometry(fmt: str, dtype, cols: int, step: int) -> tuple[int, int, int]:
    """(packed code bytes a row, dequantised bytes a row, scale bytes) of a qcfg's operands
    but its address: machines ask it once per loadq, and loads repeat few shapes."""
    code = code_format(fmt)
    scales = (cols - 1) * step + code.scale_bytes if cols else 0
    return packed_row_bytes(cols, code.bits), cols * DType(dtype).itemsize, scales


def scale_bytes(qcfg: Instr) -> int:
    """The bytes of scales a qcfg reads: scales[c*step : c*step + size] for c < cols (size:
    the bytes of its format's scale type, isa/qformats.py)."""
    (_, fmt), (_, dtype), (_, cols), (_, step), *_ = qcfg.fields
    return _qcfg_geometry(fmt, dtype, cols, step)[2]


def scale_rows(qcfg: Instr, rows: int) -> int:
    """The scale rows a loadq of `rows` rows reads under `qcfg`: one, or one per `group` rows."""
    group = qcfg["group"]
    return (rows - 1) // group + 1 if group and rows else 1


def loadq_scale_extent(qcfg: Instr, rows: int) -> int:
    """The bytes from a qcfg's scales address to the end of the last scale a loadq of `rows`
    rows reads (scale rows `pitch` scales apart)."""
    size = code_format(qcfg["fmt"]).scale_bytes
    return (scale_rows(qcfg, rows) - 1) * qcfg["pitch"] * size + scale_bytes(qcfg)


def loadq_row_bytes(instr: Instr, config: QueueConfig) -> tuple[int, int]:
    """A loadq's (or storeq's) bytes per row under its queue's qcfg: (packed codes off-chip,
    values on-chip). ConfigError without a qcfg."""
    (_, fmt), (_, dtype), (_, cols), (_, step), *_ = _need(config, "qcfg", instr).fields
    return _qcfg_geometry(fmt, dtype, cols, step)[:2]


def _qcfg(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    return [Footprint("scales", instr["scales"], scale_bytes(instr), False)]


def _loadq(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    packed, written = loadq_row_bytes(instr, config)
    rows = instr["rows"]
    return [Footprint("dst", instr["dst"], _extent_bytes(rows, written, config.dst_stride), True),
            Footprint("src", instr["src"], _extent_bytes(rows, packed, config.src_stride), False),
            *_later_scale_rows(config.qcfg, rows)]


def _later_scale_rows(qcfg: Instr, rows: int) -> list[Footprint]:
    """A loadq's or loadp's scales past its qcfg's first scale row (the qcfg's own footprint
    covers that one): from the qcfg's address to the last scale read."""
    if scale_rows(qcfg, rows) < 2:
        return []
    return [Footprint("scales", qcfg["scales"], loadq_scale_extent(qcfg, rows), False)]


class PlaneRows(NamedTuple):
    """A loadp's bytes a row under its queue's qcfg (`loadp_rows`)."""

    bits: int       # W: the bit planes a row of the stored weight has
    read: int       # code bytes it reads a row: planes x ceil(cols/8)
    span: int       # from a row's first plane to the end of its last it reads
    written: int    # values it writes a row: cols x size(dtype)
    stride: int     # source row pitch: dmacfg's src_stride, or (0) W x plane_bytes


@lru_cache(maxsize=1024)
def _plane_geometry(fmt: str, dtype, cols: int, planes: int,
                    plane_bytes: int) -> tuple[int, int, int, int]:
    """(bits, read, span, written) of `PlaneRows`, once the planes fit the qcfg: machines ask
    it once per loadp, and loads repeat few shapes."""
    code = code_format(fmt)
    if not code.integer:
        raise ConfigError(f"loadp reads integer codes (int2..int8), got fmt={fmt}")
    if planes == 0:
        raise ConfigError("planes=0: a loadp reads at least one bit plane")
    if planes > code.bits:
        raise ConfigError(f"planes={planes}: {fmt} codes have {code.bits} bit planes")
    width = plane_row_bytes(cols)
    if plane_bytes < width:
        raise ConfigError(f"plane_bytes={plane_bytes} holds {plane_bytes * 8} of the qcfg's "
                          f"cols={cols} columns")
    span = (planes - 1) * plane_bytes + width
    return code.bits, planes * width, span, cols * DType(dtype).itemsize


def loadp_rows(instr: Instr, config: QueueConfig) -> PlaneRows:
    """A loadp's bytes a row under its queue's qcfg; ConfigError without a qcfg, or for one it
    cannot read: integer codes only, 1 to W of their W planes, planes wide enough for the
    qcfg's columns (plane_bytes >= ceil(cols/8))."""
    (_, fmt), (_, dtype), (_, cols), *_ = _need(config, "qcfg", instr).fields
    plane_bytes = instr["plane_bytes"]
    bits, read, span, written = _plane_geometry(fmt, dtype, cols, instr["planes"], plane_bytes)
    return PlaneRows(bits, read, span, written, config.src_stride or bits * plane_bytes)


def _loadp(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    found, rows = loadp_rows(instr, config), instr["rows"]
    return [Footprint("dst", instr["dst"], _extent_bytes(rows, found.written, config.dst_stride),
                      True),
            Footprint("src", instr["src"], _extent_bytes(rows, found.span, found.stride), False),
            *_later_scale_rows(config.qcfg, rows)]


_FLOAT_VALUES = frozenset({DType.fp32, DType.bf16, DType.fp16})


def storeq_qcfg(instr: Instr, config: QueueConfig) -> Instr:
    """The qcfg a storeq quantises by; ConfigError without one, or for one it cannot write:
    a storeq writes one scale for all columns of a row group (step 0), MX one per row of its
    block of 32 values, bfp one per row (a row of cols values is its block), and it rounds
    float values (what isa/formats.py quantises)."""
    qcfg = _need(config, "qcfg", instr)
    (_, fmt), (_, dtype), (_, cols), (_, step), _, (_, group), _ = qcfg.fields
    if step:
        raise ConfigError(f"storeq writes one scale per row group (qcfg step=0), got step={step}")
    code = code_format(fmt)
    if code.element == "bfp" and group != 1:
        raise ConfigError(f"storeq of {fmt} writes one scale per row, its block of cols values "
                          f"(qcfg group=1), got cols={cols} group={group}")
    if code.scale == "e8m0" and code.element != "bfp" and (cols != MX_BLOCK or group != 1):
        raise ConfigError(f"storeq of {fmt} writes one scale per row of {MX_BLOCK} values (qcfg "
                          f"cols={MX_BLOCK} group=1), got cols={cols} group={group}")
    if DType(dtype) not in _FLOAT_VALUES:
        raise ConfigError(f"storeq quantises float values (qcfg dtype fp32, bf16 or fp16), "
                          f"got dtype={DType(dtype)}")
    return qcfg


def storeq_scale_bytes(qcfg: Instr, rows: int) -> int:
    """The bytes of scales a storeq of `rows` rows writes: one scale a row group (none for no
    rows)."""
    return scale_rows(qcfg, rows) * code_format(qcfg["fmt"]).scale_bytes if rows else 0


def _storeq(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    qcfg = storeq_qcfg(instr, config)
    packed, values = loadq_row_bytes(instr, config)
    rows = instr["rows"]
    scales = loadq_scale_extent(qcfg, rows) if rows else 0      # step 0: the scale rows' span
    return [Footprint("dst", instr["dst"], _extent_bytes(rows, packed, config.dst_stride), False),
            Footprint("src", instr["src"], _extent_bytes(rows, values, config.src_stride), True),
            Footprint("scales", qcfg["scales"], scales, False)]


def gather_row_bytes(config: QueueConfig) -> int:
    """The bytes a gather takes of each table row: dst_stride (a column slice), or the whole
    src_stride-byte row when it is 0. ConfigError without a row pitch, or for a slice wider
    than the row."""
    pitch, width = config.src_stride, config.dst_stride
    if pitch == 0:
        raise ConfigError("gather needs the row size in bytes: dmacfg src_stride > 0 first")
    if width > pitch:
        raise ConfigError(f"gather takes dst_stride = {width} bytes of each table row, more than "
                          f"the row pitch src_stride = {pitch}")
    return width or pitch


def _gather(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    row_bytes, n = gather_row_bytes(config), instr["n"]
    # Which table rows are read depends on the indices; statically, at least one row.
    return [Footprint("dst", instr["dst"], n * row_bytes, True),
            Footprint("table", instr["table"], row_bytes if n else 0, False),
            Footprint("idx", instr["idx"], n * INDEX_BYTES, True)]


def _need(config: QueueConfig, register: str, instr: Instr) -> Instr:
    value = getattr(config, register)
    if value is None:
        raise ConfigError(f"{instr.opcode} before any {register} on this queue")
    return value


def _gemm(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    cfg = _need(config, "mcfg", instr)
    m, n, k = cfg["m"], cfg["n"], cfg["k"]
    item, acc = DType(cfg["dtype"]).itemsize, DType(cfg["acc"]).itemsize
    return [Footprint("c", instr["c"], m * n * acc, True),
            Footprint("a", instr["a"], m * k * item, True),
            Footprint("b", instr["b"], k * n * item, True)]


_BCAST_ELEMENTS: dict[str, Callable[[int, int], int]] = {
    "none": lambda rows, cols: rows * cols,
    "row": lambda rows, cols: rows,
    "col": lambda rows, cols: cols,
    "scalar": lambda rows, cols: 1,
}


def _vec(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    cfg = _need(config, "vcfg", instr)
    rows, cols = cfg["rows"], cfg["cols"]
    item, out = DType(cfg["dtype"]).itemsize, DType(cfg["out"]).itemsize
    found = [Footprint("dst", instr["dst"], rows * cols * out, True),
             Footprint("a", instr["a"], rows * cols * item, True)]
    if instr["func"] in VEC_BINARY:
        b_elements = _BCAST_ELEMENTS[instr["bcast"]](rows, cols)
        found.append(Footprint("b", instr["b"], b_elements * item, True))
    return found


def _red(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    cfg = _need(config, "vcfg", instr)
    rows, cols = cfg["rows"], cfg["cols"]
    return [Footprint("dst", instr["dst"], rows * DType(cfg["out"]).itemsize, True),
            Footprint("src", instr["src"], rows * cols * DType(cfg["dtype"]).itemsize, True)]


def _vquant(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    cfg = _need(config, "vcfg", instr)
    elements = cfg["rows"] * cfg["cols"]
    return [Footprint("dst", instr["dst"], elements * DType(cfg["out"]).itemsize, True),
            Footprint("src", instr["src"], elements * DType(cfg["dtype"]).itemsize, True)]


def _pim_wrgb(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    return [Footprint("src", instr["src"], instr["bytes"], None)]


def _pim_rdmac(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    return [Footprint("dst", instr["dst"], PIM_ACC_BYTES, None)]


def _pim_rdmac_all(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    banks = limits.get("bank", 1)  # the bank limit is the bank count; 1 if unknown
    return [Footprint("dst", instr["dst"], PIM_ACC_BYTES * banks, None)]


def _pim_burst(role: str) -> Callable[[Instr, QueueConfig, Limits], list[Footprint]]:
    def rule(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
        burst = limits.get("pim_burst_bytes")
        return [] if burst is None else [Footprint(role, instr[role], instr["ncols"] * burst, None)]
    return rule


def _df_stream(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    size = instr["tiles"] * instr["tile_bytes"]
    return [Footprint("dst", instr["dst"], size, True), Footprint("src", instr["src"], size, True)]


def _df_xfer(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    size = instr["kib"] * 1024
    return [Footprint("dst", instr["dst"], size, False),
            Footprint("src", instr["src"], size, False)]


def _coll(instr: Instr, config: QueueConfig, limits: Limits) -> list[Footprint]:
    return [Footprint("buf", instr["buf"], instr["bytes"], None)]


_RULES: dict[str, Callable[[Instr, QueueConfig, Limits], list[Footprint]]] = {
    "halt": _none, "signal": _none, "wait": _none, "dmacfg": _none, "mcfg": _none,
    "vcfg": _none, "load": _load, "store": _store, "gather": _gather, "gatherw": _gather,
    "qcfg": _qcfg, "loadq": _loadq, "loadp": _loadp, "storeq": _storeq, "gemm": _gemm,
    "vec": _vec, "red": _red, "vquant": _vquant,
    "pim.act": _none, "pim.act_all": _none, "pim.pre": _none, "pim.pre_all": _none,
    "pim.qmode": _none, "mfmt": _none,
    "pim.wrgb": _pim_wrgb, "pim.mac": _none, "pim.mac_all": _none,
    "pim.rdmac": _pim_rdmac, "pim.rdmac_all": _pim_rdmac_all,
    "pim.wr": _pim_burst("src"), "pim.rd": _pim_burst("dst"),
    "df.section": _none, "df.run": _none, "df.stream": _df_stream, "df.xfer": _df_xfer,
    "coll": _coll, "loop": _none, "stride": _none,
}
assert set(_RULES) == set(OPCODES), "every opcode needs a footprint rule"
# Opcodes that touch no memory and configure nothing: verify skips their footprints.
NO_FOOTPRINT = frozenset(op for op, rule in _RULES.items()
                         if rule is _none and op not in ("dmacfg", "mcfg", "vcfg", "qcfg",
                                                         "pim.qmode", "mfmt"))
