"""qcfg and loadq (docs/isa.md, "Quantised loads"): encoding, text, footprints and every
verify error, compact loops included."""

from __future__ import annotations

import re

import pytest

from isa import (Addr, ConfigError, FieldError, Instr, MachineView, MemorySpace, QueueConfig,
                 VerifyError, assemble, footprints, unroll, verify)
from tests.isa.round_trip import round_trip
from isa.footprint import Footprint, loadq_row_bytes, stripes

MACHINE = MachineView(
    spaces={"dram": MemorySpace("dram", 1 << 16, on_chip=False),
            "sram": MemorySpace("sram", 8192, on_chip=True)},
    queues=frozenset({"dma0", "dma1"}),
    target="systolic",
)
HEADER = ".target systolic\n.isa 3\n.spaces dram sram\n"
QCFG = "dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0x8000] group=0 pitch=0\n"


def check(body: str, message: str) -> None:
    with pytest.raises(VerifyError, match="^" + re.escape(message) + "$"):
        verify(assemble(HEADER + body), MACHINE)


def test_both_opcodes_round_trip_text_and_binary():
    text = (HEADER + "dma0 dmacfg src_stride=48 dst_stride=256\n"
            "dma0 qcfg fmt=int3 dtype=fp32 cols=100 step=0 scales=dram[0x1230] group=0 pitch=0\n"
            "dma1 qcfg fmt=int8 dtype=bf16 cols=65535 step=2 scales=sram[0x40] group=0 pitch=0\n"
            "dma0 loadq dst=sram[0x100] src=dram[0x4000] rows=7\n")
    program = round_trip(text)
    qcfg = program.instructions[1]
    assert (qcfg.spec.code, qcfg["fmt"], qcfg["dtype"], qcfg["cols"]) == (0x0D, "int3", "fp32", 100)
    assert program.instructions[3].spec.code == 0x0E


def test_every_code_format_and_step_round_trips_text_and_binary():
    """ISA version 3: fmt takes 5 bits (22 formats, the last bfp8) and step 4 (0, 1, 2, 4)."""
    from isa.qformats import QFORMATS
    lines = "".join(f"dma{j % 2} qcfg fmt={fmt} dtype=bf16 cols={j + 1} step={step} "
                    f"scales=dram[{0x100 * j:#x}] group={j} pitch={j}\n"
                    for j, (fmt, step) in enumerate((f, s) for f in QFORMATS for s in (0, 1, 2, 4)))
    program = round_trip(HEADER + lines)
    got = [(i["fmt"], i["step"], i["group"]) for i in program.instructions]
    assert got == [(f, s, j) for j, (f, s) in enumerate((f, s) for f in QFORMATS for s in (0, 1, 2, 4))]
    assert len(QFORMATS) == 22 and QFORMATS[-1] == "bfp8"


def test_a_format_outside_the_code_formats_is_refused_by_the_field():
    with pytest.raises(FieldError, match=r"^fmt='int9' is not one of int2, int3, .*, int8, fp8_e4m3, .*, mxint8, bfp2, .*, bfp8$"):
        Instr.make("qcfg", "dma0", fmt="int9", dtype="bf16", cols=1, step=2, scales="dram[0x0]", group=0, pitch=0)


@pytest.mark.parametrize("fmt, dtype, cols, step, src_stride, dst_stride, dst_bytes, src_bytes", [
    ("int4", "bf16", 64, 2, 0, 0, 8 * 128, 8 * 32),          # dense both sides
    ("int3", "fp32", 10, 0, 0, 0, 8 * 40, 8 * 4),           # 30 bits: 4 bytes a row
    ("int2", "bf16", 64, 2, 100, 512, 7 * 512 + 128, 7 * 100 + 16),   # pitched
])
def test_footprints(fmt, dtype, cols, step, src_stride, dst_stride, dst_bytes, src_bytes):
    qcfg = Instr.make("qcfg", "dma0", fmt=fmt, dtype=dtype, cols=cols, step=step,
                      scales="dram[0x100]", group=0, pitch=0)
    loadq = Instr.make("loadq", "dma0", dst="sram[0x0]", src="dram[0x1000]", rows=8)
    config = QueueConfig(src_stride, dst_stride).after(qcfg)
    assert footprints(qcfg, QueueConfig()) == [
        Footprint("scales", Addr("dram", 0x100), 2 * cols if step else 2, False)]
    dst, src = footprints(loadq, config)
    assert dst == Footprint("dst", Addr("sram", 0), dst_bytes, True)
    assert src == Footprint("src", Addr("dram", 0x1000), src_bytes, False)
    packed, written = loadq_row_bytes(loadq, config)
    assert stripes(loadq, config, dst) == (8, written, dst_stride or written)
    assert stripes(loadq, config, src) == (8, packed, src_stride or packed)
    with pytest.raises(ConfigError, match=r"^loadq before any qcfg on this queue$"):
        footprints(loadq, QueueConfig())


def test_a_valid_program_passes_and_qcfg_holds_until_the_next():
    verify(assemble(HEADER + QCFG + "dma0 loadq dst=sram[0x0] src=dram[0x0] rows=16\n"
                    "dma0 loadq dst=sram[0x800] src=dram[0x200] rows=16\n"
                    "dma0 qcfg fmt=int8 dtype=fp32 cols=8 step=0 scales=dram[0xfffe] group=0 pitch=0\n"
                    "dma0 loadq dst=sram[0x1000] src=dram[0x400] rows=16\n"), MACHINE)


