""".tbin format 2: the architecture record and tool version, the SHA-256 checksum, the
checked header; every single-bit flip of a file is one ProgramFileError."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct

import numpy as np
import pytest

from isa import IsaError, ProgramFileError, assemble, disassemble, load, save
from isa.files import MAGIC, read_tbin

ARCH = {"name": "tiny", "target": "systolic", "rows": 4, "clock_mhz": 1000.0,
        "weight_preload_overlap": False, "energy": {"mac_pj": 1.5}}
SOURCE = """\
.target systolic
.isa 3
.tool_version 0.1.0
.arch {"name":"tiny","target":"systolic","rows":4,"clock_mhz":1000.0,\
"weight_preload_overlap":false,"energy":{"mac_pj":1.5}}
.spaces dram sram acc
.symbol x dram 0x0 4 fp32
.op copy
dma0 dmacfg src_stride=0 dst_stride=0
dma0 load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=16
dma0 halt
"""


@pytest.fixture
def program():
    return dataclasses.replace(assemble(SOURCE), data={"x": np.arange(4, dtype=np.float32)})


def test_the_record_reads_back_as_given(program):
    assert program.arch == ARCH and program.tool_version == "0.1.0"
    assert disassemble(dataclasses.replace(program, data=None)) == SOURCE
    with pytest.raises(TypeError):
        program.arch["rows"] = 8                                   # read-only


@pytest.mark.parametrize("suffix", [".tbin", ".tasm"])
def test_round_trips_keep_the_record(program, tmp_path, suffix):
    save(program, tmp_path / f"p{suffix}")
    assert load(tmp_path / f"p{suffix}") == program
    assert load(tmp_path / f"p{suffix}") != dataclasses.replace(program, arch=None)
    assert load(tmp_path / f"p{suffix}") != dataclasses.replace(program, tool_version="0.2")


@pytest.mark.parametrize("table, message", [
    ({"name": "x", "target": "pim"}, "arch field 'target' is 'pim' but the program is for 'systolic'"),
    ({"target": "systolic"}, "arch field 'name' must be a string, got None"),
    ({"name": "x", "target": "systolic", "rows": [4]},
     "arch field 'rows' must be a string, boolean, number or table, got list"),
    ({"name": "x", "target": "systolic", "e": {"pj": float("inf")}},
     "arch field 'e.pj' = inf is not finite"),
    ("tiny", "the arch record must be a table, got str"),
])
def test_a_bad_record_is_refused(program, table, message):
    with pytest.raises(IsaError, match="^" + re.escape(message) + "$"):
        dataclasses.replace(program, arch=table)


@pytest.mark.parametrize("line, message", [
    ('.arch {"name":"tiny","name":"x","target":"systolic"}', ".arch: key 'name' appears twice"),
    (".arch {nope}", ".arch: invalid JSON: Expecting property name enclosed in double quotes"),
    ('.arch {"name":"x","target":"systolic","f":NaN}', "arch field 'f' = nan is not finite"),
])
def test_a_bad_arch_line_names_its_line(line, message):
    text = re.sub(r"^\.arch .*$", line, SOURCE, flags=re.M)
    with pytest.raises(IsaError, match=r"^<input>:4:7: " + re.escape(message)):
        assemble(text)


def _parts(raw: bytes) -> tuple[bytes, bytes]:
    """(header JSON, everything after it but the checksum) of a .tbin."""
    (length,) = struct.unpack_from("<I", raw, 8)
    return raw[12:12 + length], raw[12 + length:-32]


def _sealed(header: bytes, rest: bytes) -> bytes:
    """A .tbin of this header and rest, with its correct checksum (a deliberate, not a
    damaged, file)."""
    body = MAGIC + struct.pack("<I", len(header)) + header + rest
    return body + hashlib.sha256(body).digest()


def test_layout_ends_with_the_checksum_of_everything_before(program, tmp_path):
    save(program, tmp_path / "p.tbin")
    raw = (tmp_path / "p.tbin").read_bytes()
    assert raw[:8] == b"TESSELB\x02"
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()
    header = json.loads(_parts(raw)[0])
    assert header["arch"] == ARCH and header["tool_version"] == "0.1.0"


def test_an_older_format_is_refused(program, tmp_path):
    save(program, tmp_path / "p.tbin")
    raw = (tmp_path / "p.tbin").read_bytes()
    (tmp_path / "old.tbin").write_bytes(b"TESSELB\x01" + raw[8:])
    with pytest.raises(ProgramFileError, match=r"old\.tbin: format version 1 is not supported "
                                               r"\(this build reads version 2\): recompile or "
                                               r"reassemble the program$"):
        load(tmp_path / "old.tbin")


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_isa_version_is_refused_not_misread(program, tmp_path, version):
    """ISA version 1 packed A40 as 4 + 36 bits, version 2 qcfg's fmt in 4 bits and its step in
    8: their words would decode to wrong addresses and formats."""
    save(program, tmp_path / "p.tbin")
    header, rest = _parts((tmp_path / "p.tbin").read_bytes())
    old = json.dumps({**json.loads(header), "isa": version}).encode()
    (tmp_path / "old.tbin").write_bytes(_sealed(old, rest))
    with pytest.raises(ProgramFileError, match=r"old\.tbin: corrupt header: unsupported ISA "
                                               rf"version {version} \(this build reads 3\)$"):
        load(tmp_path / "old.tbin")


def test_damage_is_a_checksum_mismatch(program, tmp_path):
    save(program, tmp_path / "p.tbin")
    raw = bytearray((tmp_path / "p.tbin").read_bytes())
    raw[-40] ^= 0x10                                               # inside the data blob
    (tmp_path / "p.tbin").write_bytes(bytes(raw))
    with pytest.raises(ProgramFileError, match=r"p\.tbin: corrupt: the SHA-256 checksum of its "
                                               r"first (\d+) bytes does not match the one "
                                               r"stored at offset \1$"):
        load(tmp_path / "p.tbin")


@pytest.mark.parametrize("edit, message", [
    (lambda h: {**h, "ops": {"copy": 0}}, "field 'ops' must be a list of [index, name] pairs, "
                                          "got {'copy': 0}"),
    (lambda h: {**h, "ops": [[0, 1]]}, "field 'ops' must be a list of [index, name] pairs"),
    (lambda h: {**h, "colour": 1}, "unknown field 'colour' (fields: target, isa, spaces"),
    (lambda h: {k: v for k, v in h.items() if k != "spaces"}, "missing field 'spaces'"),
    (lambda h: {**h, "isa": True}, "unsupported ISA version True (this build reads 3)"),
    (lambda h: {**h, "target": 7}, "field 'target' must be a string, got 7"),
    (lambda h: {**h, "spaces": ["dram", 1]}, "field 'spaces' must be a list of strings"),
    (lambda h: {**h, "spaces": ["s"] * 17}, "17 memory spaces do not fit a 4-bit space index"),
    (lambda h: {**h, "symbols": {}}, "field 'symbols' must be a list, got {}"),
    (lambda h: {**h, "symbols": [{"name": "x"}]},
     "symbols[0] must be an object with exactly the keys name, space, addr, shape, dtype"),
    (lambda h: {**h, "symbols": [{**h["symbols"][0], "shape": "4"}]},
     "symbols[0]: shape must be a list of integers and dtype a string"),
    (lambda h: {**h, "symbols": [{**h["symbols"][0], "dtype": "fp33"}]}, "unknown dtype 'fp33'"),
    (lambda h: {**h, "arch": "tiny"}, "field 'arch' must be an object, got 'tiny'"),
    (lambda h: {**h, "arch": {**h["arch"], "target": "pim"}}, "arch field 'target' is 'pim'"),
    (lambda h: {**h, "tool_version": 1}, "field 'tool_version' must be a string, got 1"),
    (lambda h: {**h, "tool_version": "1 2"}, "tool_version '1 2' must match"),
    (lambda h: [h], "expected a JSON object, got list"),
])
def test_every_header_field_is_checked(program, tmp_path, edit, message):
    save(program, tmp_path / "p.tbin")
    header, rest = _parts((tmp_path / "p.tbin").read_bytes())
    edited = json.dumps(edit(json.loads(header))).encode()
    (tmp_path / "bad.tbin").write_bytes(_sealed(edited, rest))
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: corrupt header: " + re.escape(message)):
        load(tmp_path / "bad.tbin")


@pytest.mark.parametrize("header, message", [
    (b'{"target":"systolic","target":"systolic"}', "key 'target' appears twice"),
    (b"\xff{}", "not UTF-8 (byte 0)"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_malformed_header_json(program, tmp_path, header, message):
    save(program, tmp_path / "p.tbin")
    (tmp_path / "bad.tbin").write_bytes(_sealed(header, _parts((tmp_path / "p.tbin").read_bytes())[1]))
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: corrupt header: " + re.escape(message)):
        load(tmp_path / "bad.tbin")


def test_a_bad_data_blob_is_an_error_not_a_zip_traceback(program, tmp_path):
    save(program, tmp_path / "p.tbin")
    header, rest = _parts((tmp_path / "p.tbin").read_bytes())
    at = 8 + 16 * struct.unpack_from("<Q", rest, 0)[0]            # the blob length's offset
    blob = bytearray(rest[at + 8:])
    blob[blob.find(b"PK\x01\x02") + 2] ^= 0xFF                    # the zip directory's magic
    (tmp_path / "bad.tbin").write_bytes(_sealed(header, rest[:at + 8] + bytes(blob)))
    with pytest.raises(ProgramFileError, match=r"bad\.tbin: corrupt data blob: "):
        load(tmp_path / "bad.tbin")


def test_every_single_bit_flip_is_detected(program, tmp_path):
    save(program, tmp_path / "p.tbin")
    raw = (tmp_path / "p.tbin").read_bytes()
    assert read_tbin(raw, "p.tbin") == program
    for bit in range(8 * len(raw)):
        damaged = bytearray(raw)
        damaged[bit // 8] ^= 1 << bit % 8
        with pytest.raises(ProgramFileError, match=r"^p\.tbin: (not a Tessel binary|format "
                                                   r"version|truncated|corrupt)"):
            read_tbin(bytes(damaged), "p.tbin")
