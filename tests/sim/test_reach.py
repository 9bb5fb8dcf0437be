"""sim.reach and the machines' held_bytes: numeric runs allocate what the program reaches."""
import isa
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode
from sim.machines.pim import PimMachine
from sim.reach import reached_bytes
from tessel.driver import compile_model_graph, model_feeds
from tessel.targets import TARGETS

VIEW = isa.MachineView({"dram": isa.MemorySpace("dram", 1 << 34, on_chip=False),
                        "sram": isa.MemorySpace("sram", 1 << 20, on_chip=True),
                        "acc": isa.MemorySpace("acc", 1 << 16, on_chip=True)},
                       frozenset({"dma0", "dma1"}))


def _program(*instrs: isa.Instr, symbols=()) -> isa.Program:
    return isa.Program("test", isa.ISA_VERSION, ("dram", "sram", "acc"), symbols, instrs)


def test_symbols_and_strided_footprints_set_each_space_and_configs_are_kept_apart():
    load = isa.Instr.make("load", "dma0", dst="sram[0x10]", src="dram[0x200]", rows=4, row_bytes=16)
    program = _program(
        isa.Instr.make("dmacfg", "dma0", src_stride=1000, dst_stride=0), load,
        isa.Instr.make("dmacfg", "dma0", src_stride=0, dst_stride=0), load,   # same object, dense
        isa.Instr.make("halt", "dma0"),
        symbols=(isa.Symbol("w", "dram", 0x100, (4, 8), isa.DType.fp32),))
    assert reached_bytes(program, VIEW) == {"dram": 0x200 + 3 * 1000 + 16, "sram": 0x10 + 64,
                                            "acc": 0}
    late_symbol = _program(load, symbols=(isa.Symbol("w", "dram", 0x4000, (4,), isa.DType.fp32),))
    assert reached_bytes(late_symbol, VIEW)["dram"] == 0x4000 + 16


def test_pim_held_bytes_cover_every_row_the_program_opens():
    arch = load_arch("pim-gpt")
    program = isa.Program("pim", isa.ISA_VERSION, ("dram", "gbuf", "abuf"), (), (
        isa.Instr.make("pim.act_all", "pim3", row=5), isa.Instr.make("pim.pre_all", "pim3"),
        isa.Instr.make("pim.act", "pim1", bank=2, row=9), isa.Instr.make("pim.pre", "pim1", bank=2),
        *(isa.Instr.make("halt", q) for q in ("pim1", "pim3"))))
    held = PimMachine(arch).start(program).held_bytes(arch.machine_view())
    rows_end = max(arch.dram_address(3, arch.banks - 1, 5), arch.dram_address(1, arch.banks - 1, 9))
    assert held["dram"] == rows_end + arch.row_bytes
    assert held["gbuf"] == arch.channels * arch.gbuf_bytes and held["abuf"] == 0


def test_a_numeric_run_allocates_what_it_reaches_even_on_a_32_gib_dram():
    arch = TARGETS["systolic"].load_arch(None, ["dram_bytes=34359738368"])
    model = load_model("tests/fixtures/tiny-gpt2")
    phase = decode(7)
    graph = model.graph(phase)
    lowered = compile_model_graph(model, graph, "systolic", arch, feeds=model_feeds(model, phase, None))
    memory = TARGETS["systolic"].simulate(lowered.program, arch, functional=True).memory
    symbols_end = max(s.addr + s.size_bytes for s in lowered.program.symbols if s.space == "dram")
    assert memory.spaces["dram"] == 1 << 35
    assert symbols_end <= memory.held["dram"] < symbols_end + (1 << 20)
