"""storeq in the simulator: the bytes it writes against isa.formats' quantize, a loadq of them
against dequantize and vquant bit for bit, its refusals, loops, and its costs on the systolic
and dataflow machines (the PIM machine refuses it)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import isa
from arch import load_arch
from isa import Instr
from isa.formats import dequantize, quantize
from isa.numerics import from_storage, to_storage
from isa.packing import pack_patterns, packed_row_bytes
from isa.qformats import code_format, code_patterns, scale_patterns
from sim.functional import FunctionalError, Memory
from sim.machines import DataflowMachine, PimMachine, SystolicMachine
from sim.simulate import simulate
from tests.sim.test_functional import run

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

SPACES = {"dram": 1 << 16, "sram": 1 << 16, "acc": 1 << 14}   # tests.sim.test_functional.run's
SCALES = 0x8000                         # where the scales go in DRAM
SRC, BACK, VQUANT = 0x0, 0x4000, 0x8000     # on-chip: the values, the loadq's and vquant's
rng = np.random.default_rng(5)


def values(rows: int, cols: int, dtype: str) -> np.ndarray:
    """Random values of `dtype` with rows of very different magnitudes (one all zero)."""
    x = rng.normal(size=(rows, cols)) * np.exp2(rng.integers(-6, 7, size=(rows, 1)))
    x[rows // 2] = 0
    return from_storage(to_storage(x, dtype), dtype)


def store(x: np.ndarray, fmt: str, dtype: str, group: int, pitch: int, *, src_stride: int = 0,
          dst_stride: int = 0) -> Memory:
    """x [rows, cols] of dtype on-chip (rows src_stride apart), stored with storeq and loaded
    back (dense) at sram[BACK] with loadq under the same qcfg; the memory after both."""
    rows, cols = x.shape
    row_bytes = cols * isa.DType(dtype).itemsize
    memory = Memory(SPACES)
    for r in range(rows):
        memory.write(f"sram[{SRC + r * (src_stride or row_bytes):#x}]", x[r], dtype)
    qcfg = Instr.make("qcfg", "dma0", fmt=fmt, dtype=dtype, cols=cols, step=0,
                      scales=f"dram[{SCALES:#x}]", group=group, pitch=pitch)
    run([Instr.make("dmacfg", "dma0", src_stride=src_stride, dst_stride=dst_stride), qcfg,
         Instr.make("storeq", "dma0", dst="dram[0x0]", src=f"sram[{SRC:#x}]", rows=rows),
         Instr.make("dmacfg", "dma0", src_stride=dst_stride, dst_stride=0),
         Instr.make("loadq", "dma0", dst=f"sram[{BACK:#x}]", src="dram[0x0]", rows=rows)],
        memory)
    return memory


def groups(x: np.ndarray, fmt: str, group: int) -> list:
    """isa.formats.quantize of each row group as a tensor of its own (MX: a row, its block)."""
    span = group or len(x)
    blocks = [x[j:j + span] for j in range(0, len(x), span)]
    if code_format(fmt).element == "bfp":       # a row is one block: its cols values
        return [quantize(block, f"{fmt}:b{x.shape[1]}") for block in blocks]
    if code_format(fmt).scale == "e8m0":
        return [quantize(block, fmt) for block in blocks]
    return [quantize(block, fmt, None) for block in blocks]


def check_bytes(memory: Memory, x: np.ndarray, fmt: str, group: int, pitch: int,
                dst_stride: int = 0) -> None:
    """The codes and scales in DRAM are exactly quantize's, packed and stored as loadq reads."""
    code, (rows, cols) = code_format(fmt), x.shape
    found = groups(x, fmt, group)
    codes = np.concatenate([q.codes.reshape(-1, cols) for q in found])
    packed = pack_patterns(code_patterns(codes, code), code.bits)
    width = packed_row_bytes(cols, code.bits)
    for r in range(rows):
        got = memory.read_bytes(f"dram[{r * (dst_stride or width):#x}]", width)
        np.testing.assert_array_equal(got, packed[r])
    size = code.scale_bytes
    for j, q in enumerate(found):
        want = np.ascontiguousarray(scale_patterns(q.scales.reshape(-1), code)).view(np.uint8)
        at = SCALES + j * pitch * size
        np.testing.assert_array_equal(memory.read_bytes(f"dram[{at:#x}]", size), want)


def loaded_back(memory: Memory, x: np.ndarray, dtype: str) -> np.ndarray:
    return memory.read_bytes(f"sram[{BACK:#x}]", x.size * isa.DType(dtype).itemsize)


