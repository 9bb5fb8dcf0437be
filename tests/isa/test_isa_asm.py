"""Assembly text: canonical form, comments, and file:line:col errors for malformed input."""

from __future__ import annotations

import re

import pytest

from isa import AsmError, DType, Instr, assemble, disassemble

HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"

CANONICAL = HEADER + """\
.symbol wte dram 0x0 50257x768 bf16
.symbol h.0.ln_1.g sram 0x100 768 fp32
dma0 dmacfg src_stride=1536 dst_stride=0
dma0 load dst=sram[0x0] src=dram[0x1000] rows=64 row_bytes=128
dma0 signal sem=1
mxu0 wait sem=1
mxu0 mcfg m=16 n=16 k=64 dtype=bf16 acc=fp32
mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x4000] accumulate=0 transpose_b=1 stream=0 preloaded=0
vpu0 vcfg rows=16 cols=16 dtype=fp32 out=bf16 imm=0.125
vpu0 vec func=muli bcast=none dst=sram[0x8000] a=acc[0x0] b=acc[0x0]
vpu0 vcfg rows=1 cols=2 dtype=fp32 out=fp32 imm=-inf
vpu0 red func=max dst=sram[0x9000] src=acc[0x0]
pim3 pim.act_all row=12
pim3 pim.pre_all
ctl0 df.run id=2 tiles=4096 loops=12
ctl0 halt
"""


def test_canonical_text_round_trips():
    assert disassemble(assemble(CANONICAL)) == CANONICAL


def test_input_may_use_comments_blank_lines_any_field_order_and_hex():
    text = HEADER + """
# a comment line
; another
dma0 load rows=0x40 row_bytes=128 src=dram[4096] dst=sram[0x0]   # trailing comment
\tdma0   halt ; done
"""
    program = assemble(text)
    assert disassemble(program) == HEADER + (
        "dma0 load dst=sram[0x0] src=dram[0x1000] rows=64 row_bytes=128\ndma0 halt\n")


def test_values_are_canonical_python_objects():
    program = assemble(CANONICAL)
    mcfg = program.instructions[4]
    assert mcfg["dtype"] is DType.bf16 and mcfg.get("k") == 64
    assert program.instructions[6]["imm"] == 0.125
    assert program.symbol("wte").size_bytes == 50257 * 768 * 2
    assert Instr.make("signal", "dma0", sem=1) == program.instructions[2]


def test_crlf_line_ends_are_accepted():
    assert disassemble(assemble(CANONICAL.replace("\n", "\r\n"))) == CANONICAL


