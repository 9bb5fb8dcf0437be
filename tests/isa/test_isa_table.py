"""Opcode table invariants and the small value types, with their error messages pinned."""

from __future__ import annotations

import re

import numpy as np
import pytest

from isa import (ISA_VERSION, OPCODES, OPCODES_BY_CODE, Addr, DType, FieldError, Instr, IsaError,
                 MachineView, MemorySpace, Program, Queue, Symbol, Unit)
from isa.opcodes import PAYLOAD_BITS, STRUCTURE


def test_table_is_consistent():
    assert len(OPCODES) == len(OPCODES_BY_CODE) == 38
    for spec in OPCODES.values():
        assert spec.payload_bits <= PAYLOAD_BITS
        assert len(set(spec.names)) == len(spec.names)
        assert spec.doc and spec.units
        family = ("structure" if spec.mnemonic in STRUCTURE
                  else "comm" if spec.units == {Unit.link} else "core")
        assert spec.family == {"pim": "pim", "df": "dataflow"}.get(spec.mnemonic.split(".")[0], family)
        assert (spec.units == {Unit.seq}) == (spec.mnemonic in STRUCTURE)
        bits = [lsb for _, lsb in spec.layout]
        assert bits == sorted(bits, reverse=True) and all(b >= 0 for b in bits)
    assert OPCODES["stride"].payload_bits == PAYLOAD_BITS     # at U32, field U8, delta S64


def test_queue_text():
    assert str(Queue.parse("pcu12")) == "pcu12" and Queue.parse("dma0").unit is Unit.dma
    assert Queue.parse("pim3").code == 4 << 12 | 3
    with pytest.raises(FieldError, match=r"^unknown queue 'gpu0' \(expected <unit><index>"):
        Queue.parse("gpu0")
    with pytest.raises(FieldError, match=r"^queue index 4096 out of range 0\.\.4095$"):
        Queue.parse("dma4096")


def test_addr_and_dtype():
    assert Addr.parse("sram[0x1A0]") == Addr("sram", 0x1A0) and str(Addr("sram", 416)) == "sram[0x1a0]"
    assert Addr.parse("acc[16]") + 16 == Addr("acc", 32)
    with pytest.raises(FieldError, match=r"^address -1 must be a non-negative int$"):
        Addr("sram", -1)
    with pytest.raises(FieldError, match=r"^malformed address 'sram\(0\)'"):
        Addr.parse("sram(0)")
    assert [d.itemsize for d in DType] == [4, 2, 2, 1, 4]
    assert DType.bf16.storage == np.dtype("<u2") and DType.of("int8") is DType.int8
    assert DType.bf16 == "bf16" and str(DType.fp16) == "fp16"


def test_instr_make_checks_everything():
    load = Instr.make("load", "dma0", dst="sram[0x0]", src=Addr("dram", 8), rows=1, row_bytes=np.int64(1))
    assert type(load["row_bytes"]) is int and load.get("nope", 5) == 5
    assert str(load) == "dma0 load dst=sram[0x0] src=dram[0x8] rows=1 row_bytes=1"
    assert load.replace(rows=2)["rows"] == 2 and load.spec.code == 0x04
    assert hash(load) == hash(Instr.make("load", "dma0", dst="sram[0x0]", src="dram[0x8]",
                                          rows=1, row_bytes=1))
    cases = [
        (("frob", "dma0"), {}, "unknown opcode 'frob'"),
        (("gemm", "dma0"), {}, "gemm is not allowed on dma0 (units: mxu pcu)"),
        (("wait", "dma0"), {}, "wait is missing field 'sem' (fields: sem)"),
        (("wait", "dma0"), {"sem": 1, "x": 2}, "wait has no field 'x' (fields: sem)"),
        (("wait", "dma0"), {"sem": -1}, "sem=-1 does not fit U16 (0..65535)"),
        (("wait", "dma0"), {"sem": 1.0}, "sem=1.0 is not an integer (U16)"),
        (("vcfg", "vpu0"), {"rows": 1, "cols": 1, "dtype": "fp32", "out": "fp32", "imm": float("nan")},
         "imm=nan: NaN is not allowed in F32 fields"),
        (("mcfg", "mxu0"), {"m": 1, "n": 1, "k": 1, "dtype": "fp64", "acc": "fp32"},
         "dtype='fp64' is not one of fp32, bf16, fp16, int8, int32"),
        (("load", "dma0"), {"dst": "sram[0x10000000]", "src": "dram[0x0]", "rows": 1, "row_bytes": 1},
         "dst=sram[0x10000000] does not fit A32 (address 0x0..0xfffffff)"),
    ]
    for args, fields, message in cases:
        with pytest.raises(FieldError, match="^" + re.escape(message) + "$"):
            Instr.make(*args, **fields)
    with pytest.raises(KeyError):
        load["nope"]


def test_imm_rounds_to_float32():
    vcfg = Instr.make("vcfg", "vpu0", rows=1, cols=1, dtype="fp32", out="fp32", imm=0.1)
    assert vcfg["imm"] == float(np.float32(0.1)) and str(vcfg).endswith("imm=0.1")


def test_program_and_symbol_validation():
    with pytest.raises(IsaError, match=r"^a program names 1\.\.16 memory spaces, got 17$"):
        Program("t", ISA_VERSION, tuple(f"s{i}" for i in range(17)))
    with pytest.raises(IsaError, match=r"^memory space listed twice in a a$"):
        Program("t", ISA_VERSION, ("a", "a"))
    symbol = Symbol("w", "dram", 0, (2, 3), "fp16")
    assert symbol.dtype is DType.fp16 and symbol.size_bytes == 12
    with pytest.raises(IsaError, match=r"^symbol w defined twice$"):
        Program("t", ISA_VERSION, ("dram",), (symbol, symbol))
    with pytest.raises(IsaError, match=r"^symbol w: space sram is not in the program's spaces"):
        Program("t", ISA_VERSION, ("dram",), (Symbol("w", "sram", 0, (1,), "fp32"),))
    with pytest.raises(IsaError, match=r"^symbol w: shape \(\) must be one or more positive ints$"):
        Symbol("w", "dram", 0, (), "fp32")
    assert Program("t", ISA_VERSION, ("dram",), data={}) != Program("t", ISA_VERSION, ("dram",))


def test_machine_view_validation():
    with pytest.raises(IsaError, match=r"^memory space sram: size_bytes=0 must be a positive int$"):
        MemorySpace("sram", 0, True)
    with pytest.raises(IsaError, match=r"^machine queue 'dma00' is not canonical \(write dma0\)$"):
        MachineView({}, frozenset({"dma00"}))
    with pytest.raises(IsaError, match=r"^machine limit bank=0 must be a positive int$"):
        MachineView({}, frozenset(), {"bank": 0})
