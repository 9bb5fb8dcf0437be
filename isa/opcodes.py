"""The opcode table: the one source the encoder, decoder, printer, parser and docs derive from.

Each `OpSpec` gives mnemonic, 8-bit code, family, the units whose queues may issue it, its
ordered operand fields and its semantics as pseudo-code. Cycle counts are not part of the ISA:
each target's machine model in `sim/` times every instruction.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from types import MappingProxyType

from isa.fields import A32, A32_64B, A40, DTYPE, E, F32, Field, FieldKind, Flag, S, U
from isa.qformats import INT_FORMATS, QFORMATS
from isa.values import QUEUE_INDEX_BITS, Unit

__all__ = [
    "OpSpec", "OPCODES", "OPCODES_BY_CODE", "ISA_VERSION", "WORD_BITS", "PAYLOAD_BITS",
    "VEC_FUNCS", "VEC_BINARY", "VEC_IMMEDIATE", "VEC_UNARY", "BCASTS", "RED_FUNCS",
    "STRUCTURE", "STRUCTURE_QUEUE", "LINK_QUEUE", "MOVING_INTS", "COLL_KINDS", "QFORMATS",
    "PIM_MODES", "MAC_FORMATS",
]

ISA_VERSION = 3  # 3: qcfg/vquant fmt E5, qcfg step U4 (bfp formats); 2: A40 is 2 + 38 bits
                 # (was 4 + 36); an older .tbin would decode wrongly
WORD_BITS = 128
OPCODE_BITS = 8
QUEUE_BITS = 4 + QUEUE_INDEX_BITS
PAYLOAD_BITS = WORD_BITS - OPCODE_BITS - QUEUE_BITS  # 104, fields packed MSB first

VEC_BINARY = ("add", "sub", "mul", "div", "max")
VEC_IMMEDIATE = ("addi", "muli")
VEC_UNARY = ("exp", "rsqrt", "recip", "gelu", "tanh", "copy")
VEC_FUNCS = VEC_BINARY + VEC_IMMEDIATE + VEC_UNARY
BCASTS = ("none", "row", "col", "scalar")
RED_FUNCS = ("sum", "max")
# What a `coll` does (sim/multi.py): NCCL's collectives, and one side of a point-to-point copy.
# How a PIM MAC reads a column burst (`pim.qmode`): BF16 weights, or packed integer codes (a
# MAC lane multiplies integers; verify refuses the widths that do not split a 16-bit lane).
PIM_MODES = ("bf16",) + INT_FORMATS    # int3, int5..7: verify refuses them (no whole lanes)
# What a matrix unit's MACs multiply (`mfmt`): the operand type, or both operands' codes in one
# narrow format (an array's arch field mac_formats gives its rate and energy in each).
MAC_FORMATS = ("none", "int8", "int4", "fp8", "mxfp8", "mxfp6", "mxfp4", "mxint8")
COLL_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send", "recv")

# The integer operands a loop may move besides addresses (docs/isa.md, "Loops"): a GEMV's next
# DRAM row, the next columns of an open row, the next bytes of the global buffer. A bank, a
# count or a size never moves: what a loop repeats is one shape of DRAM commands.
MOVING_INTS = frozenset({("pim.act", "row"), ("pim.act_all", "row"), ("pim.wrgb", "gb"),
                         ("pim.mac", "col"), ("pim.mac", "gb"), ("pim.mac_all", "col"),
                         ("pim.mac_all", "gb"), ("pim.wr", "row"), ("pim.wr", "col"),
                         ("pim.rd", "row"), ("pim.rd", "col")})

ANY_UNIT = frozenset(Unit) - {Unit.seq}   # seq words are program structure, not work
STRUCTURE = frozenset({"loop", "stride"})  # the words of Unit.seq: no queue executes them
STRUCTURE_QUEUE = "seq0"                   # the one queue text they carry
LINK_QUEUE = "link0"                       # a device's port to the others (`coll`)


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One instruction: identity, where it may run, operand layout and meaning."""

    mnemonic: str
    code: int
    family: str
    units: frozenset[Unit]
    fields: tuple[Field, ...]
    doc: str

    def __post_init__(self) -> None:
        if not 0 <= self.code < 1 << OPCODE_BITS:
            raise ValueError(f"{self.mnemonic}: code {self.code:#x} does not fit 8 bits")
        if self.payload_bits > PAYLOAD_BITS:
            raise ValueError(f"{self.mnemonic}: fields need {self.payload_bits} bits, "
                             f"a word has {PAYLOAD_BITS}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def payload_bits(self) -> int:
        return sum(f.kind.bits for f in self.fields)

    @property
    def layout(self) -> tuple[tuple[Field, int], ...]:
        """Each field with the bit position of its least significant bit in the word."""
        out, top = [], PAYLOAD_BITS
        for f in self.fields:
            top -= f.kind.bits
            out.append((f, top))
        return tuple(out)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _op(mnemonic: str, code: int, family: str, units, fields, doc: str) -> OpSpec:
    kinds: tuple[tuple[str, FieldKind], ...] = fields
    return OpSpec(mnemonic, code, family, frozenset(units),
                  tuple(Field(n, k) for n, k in kinds), textwrap.dedent(doc).strip())


_DMA = (Unit.dma, Unit.agcu)
_MXU = (Unit.mxu, Unit.pcu)
_VEC = (Unit.vpu, Unit.asic, Unit.pcu)
_PIM = (Unit.pim,)
U4, U8, U12, U16, U24, U32 = U(4), U(8), U(12), U(16), U(24), U(32)
S64 = S(64)

_TABLE = (
    # ---- core -------------------------------------------------------------------------
    _op("halt", 0x00, "core", ANY_UNIT, (), """
        stop this queue: later instructions on it never issue
        """),
    _op("signal", 0x01, "core", ANY_UNIT, (("sem", U16),), """
        sem[sem] += 1
        """),
    _op("wait", 0x02, "core", ANY_UNIT, (("sem", U16),), """
        block this queue until sem[sem] > 0
        sem[sem] -= 1
        """),
    _op("dmacfg", 0x03, "core", _DMA, (("src_stride", U32), ("dst_stride", U32)), """
        cfg.src_pitch = src_stride     # row pitch in bytes for later load/store/gather
        cfg.dst_pitch = dst_stride     # on this queue; 0 = dense (pitch = row_bytes)
        """),
    _op("load", 0x04, "core", _DMA,
        (("dst", A32), ("src", A40), ("rows", U16), ("row_bytes", U16)), """
        # dst on-chip, src off-chip
        for r in range(rows):
            dst[r*dst_pitch : r*dst_pitch + row_bytes] = src[r*src_pitch : r*src_pitch + row_bytes]
        """),
    _op("store", 0x05, "core", _DMA,
        (("dst", A40), ("src", A32), ("rows", U16), ("row_bytes", U16)), """
        # dst off-chip, src on-chip
        for r in range(rows):
            dst[r*dst_pitch : r*dst_pitch + row_bytes] = src[r*src_pitch : r*src_pitch + row_bytes]
        """),
    # Spec draft asked table=A40 n=U16 (120 bits); a word has 104, so table is A32 (first
    # 256 MiB of its space) and n is U8 (at most 255 rows per gather).
    _op("gather", 0x06, "core", (Unit.dma,),
        (("dst", A32), ("table", A32), ("idx", A32), ("n", U8)), """
        # embedding lookup; dst and idx on-chip, table off-chip; idx holds int32
        pitch = cfg.src_pitch          # the table's row pitch; must be > 0
        w = cfg.dst_pitch or pitch     # bytes taken of each row (a column slice)
        for i in range(n):
            dst[i*w : (i+1)*w] = table[idx[i]*pitch : idx[i]*pitch + w]
        """),
    # gather's table reaches 256 MiB; a model whose gathered tables do not all start there
    # (MoE permutes of long prompts, layer after layer) uses gatherw: the same operation with
    # the table address in 64-byte units (tables are 64-byte aligned), 16 GiB of reach.
    _op("gatherw", 0x0C, "core", (Unit.dma,),
        (("dst", A32), ("table", A32_64B), ("idx", A32), ("n", U8)), """
        # gather with a far table: table is a multiple of 64 bytes, below 16 GiB
        pitch = cfg.src_pitch          # the table's row pitch; must be > 0
        w = cfg.dst_pitch or pitch     # bytes taken of each row (a column slice)
        for i in range(n):
            dst[i*w : (i+1)*w] = table[idx[i]*pitch : idx[i]*pitch + w]
        """),
    # Weights stored as narrow codes with fp16 scales are dequantised on their way in: the DMA
    # engine's load path multiplies each code by its column's scale (docs/isa.md, "Quantised
    # loads"). qcfg says how; each loadq then moves one tile of codes.
    _op("qcfg", 0x0D, "core", _DMA,
        (("fmt", E(5, QFORMATS)), ("dtype", DTYPE), ("cols", U16), ("step", U4),
         ("scales", A40), ("group", U16), ("pitch", U16)), """
        cfg.q = (fmt, dtype, cols, step, scales, group, pitch)  # later loadq, loadp, storeq
        # fmt: the codes (isa/qformats.py), N bits each, packed LSB first (isa/packing.py):
        #   int<N> (fp16 scales), fp8_e4m3/e5m2 (fp32 scales), mx*, bfp<N> (e8m0 scales)
        # scales: off-chip scales of those cols columns, one per column (step = the scale's
        # bytes: 2, 4 or 1) or one for them all (step = 0): a scale row
        # group = 0: every row of a loadq reads that one scale row; group > 0: each `group`
        # rows read the next scale row, `pitch` scales (pitch x the scale's bytes) further on
        """),
    _op("loadq", 0x0E, "core", _DMA, (("dst", A32), ("src", A40), ("rows", U16)), """
        # dst on-chip, src off-chip; (fmt, dtype, cols, step, scales, group, pitch) = cfg.q
        row_bytes = ceil(cols * N / 8)                # N = fmt's bits
        for r in range(rows):
            code = unpack(src[r*src_pitch : r*src_pitch + row_bytes], N)[0:cols]
            at = scales + (r // group) * pitch * size(scale) if group else scales
            for c in range(cols):
                s = at[c*step : c*step + size(scale)] as fmt's scale type
                dst[r*dst_pitch + c*size(dtype)] = dtype(value(code[c]) * s)  # exact product,
                                                                              # rounded once
        """),
    # Bit-nested (Matryoshka) weights, D2MoE (docs/isa.md, "Bit-nested loads"): int<W> codes
    # stored offset-binary as W bit planes, so a read of the top `planes` planes moves
    # planes/W of the code bytes and gives the weight at that many bits.
    _op("loadp", 0x12, "core", _DMA,
        (("dst", A32), ("src", A40), ("rows", U16), ("planes", U4), ("plane_bytes", U12)), """
        # dst on-chip, src off-chip; (fmt, dtype, cols, step, scales, group, pitch) = cfg.q
        # fmt int<W>: a row is W bit planes of u = code + 2^(W-1), most significant first,
        # plane_bytes apart; plane p holds bit W-1-p of every u (column c: byte c//8, bit c%8)
        stride = src_pitch or W * plane_bytes         # 0: whole rows of W planes back to back
        k = W - planes                                # 1 <= planes <= W
        for r in range(rows):
            top = 0
            for p in range(planes):                   # the top `planes` of the row's W planes
                o = r*stride + p*plane_bytes
                top = top*2 + bits(src[o : o + ceil(cols/8)])[0:cols]
            code = top * 2^k + (2^(k-1) if k else 0) - 2^(W-1)  # the middle of its 2^k codes
            at = scales + (r // group) * pitch * size(scale) if group else scales
            for c in range(cols):
                s = at[c*step : c*step + size(scale)] as fp16
                dst[r*dst_pitch + c*size(dtype)] = dtype(code[c] * s)  # exact product,
                                                                      # rounded once
        """),
    # A KV cache kept as narrow codes is written a row group at a time: the DMA engine's store
    # path quantises on the way out (docs/isa.md, "Quantised loads"), the inverse of loadq: a
    # loadq of the same rows under the same qcfg reads back dtype(code x scale).
    _op("storeq", 0x11, "core", _DMA, (("dst", A40), ("src", A32), ("rows", U16)), """
        # dst off-chip (packed codes), src on-chip (values of dtype); (fmt, dtype, cols, step,
        # scales, group, pitch) = cfg.q; step must be 0: one scale covers all cols of its rows
        row_bytes = ceil(cols * N / 8)                # N = fmt's bits
        for each row group j (rows j*group .. j*group + group-1; group 0: all rows, one group):
            X = its rows r: src[r*src_pitch : r*src_pitch + cols*size(dtype)] as dtype
            s = scale of X from its largest magnitude m (isa/formats.py):
                int<N> fp16(m/(2^(N-1)-1)), fp8 fp32(m/max), MX 2^(floor(log2 m)-emax)
                (MX: cols 32, group 1), bfp<N> 2^(floor(log2 m)-(N-2)) (group 1: a row of cols
                values is its block); all-zero X: 1 (MX, bfp 2^-127)
            scales[j*pitch*size(scale) : +size(scale)] = s        # group 0: at scales
            for each row r of the group:
                code = saturate(round_to_nearest_even(X[r] / s))  # isa.formats.quantize's codes
                dst[r*dst_pitch : r*dst_pitch + row_bytes] = pack(code[0:cols], N)
        """),
    _op("mcfg", 0x07, "core", _MXU,
        (("m", U16), ("n", U16), ("k", U16), ("dtype", DTYPE), ("acc", DTYPE)), """
        cfg.gemm = (m, n, k, dtype, acc)   # shape and types of later gemm on this queue
        """),
    # A recipe that quantises both operands of a matmul runs it on narrow MACs where the array
    # has them; the values stay those of the operand type (timing and energy only).
    _op("mfmt", 0x10, "core", _MXU, (("fmt", E(3, MAC_FORMATS)),), """
        cfg.mac = fmt      # later gemm on this queue: both operands' codes are fmt
        # none (reset): MACs at the operand type; int8, int4, fp8, mx*: narrow MACs, timed
        # and priced by the machine's mac_formats (refused where it has none of fmt);
        # values are computed as without it (the codes' values, held at the operand type)
        """),
    _op("gemm", 0x08, "core", _MXU,
        (("c", A32), ("a", A32), ("b", A32), ("accumulate", Flag()), ("transpose_b", Flag()),
         ("stream", Flag()), ("preloaded", Flag())),
        """
        # (m, n, k, dtype, acc) = cfg.gemm; tiles dense row-major, on-chip
        # stream=1: timing only -- the array keeps the previous gemm's stationary operand
        # and its pipeline full (no preload, no fill); values are computed as for stream=0
        # preloaded=1: timing only -- the first fold's stationary operand was shifted in
        # behind the previous gemm's stream (double-buffered weights; needs an array with
        # weight_preload_overlap); cycles: sim/timing.gemm_cycles
        A = a as [m, k] of dtype
        B = b as [n, k] of dtype if transpose_b else b as [k, n] of dtype
        C = c as [m, n] of acc
        C = (C if accumulate else 0) + A @ (B.T if transpose_b else B)
        """),
    _op("vcfg", 0x09, "core", _VEC,
        (("rows", U16), ("cols", U16), ("dtype", DTYPE), ("out", DTYPE), ("imm", F32)), """
        cfg.vec = (rows, cols, dtype, out, imm)   # tile of later vec/red/vquant on this queue
        """),
    _op("vec", 0x0A, "core", _VEC,
        (("func", E(6, VEC_FUNCS)), ("bcast", E(2, BCASTS)),
         ("dst", A32), ("a", A32), ("b", A32)), """
        # (rows, cols, dtype, out, imm) = cfg.vec; tiles on-chip
        A = a as [rows, cols] of dtype
        B = b as {none: [rows, cols], row: [rows, 1], col: [1, cols], scalar: [1, 1]}[bcast]
        dst as [rows, cols] of out = cast(f(A, B))
        # add sub mul div max: elementwise f(A, B) with B broadcast
        # addi muli: A + imm, A * imm;  exp rsqrt recip gelu(tanh form) tanh copy: f(A)
        # (immediate and unary funcs do not read b)
        """),
    _op("red", 0x0B, "core", _VEC,
        (("func", E(8, RED_FUNCS)), ("dst", A32), ("src", A32)), """
        # (rows, cols, dtype, out, imm) = cfg.vec; func is sum or max
        for r in range(rows):
            dst[r] (of out) = cast(func(src[r, 0:cols] (of dtype)))
        """),
    # Dynamic quantisation of activations and KV-cache writes (docs/formats.md, "The reference
    # executor's quantised mode", steps 2 and 3): scales from the tile's own values, the tile
    # read back as code x scale ("fake quantisation"), equal to isa/formats.py's quantize +
    # dequantize bit for bit.
    _op("vquant", 0x0F, "core", _VEC,
        (("fmt", E(5, QFORMATS)), ("group", U16), ("dst", A32), ("src", A32)), """
        # (rows, cols, dtype, out, imm) = cfg.vec; tiles on-chip, dense; dtype, out: floats
        A = src as [rows, cols] of dtype
        # group = 0: one scale for the whole tile; group > 0: one per `group` columns of each row
        # int<N>: group 0 or one dividing cols; fp8_*: group 0; mx*: group 32 (their block);
        # bfp<N>: group > 0 dividing cols (its block)
        # scale from the group's largest magnitude m (isa/formats.py): int<N> fp16(m / (2^(N-1)-1)),
        # fp8 fp32(m / the element's max), MX 2^(floor(log2 m) - emax), bfp<N>
        # 2^(floor(log2 m) - (N-2)) (e8m0's range); all-zero: 1 (MX, bfp 2^-127)
        code = saturate(round_to_nearest_even(A / scale))
        dst as [rows, cols] of out = out(code * scale)      # exact product, rounded once
        """),
    # ---- PIM extension: one pim queue per DRAM channel ------------------------------------
    _op("pim.act", 0x20, "pim", _PIM, (("bank", U8), ("row", U24)), """
        open_row[bank] = row
        """),
    _op("pim.act_all", 0x21, "pim", _PIM, (("row", U24),), """
        for b in banks: open_row[b] = row      # ACT16
        """),
    _op("pim.pre", 0x22, "pim", _PIM, (("bank", U8),), """
        open_row[bank] = None
        """),
    _op("pim.pre_all", 0x23, "pim", _PIM, (), """
        for b in banks: open_row[b] = None
        """),
    _op("pim.wrgb", 0x24, "pim", _PIM, (("gb", U16), ("src", A40), ("bytes", U16)), """
        gbuf[gb : gb + bytes] = src[0 : bytes]
        """),
    _op("pim.mac", 0x25, "pim", _PIM,
        (("bank", U8), ("col", U16), ("ncols", U16), ("gb", U16)), """
        for j in range(ncols):     # one column burst of burst_bytes per step
            acc[bank] += dot(lanes(bank, open_row[bank], col + j), lanes(gbuf, gb + j*burst_bytes))
        """),
    _op("pim.mac_all", 0x26, "pim", _PIM, (("col", U16), ("ncols", U16), ("gb", U16)), """
        for b in banks: pim.mac(b, col, ncols, gb)     # all banks at once
        """),
    _op("pim.rdmac", 0x27, "pim", _PIM, (("bank", U8), ("dst", A40)), """
        dst[0:4] = fp32(acc[bank]); acc[bank] = 0
        """),
    _op("pim.rdmac_all", 0x28, "pim", _PIM, (("dst", A40),), """
        for b in banks: dst[4*b : 4*b + 4] = fp32(acc[b]); acc[b] = 0
        """),
    _op("pim.wr", 0x29, "pim", _PIM,
        (("bank", U8), ("row", U24), ("col", U16), ("ncols", U16), ("src", A40)), """
        dram[bank][row][col*burst_bytes : (col + ncols)*burst_bytes] = src[0 : ncols*burst_bytes]
        """),
    _op("pim.rd", 0x2A, "pim", _PIM,
        (("bank", U8), ("row", U24), ("col", U16), ("ncols", U16), ("dst", A40)), """
        dst[0 : ncols*burst_bytes] = dram[bank][row][col*burst_bytes : (col + ncols)*burst_bytes]
        """),
    # Narrow MAC lanes (weight-only quantised GEMVs, docs/isa.md "Quantised loads"): the
    # channel's MACs read each column burst as packed integer codes instead of BF16 weights.
    _op("pim.qmode", 0x2B, "pim", _PIM, (("fmt", E(4, PIM_MODES)),), """
        mode = fmt         # how later pim.mac/pim.mac_all on this channel read a column burst
        # bf16 (the reset mode): burst_bytes/2 BF16 weights, as many BF16 gbuf inputs
        # int<N> (N = 2, 4, 8; no other format): L = burst_bytes*8/N N-bit codes (isa/packing.py),
        #   against L BF16 gbuf inputs (gb moves L*2 bytes a column); each code*input is
        #   exact in fp32 and summed as in bf16 mode; the codes' scales are the host's
        """),
    # ---- dataflow extension (SN40L-style) ----------------------------------------------
    _op("df.section", 0x40, "dataflow", (Unit.ctl,),
        (("id", U16), ("stages", U8), ("pcus", U16), ("pmus", U16)), """
        section[id] = configure(stages, pcus, pmus)    # replaces any earlier configuration
        """),
    _op("df.run", 0x41, "dataflow", (Unit.ctl,), (("id", U16), ("tiles", U32), ("loops", U16)),
        """
        for _ in range(loops):     # kernel looping: one launch
            stream tiles tiles through section[id]
        """),
    _op("df.stream", 0x42, "dataflow", (Unit.pmu, Unit.agcu),
        (("dst", A32), ("src", A32), ("tiles", U16), ("tile_bytes", U24)), """
        # PMU to PMU (both sides on-chip); an AGCU queue may issue it to feed its own rings
        for t in range(tiles):
            dst[t*tile_bytes : (t+1)*tile_bytes] = src[t*tile_bytes : (t+1)*tile_bytes]
        """),
    _op("df.xfer", 0x43, "dataflow", (Unit.agcu,), (("dst", A40), ("src", A40), ("kib", U24)),
        """
        dst[0 : kib*1024] = src[0 : kib*1024]     # tier to tier, e.g. DDR -> HBM
        """),
    # ---- communication: one link queue per device (several devices, sim/multi.py) -----------
    _op("coll", 0x50, "comm", (Unit.link,),
        (("kind", E(3, COLL_KINDS)), ("dtype", DTYPE), ("buf", A40), ("bytes", U32),
         ("ranks", U8), ("stride", U8)), """
        # in place on buf[0 : bytes] of every device of this device's group: the `ranks`
        # devices d0 + i*stride (i < ranks) where d0 = the lowest such device with this one
        # among them; rank = this device's i; chunk c = buf[c*bytes/ranks : (c+1)*bytes/ranks]
        # all_reduce:     buf = sum over the group's buf (ring order: sim/multi.py)
        # all_gather:     chunk c = rank c's chunk c
        # reduce_scatter: chunk rank = sum over the group's chunk rank
        # all_to_all:     chunk c = rank c's chunk rank
        # send: to device this + stride (ranks = 1); recv: buf = buf of device this - stride
        # every device of the group issues it; all start together (cross-device tokens)
        """),
    # ---- program structure (docs/isa.md, "Loops"): words of no hardware queue ---------------
    _op("loop", 0x60, "structure", (Unit.seq,), (("count", U32), ("body", U32)), """
        # the `body` words after this header's stride words, run `count` times (count >= 1);
        # the program means its unrolled equivalent (isa.unroll)
        for k in range(count):
            run body, each strided operand (an address, or a pim row, column or gbuf offset) + k*delta
        """),
    _op("stride", 0x61, "structure", (Unit.seq,), (("at", U32), ("field", U8), ("delta", S64)),
        """
        # follows its loop's header (or another stride); at: the word's offset in the body,
        # field: the operand's position in that instruction (an A32/A40 address, or a pim row,
        # column or gbuf offset: isa.opcodes.MOVING_INTS), delta: bytes (rows, columns, bytes)
        body[at].fields[field] += k*delta        # in iteration k of the loop
        """),
)

OPCODES: MappingProxyType[str, OpSpec] = MappingProxyType({op.mnemonic: op for op in _TABLE})
OPCODES_BY_CODE: MappingProxyType[int, OpSpec] = MappingProxyType({op.code: op for op in _TABLE})
assert len(OPCODES) == len(OPCODES_BY_CODE) == len(_TABLE), "duplicate mnemonic or code"