def dequantized(x: np.ndarray, fmt: str, group: int, dtype: str) -> np.ndarray:
    """dtype(dequantize(quantize(...))) of every row group, as its bytes."""
    back = np.concatenate([dequantize(q).reshape(-1, x.shape[1]) for q in groups(x, fmt, group)])
    return to_storage(back, dtype).view(np.uint8).reshape(-1)


def vquant(x: np.ndarray, fmt: str, group: int, dtype: str) -> np.ndarray:
    """The bytes a vquant of the tile gives (out = dtype)."""
    rows, cols = x.shape
    memory = Memory(SPACES)
    memory.write(f"sram[{SRC:#x}]", x, dtype)
    run([Instr.make("vcfg", "vpu0", rows=rows, cols=cols, dtype=dtype, out=dtype, imm=0.0),
         Instr.make("vquant", "vpu0", fmt=fmt, group=group, dst=f"sram[{VQUANT:#x}]",
                    src=f"sram[{SRC:#x}]")], memory)
    return memory.read_bytes(f"sram[{VQUANT:#x}]", x.size * isa.DType(dtype).itemsize)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_int_rows_one_scale_each(fmt, dtype):
    """One fp16 scale a row (a token's head, group 1 pitch 1): the bytes are quantize's, a
    loadq reads back dequantize rounded to dtype, and that is a per-row vquant bit for bit."""
    x = values(6, 40, dtype)
    memory = store(x, fmt, dtype, group=1, pitch=1)
    check_bytes(memory, x, fmt, 1, 1)
    back = loaded_back(memory, x, dtype)
    np.testing.assert_array_equal(back, dequantized(x, fmt, 1, dtype))
    np.testing.assert_array_equal(back, vquant(x, fmt, 40, dtype))
    zero = memory.read(f"sram[{BACK + 3 * 40 * isa.DType(dtype).itemsize:#x}]", 40, dtype)
    assert not zero.any()                                       # the all-zero row stays zero
    assert memory.read_bytes(f"dram[{SCALES + 6:#x}]", 2).view("<f2")[0] == 1.0   # scale 1


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxint8", "mxfp4"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_mx_rows_of_one_block(fmt, dtype):
    """MX: 32 values a row, one e8m0 byte each, here 5 bytes apart (scale rows interleaved)."""
    x = values(5, 32, dtype)
    memory = store(x, fmt, dtype, group=1, pitch=5)
    check_bytes(memory, x, fmt, 1, 5)
    back = loaded_back(memory, x, dtype)
    np.testing.assert_array_equal(back, dequantized(x, fmt, 1, dtype))
    np.testing.assert_array_equal(back, vquant(x, fmt, 32, dtype))
    assert memory.read_bytes(f"dram[{SCALES + 2 * 5:#x}]", 1)[0] == 0    # zero row: 2^-127


