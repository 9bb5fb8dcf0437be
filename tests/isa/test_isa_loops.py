"""Loops (docs/isa.md, "Loops"): text and binary round trips, unrolling, every new error pinned,
and the compact verifier against the unrolled one on random loop programs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.isa.isa_strategies import ROW_BYTES, loop_body
from isa import (ISA_VERSION, AsmError, Instr, LoopError, MachineView, MemorySpace, Program,
                 VerifyError, assemble, decode, disassemble, encode, executed_count, load, save,
                 unroll, verify)

HEADER = ".target systolic\n.isa 3\n.spaces dram sram acc\n"
MACHINE = MachineView(
    spaces={"dram": MemorySpace("dram", 1 << 16, on_chip=False),
            "sram": MemorySpace("sram", 4096, on_chip=True),
            "acc": MemorySpace("acc", 4096, on_chip=True)},
    queues=frozenset({"dma0", "dma1", "mxu0", "vpu0", "pim0"}),
    limits={"bank": 16, "row": 16384, "col": 64, "gbuf_bytes": 2048, "pim_burst_bytes": 32},
)

NESTED = HEADER + """\
.op first
dma0 dmacfg src_stride=0 dst_stride=0
.loop count=3
  .op body
  dma0 load dst=sram[0x0]+=0x40 src=dram[0x100]+=0x40 rows=1 row_bytes=64
  .loop count=2
    .op inner
    dma0 load dst=sram[0x400] src=dram[0x1000]+=0x80-=0x200 rows=1 row_bytes=64
    dma0 signal sem=1
    .loop count=2
      dma1 store dst=dram[0x8000]+=0+=0+=0x1000 src=sram[0x0] rows=1 row_bytes=64
    .endloop
    dma1 wait sem=1
  .endloop