MALFORMED = [
    ("dma0 load dst=sram[0x0] src=dram[0x1000] rows=64\n",
     "p.tasm:4:6: load is missing field 'row_bytes'"),
    ("dma0 wait sem=1 sem=2\n", "p.tasm:4:17: duplicate field 'sem'"),
    ("dma0 wait sem=1 extra=2\n", "p.tasm:4:17: wait has no field 'extra' (fields: sem)"),
    ("dma0 lod dst=sram[0x0]\n", "p.tasm:4:6: unknown mnemonic 'lod'"),
    ("foo0 halt\n", "p.tasm:4:1: unknown queue 'foo0'"),
    ("mxu0 load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=1\n",
     "p.tasm:4:1: load is not allowed on mxu0 (units: agcu dma)"),
    ("dma0 load dst=sram[0x0] src=dram[0x0] rows=70000 row_bytes=1\n",
     "p.tasm:4:44: rows=70000 does not fit U16 (0..65535)"),
    ("dma0 load dst=hbm[0x0] src=dram[0x0] rows=1 row_bytes=1\n",
     "p.tasm:4:15: unknown space 'hbm' in dst=hbm[0x0] (spaces: dram sram acc)"),
    ("dma0 load dst=sram[0x0] src=dram[0x4000000000] rows=1 row_bytes=1\n",
     "p.tasm:4:29: src=dram[0x4000000000] does not fit A40 (address 0x0..0x3fffffffff)"),
    ("vpu0 vcfg rows=1 cols=1 dtype=fp32 out=fp32 imm=nan\n",
     "p.tasm:4:49: imm=nan: NaN is not allowed in F32 fields"),
    ("vpu0 vcfg rows=1 cols=1 dtype=fp32 out=fp32 imm=1e39\n",
     "p.tasm:4:49: imm=1e39 does not fit F32"),
    ("vpu0 vcfg rows=1 cols=1 dtype=bf17 out=fp32 imm=0\n",
     "p.tasm:4:31: dtype='bf17' is not one of fp32, bf16, fp16, int8, int32"),
    ("mxu0 gemm c=acc[0x0] a=sram[0x0] b=sram[0x0] accumulate=2 transpose_b=0 stream=0 preloaded=0\n",
     "p.tasm:4:57: accumulate=2 does not fit Flag (0 or 1)"),
    ("dma0 halt x\n",
     "p.tasm:4:11: unexpected 'x', expected a field (name=value, no blanks) or end of line"),
    ("dma0\n", "p.tasm:4:5: unexpected end of line, expected a mnemonic"),
    ("dma0 load dst=sram[0x0 src=dram[0x0] rows=1 row_bytes=1\n",
     "p.tasm:4:15: dst: malformed address 'sram[0x0'"),
    ("DMA0 halt\n", "p.tasm:4:1: unexpected 'DMA0', expected"),
    (".frob 1\n", "p.tasm:4:1: unexpected '.frob'"),
    ("dma0 wait sem=1 @\n", "p.tasm:4:17: unexpected '@', expected a field"),
    ("dma0 wait sem=1 é\n", "p.tasm:4:17: unexpected 'é', expected a field"),
    (".spaces dram\n", "p.tasm:4:1: second .spaces directive"),
    (".symbol wte dram 0x0 4 bf16\n.symbol wte dram 0x8 4 bf16\n",
     "p.tasm:5:9: symbol wte defined twice"),
    (".isa 3\n", "p.tasm:4:1: second .isa directive"),
    (".symbol w hbm 0x0 4 bf16\n", "p.tasm:4:11: unknown space 'hbm' (spaces: dram sram acc)"),
    (".symbol w dram 0x0 4x0 bf16\n", "p.tasm:4:9: symbol w: shape (4, 0) must be one or more"),
    (".symbol w dram 0x0 4 bf15\n", "p.tasm:4:22: unknown dtype 'bf15'"),
    (".data missing.npz\n", "p.tasm:4:7: cannot read data file missing.npz: No such file"),
]


@pytest.mark.parametrize(("line", "message"), MALFORMED)
def test_malformed_lines_report_file_line_column(line, message):
    with pytest.raises(AsmError, match="^" + re.escape(message)):
        assemble(HEADER + line, filename="p.tasm")


def test_header_directives_are_required_and_versioned():
    with pytest.raises(AsmError, match=r"^p.tasm:1:1: missing .target directive$"):
        assemble(".isa 3\n.spaces dram\n", filename="p.tasm")
    with pytest.raises(AsmError, match=r"^p.tasm:2:6: unsupported ISA version 2 \(this assembler reads 3\)$"):
        assemble(".target t\n.isa 2\n.spaces dram\n", filename="p.tasm")


def test_errors_are_one_line_value_errors():
    with pytest.raises(ValueError) as caught:
        assemble(HEADER + "dma0 frob\n", filename="p.tasm")
    assert "\n" not in str(caught.value)


def test_gatherw_table_must_be_64_byte_aligned():
    text = (".target systolic\n.isa 3\n.spaces dram sram\n"
            "dma0 gatherw dst=sram[0x0] table=dram[0x10000020] idx=sram[0x100] n=2\n")
    with pytest.raises(AsmError, match=r"<input>:4:34: table=dram\[0x10000020\] is not a multiple of 64 bytes"):
        assemble(text)
    assert assemble(text.replace("0x10000020", "0x10000040")).instructions[0]["table"].addr == 0x10000040