@pytest.mark.parametrize("fmt, cols", [("bfp4", 16), ("bfp8", 32), ("bfp3", 24), ("bfp2", 8)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bfp_rows_of_one_block(fmt, cols, dtype):
    """Block floating point: a row of `cols` values is one block (d-Matrix's BFP12 = bfp4 in
    blocks of 16..64), one e8m0 exponent byte a row, 3 bytes apart; a loadq reads back
    dequantize, and that is a vquant in blocks of cols bit for bit."""
    x = values(6, cols, dtype)
    memory = store(x, fmt, dtype, group=1, pitch=3)
    check_bytes(memory, x, fmt, 1, 3)
    back = loaded_back(memory, x, dtype)
    np.testing.assert_array_equal(back, dequantized(x, fmt, 1, dtype))
    np.testing.assert_array_equal(back, vquant(x, fmt, cols, dtype))
    assert memory.read_bytes(f"dram[{SCALES + 3 * 3:#x}]", 1)[0] == 0    # zero row: 2^-127


@pytest.mark.parametrize("fmt", ["int4", "fp8_e4m3", "fp8_e5m2"])
def test_group_0_one_scale_for_the_tile(fmt):
    x = values(7, 24, "fp32")
    memory = store(x, fmt, "fp32", group=0, pitch=0)
    check_bytes(memory, x, fmt, 0, 0)
    back = loaded_back(memory, x, "fp32")
    np.testing.assert_array_equal(back, dequantized(x, fmt, 0, "fp32"))
    np.testing.assert_array_equal(back, vquant(x, fmt, 0, "fp32"))


@pytest.mark.parametrize("fmt", ["int3", "fp8_e4m3"])
def test_row_groups_with_a_short_last_group_and_pitched_rows(fmt):
    """A scale per 4 rows (10 rows: 4, 4, 2), scale rows 3 apart, values and codes pitched."""
    x = values(10, 12, "bf16")
    memory = store(x, fmt, "bf16", group=4, pitch=3, src_stride=40, dst_stride=13)
    check_bytes(memory, x, fmt, 4, 3, dst_stride=13)
    np.testing.assert_array_equal(loaded_back(memory, x, "bf16"),
                                  dequantized(x, fmt, 4, "bf16"))


def test_a_scale_too_wide_for_fp16_is_refused():
    x = np.full((1, 4), 1e38)
    with pytest.raises(FunctionalError, match=r"^instruction 2 \(dma0 storeq\): format int8: a "
                                              r"scale of .* does not fit its fp16$"):
        store(x, "int8", "fp32", group=1, pitch=1)


@pytest.mark.parametrize("qcfg, message", [
    (None, "storeq before any qcfg on this queue"),
    (dict(fmt="int8", dtype="fp32", cols=4, step=2), "storeq writes one scale per row group "
     "(qcfg step=0), got step=2"),
    (dict(fmt="mxfp4", dtype="fp32", cols=64, step=0), "storeq of mxfp4 writes one scale per "
     "row of 32 values (qcfg cols=32 group=1), got cols=64 group=1"),
    (dict(fmt="int8", dtype="int8", cols=4, step=0), "storeq quantises float values (qcfg "
     "dtype fp32, bf16 or fp16), got dtype=int8"),
    (dict(fmt="bfp4", dtype="fp32", cols=16, step=0, group=2), "storeq of bfp4 writes one scale "
     "per row, its block of cols values (qcfg group=1), got cols=16 group=2"),
])
def test_the_functional_model_refuses_what_verify_does(qcfg, message):
    instrs = [] if qcfg is None else [Instr.make("qcfg", "dma0", **{"group": 1, **qcfg},
                                                 scales="dram[0x8000]", pitch=1)]
    instrs.append(Instr.make("storeq", "dma0", dst="dram[0x0]", src="sram[0x0]", rows=2))
    with pytest.raises(FunctionalError, match="^" + re.escape(
            f"instruction {len(instrs) - 1} (dma0 storeq): {message}") + "$"):
        run(instrs, Memory(SPACES))


# ---- a loop, and the machines --------------------------------------------------------------

ARCH = load_arch("systolic-128")
HEADER = ".target {target}\n.isa 3\n.spaces dram sram acc\n"
HEADS, TOKENS, DIM = 4, 8, 64
LOOPED = """\
.symbol k sram 0x0 {heads}x{tokens}x{dim} bf16
dma0 dmacfg src_stride=0 dst_stride=0
.loop count={heads}
  dma0 qcfg fmt=int8 dtype=bf16 cols={dim} step=0 scales=dram[0x8000]+=0x2 group=1 pitch={heads}
  dma0 storeq dst=dram[0x0]+=0x200 src=sram[0x0]+=0x400 rows={tokens}
.endloop
""".format(heads=HEADS, tokens=TOKENS, dim=DIM)


def test_a_loop_of_heads_writes_every_heads_codes_and_interleaved_scales():
    """Head h of each token: its codes at 0x200*h, its scales at 0x8000 + 2h + 8t (a scale per
    token and head, heads interleaved); simulated compact and unrolled alike."""
    machine = SystolicMachine(ARCH)
    k = values(HEADS * TOKENS, DIM, "bf16").reshape(HEADS, TOKENS, DIM)
    program = dataclasses.replace(isa.assemble(HEADER.format(target="systolic") + LOOPED),
                                  data={"k": to_storage(k, "bf16")})
    numeric = simulate(program, machine)
    memory = numeric.memory
    for h in range(HEADS):
        q = quantize(k[h], "int8", DIM)                     # one scale a row (a token)
        codes = memory.read_bytes(f"dram[{h * 0x200:#x}]", TOKENS * DIM).view(np.int8)
        np.testing.assert_array_equal(codes.reshape(TOKENS, DIM), q.codes)
        for t in range(TOKENS):
            at = 0x8000 + 2 * h + 2 * HEADS * t
            assert memory.read_bytes(f"dram[{at:#x}]", 2).view("<f2")[0] == q.scales[t, 0]
    timing = simulate(program, machine, functional=False)
    flat = simulate(isa.unroll(program), machine, functional=False)
    assert timing.result.to_json() == flat.result.to_json()
    assert timing.result.bytes["dram_write"] == HEADS * (TOKENS * DIM + TOKENS * 2)


BODY = """\
dma0 qcfg fmt={fmt} dtype={dtype} cols={cols} step=0 scales=dram[0x8000] group={group} pitch={pitch}
dma0 storeq dst=dram[0x0] src=sram[0x0] rows={rows}
"""
CASES = [  # fmt, dtype, cols, group, pitch, rows: code bytes a row, scale bytes in all
    (dict(fmt="int4", dtype="bf16", cols=96, group=1, pitch=8, rows=64), 48, 64 * 2),
    (dict(fmt="int8", dtype="fp32", cols=128, group=0, pitch=0, rows=16), 128, 2),
    (dict(fmt="fp8_e4m3", dtype="fp16", cols=64, group=4, pitch=1, rows=10), 64, 3 * 4),
    (dict(fmt="mxfp4", dtype="fp32", cols=32, group=1, pitch=1, rows=32), 16, 32 * 1),
]


@pytest.mark.parametrize("fields, packed, scale_bytes", CASES)
def test_systolic_costs(fields, packed, scale_bytes):
    """One DMA on the DRAM port of the codes and scale rows (one access latency); SRAM reads
    of the values; one quantiser multiply an element, priced at dequant_pj."""
    machine = SystolicMachine(ARCH)
    program = isa.assemble(HEADER.format(target="systolic") + BODY.format(**fields))
    costs = machine.start(program).costs
    rows, cols = fields["rows"], fields["cols"]
    nbytes = rows * packed + scale_bytes
    clock, bandwidth = round(ARCH.clock_hz), round(ARCH.dram_bw_gbps * 1e9)
    cycles = ARCH.dram_latency_cycles + -(-nbytes * clock // bandwidth)     # one latency
    assert costs.durations.tolist() == [0, cycles]
    assert costs.resources.tolist()[1] == 0                 # the DRAM port
    events = {name: costs.events[name].tolist() for name in (
        "dram_write_bytes", "dram_read_bytes", "sram_read_bytes", "sram_write_bytes",
        "dequant_ops", "vector_ops")}
    assert events == {"dram_write_bytes": [0, nbytes], "dram_read_bytes": [0, 0],
                      "sram_read_bytes": [0, rows * cols * isa.DType(fields["dtype"]).itemsize],
                      "sram_write_bytes": [0, 0], "dequant_ops": [0, rows * cols],
                      "vector_ops": [0, 0]}
    energy = machine.energy_pj(costs.events.totals())
    assert energy["vector"] == rows * cols * ARCH.energy.dequant_pj
    assert energy["dram"] == nbytes * ARCH.energy.dram_pj_per_byte


@pytest.mark.parametrize("fields, packed, scale_bytes", CASES)
@pytest.mark.parametrize("scale_tier", ["hbm", "ddr"])
def test_dataflow_costs(fields, packed, scale_bytes, scale_tier):
    """The codes are written to dst's tier, the scales to their own tier; the PMUs read the
    values; the AGCU's multiplies count as dequant_ops."""
    arch = load_arch("sn40l")
    text = (HEADER.format(target="dataflow").replace("dram sram acc", "sram hbm ddr")
            + BODY.format(**fields).replace("dma0", "agcu0").replace("dram[0x0]", "hbm[0x0]")
            .replace("dram[0x8000]", f"{scale_tier}[0x8000]"))
    costs = DataflowMachine(arch).start(isa.assemble(text)).costs
    rows, cols = fields["rows"], fields["cols"]
    other = "ddr" if scale_tier == "hbm" else "hbm"
    writes = {"hbm": rows * packed, "ddr": 0}
    writes[scale_tier] += scale_bytes
    assert costs.events["hbm_write_bytes"].tolist() == [0, writes["hbm"]]
    assert costs.events["ddr_write_bytes"].tolist() == [0, writes["ddr"]]
    assert costs.events[f"{other}_read_bytes"].tolist() == [0, 0]
    values = rows * cols * isa.DType(fields["dtype"]).itemsize
    assert costs.events["sram_bytes"].tolist() == [0, values]
    assert costs.events["dequant_ops"].tolist() == [0, rows * cols]
    energy = DataflowMachine(arch).energy_pj(costs.events.totals())
    assert energy["vector"] == rows * cols * arch.energy.dequant_pj


def test_the_pim_machine_refuses_it():
    text = HEADER.format(target="x") + "dma0 storeq dst=dram[0x0] src=sram[0x0] rows=1\n"
    with pytest.raises(isa.IsaError, match=r"^instruction 0 \(dma0 storeq\): not executable "
                                           r"on a PIM machine$"):
        PimMachine(load_arch("pim-gpt")).start(isa.assemble(text))
