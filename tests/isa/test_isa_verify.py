"""verify(): each rejection names the instruction (or symbol/data) and the reason."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from isa import (ISA_VERSION, Addr, Instr, MachineView, MemorySpace, Program, Queue, VerifyError,
                 assemble, footprints, verify)
from isa.footprint import QueueConfig

MACHINE = MachineView(
    spaces={"dram": MemorySpace("dram", 1 << 20, on_chip=False),
            "sram": MemorySpace("sram", 8192, on_chip=True),
            "acc": MemorySpace("acc", 65536, on_chip=True)},
    queues=frozenset({"dma0", "dma1", "mxu0", "vpu0", "pim0", "ctl0"}),
    limits={"bank": 16, "row": 16384, "col": 64, "gbuf_bytes": 2048, "pim_burst_bytes": 32},
    target="systolic",
)
HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"

GOOD = HEADER + """\
.symbol x dram 0x0 64x32 bf16
.symbol w dram 0x1000 32x32 bf16
dma0 load dst=sram[0x0] src=dram[0x0] rows=64 row_bytes=64
dma0 load dst=sram[0x1000] src=dram[0x1000] rows=32 row_bytes=64
dma0 signal sem=1
mxu0 wait sem=1
mxu0 mcfg m=64 n=32 k=32 dtype=bf16 acc=fp32
mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x1000] accumulate=0 transpose_b=1 stream=0 preloaded=0
mxu0 signal sem=2
vpu0 wait sem=2
vpu0 vcfg rows=64 cols=32 dtype=fp32 out=bf16 imm=0.5
vpu0 vec func=muli bcast=none dst=sram[0x0] a=acc[0x0] b=acc[0xfffff0]
vpu0 red func=sum dst=sram[0x1800] src=acc[0x0]
pim0 pim.act_all row=16383
pim0 pim.wrgb gb=0 src=dram[0x0] bytes=2048
pim0 pim.mac_all col=0 ncols=64 gb=0
pim0 pim.rdmac_all dst=dram[0x2000]
ctl0 halt
ctl0 wait sem=9
"""


def check(body: str, message: str, header: str = HEADER) -> None:
    with pytest.raises(VerifyError, match="^" + re.escape(message) + "$"):
        verify(assemble(header + body), MACHINE)


def test_a_valid_program_passes():
    program = assemble(GOOD)
    data = {"x": np.zeros((64, 32), np.uint16), "w": np.ones((32, 32), np.uint16)}
    assert verify(dataclasses.replace(program, data=data), MACHINE) is None


def test_address_range_outside_its_space():
    check("dma0 load dst=sram[0x1000] src=dram[0x0] rows=64 row_bytes=128\n",
          "instruction 0 (dma0 load): dst: address range sram[0x1000, 0x3000) exceeds "
          "space sram of 8192 bytes")


def test_tile_larger_than_its_space():
    check("dma0 load dst=sram[0x0] src=dram[0x0] rows=512 row_bytes=128\n",
          "instruction 0 (dma0 load): dst: tile of 65536 bytes does not fit space sram (8192 bytes)")


def test_strides_widen_the_footprint_of_their_own_queue():
    body = ("dma0 dmacfg src_stride=0 dst_stride=256\n"
            "{queue} load dst=sram[0x400] src=dram[0x0] rows=30 row_bytes=64\n")
    check(body.format(queue="dma0"), "instruction 1 (dma0 load): dst: address range "
          "sram[0x400, 0x2140) exceeds space sram of 8192 bytes")
    verify(assemble(HEADER + body.format(queue="dma1")), MACHINE)  # dma1 stays dense


def test_gemm_operands_follow_mcfg():
    check("mxu0 mcfg m=64 n=64 k=64 dtype=fp32 acc=fp32\n"
          "mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x0] accumulate=1 transpose_b=0 stream=0 preloaded=0\n",
          "instruction 1 (mxu0 gemm): a: tile of 16384 bytes does not fit space sram (8192 bytes)")


def test_vec_broadcast_decides_the_b_footprint():
    body = ("vpu0 vcfg rows=32 cols=32 dtype=fp32 out=fp32 imm=0\n"
            "vpu0 vec func=add bcast={} dst=sram[0x0] a=sram[0x0] b=sram[0x1f80]\n")
    verify(assemble(HEADER + body.format("row")), MACHINE)  # 32 values = 128 bytes: fits
    check(body.format("none"), "instruction 1 (vpu0 vec): b: address range "
          "sram[0x1f80, 0x2f80) exceeds space sram of 8192 bytes")


def test_unmatched_wait():
    check("dma0 signal sem=1\nmxu0 wait sem=1\nmxu0 wait sem=3\n",
          "instruction 2 (mxu0 wait): wait on semaphore 3 has no matching signal")


def test_deadlock():
    check("mxu0 wait sem=1\nmxu0 signal sem=2\ndma0 wait sem=2\ndma0 signal sem=1\n",
          "instruction 0 (mxu0 wait): deadlock: wait on semaphore 1 is never satisfied; "
          "blocked: mxu0 at instruction 0 (semaphore 1), dma0 at instruction 2 (semaphore 2)")


def test_semaphores_count_and_halt_stops_a_queue():
    verify(assemble(HEADER + "dma0 signal sem=1\ndma0 signal sem=1\n"
                    "mxu0 wait sem=1\nvpu0 wait sem=1\n"), MACHINE)
    check("dma0 signal sem=1\nmxu0 wait sem=1\nvpu0 wait sem=1\n",
          "instruction 2 (vpu0 wait): deadlock: wait on semaphore 1 is never satisfied; "
          "blocked: vpu0 at instruction 2 (semaphore 1)")
    check("dma0 halt\ndma0 signal sem=4\nmxu0 wait sem=4\n",
          "instruction 2 (mxu0 wait): deadlock: wait on semaphore 4 is never satisfied; "
          "blocked: mxu0 at instruction 2 (semaphore 4)")


def test_wrong_unit():
    fields = (("c", Addr("acc", 0)), ("a", Addr("sram", 0)), ("b", Addr("sram", 0)),
              ("accumulate", 0), ("transpose_b", 0), ("stream", 0), ("preloaded", 0))
    program = Program("systolic", ISA_VERSION, ("dram", "sram", "acc"), (),
                      (Instr("gemm", Queue.parse("dma0"), fields),))
    with pytest.raises(VerifyError, match=re.escape(
            "instruction 0 (dma0 gemm): gemm is not allowed on unit dma (units: mxu pcu)") + "$"):
        verify(program, MACHINE)


def test_gemm_without_mcfg():
    check("mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x0] accumulate=0 transpose_b=0 stream=0 preloaded=0\n",
          "instruction 0 (mxu0 gemm): gemm before any mcfg on this queue")
    check("vpu0 red func=max dst=sram[0x0] src=sram[0x0]\n",
          "instruction 0 (vpu0 red): red before any vcfg on this queue")
    check("dma0 gather dst=sram[0x0] table=dram[0x0] idx=sram[0x100] n=4\n",
          "instruction 0 (dma0 gather): gather needs the row size in bytes: "
          "dmacfg src_stride > 0 first")
    check("dma0 dmacfg src_stride=128 dst_stride=256\n"
          "dma0 gather dst=sram[0x0] table=dram[0x0] idx=sram[0x100] n=4\n",
          "instruction 1 (dma0 gather): gather takes dst_stride = 256 bytes of each table row, "
          "more than the row pitch src_stride = 128")


def test_load_direction():
    check("dma0 load dst=dram[0x0] src=dram[0x100] rows=1 row_bytes=4\n",
          "instruction 0 (dma0 load): dst=dram[0x0] must be on-chip but dram is off-chip")
    check("dma0 store dst=sram[0x0] src=sram[0x100] rows=1 row_bytes=4\n",
          "instruction 0 (dma0 store): dst=sram[0x0] must be off-chip but sram is on-chip")


def test_queue_must_exist_and_limits_hold():
    check("mxu1 halt\n", "instruction 0 (mxu1 halt): queue mxu1 does not exist on this machine")
    check("pim0 pim.act bank=16 row=0\n",
          "instruction 0 (pim0 pim.act): bank=16 exceeds the machine limit (< 16)")
    check("pim0 pim.mac bank=0 col=60 ncols=8 gb=0\n",
          "instruction 0 (pim0 pim.mac): columns [60, 68) exceed the 64 columns of a row")
    check("pim0 pim.mac_all col=0 ncols=8 gb=1900\n",
          "instruction 0 (pim0 pim.mac_all): global buffer range [1900, 2156) exceeds gbuf_bytes 2048")


def test_field_values_are_checked_however_built():
    program = Program("systolic", ISA_VERSION, ("dram",), (),
                      (Instr("wait", Queue.parse("dma0"), (("sem", 1 << 16),)),))
    with pytest.raises(VerifyError, match=r"^instruction 0 \(dma0 wait\): sem=65536 does not fit U16") \
            as caught:
        verify(program, MACHINE)
    assert caught.value.index == 0


def test_program_level_problems():
    base = assemble(GOOD)
    cases = [
        (dataclasses.replace(base, isa_version=2), "program: ISA version 2 is not supported (supported: 3)"),
        (dataclasses.replace(base, target="pim"),
         "program: compiled for target 'pim', the machine is 'systolic'"),
        (dataclasses.replace(base, spaces=("dram", "sram", "acc", "hbm")),
         "program: space hbm does not exist on this machine (spaces: dram sram acc)"),
        (dataclasses.replace(base, symbols=(dataclasses.replace(base.symbols[0], addr=(1 << 20) - 8),)),
         "symbol x: address range dram[0xffff8, 0x100ff8) exceeds space dram of 1048576 bytes"),
        (dataclasses.replace(base, symbols=(base.symbols[0], dataclasses.replace(base.symbols[1], addr=0xF00))),
         "symbol w: overlaps symbol x in dram at 0xf00 (it ends at 0x1000)"),
        (dataclasses.replace(base, data={"x": np.zeros((32, 64), np.uint16)}),
         "data x: shape (32, 64) but the symbol is (64, 32)"),
        (dataclasses.replace(base, data={"x": np.zeros((64, 32), np.float32)}),
         "data x: dtype float32 but a bf16 symbol is stored as uint16"),
        (dataclasses.replace(base, data={"y": np.zeros(3)}), "data y: no symbol of that name"),
    ]
    for program, message in cases:
        with pytest.raises(VerifyError, match="^" + re.escape(message) + "$") as caught:
            verify(program, MACHINE)
        assert caught.value.index is None


def test_footprints_are_public_for_the_simulator():
    instr = Instr.make("load", "dma0", dst="sram[0x0]", src="dram[0x10]", rows=4, row_bytes=8)
    found = footprints(instr, QueueConfig(src_stride=100))
    assert [(f.role, f.addr, f.size_bytes, f.on_chip) for f in found] == [
        ("dst", Addr("sram", 0), 32, True), ("src", Addr("dram", 0x10), 308, False)]