@pytest.mark.parametrize("body, message", [
    ("dma0 loadq dst=sram[0x0] src=dram[0x0] rows=1\n",
     "instruction 0 (dma0 loadq): loadq before any qcfg on this queue"),
    (QCFG.replace("dma0", "dma1") + "dma0 loadq dst=sram[0x0] src=dram[0x0] rows=1\n",
     "instruction 1 (dma0 loadq): loadq before any qcfg on this queue"),
    ("dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=4 scales=dram[0x0] group=0 pitch=0\n",
     "instruction 0 (dma0 qcfg): step=4 must be 2 (one fp16 scale per column) or 0 (one scale "
     "for all columns)"),
    ("dma0 qcfg fmt=int4 dtype=bf16 cols=0 step=2 scales=dram[0x0] group=0 pitch=0\n",
     "instruction 0 (dma0 qcfg): cols=0: a qcfg configures at least one column"),
    ("dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0xffc0] group=0 pitch=0\n",
     "instruction 0 (dma0 qcfg): scales: address range dram[0xffc0, 0x10040) exceeds space dram "
     "of 65536 bytes"),
    ("dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0x0] group=32 pitch=0\n",
     "instruction 0 (dma0 qcfg): group=32 pitch=0: scale rows advance by both (group > 0 and "
     "pitch > 0) or by neither"),
    ("dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=sram[0x0] group=0 pitch=0\n",
     "instruction 0 (dma0 qcfg): scales=sram[0x0] must be off-chip but sram is on-chip"),
    (QCFG + "dma0 loadq dst=sram[0x0] src=dram[0xff00] rows=16\n",
     "instruction 1 (dma0 loadq): src: address range dram[0xff00, 0x10100) exceeds space dram "
     "of 65536 bytes"),
    (QCFG + "dma0 loadq dst=sram[0x1c00] src=dram[0x0] rows=16\n",
     "instruction 1 (dma0 loadq): dst: address range sram[0x1c00, 0x2400) exceeds space sram "
     "of 8192 bytes"),
    (QCFG + "dma0 loadq dst=dram[0x0] src=dram[0x0] rows=1\n",
     "instruction 1 (dma0 loadq): dst=dram[0x0] must be on-chip but dram is off-chip"),
])
def test_verify_errors(body, message):
    check(body, message)


LOOPED = HEADER + """\
.loop count={count}
  dma0 qcfg fmt=int4 dtype=bf16 cols=64 step=2 scales=dram[0x8000]+=0x80 group=0 pitch=0
  dma0 loadq dst=sram[0x0]+={dst} src=dram[0x0]+=0x200 rows=16
.endloop
"""


def test_a_loop_moves_scales_src_and_dst_like_load_addresses():
    program = assemble(LOOPED.format(count=4, dst="0x800"))
    verify(program, MACHINE)
    flat = unroll(program)
    verify(flat, MACHINE)
    assert [str(i["scales"]) for i in flat.instructions if i.opcode == "qcfg"] == [
        "dram[0x8000]", "dram[0x8080]", "dram[0x8100]", "dram[0x8180]"]
    assert [str(i["dst"]) for i in flat.instructions if i.opcode == "loadq"] == [
        "sram[0x0]", "sram[0x800]", "sram[0x1000]", "sram[0x1800]"]


def verify_error(text: str) -> str | None:
    """The verifier's message for a whole program text on MACHINE, None when it passes."""
    try:
        verify(assemble(text), MACHINE)
    except VerifyError as error:
        return str(error)
    return None


def _error(text: str) -> str | None:
    return verify_error(HEADER + text)


@pytest.mark.parametrize("text, message", [
    (LOOPED.format(count=5, dst="0x800")[len(HEADER):],
     "instruction 5 (dma0 loadq) in loop at 0, iteration 4: dst: address range "
     "sram[0x2000, 0x2800) exceeds space sram of 8192 bytes"),
    (LOOPED.format(count=2, dst="0x400")[len(HEADER):],
     "instruction 5 (dma0 loadq) in loop at 0, iteration 1: dst writes sram[0x400, 0xc00), "
     "overlapping its write of iteration 0 (it moves 1024 bytes per iteration)"),
    (".loop count=300\n" + QCFG.replace("[0x8000]", "[0x8000]+=0x80") +
     "dma0 loadq dst=sram[0x0] src=dram[0x0] rows=16\n.endloop\n",
     "instruction 2 (dma0 qcfg) in loop at 0, iteration 256: scales: address range "
     "dram[0x10000, 0x10080) exceeds space dram of 65536 bytes"),
    (".loop count=2\ndma0 loadq dst=sram[0x0] src=dram[0x0] rows=16\n" + QCFG + ".endloop\n",
     "instruction 1 (dma0 loadq) in loop at 0, iteration 0: loadq before any qcfg on this queue"),
    # a loadq's later scale rows follow its qcfg's moving address: 0xfc00 + 3 x 256 x 2 + 128
    (".loop count=4\n" + QCFG.replace("[0x8000]", "[0xf000]+=0x400").replace(
        "group=0 pitch=0", "group=4 pitch=256") +
     "dma0 loadq dst=sram[0x0] src=dram[0x0] rows=16\n.endloop\n",
     "instruction 3 (dma0 loadq) in loop at 0, iteration 3: scales: address range "
     "dram[0xfc00, 0x10280) exceeds space dram of 65536 bytes"),
])
def test_loop_errors_name_the_first_failing_iteration(text, message):
    assert _error(text) == message


def test_a_qcfg_outside_an_inner_loop_configures_every_iteration():
    text = (".loop count=3\n" + QCFG.replace("[0x8000]", "[0x8000]+=0x80") +
            ".loop count=8\ndma0 loadq dst=sram[0x0]+=0x400 src=dram[0x0]+=0x100 rows=8\n"
            ".endloop\n.endloop\n")
    assert _error(text) is None
    verify(unroll(assemble(HEADER + text)), MACHINE)
