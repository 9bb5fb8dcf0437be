"""Program files: `save(program, path)` and `load(path)` for `.tbin` (binary) and `.tasm` (text).

.tbin, all integers little-endian (format version 2, the magic's last byte):
    magic b"TESSELB\\x02" | u32 header length | header JSON (isa/tbin_header.py)
    | u64 instruction count | 16-byte words | u64 blob length | blob (.npz bytes, empty = no data)
    | SHA-256 of every byte before it
Reading checks the framing (lengths), then the checksum, and only then reads the header,
words and blob, so any damage is one error naming the file.
.tasm data goes to a sidecar `<stem>.npz` named by a `.data` line. Writes are atomic
(isa/output.py): an interrupted save leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np

from isa.bulk import no_gc
from isa.asm import assemble, disassemble, read_npz
from isa.encoding import WORD_BYTES, decode, encode
from isa.errors import DecodeError, FieldError, IsaError, LoopError, ProgramFileError
from isa.opcodes import ISA_VERSION
from isa.output import atomic_write
from isa.program import Program
from isa.tbin_header import header_json, read_header

__all__ = ["save", "load", "read_tbin", "MAGIC", "FORMAT_VERSION"]

FORMAT_VERSION = 2
MAGIC = b"TESSELB" + bytes([FORMAT_VERSION])
_DIGEST_BYTES = 32                      # SHA-256
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
    except (FieldError, LoopError) as error:
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
    return read_tbin(content, str(path))


def read_tbin(content: bytes, name: str = "<tbin>") -> Program:
    """A program from the bytes of a .tbin; errors name it `name` (load's path)."""
    return _TbinReader(name, content).program()


def _suffix(path: Path) -> str:
    if path.suffix not in _SUFFIXES:
        raise ProgramFileError(f"{path}: unknown program file suffix {path.suffix!r} "
                               f"(expected .tbin or .tasm)")
    return path.suffix


def _tbin_parts(program: Program) -> list[bytes | memoryview]:
    words = encode(program.instructions, program.spaces)
    header = header_json(program).encode("utf-8")
    blob = _npz_bytes(program.data) if program.data is not None else b""
    parts = [MAGIC, struct.pack("<I", len(header)), header,
             struct.pack("<Q", len(words)), memoryview(words).cast("B") if len(words) else b"",
             struct.pack("<Q", len(blob)), blob]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return parts + [digest.digest()]


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
        if magic[:-1] != MAGIC[:-1]:
            raise self.fail(f"not a Tessel binary (starts {magic!r}, expected {MAGIC!r})")
        if magic != MAGIC:
            raise self.fail(f"format version {magic[-1]} is not supported (this build reads "
                            f"version {FORMAT_VERSION}): recompile or reassemble the program")
        (header_bytes,) = struct.unpack("<I", self.take(4, "header length"))
        raw_header = self.take(header_bytes, "header")
        (count,) = struct.unpack("<Q", self.take(8, "instruction count"))
        words_at = self.offset
        words = np.frombuffer(self.take(count * WORD_BYTES, "instructions"), dtype="<u8")
        (blob_bytes,) = struct.unpack("<Q", self.take(8, "data blob length"))
        blob = self.take(blob_bytes, "data blob")
        checked = self.offset
        stored = bytes(self.take(_DIGEST_BYTES, "SHA-256 checksum"))
        if self.offset != len(self.content):
            raise self.fail(f"corrupt: {len(self.content) - self.offset} unexpected bytes "
                            f"after the checksum at offset {self.offset}")
        if hashlib.sha256(self.content[:checked]).digest() != stored:
            raise self.fail(f"corrupt: the SHA-256 checksum of its first {checked} bytes does "
                            f"not match the one stored at offset {checked}")
        try:
            header = read_header(bytes(raw_header))
        except IsaError as error:
            raise self.fail(f"corrupt header: {error}") from None
        try:
            with no_gc():
                instructions = decode(words.reshape(-1, 2), header.spaces)
        except DecodeError as error:
            raise ProgramFileError(f"{self.name}: {error} (words start at offset {words_at})",
                                   error.index) from None
        except IsaError as error:                   # the header's space table
            raise self.fail(f"corrupt header: {error}") from None
        data = self.data(blob) if blob_bytes else None
        try:
            return header.program(instructions, data)
        except IsaError as error:
            raise self.fail(f"corrupt header: {error}") from None

    def data(self, blob: memoryview) -> dict[str, np.ndarray]:
        try:
            return read_npz(io.BytesIO(bytes(blob)))
        except (OSError, ValueError, EOFError) as error:
            raise self.fail(f"corrupt data blob: {error}") from None
