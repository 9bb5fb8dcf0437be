"""Op marks: which source-graph op each stretch of instructions belongs to, kept by every format."""
import pytest

import isa
from isa import Instr, Program


def marked_program() -> Program:
    instrs = [Instr.make("signal", "dma0", sem=0), Instr.make("wait", "mxu0", sem=0),
              Instr.make("halt", "dma0"), Instr.make("halt", "mxu0")]
    return Program("systolic", isa.ISA_VERSION, ("dram", "sram"), (), tuple(instrs),
                   ops=((0, "h.0.ln_1"), (1, "h.0.attn.c_attn"), (2, "end")))


@pytest.mark.parametrize("suffix", [".tbin", ".tasm"])
def test_op_marks_survive_save_and_load(tmp_path, suffix):
    program = marked_program()
    isa.save(program, tmp_path / f"p{suffix}")
    assert isa.load(tmp_path / f"p{suffix}").ops == program.ops


def test_op_marks_read_as_directives():
    text = isa.disassemble(marked_program())
    assert ".op h.0.ln_1\ndma0 signal sem=0\n.op h.0.attn.c_attn\nmxu0 wait sem=0\n.op end\n" in text
    assert isa.assemble(text).ops == marked_program().ops


def test_out_of_order_marks_are_rejected():
    with pytest.raises(isa.IsaError, match="op mark"):
        Program("systolic", isa.ISA_VERSION, ("dram",), (), (), ops=((1, "a"),))
