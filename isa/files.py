"""Program files: `save(program, path)` and `load(path)` for `.tbin` (binary) and `.tasm` (text).

.tbin, all integers little-endian:
    magic b"TESSELB\\x01" | u32 header length | header JSON (target, isa, spaces, symbols)
    | u64 instruction count | 16-byte words | u64 blob length | blob (.npz bytes, empty = no data)
.tasm data goes to a sidecar `<stem>.npz` named by a `.data` line. Writes are atomic
(isa/output.py): an interrupted save leaves nothing half-written.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np

from isa.bulk import no_gc
from isa.asm import assemble, disassemble, read_npz
from isa.encoding import WORD_BYTES, decode, encode
from isa.errors import DecodeError, FieldError, IsaError, ProgramFileError
from isa.opcodes import ISA_VERSION
from isa.output import atomic_write
from isa.program import Program, Symbol

__all__ = ["save", "load", "MAGIC"]

MAGIC = b"TESSELB\x01"
_SUFFIXES = (".tbin", ".tasm")


def save(program: Program, path: str | os.PathLike) -> None:
    """Write `program` to `path` (.tbin or .tasm, by suffix), atomically."""
    path = Path(path)
    suffix = _suffix(path)
    if program.isa_version != ISA_VERSION:
        raise ProgramFileError(f"{path}: cannot write ISA version {program.isa_version} "
                               f"(this build writes {ISA_VERSION})")
    try:
        if suffix == ".tbin":
            atomic_write(path, *_tbin_parts(program))
            return
        encode(program.instructions, program.spaces)  # never write text that will not load
        sidecar = path.with_suffix(".npz") if program.data is not None else None
        text = disassemble(program, data_path=sidecar.name if sidecar else None)
        if sidecar is not None:
            atomic_write(sidecar, _npz_bytes(program.data))
        atomic_write(path, text.encode("utf-8"))
    except FieldError as error:
        raise ProgramFileError(f"{path}: {error}", error.index) from None
    except OSError as error:
        raise ProgramFileError(f"{error.filename}: cannot write: {error.strerror}") from None


def load(path: str | os.PathLike) -> Program:
    """Read a program from `path` (.tbin or .tasm, by suffix)."""
    path = Path(path)
    suffix = _suffix(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ProgramFileError(f"{path}: cannot read: {error.strerror or error}") from None
    if suffix == ".tasm":
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProgramFileError(f"{path}: not UTF-8 text (byte {error.start})") from None
        return assemble(text, filename=str(path))
    return _TbinReader(str(path), content).program()


def _suffix(path: Path) -> str:
    if path.suffix not in _SUFFIXES:
        raise ProgramFileError(f"{path}: unknown program file suffix {path.suffix!r} "
                               f"(expected .tbin or .tasm)")
    return path.suffix


def _tbin_parts(program: Program) -> list[bytes | memoryview]:
    words = encode(program.instructions, program.spaces)
    header = json.dumps({
        "target": program.target,
        "isa": program.isa_version,
        "spaces": list(program.spaces),
        "symbols": [{"name": s.name, "space": s.space, "addr": s.addr,
                     "shape": list(s.shape), "dtype": str(s.dtype)} for s in program.symbols],
        "ops": [[index, name] for index, name in program.ops],
    }, separators=(",", ":")).encode("utf-8")
    blob = _npz_bytes(program.data) if program.data is not None else b""
    return [MAGIC, struct.pack("<I", len(header)), header,
            struct.pack("<Q", len(words)), memoryview(words).cast("B"),
            struct.pack("<Q", len(blob)), blob]


def _npz_bytes(data) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **dict(data))
    return buffer.getvalue()


class _TbinReader:
    """Reads the sections of a .tbin in order; every shortfall names what was expected."""

    def __init__(self, name: str, content: bytes) -> None:
        self.name = name
        self.content = memoryview(content)
        self.offset = 0

    def fail(self, message: str) -> ProgramFileError:
        return ProgramFileError(f"{self.name}: {message}")

    def take(self, size: int, what: str) -> memoryview:
        available = len(self.content) - self.offset
        if size > available:
            raise self.fail(f"truncated: expected {size} bytes of {what} at offset "
                            f"{self.offset}, found {available}")
        piece = self.content[self.offset:self.offset + size]
        self.offset += size
        return piece

    def program(self) -> Program:
        magic = bytes(self.take(len(MAGIC), "magic"))
        if magic != MAGIC:
            raise self.fail(f"not a Tessel binary (starts {magic!r}, expected {MAGIC!r})")
        (header_bytes,) = struct.unpack("<I", self.take(4, "header length"))
        header = self.header(self.take(header_bytes, "header"))
        (count,) = struct.unpack("<Q", self.take(8, "instruction count"))
        words_at = self.offset
        words = np.frombuffer(self.take(count * WORD_BYTES, "instructions"), dtype="<u8")
        (blob_bytes,) = struct.unpack("<Q", self.take(8, "data blob length"))
        blob = self.take(blob_bytes, "data blob")
        if self.offset != len(self.content):
            raise self.fail(f"corrupt: {len(self.content) - self.offset} unexpected bytes "
                            f"after the data blob at offset {self.offset}")
        spaces = header["spaces"]
        try:
            with no_gc():
                instructions = decode(words.reshape(-1, 2), spaces)
        except DecodeError as error:
            raise ProgramFileError(f"{self.name}: {error} (words start at offset {words_at})",
                                   error.index) from None
        data = self.data(blob) if blob_bytes else None
        try:
            return Program(header["target"], header["isa"], tuple(spaces),
                           header["symbols"], instructions, data,
                           tuple(tuple(mark) for mark in header.get("ops", ())))
        except IsaError as error:
            raise self.fail(f"corrupt header: {error}") from None

    def header(self, raw: memoryview) -> dict:
        try:
            header = json.loads(bytes(raw).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in ("target", "isa", "spaces", "symbols") if k not in header]
            if missing:
                raise ValueError(f"missing {missing[0]!r}")
            if header["isa"] != ISA_VERSION:
                raise self.fail(f"unsupported ISA version {header['isa']!r} "
                                f"(this build reads {ISA_VERSION})")
            if not isinstance(header["spaces"], list) or not isinstance(header["symbols"], list):
                raise ValueError("spaces and symbols must be lists")
            header["symbols"] = tuple(Symbol(s["name"], s["space"], s["addr"], tuple(s["shape"]),
                                             s["dtype"]) for s in header["symbols"])
        except ProgramFileError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            raise self.fail(f"corrupt header: {error}") from None
        return header

    def data(self, blob: memoryview) -> dict[str, np.ndarray]:
        try:
            return read_npz(io.BytesIO(bytes(blob)))
        except (OSError, ValueError, EOFError) as error:
            raise self.fail(f"corrupt data blob: {error}") from None
