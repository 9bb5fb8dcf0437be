"""The text and binary round trip every opcode's tests start from."""
from __future__ import annotations

from isa import Program, assemble, decode, disassemble, encode


def round_trip(text: str) -> Program:
    """`text` assembled, after checking that it disassembles to itself and that its encoded
    words decode to its instructions."""
    program = assemble(text)
    assert disassemble(program) == text
    words = encode(program.instructions, program.spaces)
    assert decode(words, program.spaces) == program.instructions
    return program
