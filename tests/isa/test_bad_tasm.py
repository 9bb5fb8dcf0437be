""".tasm directives and fields through `tessel asm`: every one honoured or refused with one
line at its file:line:column (docs/inputs.md); non-UTF-8 text is one line too."""
import re
from pathlib import Path

import pytest

from tests.bad_input import refuses

EXAMPLE = (Path(__file__).parents[2] / "examples" / "gemm_tile.tasm").read_text()

BAD = [
    (".isa 3", ".isa 3\n.foo bar", r"p.tasm:5:1: unexpected '.foo', expected '.arch' or '.data' or '.endloop' or '.isa'"),
    (".isa 3", ".isa 3\n.target systolic", r"p.tasm:5:1: second .target directive"),
    (".isa 3", ".isa 4", r"p.tasm:4:6: unsupported ISA version 4 \(this assembler reads 3\)"),
    (".isa 3", ".isa 2.0", r"p.tasm:4:6: unsupported ISA version 2.0"),
    (".isa 3", ".isa one", r"p.tasm:4:6: unexpected 'one', expected a number"),
    (".target systolic", ".target systolic extra", r"p.tasm:3:18: unexpected 'extra', expected end of line"),
    (".spaces dram sram acc", ".spaces dram sram acc sram", r"p.tasm:5:23: space sram listed twice"),
    (".spaces dram sram acc\n", "", r"p.tasm:1:1: missing .spaces directive"),
    (".symbol a dram", ".symbol a hbm", r"p.tasm:6:11: unknown space 'hbm' \(spaces: dram sram acc\)"),
    (".symbol a dram 0x0", ".symbol a dram 1.5", r"p.tasm:6:16: symbol address 1.5 is not an integer"),
    (".symbol a dram 0x0", ".symbol a dram +nan", r"p.tasm:6:16: symbol address \+nan is not an integer"),
    ("0x0 64x64 bf16", "0x0 64x0 bf16", r"p.tasm:6:9: symbol a: shape \(64, 0\) must be one or more positive ints"),
    ("0x0 64x64 bf16", "0x0 64x64 bf17", r"p.tasm:6:26: unknown dtype 'bf17'"),
    (".symbol b dram", ".symbol a dram", r"p.tasm:7:9: symbol a defined twice"),
    (".isa 3", ".isa 3\n.data nothere.npz", r"p.tasm:5:7: cannot read data file nothere.npz"),
    (".isa 3", ".isa 3\n.data a.npz\n.data b.npz", r"p.tasm:6:1: second .data directive"),
    (".isa 3", ".isa 3\n.op a b", r"p.tasm:5:7: unexpected 'b', expected end of line"),
    ("rows=64 row_bytes=128", "rows=64 rows=64 row_bytes=128", r"p.tasm:9:47: duplicate field 'rows'"),
    ("rows=64 row_bytes=128", "rows=64 row_bytez=128", r"p.tasm:9:47: load has no field 'row_bytez' \(fields: dst src rows row_bytes\)"),
    ("imm=0.0", "imm=nan", r"p.tasm:17:51: imm=nan: NaN is not allowed in F32 fields"),
    ("imm=0.0", "imm=1e300", r"p.tasm:17:51: imm=1e300 does not fit F32"),
    ("dma0 load", "dma99999 load", r"p.tasm:9:1: queue index 99999 out of range 0..4095"),
]


@pytest.mark.parametrize("old, new, message", BAD, ids=[m[:40] for *_, m in BAD])
def test_bad_directives_and_fields_are_one_line_errors(tmp_path, capsys, old, new, message):
    assert old in EXAMPLE
    path = tmp_path / "p.tasm"
    path.write_text(EXAMPLE.replace(old, new, 1))
    refuses(capsys, ["asm", path, "-o", tmp_path / "p.tbin"], rf"^error: {re.escape(str(tmp_path))}/{message}")
    assert not (tmp_path / "p.tbin").exists()


def test_non_utf8_tasm_is_one_line(tmp_path, capsys):
    path = tmp_path / "p.tasm"
    path.write_bytes(EXAMPLE.encode() + b"# \xff\n")
    refuses(capsys, ["asm", path, "-o", tmp_path / "p.tbin"], r"p.tasm: not UTF-8 text \(byte \d+\)$")
