"""A40, ISA version 2: 2 bits of space index and 38 of byte address, so an off-chip operand
reaches 256 GiB (Llama-3.1-70B's 141 GB of weights) of one of the program's first 4 spaces;
a program may still name 16 spaces, which A32 operands reach."""

from __future__ import annotations

import re

import pytest

from isa import (ISA_VERSION, A32, A40, AsmError, FieldError, Instr, MachineView, MemorySpace,
                 Program, ProgramFileError, VerifyError, assemble, decode, decode_word,
                 disassemble, encode, encode_word, save, verify)

GIB = 1 << 30
SPACES = ("dram", "sram", "acc")
FIVE = ("a", "b", "c", "d", "e")          # "e" is space index 4: beyond A40's 2 bits
REFUSED = ("src=e[0x0]: space e is index 4 of the program's spaces, beyond the 2-bit space "
           "index of A40 (0..3)")


def _load(src: str, spaces: tuple[str, ...] = SPACES, dst: str = "sram[0x0]") -> Program:
    instr = Instr.make("load", "dma0", dst=dst, src=src, rows=1, row_bytes=2)
    return Program("t", ISA_VERSION, spaces, (), (instr,))


def test_the_kinds():
    assert (A40.space_bits, A40.addr_bits, A40.bits, A40.reach) == (2, 38, 40, 256 * GIB)
    assert (A32.space_bits, A32.addr_bits, A32.bits, A32.reach) == (4, 28, 32, 256 << 20)


@pytest.mark.parametrize("addr", [100 * GIB, 256 * GIB - 2])
def test_a_load_beyond_64_gib_round_trips_through_binary_and_text(addr):
    program = _load(f"dram[{addr:#x}]")
    word = encode_word(program.instructions[0], SPACES)
    assert (word >> 32) & ((1 << 40) - 1) == addr           # src, bits 71..32: space 0, address
    in_acc = _load(f"acc[{addr:#x}]").instructions[0]
    assert (encode_word(in_acc, SPACES) >> 32) & ((1 << 40) - 1) == 2 << 38 | addr
    assert decode_word(word, SPACES) == program.instructions[0]
    assert decode(encode(program.instructions, SPACES), SPACES) == program.instructions
    text = disassemble(program)
    assert f"src=dram[{addr:#x}]" in text and assemble(text) == program


def test_256_gib_is_out_of_range():
    message = "src=dram[0x4000000000] does not fit A40 (address 0x0..0x3fffffffff)"
    with pytest.raises(FieldError, match="^" + re.escape(message) + "$"):
        _load("dram[0x4000000000]")


def test_an_a40_operand_in_the_fifth_space_is_refused_when_encoded():
    program = _load("e[0x0]", FIVE, dst="a[0x0]")
    with pytest.raises(FieldError, match=r"^instruction 0 \(dma0 load\): " + re.escape(REFUSED) + "$"):
        encode(program.instructions, FIVE)


def test_an_a40_operand_in_the_fifth_space_is_refused_when_assembled():
    text = ".target t\n.isa 3\n.spaces a b c d e\ndma0 load dst=a[0x0] src=e[0x0] rows=1 row_bytes=2\n"
    with pytest.raises(AsmError, match="^p.tasm:4:26: load " + re.escape(REFUSED) + "$"):
        assemble(text, filename="p.tasm")


def test_an_a40_operand_in_the_fifth_space_is_refused_when_built(tmp_path):
    """A program built in Python is refused by the verifier and by either file writer."""
    program = _load("e[0x0]", FIVE, dst="a[0x0]")
    machine = MachineView({s: MemorySpace(s, 1 << 20, on_chip=s != "e") for s in FIVE},
                          frozenset({"dma0"}))
    with pytest.raises(VerifyError, match=r"^instruction 0 \(dma0 load\): " + re.escape(REFUSED) + "$"):
        verify(program, machine)
    for suffix in (".tbin", ".tasm"):
        with pytest.raises(ProgramFileError, match=re.escape(REFUSED) + "$"):
            save(program, tmp_path / f"p{suffix}")
        assert not (tmp_path / f"p{suffix}").exists()


def test_a32_operands_still_reach_all_16_spaces():
    spaces = tuple(f"s{i}" for i in range(16))
    program = _load("s3[0x0]", spaces, dst="s15[0x40]")
    assert decode(encode(program.instructions, spaces), spaces) == program.instructions
