"""loadp (docs/isa.md, "Bit-nested loads"): bit-plane packing, encoding, text and .tbin,
footprints, every verify refusal, and loops that move its addresses."""

from __future__ import annotations

import re

import numpy as np
import pytest

from isa import (Addr, ConfigError, IsaError, QueueConfig,
                 assemble, footprints, load, save, unroll, verify)
from tests.isa.round_trip import round_trip
from tests.isa.test_quantised_loads import HEADER, MACHINE, check, verify_error
from isa.footprint import Footprint, loadp_rows, stripes
from isa.instr import Instr
from isa.packing import pack_planes, plane_row_bytes, unpack_planes

QCFG = "dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0x8000] group=0 pitch=0\n"
LOADP = "dma0 loadp dst=sram[0x0] src=dram[0x0] rows=16 planes={planes} plane_bytes={pb}\n"



# ---- packing -------------------------------------------------------------------------------

def test_planes_hold_the_bits_most_significant_first_lsb_first_within_a_byte():
    u = np.zeros(10, np.int64)
    u[0], u[9] = 0b101, 0b010          # plane 0: bit 2, plane 1: bit 1, plane 2: bit 0
    packed = pack_planes(u, 3)
    assert packed.tolist() == [0x01, 0x00, 0x00, 0x02, 0x01, 0x00]   # 2 bytes a plane
    assert plane_row_bytes(10) == 2 and plane_row_bytes(16) == 2 and plane_row_bytes(17) == 3


@pytest.mark.parametrize("bits", range(2, 9))
def test_the_top_planes_are_the_top_bits(bits):
    generator = np.random.default_rng(bits)
    u = generator.integers(0, 1 << bits, (3, 21))
    packed = pack_planes(u, bits)
    assert packed.shape == (3, bits * 3)
    for planes in range(1, bits + 1):
        np.testing.assert_array_equal(unpack_planes(packed, planes, 21, 3), u >> (bits - planes))