.endloop
.op last
dma0 signal sem=2
dma1 wait sem=2
"""


def test_nested_loops_round_trip_text_binary_text(tmp_path):
    program = assemble(NESTED)
    assert disassemble(program) == NESTED
    words = encode(program.instructions, program.spaces)
    assert decode(words, program.spaces) == program.instructions
    assert [str(i) for i in program.instructions[1:7]] == [
        "seq0 loop count=3 body=8", "seq0 stride at=0 field=0 delta=64",
        "seq0 stride at=0 field=1 delta=64", "seq0 stride at=3 field=1 delta=-512",
        "seq0 stride at=6 field=0 delta=4096", "dma0 load dst=sram[0x0] src=dram[0x100] rows=1 row_bytes=64"]
    assert program.ops == ((0, "first"), (6, "body"), (9, "inner"), (14, "last"))
    for name in ("p.tbin", "p.tasm"):
        save(program, tmp_path / name)
        assert load(tmp_path / name) == program
    assert (tmp_path / "p.tasm").read_text() == NESTED


def test_unroll_is_the_unrolled_program():
    program = assemble(NESTED)
    flat = unroll(program)
    assert unroll(flat) is flat and verify(program, MACHINE) is None
    lines = [str(i) for i in flat.instructions]
    assert len(lines) == 1 + 3 * (1 + 2 * (3 + 2)) + 2 == executed_count(program) == executed_count(flat)
    loads = [line for line in lines if "load" in line]
    assert [line.split()[3] for line in loads] == [
        "src=dram[0x100]", "src=dram[0x1000]", "src=dram[0x1080]",
        "src=dram[0x140]", "src=dram[0xe00]", "src=dram[0xe80]",
        "src=dram[0x180]", "src=dram[0xc00]", "src=dram[0xc80]"]
    stores = [line.split()[2] for line in lines if "store" in line]
    assert stores == ["dst=dram[0x8000]"] * 4 + ["dst=dram[0x9000]"] * 4 + ["dst=dram[0xa000]"] * 4
    assert flat.ops == ((0, "first"), (1, "body"), (2, "inner"), (7, "inner"), (12, "body"),
                        (13, "inner"), (18, "inner"), (23, "body"), (24, "inner"), (29, "inner"),
                        (34, "last"))
    unstrided = [i for i in flat.instructions if i.opcode == "signal"]
    assert all(i is unstrided[0] for i in unstrided[:-1])      # shared, not copied
    verify(flat, MACHINE)


def _words(*words: Instr) -> Program:
    return Program("systolic", ISA_VERSION, ("dram", "sram", "acc"), (), words)


LOAD = Instr.make("load", "dma0", dst="sram[0x0]", src="dram[0x0]", rows=1, row_bytes=64)
SIGNAL = Instr.make("signal", "dma0", sem=1)


def _loop(count: int, body: int) -> Instr:
    return Instr.make("loop", "seq0", count=count, body=body)


def _stride(at: int, field: int, delta: int) -> Instr:
    return Instr.make("stride", "seq0", at=at, field=field, delta=delta)


BAD_STRUCTURE = [
    ((SIGNAL, _loop(2, 1), _stride(1, 0, 64), LOAD),
     "loop at 1: stride at=1 is past its body of 1 words"),
    ((_loop(2, 1), _stride(0, 2, 64), LOAD),
     r"loop at 0: stride on rows of instruction 2 \(dma0 load\): U16 is not an address field "
     r"\(only A32/A40 operands and the DRAM rows, columns and global-buffer offsets of pim "
     r"instructions move\)"),
    ((_loop(2, 1), _stride(0, 7, 64), LOAD),
     r"loop at 0: stride on field 7 of instruction 2 \(dma0 load\), which has 4 fields"),
    ((_loop(2, 2), _stride(0, 0, 64), _loop(2, 1), LOAD),
     r"loop at 0: stride at=0 points at instruction 2, a loop word of a nested loop "
     r"\(only instructions move\)"),
    ((_loop(2, 3), _loop(2, 2), _stride(1, 0, 64), LOAD, LOAD),
     r"loop at 1: its body of 2 words ends at word 5, past the end of the body of loop at 0 "
     r"\(word 4\)"),
    ((_loop(2, 2), LOAD), r"loop at 0: its body of 2 words ends at word 3, past the end of the "
     r"program \(2 words\)"),
    ((_loop(0, 1), LOAD), r"loop at 0: count 0 \(a loop runs its body at least once\)"),
    ((_loop(2, 0), LOAD), r"loop at 0: empty body"),
    ((LOAD, _stride(0, 0, 64)), r"instruction 1 \(seq0 stride\): a stride word must follow its "
     "loop's header or another stride word"),
    ((Instr.make("loop", "seq3", count=2, body=1), LOAD),
     r"instruction 0 \(seq3 loop\): loop words belong to queue seq0"),
    ((_loop(2, 1), _stride(0, 1, 64), _stride(0, 0, 64), LOAD),
     r"loop at 0: stride words must be in increasing \(at, field\) order, each once "
     r"\(instruction 2\)"),
    ((_loop(2, 1), _stride(0, 0, 0), LOAD),
     r"loop at 0: stride of 0 on dst of instruction 2 \(dma0 load\) \(leave it out\)"),
]


@pytest.mark.parametrize("words, message", BAD_STRUCTURE, ids=[m[:40] for _, m in BAD_STRUCTURE])
def test_loop_words_that_are_no_loops_are_refused(words, message):
    program = _words(*words)
    with pytest.raises(VerifyError, match=f"^{message}$"):
        verify(program, MACHINE)
    with pytest.raises(LoopError, match=f"^{message}$"):
        unroll(program)
    with pytest.raises(LoopError, match=f"^{message}$"):
        disassemble(program)


def test_gatherw_strides_are_multiples_of_its_granule():
    gather = Instr.make("gatherw", "dma0", dst="sram[0x0]", table="dram[0x0]", idx="sram[0x100]", n=1)
    with pytest.raises(VerifyError, match=r"^loop at 0: stride 32 on table of instruction 2 "
                       r"\(dma0 gatherw\) is not a multiple of 64 bytes \(A32/64B\)$"):
        verify(_words(_loop(2, 1), _stride(0, 1, 32), gather), MACHINE)


def test_op_mark_on_a_stride_word_is_refused():
    program = Program("systolic", ISA_VERSION, ("dram", "sram", "acc"), (),
                      (_loop(2, 1), _stride(0, 0, 64), LOAD), ops=((1, "x"),))
    with pytest.raises(VerifyError, match=r"^op mark \(1, 'x'\) points at a stride word of loop at 0$"):
        verify(program, MACHINE)


BAD_PROGRAMS = [
    ("""dma0 dmacfg src_stride=0 dst_stride=0
.loop count=17
  dma0 load dst=sram[0x0]+=0x100 src=dram[0x0]+=0x100 rows=1 row_bytes=256
