"""The shared decoder: each queue's configuration reaches the cost functions, and an opcode a
machine does not execute is rejected with the instruction's index, queue and opcode."""
import pytest

import isa
from arch import load_arch
from tessel.targets import TARGETS
from sim.machines.decode import ONE_OPERAND_FUNCS, CostSheet, CostTable, decode

PRESETS = {"systolic": "systolic-128", "pim": "pim-gpt", "dataflow": "sn40l"}


@pytest.mark.parametrize("target, line, machine", [
    ("systolic", "ctl0 df.section id=1 stages=1 pmus=1 pcus=1", "a systolic-array machine"),
    ("pim", "mxu0 mcfg m=1 n=1 k=1 dtype=bf16 acc=fp32", "a PIM machine"),
    ("dataflow", "pim0 pim.pre_all", "a dataflow machine"),
])
def test_an_opcode_the_machine_lacks_is_named(target, line, machine):
    program = isa.assemble(f".target {target}\n.isa 3\n.spaces dram\ndma0 halt\n{line}\n")
    ins = program.instructions[1]
    with pytest.raises(isa.IsaError, match=rf"^instruction 1 \({ins.queue} {ins.opcode}\): "
                                            rf"not executable on {machine}$"):
        TARGETS[target].machine(load_arch(PRESETS[target])).start(program)


def test_each_queue_keeps_its_own_configuration():
    program = isa.assemble(".target systolic\n.isa 3\n.spaces dram sram\n"
                           "dma0 dmacfg src_stride=64 dst_stride=0\n"
                           "dma1 dmacfg src_stride=8 dst_stride=0\n"
                           "dma0 halt\ndma1 halt\n")
    seen = []
    table = CostTable("a test machine", {"dmacfg": None, "halt": lambda s, i, ins, cfg: seen.append(
        (i, str(ins.queue), cfg.src_stride))})
    decode(table, CostSheet.empty(4, ()), program.instructions)
    assert seen == [(2, "dma0", 64), (3, "dma1", 8)]


def test_one_operand_functions_are_the_isas_immediate_and_unary_ones():
    assert ONE_OPERAND_FUNCS == set(isa.opcodes.VEC_IMMEDIATE + isa.opcodes.VEC_UNARY)
    assert not ONE_OPERAND_FUNCS & set(isa.opcodes.VEC_BINARY)
