"""docs/isa.md documents every instruction exactly as the opcode table defines it."""

from __future__ import annotations

from pathlib import Path

import pytest

from isa import OPCODES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "isa.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("mnemonic", sorted(OPCODES))
def test_every_instruction_is_documented(mnemonic):
    spec = OPCODES[mnemonic]
    section = DOC.split(f"#### `{mnemonic}` — opcode 0x{spec.code:02x}, units: ", 1)
    assert len(section) == 2, f"no reference section for {mnemonic}"
    body = section[1].split("\n#### ", 1)[0]
    for field, lsb in spec.layout:
        assert f"| {field.name} | {field.kind.label} | {lsb + field.kind.bits - 1}..{lsb} |" in body
    assert spec.doc in body