.endloop
""", r"instruction 4 \(dma0 load\) in loop at 1, iteration 16: dst: address range "
     r"sram\[0x1000, 0x1100\) exceeds space sram of 4096 bytes"),
    (""".loop count=20
  dma0 load dst=sram[0x800]-=0x100 src=dram[0x0]+=0x100 rows=1 row_bytes=256
.endloop
""", r"instruction 3 \(dma0 load\) in loop at 0, iteration 9: dst: address range "
     r"sram\[-0x100, 0x0\) starts below address 0"),
    (""".loop count=4
  .loop count=5
    dma0 load dst=sram[0x0]+=0x100+=0x400 src=dram[0x0] rows=1 row_bytes=256
  .endloop
.endloop
""", r"instruction 4 \(dma0 load\) in loop at 0, iteration 3, loop at 2, iteration 4: dst: "
     r"address range sram\[0x1000, 0x1100\) exceeds space sram of 4096 bytes"),
    (""".loop count=3
  dma0 load dst=sram[0x0]+=0x80 src=dram[0x0]+=0x100 rows=1 row_bytes=256
.endloop
""", r"instruction 3 \(dma0 load\) in loop at 0, iteration 1: dst writes sram\[0x80, 0x180\), "
     r"overlapping its write of iteration 0 \(it moves 128 bytes per iteration\)"),
    (""".loop count=3
  dma0 signal sem=3
  dma0 signal sem=3
  mxu0 wait sem=3
.endloop
""", r"loop at 0: semaphore 3 is signalled 2 and waited 1 times per iteration"),
    (""".loop count=3
  .loop count=2
    dma0 signal sem=3
  .endloop
  mxu0 wait sem=3
.endloop
""", r"loop at 0: semaphore 3 is signalled 2 and waited 1 times per iteration"),
    (""".loop count=2
  mxu0 wait sem=1
  mxu0 signal sem=2
  dma0 wait sem=2
  dma0 signal sem=1
.endloop
""", r"instruction 1 \(mxu0 wait\) in loop at 0, iteration 0: deadlock: wait on semaphore 1 is "
     r"never satisfied; blocked: mxu0 at instruction 1 in loop at 0, iteration 0 \(semaphore 1\), "
     r"dma0 at instruction 3 in loop at 0, iteration 0 \(semaphore 2\)"),
    ("""pim0 pim.act bank=0 row=1
.loop count=3
  pim0 pim.mac bank=0 col=0 ncols=1 gb=0
  pim0 pim.pre bank=0
.endloop
""", r"instruction 2 \(pim0 pim.mac\) in loop at 1, iteration 1: bank 0 has no open row "
     r"\(precharged at instruction 3 in loop at 1, iteration 0, not activated since\)"),
    (""".loop count=2
  vpu0 vec func=exp bcast=none dst=sram[0x0] a=sram[0x0]+=0x40 b=sram[0x0]
  vpu0 vcfg rows=1 cols=1 dtype=fp32 out=fp32 imm=0.0
.endloop
""", r"instruction 2 \(vpu0 vec\) in loop at 0, iteration 0: vec before any vcfg on this queue"),
]


@pytest.mark.parametrize("body, message", BAD_PROGRAMS, ids=[m[:40] for _, m in BAD_PROGRAMS])
def test_loop_programs_are_refused_naming_loop_and_iteration(body, message):
    with pytest.raises(VerifyError, match=f"^{message}$"):
        verify(assemble(HEADER + body), MACHINE)


def test_pitched_writes_that_interleave_do_not_overlap():
    sweep = """\
dma0 dmacfg src_stride=0 dst_stride={pitch}
.loop count=4
  dma0 load dst=sram[0x0]+=0x40 src=dram[0x0]+=0x100 rows=4 row_bytes={row}
.endloop
"""
    verify(assemble(HEADER + sweep.format(pitch=0x400, row=64)), MACHINE)   # columns of rows
    with pytest.raises(VerifyError, match=r"^instruction 4 \(dma0 load\) in loop at 1, iteration 1: "
                       r"dst writes sram\[0x40, 0x210\), overlapping its write of iteration 0 "
                       r"\(it moves 64 bytes per iteration\)$"):
        verify(assemble(HEADER + sweep.format(pitch=0x80, row=80)), MACHINE)


def test_a_strided_address_beyond_its_field_is_refused_by_verify_and_unroll():
    program = assemble(HEADER + """\
