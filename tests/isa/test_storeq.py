"""storeq (docs/isa.md, "Quantised stores"): encoding, text and .tbin, footprints (its scale
rows written at its qcfg's address), every verify refusal, and loops that move it."""

from __future__ import annotations

import re

import pytest

from isa import (Addr, ConfigError, Instr, QueueConfig,
                 assemble, footprints, load, save, unroll, verify)
from tests.isa.round_trip import round_trip
from tests.isa.test_quantised_loads import HEADER, MACHINE, check, verify_error
from isa.footprint import Footprint, is_written, loadq_row_bytes, storeq_scale_bytes, stripes

# int8 codes of 64 bf16 values a row, one fp16 scale a row (a token's head), 8 heads apart
QCFG = "dma0 qcfg fmt=int8 dtype=bf16 cols=64 step=0 scales=dram[0x8000] group=1 pitch=8\n"
STOREQ = "dma0 storeq dst=dram[0x0] src=sram[0x0] rows=16\n"


def qcfg(**fields) -> Instr:
    base = dict(fmt="int8", dtype="bf16", cols=64, step=0, scales="dram[0x8000]", group=1,
                pitch=8)
    return Instr.make("qcfg", "dma0", **{**base, **fields})


def storeq(rows: int = 16) -> Instr:
    return Instr.make("storeq", "dma0", dst="dram[0x1000]", src="sram[0x0]", rows=rows)



def test_round_trips_text_and_binary_and_tbin(tmp_path):
    text = (HEADER + "dma0 dmacfg src_stride=256 dst_stride=48\n" + QCFG +
            "dma0 storeq dst=dram[0x3ffff00000] src=sram[0x100] rows=65535\n"
            "dma1 storeq dst=dram[0x40] src=sram[0x0] rows=0\n")
    program = round_trip(text)
    spec = program.instructions[2].spec
    assert (spec.code, spec.names, spec.payload_bits) == (0x11, ("dst", "src", "rows"), 88)
    save(program, tmp_path / "p.tbin")
    assert load(tmp_path / "p.tbin") == program


