"""Tessel tile ISA, version 1: opcodes, 128-bit encoding, text assembly, program files, verifier.

    program = isa.load("prog.tasm")          # or isa.assemble(text)
    isa.verify(program, machine_view)        # VerifyError names the instruction and reason
    isa.save(program, "prog.tbin")           # atomic; .tbin or .tasm by suffix
    isa.unroll(program)                      # the loop-free program a compact one means

Everything raises subclasses of `IsaError` (a ValueError) with one-line messages.
"""

from isa.asm import assemble, disassemble
from isa.encoding import decode, decode_word, encode, encode_word
from isa.errors import (AsmError, DecodeError, FieldError, IsaError, LoopError, ProgramFileError,
                        VerifyError)
from isa.fields import A32, A40, E, F32, Field, FieldKind, Flag, S, U
from isa.files import load, save
from isa.footprint import ConfigError, Footprint, QueueConfig, footprints, gather_row_bytes
from isa.instr import Instr, first_uses
from isa.machine import MachineView, MemorySpace
from isa.opcodes import ISA_VERSION, MAC_FORMATS, OPCODES, OPCODES_BY_CODE, OpSpec
from isa.program import Program, Symbol
from isa.unroll import executed_count, executed_shell, unroll
from isa.values import Addr, DType, Queue, Unit
from isa.verify import verify

__all__ = [
    # values and instructions
    "Unit", "Queue", "DType", "Addr", "Instr", "first_uses",
    # opcode table and field kinds
    "ISA_VERSION", "MAC_FORMATS", "OpSpec", "OPCODES", "OPCODES_BY_CODE",
    "FieldKind", "Field", "U", "S", "E", "Flag", "A32", "A40", "F32",
    # programs, encoding, text, files, loops
    "Program", "Symbol", "encode", "decode", "encode_word", "decode_word",
    "assemble", "disassemble", "save", "load", "unroll", "executed_shell", "executed_count",
    # verification
    "MemorySpace", "MachineView", "verify", "Footprint", "QueueConfig", "footprints", "gather_row_bytes",
    # errors
    "IsaError", "FieldError", "DecodeError", "AsmError", "ProgramFileError", "VerifyError",
    "ConfigError", "LoopError",
]
