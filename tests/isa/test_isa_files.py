"""Program files: .tbin/.tasm round trips with data, atomic writes, truncated/corrupt binaries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct

import numpy as np
import pytest

from isa import DecodeError, ProgramFileError, assemble, encode, load, save
from isa.files import MAGIC

SOURCE = """\
.target systolic
.isa 3
.spaces dram sram acc
.symbol wte dram 0x0 16x8 bf16
.symbol bias dram 0x100 8 fp32
dma0 dmacfg src_stride=16 dst_stride=0
""" + "".join(f"dma0 load dst=sram[{i * 16:#x}] src=dram[{i * 16:#x}] rows=1 row_bytes=16\n"
              for i in range(99))


@pytest.fixture
def program():
    rng = np.random.default_rng(0)
    data = {"wte": rng.integers(0, 1 << 16, size=(16, 8), dtype=np.uint16),
            "bias": rng.standard_normal(8).astype(np.float32)}
    return dataclasses.replace(assemble(SOURCE), data=data)


@pytest.mark.parametrize("suffix", [".tbin", ".tasm"])
def test_round_trip_with_and_without_data(program, tmp_path, suffix):
    for prog in (program, dataclasses.replace(program, data=None)):
        path = tmp_path / f"prog{suffix}"
        save(prog, path)
        assert load(path) == prog
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["prog" + suffix] + (["prog.npz"] if suffix == ".tasm" else []))


def test_tasm_names_its_sidecar(program, tmp_path):
    save(program, tmp_path / "my prog.tasm")
    text = (tmp_path / "my prog.tasm").read_text()
    assert '\n.data "my prog.npz"\n' in text
    assert load(tmp_path / "my prog.tasm") == program


def test_tbin_layout(program, tmp_path):
    save(program, tmp_path / "prog.tbin")
    raw = (tmp_path / "prog.tbin").read_bytes()
    assert raw[:8] == MAGIC
    (header_bytes,) = struct.unpack_from("<I", raw, 8)
    header = json.loads(raw[12:12 + header_bytes])
    assert header["spaces"] == ["dram", "sram", "acc"] and header["isa"] == 3
    assert header["symbols"][0] == {"name": "wte", "space": "dram", "addr": 0, "shape": [16, 8],
                                    "dtype": "bf16"}
    at = 12 + header_bytes
    (count,) = struct.unpack_from("<Q", raw, at)
    words = raw[at + 8:at + 8 + 16 * count]
    assert words == encode(program.instructions, program.spaces).tobytes()


def _tbin(program, tmp_path) -> bytes:
    save(dataclasses.replace(program, data=None), tmp_path / "prog.tbin")
    return (tmp_path / "prog.tbin").read_bytes()


def _sealed(body: bytes) -> bytes:
    """A .tbin from everything before its checksum: the checksum appended (as a writer would)."""
    return body + hashlib.sha256(body).digest()


def test_truncated_instructions_name_file_offset_and_sizes(program, tmp_path):
    raw = _tbin(program, tmp_path)
    header_bytes = struct.unpack_from("<I", raw, 8)[0]
    start = 12 + header_bytes + 8
    cut = tmp_path / "prog.tbin"
    cut.write_bytes(raw[:start + 40])
    message = f"{cut}: truncated: expected 1600 bytes of instructions at offset {start}, found 40"
    with pytest.raises(ProgramFileError, match="^" + re.escape(message) + "$"):
        load(cut)


@pytest.mark.parametrize(("keep", "what"), [
    (0, "expected 8 bytes of magic at offset 0, found 0"),
    (10, "expected 4 bytes of header length at offset 8, found 2"),
    (20, "bytes of header at offset 12, found 8"),
    (-35, "expected 8 bytes of data blob length at offset"),
    (-3, "expected 32 bytes of SHA-256 checksum at offset"),
])
def test_every_truncation_is_named(program, tmp_path, keep, what):
    raw = _tbin(program, tmp_path)
    (tmp_path / "cut.tbin").write_bytes(raw[:keep] if keep >= 0 else raw[:keep])
    with pytest.raises(ProgramFileError, match=r"cut\.tbin: truncated: .*" + re.escape(what)):
        load(tmp_path / "cut.tbin")


def test_corrupt_files(program, tmp_path):
    raw = _tbin(program, tmp_path)
    bad = tmp_path / "bad.tbin"
    bad.write_bytes(b"NOTTESSL" + raw[8:])
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: not a Tessel binary"):
        load(bad)
    bad.write_bytes(raw + b"xx")
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: corrupt: 2 unexpected bytes after "
                                               r"the checksum at offset \d+$"):
        load(bad)
    header_bytes = struct.unpack_from("<I", raw, 8)[0]
    bad.write_bytes(_sealed(raw[:12] + b"{" * header_bytes + raw[12 + header_bytes:-32]))
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: corrupt header: invalid JSON: "):
        load(bad)


def test_unknown_opcode_names_the_instruction(program, tmp_path):
    raw = bytearray(_tbin(program, tmp_path))
    header_bytes = struct.unpack_from("<I", raw, 8)[0]
    word_7 = 12 + header_bytes + 8 + 7 * 16
    raw[word_7 + 15] = 0x3F  # the opcode is the top byte of the little-endian word
    (tmp_path / "bad.tbin").write_bytes(_sealed(bytes(raw[:-32])))
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: instruction 7: unknown opcode 0x3f "
                                               r"\(words start at offset \d+\)$") as caught:
        load(tmp_path / "bad.tbin")
    assert caught.value.index == 7


def test_decode_rejects_nonzero_padding_and_bad_enum():
    from isa import decode_word
    with pytest.raises(DecodeError, match=r"^instruction 0 \(dma0 halt\): non-zero padding bits$"):
        decode_word(0x00 << 120 | 1 << 116 | 1, ("dram",))
    mcfg = 0x07 << 120 | 2 << 116 | 9 << 52  # dtype code 9 does not exist
    with pytest.raises(DecodeError, match=r"^instruction 0 \(mxu0 mcfg\): dtype has no value 9"):
        decode_word(mcfg, ("dram",))
    vcfg = 0x09 << 120 | 3 << 116 | 0x7FC00000 << 32  # imm = quiet NaN
    with pytest.raises(DecodeError, match=r"^instruction 0 \(vpu0 vcfg\): imm holds a NaN bit "
                                          r"pattern 0x7fc00000$"):
        decode_word(vcfg, ("dram",))


def test_failed_save_leaves_nothing_behind(program, tmp_path, monkeypatch):
    broken = dataclasses.replace(program, spaces=("dram",), symbols=())
    message = ("prog.tbin: instruction 1 (dma0 load): dst=sram[0x0]: unknown space 'sram' "
               "(program spaces: dram)")
    with pytest.raises(ProgramFileError, match=re.escape(message) + "$"):
        save(broken, tmp_path / "prog.tbin")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep.tbin").write_bytes(b"old")

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("isa.files.os.replace", refuse)
    with pytest.raises(ProgramFileError, match=r"keep\.tbin: cannot write: No space left on device$"):
        save(program, tmp_path / "keep.tbin")
    assert (tmp_path / "keep.tbin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tbin"]


def test_unknown_suffix_and_missing_file(tmp_path, program):
    with pytest.raises(ProgramFileError, match=r"prog\.bin: unknown program file suffix '\.bin'"):
        save(program, tmp_path / "prog.bin")
    with pytest.raises(ProgramFileError, match=r"nope\.tbin: cannot read: No such file"):
        load(tmp_path / "nope.tbin")