@pytest.mark.parametrize("fmt, dtype, cols, group, pitch, strides, dst, src, scales", [
    # int8 bf16, one scale a row 8 apart: 15 * 8 * 2 + 2 bytes of scale rows
    ("int8", "bf16", 64, 1, 8, (0, 0), 16 * 64, 16 * 128, 15 * 16 + 2),
    # int4 fp32 pitched both sides, a scale per 4 rows, dense scale rows
    ("int4", "fp32", 10, 4, 1, (64, 8), 15 * 8 + 5, 15 * 64 + 40, 3 * 2 + 2),
    # one fp32 scale for the tile (fp8, group 0)
    ("fp8_e4m3", "fp16", 24, 0, 0, (0, 0), 16 * 24, 16 * 48, 4),
    # MX: one e8m0 byte a row of 32, 3 bytes apart
    ("mxfp4", "fp32", 32, 1, 3, (0, 0), 16 * 16, 16 * 128, 15 * 3 + 1),
])
def test_footprints(fmt, dtype, cols, group, pitch, strides, dst, src, scales):
    config = QueueConfig(*strides).after(qcfg(fmt=fmt, dtype=dtype, cols=cols, group=group,
                                              pitch=pitch))
    instr = storeq()
    assert footprints(instr, config) == [
        Footprint("dst", Addr("dram", 0x1000), dst, False),
        Footprint("src", Addr("sram", 0), src, True),
        Footprint("scales", Addr("dram", 0x8000), scales, False)]
    packed, values = loadq_row_bytes(instr, config)
    found = footprints(instr, config)
    assert stripes(instr, config, found[0]) == (16, packed, strides[1] or packed)
    assert stripes(instr, config, found[1]) == (16, values, strides[0] or values)
    size = {"int8": 2, "int4": 2, "fp8_e4m3": 4, "mxfp4": 1}[fmt]
    assert stripes(instr, config, found[2]) == (15 // group + 1 if group else 1, size,
                                                pitch * size or size)
    assert storeq_scale_bytes(config.qcfg, 16) == (15 // group + 1 if group else 1) * size


def test_no_rows_touch_nothing_and_only_its_scales_are_written_scales():
    config = QueueConfig().after(qcfg())
    assert footprints(storeq(rows=0), config) == []
    assert storeq_scale_bytes(config.qcfg, 0) == 0
    assert is_written("storeq", "scales") and is_written("storeq", "dst")
    assert not is_written("storeq", "src")
    assert not is_written("qcfg", "scales") and not is_written("loadq", "scales")


@pytest.mark.parametrize("fields, message", [
    ({"step": 2}, "storeq writes one scale per row group (qcfg step=0), got step=2"),
    ({"fmt": "mxfp4", "cols": 64}, "storeq of mxfp4 writes one scale per row of 32 values "
     "(qcfg cols=32 group=1), got cols=64 group=1"),
    ({"fmt": "mxint8", "cols": 32, "group": 2}, "storeq of mxint8 writes one scale per row of "
     "32 values (qcfg cols=32 group=1), got cols=32 group=2"),
    ({"dtype": "int8"}, "storeq quantises float values (qcfg dtype fp32, bf16 or fp16), got "
     "dtype=int8"),
    ({"fmt": "bfp4", "cols": 16, "group": 2}, "storeq of bfp4 writes one scale per row, its "
     "block of cols values (qcfg group=1), got cols=16 group=2"),
])
def test_a_qcfg_it_cannot_write_is_a_config_error(fields, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        footprints(storeq(), QueueConfig().after(qcfg(**fields)))


def test_a_valid_program_passes():
    verify(assemble(HEADER + "dma0 dmacfg src_stride=256 dst_stride=0\n" + QCFG + STOREQ +
                    QCFG.replace("int8 dtype=bf16", "mxfp8_e4m3 dtype=fp32").replace(
                        "cols=64", "cols=32") + STOREQ.replace("dram[0x0]", "dram[0x800]") +
                    "dma0 loadq dst=sram[0x1000] src=dram[0x800] rows=16\n"), MACHINE)


@pytest.mark.parametrize("body, message", [
    (STOREQ, "instruction 0 (dma0 storeq): storeq before any qcfg on this queue"),
    (QCFG.replace("dma0", "dma1") + STOREQ,
     "instruction 1 (dma0 storeq): storeq before any qcfg on this queue"),
    (QCFG.replace("step=0", "step=2") + STOREQ,
     "instruction 1 (dma0 storeq): storeq writes one scale per row group (qcfg step=0), got "
     "step=2"),
    (QCFG.replace("int8", "mxfp8_e4m3") + STOREQ,
     "instruction 1 (dma0 storeq): storeq of mxfp8_e4m3 writes one scale per row of 32 values "
     "(qcfg cols=32 group=1), got cols=64 group=1"),
    (QCFG.replace("int8", "mxint8").replace("cols=64", "cols=32").replace(
        "group=1 pitch=8", "group=0 pitch=0") + STOREQ,
     "instruction 1 (dma0 storeq): storeq of mxint8 writes one scale per row of 32 values "
     "(qcfg cols=32 group=1), got cols=32 group=0"),
    (QCFG.replace("dtype=bf16", "dtype=int32") + STOREQ,
     "instruction 1 (dma0 storeq): storeq quantises float values (qcfg dtype fp32, bf16 or "
     "fp16), got dtype=int32"),
    (QCFG + STOREQ.replace("dram[0x0]", "sram[0x0]"),
     "instruction 1 (dma0 storeq): dst=sram[0x0] must be off-chip but sram is on-chip"),
    (QCFG + STOREQ.replace("src=sram[0x0]", "src=dram[0x0]"),
     "instruction 1 (dma0 storeq): src=dram[0x0] must be on-chip but dram is off-chip"),
    (QCFG + STOREQ.replace("sram[0x0]", "sram[0x1c00]"),
     "instruction 1 (dma0 storeq): src: address range sram[0x1c00, 0x2400) exceeds space sram "
     "of 8192 bytes"),
    (QCFG + STOREQ.replace("dram[0x0]", "dram[0xfc40]"),
     "instruction 1 (dma0 storeq): dst: address range dram[0xfc40, 0x10040) exceeds space dram "
     "of 65536 bytes"),
    # its scale rows: 15 x 8 x 2 + 2 bytes from the qcfg's address
    (QCFG.replace("0x8000", "0xff80") + STOREQ,
     "instruction 1 (dma0 storeq): scales: address range dram[0xff80, 0x10072) exceeds space "
     "dram of 65536 bytes"),
])
def test_verify_refusals(body, message):
    check(body, message)


LOOPED = HEADER + """\
.loop count={count}
  dma0 qcfg fmt=int8 dtype=bf16 cols=64 step=0 scales=dram[0x8000]+={scales} group=1 pitch=8
  dma0 storeq dst=dram[0x0]+=0x400 src=sram[0x0]+=0x800 rows=16
.endloop
"""


def test_a_loop_moves_scales_src_and_dst():
    """Head h of 4 in iteration h: its scale rows interleave with the other heads' (pitch 8
    scales), which the verifier sees as stripes, not one span."""
    program = assemble(LOOPED.format(count=4, scales="0x2"))
    verify(program, MACHINE)
    flat = unroll(program)
    verify(flat, MACHINE)
    assert [str(i["scales"]) for i in flat.instructions if i.opcode == "qcfg"] == [
        "dram[0x8000]", "dram[0x8002]", "dram[0x8004]", "dram[0x8006]"]
    assert [(str(i["dst"]), str(i["src"])) for i in flat.instructions if i.opcode == "storeq"] == [
        ("dram[0x0]", "sram[0x0]"), ("dram[0x400]", "sram[0x800]"),
        ("dram[0x800]", "sram[0x1000]"), ("dram[0xc00]", "sram[0x1800]")]


@pytest.mark.parametrize("text, message", [
    # moved by one scale row (16 bytes), iteration 1's rows land on iteration 0's
    (LOOPED.format(count=4, scales="0x10"),
     "instruction 5 (dma0 storeq) in loop at 0, iteration 1: scales writes dram[0x8010, "
     "0x8102), overlapping its write of iteration 0 (it moves 16 bytes per iteration)"),
    # the scale rows follow the qcfg's moving address past the space (its own scale fits)
    (LOOPED.format(count=2, scales="0x100").replace("0x8000", "0xfe80"),
     "instruction 5 (dma0 storeq) in loop at 0, iteration 1: scales: address range "
     "dram[0xff80, 0x10072) exceeds space dram of 65536 bytes"),
    (LOOPED.format(count=8, scales="0x2"),
     "instruction 5 (dma0 storeq) in loop at 0, iteration 4: src: address range "
     "sram[0x2000, 0x2800) exceeds space sram of 8192 bytes"),
    (".loop count=2\n" + STOREQ + QCFG + ".endloop\n",
     "instruction 1 (dma0 storeq) in loop at 0, iteration 0: storeq before any qcfg on this "
     "queue"),
])
def test_loop_errors_name_the_first_failing_iteration(text, message):
    if not text.startswith(".target"):
        text = HEADER + text
    assert verify_error(text) == message
