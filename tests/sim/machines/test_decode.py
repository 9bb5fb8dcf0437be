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


def _shell(text: str):
    """A compact program, its executed order and the costs the one-by-one walk gives it."""
    from isa.loops import loop_structure
    from isa.unroll import unrolled_order
    program = isa.assemble(text)
    order = unrolled_order(loop_structure(program.instructions)).order
    return program.instructions, order


SHELL = """.target pim
.isa 3
.spaces dram gbuf abuf
asic0 vcfg rows=1 cols=32 dtype=bf16 out=bf16 imm=0.0
.loop count=3
  asic0 vec func=add bcast=none dst=abuf[0x2000]+=0x800 a=abuf[0x0] b=abuf[0x1000]
  .loop count=2
    asic0 vcfg rows=2 cols=64 dtype=bf16 out=bf16 imm=0.0
    asic0 vec func=exp bcast=none dst=abuf[0x4000] a=abuf[0x0] b=abuf[0x0]
    dma0 dmacfg src_stride=128 dst_stride=0
    dma0 load dst=abuf[0x0] src=dram[0x100]+=0x40 rows=2 row_bytes=64
    asic0 vcfg rows=1 cols=16 dtype=bf16 out=bf16 imm=0.0
  .endloop
  dma0 dmacfg src_stride=0 dst_stride=0
  dma0 load dst=abuf[0x0] src=dram[0x100] rows=1 row_bytes=256
  asic0 vec func=add bcast=none dst=abuf[0x2000] a=abuf[0x0] b=abuf[0x1000]
.endloop
dma0 halt
asic0 halt
"""


def test_the_shell_decoder_prices_as_the_walk_does():
    """decode_shell (each instruction and configuration priced once, configurations walked
    over the configuring instructions alone) gives every column the one-by-one walk gives,
    for every instruction or a subset."""
    import numpy as np
    from sim.machines.decode import decode_shell
    instrs, order = _shell(SHELL)
    machine = TARGETS["pim"].machine(load_arch("pim-gpt"))
    table, names = machine.cost_table, machine.events
    executed = [instrs[c] for c in order.tolist()]
    for indices in (np.arange(len(order)), np.arange(0, len(order), 2)):
        walk = decode(table, CostSheet.empty(len(order), names), executed, indices.tolist())
        shell = decode_shell(table, CostSheet.empty(len(order), names), instrs, order, indices)
        for column in ("durations", "resources", "delays"):
            assert getattr(shell, column).tolist() == getattr(walk, column).tolist()
        assert shell.events.freeze().totals() == walk.events.freeze().totals()
        assert shell.events.rows.tolist() == walk.events.rows.tolist()
        assert walk.durations[indices].any()


def test_the_shell_decoder_names_the_first_instruction_it_cannot_price():
    """An opcode the machine lacks inside a loop is named at its first execution, as the
    walk names it."""
    import numpy as np
    from sim.machines.decode import decode_shell
    instrs, order = _shell(SHELL.replace("dma0 halt", "mxu0 mcfg m=1 n=1 k=1 dtype=bf16 acc=fp32\ndma0 halt"))
    machine = TARGETS["pim"].machine(load_arch("pim-gpt"))
    executed = [instrs[c] for c in order.tolist()]
    with pytest.raises(isa.IsaError) as walk:
        decode(machine.cost_table, CostSheet.empty(len(order), machine.events), executed)
    with pytest.raises(isa.IsaError) as shell:
        decode_shell(machine.cost_table, CostSheet.empty(len(order), machine.events), instrs,
                     order, np.arange(len(order)))
    assert str(shell.value) == str(walk.value) and "mcfg" in str(walk.value)


def test_the_shell_decoder_stops_where_the_walk_stops():
    """An instruction the machine lacks before one whose cost function fails: both decoders
    name the first, not the later failure."""
    import numpy as np
    from sim.machines.decode import decode_shell

    def fails(sheet, i, ins, config):
        raise ValueError(f"priced {i}")
    table = CostTable("a test machine", {"dmacfg": None, "halt": None, "load": fails}, pure=True)
    instrs, order = _shell(".target pim\n.isa 3\n.spaces dram gbuf abuf\n.loop count=2\n"
                           "  asic0 vcfg rows=1 cols=32 dtype=bf16 out=bf16 imm=0.0\n"
                           "  dma0 load dst=abuf[0x0] src=dram[0x100] rows=1 row_bytes=64\n"
                           ".endloop\ndma0 halt\n")
    executed = [instrs[c] for c in order.tolist()]
    with pytest.raises(isa.IsaError, match="^instruction 0 .*vcfg.*not executable"):
        decode(table, CostSheet.empty(len(order), ()), executed)
    with pytest.raises(isa.IsaError, match="^instruction 0 .*vcfg.*not executable"):
        decode_shell(table, CostSheet.empty(len(order), ()), instrs, order, np.arange(len(order)))
