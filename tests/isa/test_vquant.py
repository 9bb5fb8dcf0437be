"""vquant (docs/isa.md, "Dynamic quantisation"): encoding, text, footprints and every verify
error, a loop that moves its tiles included."""

from __future__ import annotations

import re

import pytest

from isa import (Addr, ConfigError, Instr, MachineView, MemorySpace, QueueConfig, VerifyError,
                 assemble, footprints, unroll, verify)
from tests.isa.round_trip import round_trip
from isa.footprint import Footprint
from isa.qformats import MX_BLOCK, QFORMATS

MACHINE = MachineView(
    spaces={"dram": MemorySpace("dram", 1 << 16, on_chip=False),
            "sram": MemorySpace("sram", 8192, on_chip=True),
            "acc": MemorySpace("acc", 4096, on_chip=True)},
    queues=frozenset({"vpu0", "vpu1"}),
    target="systolic",
)
HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"
VCFG = "vpu0 vcfg rows=4 cols=64 dtype={dtype} out={out} imm=0.0\n"
FP32 = VCFG.format(dtype="fp32", out="bf16")


def check(body: str, message: str) -> None:
    with pytest.raises(VerifyError, match="^" + re.escape(message) + "$"):
        verify(assemble(HEADER + body), MACHINE)


def test_round_trips_text_and_binary():
    text = (HEADER + FP32 +
            "vpu0 vquant fmt=int4 group=16 dst=sram[0x400] src=acc[0x0]\n"
            "vpu0 vquant fmt=mxint8 group=32 dst=sram[0x800] src=sram[0x0]\n"
            "vpu0 vquant fmt=fp8_e5m2 group=0 dst=sram[0x1000] src=sram[0x0]\n"
            "vpu0 vquant fmt=int8 group=65535 dst=sram[0xfffffff] src=acc[0x1]\n")
    program = round_trip(text)
    first = program.instructions[1]
    assert (first.spec.code, first.spec.family, first["fmt"], first["group"]) == (0x0F, "core",
                                                                                 "int4", 16)
    assert first.spec.field("fmt").kind.names == QFORMATS


def test_the_mx_block_is_isa_formats_one():
    from isa.formats import MX_BLOCK as FORMATS_BLOCK
    assert MX_BLOCK == FORMATS_BLOCK


def test_footprints_are_the_tile_read_and_the_tile_written():
    vcfg = Instr.make("vcfg", "vpu0", rows=4, cols=64, dtype="fp32", out="bf16", imm=0.0)
    vquant = Instr.make("vquant", "vpu0", fmt="int8", group=64, dst="sram[0x400]",
                        src="acc[0x0]")
    assert footprints(vquant, QueueConfig().after(vcfg)) == [
        Footprint("dst", Addr("sram", 0x400), 4 * 64 * 2, True),
        Footprint("src", Addr("acc", 0), 4 * 64 * 4, True)]
    with pytest.raises(ConfigError, match=r"^vquant before any vcfg on this queue$"):
        footprints(vquant, QueueConfig())


@pytest.mark.parametrize("fmt, group", [("int2", 0), ("int8", 64), ("int4", 16), ("int5", 1),
                                        ("fp8_e4m3", 0), ("fp8_e5m2", 0), ("mxfp4", 32),
                                        ("mxfp6_e2m3", 32), ("mxint8", 32), ("bfp4", 16),
                                        ("bfp8", 64), ("bfp2", 1)])
@pytest.mark.parametrize("dtype, out", [("fp32", "bf16"), ("bf16", "bf16"), ("fp16", "fp32")])
def test_every_format_with_a_group_it_takes_passes(fmt, group, dtype, out):
    verify(assemble(HEADER + VCFG.format(dtype=dtype, out=out) +
                    f"vpu0 vquant fmt={fmt} group={group} dst=sram[0x0] src=acc[0x0]\n"), MACHINE)


