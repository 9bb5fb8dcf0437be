"""Every opcode round-trips text -> binary -> text and binary -> text -> binary."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.isa.isa_strategies import SPACES, instruction

from isa.opcodes import STRUCTURE
from isa import (ISA_VERSION, OPCODES, DecodeError, Program, assemble, decode, decode_word,
                 disassemble, encode, encode_word)

FAST = settings(max_examples=20, deadline=None, database=None)


def _program(instructions) -> Program:
    return Program("systolic", ISA_VERSION, SPACES, (), tuple(instructions))


@pytest.mark.parametrize("mnemonic", sorted(set(OPCODES) - STRUCTURE))   # loops: test_isa_loops
@FAST
@given(data=st.data())
def test_round_trips(mnemonic, data):
    instrs = data.draw(st.lists(instruction(OPCODES[mnemonic]), min_size=1, max_size=4))
    # text -> binary -> text
    text = disassemble(_program(instrs))
    program = assemble(text)
    assert program.instructions == tuple(instrs)
    words = encode(program.instructions, SPACES)
    again = _program(decode(words, SPACES))
    assert again == program
    assert disassemble(again) == text
    # binary -> text -> binary
    assert np.array_equal(encode(assemble(disassemble(again)).instructions, SPACES), words)


@settings(max_examples=200, deadline=None, database=None)
@given(code=st.sampled_from(sorted(op.code for op in OPCODES.values())),
       unit=st.integers(0, 9), index=st.integers(0, 4095), payload=st.integers(0, (1 << 104) - 1))
def test_any_word_decodes_exactly_or_is_rejected(code, unit, index, payload):
    word = code << 120 | unit << 116 | index << 104 | payload
    try:
        instr = decode_word(word, SPACES)
    except DecodeError:
        return
    assert encode_word(instr, SPACES) == word


def test_word_layout_is_msb_first_little_endian():
    program = assemble(".target t\n.isa 3\n.spaces dram sram\n"
                       "dma3 load dst=sram[0x10] src=dram[0x1000] rows=64 row_bytes=128\n")
    word = encode_word(program.instructions[0], program.spaces)
    assert word >> 120 == 0x04  # opcode
    assert (word >> 104) & 0xFFFF == 1 << 12 | 3  # unit dma=1, index 3
    assert (word >> 72) & 0xFFFFFFFF == 1 << 28 | 0x10  # dst: space 1 (sram), address 0x10
    assert encode([program.instructions[0]], program.spaces).tobytes() == word.to_bytes(16, "little")


def test_identical_words_share_one_instruction():
    program = assemble(".target t\n.isa 3\n.spaces dram\n" + "dma0 signal sem=7\n" * 3)
    decoded = decode(encode(program.instructions, program.spaces), program.spaces)
    assert decoded[0] is decoded[1] is decoded[2]


def test_many_mixed_instructions_round_trip():
    text = [".target t", ".isa 3", ".spaces dram sram acc"]
    for i in range(2000):
        text += [f"dma{i % 3} load dst=sram[{i:#x}] src=dram[{i * 64:#x}] rows={i % 7} row_bytes=64",
                 f"mxu0 gemm c=acc[{i:#x}] a=sram[0x0] b=sram[{i:#x}] accumulate={i % 2} transpose_b=0 stream=0 preloaded=0",
                 f"vpu1 vcfg rows=4 cols={i} dtype=bf16 out=fp32 imm={float(i) / 8}",
                 f"dma0 signal sem={i % 5}"]
    source = "\n".join(text) + "\n"
    program = assemble(source)
    words = encode(program.instructions, program.spaces)
    assert disassemble(_with_spaces(program, decode(words, program.spaces))) == source


def _with_spaces(program: Program, instructions) -> Program:
    return Program(program.target, ISA_VERSION, program.spaces, program.symbols, instructions)