.loop count=3
  mxu0 mcfg m=1 n=1 k=1 dtype=fp32 acc=fp32
  mxu0 gemm c=acc[0x0] a=sram[0xfffffc0]+=0x40 b=sram[0x0] accumulate=0 transpose_b=0 stream=0 preloaded=0
.endloop
""")
    big = MachineView({**MACHINE.spaces, "sram": MemorySpace("sram", 1 << 30, on_chip=True)},
                      MACHINE.queues)
    with pytest.raises(VerifyError, match=r"^instruction 3 \(mxu0 gemm\) in loop at 0, iteration 1: "
                       r"a=sram\[0x10000000\] does not fit A32 \(address 0x0..0xfffffff\)$"):
        verify(program, big)
    with pytest.raises(LoopError, match=r"^instruction 3 \(mxu0 gemm\) in loop at 0, iteration 1: "
                       r"a=sram\[0x10000000\] is outside A32 \(address 0x0..0xfffffff\)$"):
        unroll(program)


BAD_TEXT = [
    (".loop count=2\ndma0 signal sem=1\n", "p.tasm:4:1: .loop without .endloop"),
    ("dma0 signal sem=1\n  .endloop\n", "p.tasm:5:3: .endloop without .loop"),
    (".loop count=2\n.op x\n.endloop\n", "p.tasm:4:1: .loop with an empty body"),
    (".loop times=2\n", "p.tasm:4:7: .loop takes count=N, got times=2"),
    (".loop count=-1\n", "p.tasm:4:13: count=-1 does not fit U32 (0..4294967295)"),
    (".loop count=2\ndma0 load dst=sram[0x0] src=dram[0x0] rows=1+=4 row_bytes=64\n.endloop\n",
     "p.tasm:5:45: stride on rows: U16 is not an address field (only A32/A40 operands and the "
     "DRAM rows, columns and global-buffer offsets of pim instructions move)"),
    (".loop count=2\npim0 pim.mac_all col=0 ncols=4+=1 gb=0\n.endloop\n",
     "p.tasm:5:31: stride on ncols: U16 is not an address field (only A32/A40 operands and the "
     "DRAM rows, columns and global-buffer offsets of pim instructions move)"),
    (".loop count=2\ndma0 load dst=sram[0x0]+=0x40+=0x40 src=dram[0x0] rows=1 row_bytes=64\n"
     ".endloop\n", "p.tasm:5:30: dst has 2 strides but the instruction is inside 1 loops"),
    ("dma0 load dst=sram[0x0]-=0x40 src=dram[0x0] rows=1 row_bytes=64\n",
     "p.tasm:4:24: dst has 1 strides but the instruction is inside 0 loops"),
    (".loop count=2\ndma0 gatherw dst=sram[0x0] table=dram[0x0]+=0x20 idx=sram[0x40] n=1\n"
     ".endloop\n", "p.tasm:5:43: stride +=0x20 on table is not a multiple of 64 bytes (A32/64B)"),
    (".loop count=2\ndma0 load dst=sram[0x0]+=0xfffffffffffffffff src=dram[0x0] rows=1 "
     "row_bytes=64\n.endloop\n",
     "p.tasm:5:24: stride=295147905179352825855 does not fit S64 "
     "(-9223372036854775808..9223372036854775807)"),
    (".loop count=2\ndma0 load dst=sram[0x0]+=0xg src=dram[0x0] rows=1 row_bytes=64\n.endloop\n",
     "p.tasm:5:24: stride +=0xg is not an integer"),
]


@pytest.mark.parametrize("body, message", BAD_TEXT, ids=[m for _, m in BAD_TEXT])
def test_bad_loop_text_is_one_line_at_its_column(body, message):
    with pytest.raises(AsmError) as error:
        assemble(HEADER + body, filename="p.tasm")
    assert str(error.value) == message


# ---- random loop programs ----------------------------------------------------------------------

@st.composite
def loop_programs(draw) -> str:
    lines = draw(loop_body())
    return HEADER + "dma0 dmacfg src_stride=0 dst_stride=0\n" + "\n".join(lines) + "\n"


def _writes_overlap(program: Program) -> bool:
    """Whether a moving write overlaps itself from one iteration to the next: dense rows,
    the stride below the bytes written (the verifier's own rule)."""
    from isa.loops import loop_structure
    structure = loop_structure(program.instructions)
    for loop in structure.loops:
        for (index, position), delta in loop.strides.items():
            instr = program.instructions[index]
            if position == 0 and loop.count > 1 and abs(delta) < instr["rows"] * ROW_BYTES:
                return True
    return False


@pytest.mark.slow
@settings(max_examples=150, deadline=None, database=None)
@given(text=loop_programs())
def test_compact_verify_accepts_exactly_what_the_unrolled_program_passes(text):
    program = assemble(text)
    assert disassemble(assemble(disassemble(program))) == disassemble(program)
    assert decode(encode(program.instructions, program.spaces), program.spaces) == program.instructions
    try:
        flat = unroll(program)
        assert executed_count(program) == len(flat.instructions)
        verify(flat, MACHINE)
        unrolled_ok = True
    except (LoopError, VerifyError):
        unrolled_ok = False
    try:
        verify(program, MACHINE)
        compact_ok = True
    except VerifyError:
        compact_ok = False
    assert compact_ok == (unrolled_ok and not _writes_overlap(program))


def test_op_names_per_iteration_fill_in_their_template():
    import dataclasses
    from isa import assemble, unroll
    from isa.errors import AsmError, IsaError, LoopError
    head = ".target systolic\n.isa 3\n.spaces dram sram acc\n"
    body = "dma0 load dst=sram[0x0] src=dram[0x0]+=0x40 rows=1 row_bytes=64\n"
    program = assemble(head + ".loop count=3\n.op layers.{+2}.mlp\n" + body + ".endloop\n")
    assert unroll(program).ops == ((0, "layers.2.mlp"), (1, "layers.3.mlp"), (2, "layers.4.mlp"))
    with pytest.raises(AsmError, match=r"p.tasm:4:1: .op x.\{\+1\}: a name template"):
        assemble(head + ".op x.{+1}\n" + body.replace("+=0x40", ""), filename="p.tasm")
    with pytest.raises(LoopError, match="needs a loop around it"):
        unroll(dataclasses.replace(program, ops=((0, "x.{+1}"),)))
    for bad in ("a.{+1}.{+2}", "a{+x}", "a}", "a.{+1*0}"):
        with pytest.raises(IsaError, match="not a name"):
            dataclasses.replace(program, ops=((2, bad),))


PIM_ROWS = """\
.target pim
.isa 3
.spaces dram gbuf abuf
.loop count=3
  pim0 pim.wrgb gb=0+=64 src=abuf[0x0]+=0x40 bytes=64
.endloop
.loop count=4
  pim0 pim.act_all row=7+=1
  pim0 pim.mac_all col=0 ncols=2 gb=0+=64
  pim0 pim.rdmac_all dst=abuf[0x100]+=0x40
  pim0 pim.pre_all
.endloop
"""
PIM_MACHINE = MachineView(
    spaces={"dram": MemorySpace("dram", 1 << 20, on_chip=False),
            "gbuf": MemorySpace("gbuf", 2048, on_chip=True),
            "abuf": MemorySpace("abuf", 4096, on_chip=True)},
    queues=frozenset({"pim0"}),
    limits={"bank": 16, "row": 16, "col": 64, "gbuf_bytes": 256, "pim_burst_bytes": 32},
)


def test_pim_rows_columns_and_gbuf_offsets_move_in_loops(tmp_path):
    # a GEMV's rows: the next DRAM row, the next 64 bytes of the global buffer each iteration
    program = assemble(PIM_ROWS)
    assert disassemble(program) == PIM_ROWS
    assert decode(encode(program.instructions, program.spaces), program.spaces) == program.instructions
    for name in ("p.tbin", "p.tasm"):
        save(program, tmp_path / name)
        assert load(tmp_path / name) == program
    flat = unroll(program).instructions
    assert [i["row"] for i in flat if i.opcode == "pim.act_all"] == [7, 8, 9, 10]
    assert [i["gb"] for i in flat if i.opcode == "pim.mac_all"] == [0, 64, 128, 192]
    assert [i["gb"] for i in flat if i.opcode == "pim.wrgb"] == [0, 64, 128]
    verify(program, PIM_MACHINE)
    verify(unroll(program), PIM_MACHINE)


@pytest.mark.parametrize("old, new, iteration, message", [
    ("row=7+=1", "row=13+=1", 3, r"row=16 exceeds the machine limit \(< 16\)$"),
    ("gb=0+=64", "gb=64+=64", 3, r"global buffer range \[256, 320\) exceeds gbuf_bytes 256$"),
    ("col=0 ncols=2 gb=0+=64", "col=0+=32 ncols=2 gb=0", 2,
     r"columns \[64, 66\) exceed the 64 columns of a row$"),
    ("row=7+=1", "row=2-=1", 3, r"row=-1 does not fit U24 \(0..16777215\)$"),
], ids=["row", "gbuf", "col", "below-zero"])
def test_a_moving_pim_operand_past_its_bound_names_loop_and_iteration(old, new, iteration, message):
    program = assemble(PIM_ROWS.replace(old, new))
    with pytest.raises(VerifyError, match=r"^instruction \d+ \(pim0 pim\.\w+\) in loop at 4, "
                       rf"iteration {iteration}: " + message):
        verify(program, PIM_MACHINE)


@pytest.mark.parametrize("text", [PIM_ROWS, HEADER + """pim0 pim.act bank=0 row=1
.loop count=3
  pim0 pim.mac bank=0 col=0 ncols=1 gb=0
  pim0 pim.pre bank=0
.endloop
""", PIM_ROWS.replace("  pim0 pim.pre_all\n", "")], ids=["valid", "precharged", "moving-rows"])
def test_the_row_check_reads_a_given_unrolled_program_as_it_expands_its_own(text):
    """A simulator that runs a program unrolled hands its unrolled copy to the verifier: the
    row protocol is checked on the same instances, with the same message or none."""
    program = assemble(text)
    machine = PIM_MACHINE if "gb=0+=64" in text else MACHINE

    def outcome(*executed):
        try:
            verify(program, machine, *executed)
        except VerifyError as error:
            return str(error)
        return None
    assert outcome(unroll(program)) == outcome()
    assert (outcome() is None) == (text == PIM_ROWS)


def _naive_order(structure, lo: int, hi: int, parent) -> list[int]:
    """The executed order by plain recursion: each loop's body expanded `count` times."""
    out, cursor = [], lo
    for loop in [loop for loop in structure.loops if loop.parent == parent]:
        out += range(cursor, loop.header)
        out += _naive_order(structure, loop.body_start, loop.body_end, loop.header) * loop.count
        cursor = loop.body_end
    return out + list(range(cursor, hi))


@settings(max_examples=100, deadline=None, database=None)
@given(text=loop_programs())
def test_unrolled_order_and_first_runs_equal_a_plain_expansion(text):
    """unrolled_order (written in place, iterations copied in doubling blocks) equals the
    body-by-body expansion, its `first` equals first_executed of that order, and each word
    runs at its first plus each loop's iteration times that loop's `iteration`."""
    from isa.loops import loop_structure
    from isa.unroll import first_executed, unrolled_order
    program = assemble(text)
    structure = loop_structure(program.instructions)
    unrolled = unrolled_order(structure)
    want = _naive_order(structure, 0, structure.size, None)
    assert unrolled.order.tolist() == want
    assert unrolled.first.tolist() == first_executed(unrolled.order, structure.size).tolist()
    order = np.array(want)
    for c in np.flatnonzero(unrolled.first >= 0).tolist():   # each run: first + iterations
        places = np.array([unrolled.first[c]])
        for loop in structure.chain(c):
            steps = np.arange(loop.count) * unrolled.iteration[loop.header]
            places = np.add.outer(places, steps).ravel()
        assert places.tolist() == np.flatnonzero(order == c).tolist()


def test_a_programs_structure_is_worked_out_once_per_tuple():
    """The verifier, the machine and the report ask for one program's loops: the same tuple
    of instructions (and op marks) gets the same Structure, strides cached with it; an equal
    tuple that is another object, or a list, is worked out anew."""
    from isa.loops import loop_structure
    program = assemble(NESTED)
    first = loop_structure(program.instructions, ops=program.ops)
    assert loop_structure(program.instructions, ops=program.ops) is first
    copy = tuple(list(program.instructions))
    again = loop_structure(copy, ops=program.ops)
    assert again is not first and again.loops == first.loops
    listed = list(program.instructions)
    assert loop_structure(listed, ops=program.ops) is not loop_structure(listed, ops=program.ops)