@pytest.mark.parametrize("body, message", [
    ("vpu0 vquant fmt=int8 group=0 dst=sram[0x0] src=sram[0x400]\n",
     "instruction 0 (vpu0 vquant): vquant before any vcfg on this queue"),
    (FP32.replace("vpu0", "vpu1") + "vpu0 vquant fmt=int8 group=0 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): vquant before any vcfg on this queue"),
    (FP32 + "vpu0 vquant fmt=int8 group=48 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=48 does not divide the vcfg's cols=64"),
    (FP32 + "vpu0 vquant fmt=int4 group=128 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=128 does not divide the vcfg's cols=64"),
    (FP32 + "vpu0 vquant fmt=fp8_e4m3 group=32 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=32: fp8_e4m3 takes one scale for the tile (group must "
     "be 0)"),
    (FP32 + "vpu0 vquant fmt=mxfp4 group=16 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=16: mxfp4 scales blocks of 32 (group must be 32)"),
    (FP32 + "vpu0 vquant fmt=mxint8 group=0 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=0: mxint8 scales blocks of 32 (group must be 32)"),
    (FP32 + "vpu0 vquant fmt=bfp4 group=0 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=0: bfp4 scales blocks of `group` values (group must be "
     "its block, > 0)"),
    (FP32 + "vpu0 vquant fmt=bfp4 group=48 dst=sram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=48 does not divide the vcfg's cols=64"),
    (FP32.replace("cols=64", "cols=48") + "vpu0 vquant fmt=mxfp8_e4m3 group=32 dst=sram[0x0] "
     "src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): group=32 does not divide the vcfg's cols=48"),
    (VCFG.format(dtype="int8", out="bf16") + "vpu0 vquant fmt=int8 group=0 dst=sram[0x0] "
     "src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): dtype=int8 (vcfg): vquant reads and writes float tiles "
     "(fp32, bf16, fp16)"),
    (VCFG.format(dtype="fp32", out="int32") + "vpu0 vquant fmt=int8 group=0 dst=sram[0x0] "
     "src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): out=int32 (vcfg): vquant reads and writes float tiles "
     "(fp32, bf16, fp16)"),
    (FP32 + "vpu0 vquant fmt=int8 group=0 dst=dram[0x0] src=acc[0x0]\n",
     "instruction 1 (vpu0 vquant): dst=dram[0x0] must be on-chip but dram is off-chip"),
    (FP32 + "vpu0 vquant fmt=int8 group=0 dst=sram[0x0] src=acc[0xe00]\n",
     "instruction 1 (vpu0 vquant): src: address range acc[0xe00, 0x1200) exceeds space acc of "
     "4096 bytes"),
])
def test_verify_errors(body, message):
    check(body, message)


LOOPED = HEADER + FP32 + """\
.loop count={count}
  vpu0 vquant fmt=int4 group=16 dst=sram[0x0]+={dst} src=acc[0x0]+=0x400
.endloop
"""


def test_a_loop_moves_src_and_dst_like_vec_operands():
    program = assemble(LOOPED.format(count=4, dst="0x200"))
    verify(program, MACHINE)
    flat = unroll(program)
    verify(flat, MACHINE)
    assert [(str(i["dst"]), str(i["src"])) for i in flat.instructions if i.opcode == "vquant"] == [
        ("sram[0x0]", "acc[0x0]"), ("sram[0x200]", "acc[0x400]"), ("sram[0x400]", "acc[0x800]"),
        ("sram[0x600]", "acc[0xc00]")]


@pytest.mark.parametrize("count, dst, message", [
    (5, "0x200", "instruction 4 (vpu0 vquant) in loop at 1, iteration 4: src: address range "
                 "acc[0x1000, 0x1400) exceeds space acc of 4096 bytes"),
    (2, "0x100", "instruction 4 (vpu0 vquant) in loop at 1, iteration 1: dst writes "
                 "sram[0x100, 0x300), overlapping its write of iteration 0 (it moves 256 bytes "
                 "per iteration)"),
])
def test_loop_errors_name_the_first_failing_iteration(count, dst, message):
    check(LOOPED.format(count=count, dst=dst)[len(HEADER):], message)