def test_a_column_tile_reads_its_bytes_of_each_plane_of_a_wider_weight():
    generator = np.random.default_rng(3)
    u = generator.integers(0, 16, (2, 64))
    rows = pack_planes(u, 4)                        # planes 8 bytes apart
    tile = rows[:, 16 // 8:]                        # columns 16.. start 2 bytes into each plane
    np.testing.assert_array_equal(unpack_planes(tile, 3, 24, 8), u[:, 16:40] >> 1)


@pytest.mark.parametrize("call, message", [
    (lambda: pack_planes(np.array([16]), 4), "unsigned codes outside the 4-bit range 0..15"),
    (lambda: pack_planes(np.array([-1]), 4), "unsigned codes outside the 4-bit range 0..15"),
    (lambda: pack_planes(np.array([1]), 9), "packed codes are 2..8 bits wide, not 9"),
    (lambda: unpack_planes(np.zeros(8, np.uint8), 3, 24, 2),
     "planes 2 bytes apart overlap: 24 columns take 3"),
    (lambda: unpack_planes(np.zeros(8, np.uint8), 3, 24, 3),
     "3 planes 3 bytes apart need 9 bytes a row, got 8"),
    (lambda: unpack_planes(np.zeros(8, np.uint8), 0, 8, 1), "a row has 1 to 8 bit planes, not 0"),
])
def test_packing_refusals(call, message):
    with pytest.raises(IsaError, match="^" + re.escape(message) + "$"):
        call()


# ---- encoding and text ---------------------------------------------------------------------

def test_loadp_round_trips_text_binary_and_tbin(tmp_path):
    text = (HEADER + "dma0 dmacfg src_stride=0 dst_stride=256\n" + QCFG +
            "dma0 loadp dst=sram[0x100] src=dram[0x4002] rows=7 planes=3 plane_bytes=4095\n"
            "dma1 loadp dst=sram[0x0] src=dram[0x0] rows=65535 planes=15 plane_bytes=0\n")
    program = round_trip(text)
    loadp = program.instructions[2]
    assert (loadp.spec.code, loadp["planes"], loadp["plane_bytes"]) == (0x12, 3, 4095)
    save(program, tmp_path / "p.tbin")
    assert load(tmp_path / "p.tbin").instructions == program.instructions


@pytest.mark.parametrize("field, value, message", [
    ("planes", 16, "planes=16 does not fit U4 (0..15)"),
    ("plane_bytes", 4096, "plane_bytes=4096 does not fit U12 (0..4095)"),
])
def test_field_ranges(field, value, message):
    fields = dict(dst="sram[0x0]", src="dram[0x0]", rows=1, planes=1, plane_bytes=1)
    with pytest.raises(IsaError, match="^" + re.escape(message) + "$"):
        Instr.make("loadp", "dma0", **{**fields, field: value})


# ---- footprints ----------------------------------------------------------------------------

def _qcfg(fmt: str = "int4", dtype: str = "bf16", cols: int = 64, group: int = 0,
          pitch: int = 0) -> Instr:
    return Instr.make("qcfg", "dma0", fmt=fmt, dtype=dtype, cols=cols, step=2,
                      scales="dram[0x100]", group=group, pitch=pitch)


def _loadp(rows: int = 8, planes: int = 2, plane_bytes: int = 8) -> Instr:
    return Instr.make("loadp", "dma0", dst="sram[0x0]", src="dram[0x1000]", rows=rows,
                      planes=planes, plane_bytes=plane_bytes)


@pytest.mark.parametrize("qcfg, planes, plane_bytes, strides, dst_bytes, src_bytes", [
    # pitch 0: rows W x plane_bytes apart, the last row's planes read up to its plane `planes`
    (("int4", "bf16", 64), 2, 8, (0, 0), 8 * 128, 7 * 32 + 8 + 8),
    (("int4", "bf16", 64), 4, 8, (0, 0), 8 * 128, 8 * 32),
    (("int8", "fp32", 24), 8, 8, (0, 0), 8 * 96, 7 * 64 + 7 * 8 + 3),   # a tile of 24 of 64 cols
    (("int3", "bf16", 10), 1, 2, (100, 512), 7 * 512 + 20, 7 * 100 + 2),  # pitched
])
def test_footprints_and_stripes(qcfg, planes, plane_bytes, strides, dst_bytes, src_bytes):
    fmt, dtype, cols = qcfg
    config = QueueConfig(*strides).after(_qcfg(fmt, dtype, cols))
    loadp = _loadp(planes=planes, plane_bytes=plane_bytes)
    dst, src = footprints(loadp, config)
    assert dst == Footprint("dst", Addr("sram", 0), dst_bytes, True)
    assert src == Footprint("src", Addr("dram", 0x1000), src_bytes, False)
    found = loadp_rows(loadp, config)
    bits = int(fmt[3:])
    assert found.read == planes * -(-cols // 8)
    assert stripes(loadp, config, dst) == (8, found.written, strides[1] or found.written)
    assert stripes(loadp, config, src) == (8, found.span, strides[0] or bits * plane_bytes)


def test_several_scale_rows_read_from_the_qcfg_address():
    config = QueueConfig().after(_qcfg(group=4, pitch=256))
    *_, scales = footprints(_loadp(rows=10), config)
    assert scales == Footprint("scales", Addr("dram", 0x100), 2 * 256 * 2 + 128, False)
    assert len(footprints(_loadp(rows=4), config)) == 2      # one scale row: the qcfg's own


def test_a_loadp_without_qcfg_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^loadp before any qcfg on this queue$"):
        footprints(_loadp(), QueueConfig())


# ---- verify --------------------------------------------------------------------------------

def test_a_valid_program_passes():
    int8 = "dma0 qcfg fmt=int8 dtype=fp32 cols=16 step=0 scales=dram[0xfffe] group=0 pitch=0\n"
    verify(assemble(HEADER + QCFG + LOADP.format(planes=1, pb=8)
                    + LOADP.format(planes=4, pb=8).replace("sram[0x0]", "sram[0x800]")
                    + int8 + LOADP.format(planes=8, pb=2).replace("sram[0x0]", "sram[0x1000]")),
           MACHINE)


@pytest.mark.parametrize("body, message", [
    (LOADP.format(planes=2, pb=8),
     "instruction 0 (dma0 loadp): loadp before any qcfg on this queue"),
    (QCFG.replace("int4", "fp8_e4m3").replace("step=2", "step=0") + LOADP.format(planes=2, pb=8),
     "instruction 1 (dma0 loadp): loadp reads integer codes (int2..int8), got fmt=fp8_e4m3"),
    (QCFG.replace("int4", "mxint8").replace("step=2", "step=1") + LOADP.format(planes=2, pb=8),
     "instruction 1 (dma0 loadp): loadp reads integer codes (int2..int8), got fmt=mxint8"),
    (QCFG + LOADP.format(planes=0, pb=8),
     "instruction 1 (dma0 loadp): planes=0: a loadp reads at least one bit plane"),
    (QCFG.replace("int4", "int8") + LOADP.format(planes=9, pb=8),
     "instruction 1 (dma0 loadp): planes=9: int8 codes have 8 bit planes"),
    (QCFG + LOADP.format(planes=5, pb=8),
     "instruction 1 (dma0 loadp): planes=5: int4 codes have 4 bit planes"),
    (QCFG + LOADP.format(planes=2, pb=4),
     "instruction 1 (dma0 loadp): plane_bytes=4 holds 32 of the qcfg's cols=64 columns"),
    (QCFG + LOADP.format(planes=2, pb=8).replace("src=dram[0x0]", "src=dram[0xff00]"),
     "instruction 1 (dma0 loadp): src: address range dram[0xff00, 0x100f0) exceeds space dram "
     "of 65536 bytes"),
    (QCFG + LOADP.format(planes=2, pb=8).replace("dst=sram[0x0]", "dst=dram[0x0]"),
     "instruction 1 (dma0 loadp): dst=dram[0x0] must be on-chip but dram is off-chip"),
])
def test_verify_errors(body, message):
    check(body, message)


LOOPED = HEADER + """\
.loop count={count}
  dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0x8000]+=0x80 group=4 pitch=64
  dma0 loadp dst=sram[0x0]+={dst} src=dram[0x0]+=0x200 rows=16 planes=2 plane_bytes=8
.endloop
"""


def test_a_loop_moves_scales_src_and_dst():
    program = assemble(LOOPED.format(count=4, dst="0x800"))
    verify(program, MACHINE)
    flat = unroll(program)
    verify(flat, MACHINE)
    assert [str(i["src"]) for i in flat.instructions if i.opcode == "loadp"] == [
        "dram[0x0]", "dram[0x200]", "dram[0x400]", "dram[0x600]"]


@pytest.mark.parametrize("text, message", [
    (LOOPED.format(count=5, dst="0x800"),
     "instruction 5 (dma0 loadp) in loop at 0, iteration 4: dst: address range "
     "sram[0x2000, 0x2800) exceeds space sram of 8192 bytes"),
    (LOOPED.format(count=2, dst="0x400"),
     "instruction 5 (dma0 loadp) in loop at 0, iteration 1: dst writes sram[0x400, 0xc00), "
     "overlapping its write of iteration 0 (it moves 1024 bytes per iteration)"),
    # its later scale rows follow the qcfg's moving address: 0xfc00 + 3 x 256 x 2 + 128
    (LOOPED.format(count=4, dst="0x800").replace("[0x8000]+=0x80", "[0xf000]+=0x400")
     .replace("pitch=64", "pitch=256"),
     "instruction 5 (dma0 loadp) in loop at 0, iteration 3: scales: address range "
     "dram[0xfc00, 0x10280) exceeds space dram of 65536 bytes"),
])
def test_loop_errors_name_the_first_failing_iteration(text, message):
    assert verify_error(text) == message
