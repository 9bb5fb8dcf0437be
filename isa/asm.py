"""Text assembly: `assemble(text) -> Program` and `disassemble(program) -> text`.

`asm_lines` splits the text into statements with the lark grammar; this module checks them
against the opcode table and builds the Program. Every error is an AsmError
`file:line:col: message`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from isa.bulk import no_gc
from isa.asm_lines import Statement, column_of, read_statements
from isa.asm_loops import STRIDE_KIND, Stride, assemble_body, split_strides, write_body
from isa.errors import AsmError, FieldError, IsaError
from isa.fields import Field
from isa.instr import Instr
from isa.jsontext import dump_object, load_object
from isa.loops import NOT_MOVABLE, movable, stride_granule
from isa.opcodes import ISA_VERSION, OPCODES
from isa.program import Program, Symbol, arch_table
from isa.values import Addr, DType, Queue, parse_int

__all__ = ["assemble", "disassemble", "format_data_line"]

_BARE_PATH = re.compile(r'[^\s"#;]+')
_MAX_SPACES = 16
_CACHED_VALUES = 1 << 16  # per opcode field
_BODY = frozenset({"instr", "op", "loop", "endloop"})


def assemble(text: str, *, filename: str = "<input>") -> Program:
    """Assemble `.tasm` text. A `.data` line loads its .npz relative to `filename`'s folder."""
    with no_gc():
        return _Assembler(filename).run(read_statements(text, filename))


class _Assembler:
    """Checks statements and builds the Program; one instance per input."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.queues: dict[str, Queue] = {}
        # Per opcode and field: operand text -> (name, value), shared by all lines that
        # repeat it (operands repeat a lot; sharing saves both parsing and memory).
        self.pairs: dict[str, list[dict[str, tuple[str, object]]]] = {}

    def fail(self, statement: Statement | None, part: int | None, message: str,
             offset: int = 0) -> AsmError:
        """An error at `statement.parts[part]` (+ offset columns), at the statement's start
        when part is None, or at 1:1 without a statement."""
        if statement is None:
            return AsmError(f"{self.filename}:1:1: {message}")
        if part is None:
            column = len(statement.text) - len(statement.text.lstrip()) + 1
        else:
            column = column_of(statement, part) + offset
        return AsmError(f"{self.filename}:{statement.line}:{column}: {message}")

    def run(self, statements: list[Statement]) -> Program:
        header: dict[str, Statement] = {}
        symbol_lines = []
        body: list[Statement] = []
        for statement in statements:
            if statement.kind == "symbol":
                symbol_lines.append(statement)
            elif statement.kind in _BODY:
                body.append(statement)
            else:
                if statement.kind in header:
                    raise self.fail(statement, None, f"second .{statement.kind} directive")
                header[statement.kind] = statement
        for kind in ("target", "isa", "spaces"):
            if kind not in header:
                raise self.fail(None, 0, f"missing .{kind} directive")
        version = header["isa"].parts[0]
        if version != str(ISA_VERSION):
            raise self.fail(header["isa"], 0, f"unsupported ISA version {version} "
                            f"(this assembler reads {ISA_VERSION})")
        spaces = self.spaces(header["spaces"])
        symbols = [self.symbol(statement, spaces) for statement in symbol_lines]
        seen: set[str] = set()
        for statement, symbol in zip(symbol_lines, symbols):
            if symbol.name in seen:
                raise self.fail(statement, 0, f"symbol {symbol.name} defined twice")
            seen.add(symbol.name)
        instructions, ops = assemble_body(body, lambda statement, depth: self.instr(
            statement, spaces, depth), self.fail)
        data = self.data(header["data"]) if "data" in header else None
        target = str(header["target"].parts[0])
        arch = self.arch(header["arch"], target) if "arch" in header else None
        version = str(header["tool_version"].parts[0]) if "tool_version" in header else None
        try:
            return Program(target, ISA_VERSION, spaces, tuple(symbols), instructions, data,
                           ops, arch, version)
        except IsaError as error:
            raise self.fail(header["target"], 0, str(error)) from None

    def arch(self, statement: Statement, target: str):
        """The `.arch` line's JSON object, checked as an architecture record."""
        try:
            table = load_object(str(statement.parts[0]))
        except ValueError as error:
            raise self.fail(statement, 0, f".arch: {error}") from None
        try:
            return arch_table(table, target)
        except IsaError as error:
            raise self.fail(statement, 0, str(error)) from None

    def spaces(self, statement: Statement) -> tuple[str, ...]:
        names = statement.parts
        for position, name in enumerate(names):
            if name in names[:position]:
                raise self.fail(statement, position, f"space {name} listed twice")
        if len(names) > _MAX_SPACES:
            raise self.fail(statement, _MAX_SPACES,
                            f"at most {_MAX_SPACES} spaces, got {len(names)}")
        return tuple(str(name) for name in names)

    def symbol(self, statement: Statement, spaces: tuple[str, ...]) -> Symbol:
        name, space, addr, shape, dtype = statement.parts
        if space not in spaces:
            raise self.fail(statement, 1,
                            f"unknown space {str(space)!r} (spaces: {' '.join(spaces)})")
        try:
            address = parse_int(addr)
        except ValueError:
            raise self.fail(statement, 2, f"symbol address {addr} is not an integer") from None
        try:
            dims = tuple(int(d) for d in shape.split("x"))
            return Symbol(str(name), str(space), address, dims, DType.of(str(dtype)))
        except FieldError as error:
            raise self.fail(statement, 4, str(error)) from None
        except IsaError as error:
            raise self.fail(statement, 0, str(error)) from None

    def data(self, statement: Statement) -> dict[str, np.ndarray]:
        token = statement.parts[0]
        try:
            relative = json.loads(token) if token.startswith('"') else str(token)
        except ValueError:
            raise self.fail(statement, 0, f"malformed quoted path {token}") from None
        try:
            return read_npz(Path(self.filename).parent / relative)
        except OSError as error:
            reason = error.strerror or str(error)
            raise self.fail(statement, 0, f"cannot read data file {relative}: {reason}") from None
        except ValueError as error:
            raise self.fail(statement, 0, f"cannot read data file {relative}: {error}") from None

    def instr(self, statement: Statement, spaces: tuple[str, ...],
              depth: int) -> tuple[Instr, list[Stride]]:
        """The instruction of `statement`, inside `depth` loops, and its operands' strides."""
        queue_text, mnemonic, *fields = statement.parts
        queue = self.queues.get(queue_text)
        if queue is None:
            try:
                queue = self.queues[queue_text] = Queue.parse(str(queue_text))
            except FieldError as error:
                raise self.fail(statement, 0, str(error)) from None
        spec = OPCODES.get(mnemonic)
        if spec is None:
            raise self.fail(statement, 1, f"unknown mnemonic {str(mnemonic)!r}")
        if queue.unit not in spec.units:
            units = " ".join(sorted(u.name for u in spec.units))
            raise self.fail(statement, 0, f"{mnemonic} is not allowed on {queue} (units: {units})")
        given: dict[str, tuple[str, int]] = {}
        for part, field in enumerate(fields, 2):
            name, _, text = field.partition("=")
            if name in given:
                raise self.fail(statement, part, f"duplicate field {name!r}")
            given[name] = (text, part)
        for name, (_, part) in given.items():   # unknown names first: a typo is no "missing"
            if name not in spec.names:
                raise self.fail(statement, part, f"{mnemonic} has no field {name!r} "
                                f"(fields: {' '.join(spec.names) or 'none'})")
        caches = self.pairs.get(spec.mnemonic)
        if caches is None:
            caches = self.pairs[spec.mnemonic] = [{} for _ in spec.fields]
        values = []
        strides: list[Stride] = []
        for position, (field, cache) in enumerate(zip(spec.fields, caches)):
            entry = given.pop(field.name, None)
            if entry is None:
                raise self.fail(statement, 1, f"{mnemonic} is missing field {field.name!r}")
            text, part = entry
            if "=" in text:
                text, moves = split_strides(text)
                strides += self.strides(statement, part, spec.mnemonic, field, position, moves,
                                        depth)
            pair = cache.get(text)
            if pair is None:
                pair = (field.name, self.value(statement, part, field, text, spaces))
                if len(cache) < _CACHED_VALUES:
                    cache[text] = pair
            values.append(pair)
        return Instr(spec.mnemonic, queue, tuple(values)), strides

    def strides(self, statement: Statement, part: int, mnemonic: str, field: Field,
                position: int, moves: list[tuple[int, str]], depth: int) -> list[Stride]:
        """The strides `+=N`/`-=N` after an operand's value: (loop level, innermost 0, field
        position, delta); zero strides are placeholders for the loops they skip."""
        out = []
        for level, (offset, text) in enumerate(moves):
            column = len(field.name) + 1 + offset
            if level >= depth:
                raise self.fail(statement, part, f"{field.name} has {len(moves)} strides but the "
                                f"instruction is inside {depth} loops", column)
            if not movable(mnemonic, field):
                raise self.fail(statement, part, f"stride on {field.name}: {field.kind.label} "
                                f"{NOT_MOVABLE}", column)
            try:
                delta = parse_int(text[2:]) * (-1 if text[0] == "-" else 1)
                delta = STRIDE_KIND.coerce("stride", delta)
            except ValueError as error:
                message = (str(error) if isinstance(error, FieldError)
                           else f"stride {text} is not an integer")
                raise self.fail(statement, part, message, column) from None
            if delta % stride_granule(field):
                raise self.fail(statement, part, f"stride {text} on {field.name} is not a multiple "
                                f"of {stride_granule(field)} bytes ({field.kind.label})", column)
            if delta:
                out.append((level, position, delta))
        return out

    def value(self, statement: Statement, part: int, field: Field, text: str,
              spaces: tuple[str, ...]) -> object:
        """Read one operand; errors point at the value, just after `name=`."""
        try:
            value = field.kind.from_text(field.name, text)
        except FieldError as error:
            raise self.fail(statement, part, str(error), len(field.name) + 1) from None
        if isinstance(value, Addr) and value.space not in spaces:
            raise self.fail(statement, part, f"unknown space {value.space!r} in "
                            f"{field.name}={text} (spaces: {' '.join(spaces)})",
                            len(field.name) + 1)
        if isinstance(value, Addr) and (index := spaces.index(value.space)) >= field.kind.spaces:
            message = field.kind.space_error(field.name, value, index)
            raise self.fail(statement, part, f"{statement.parts[1]} {message}", len(field.name) + 1)
        return value


def read_npz(source: Path | io.BytesIO) -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickles); OSError if it cannot be read, ValueError if it is
    not a sound .npz archive (a damaged zip or member included)."""
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with loaded as archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, NotImplementedError) as error:
        raise ValueError(f"not a sound .npz archive ({type(error).__name__}: {error})") from None


def format_data_line(relative_path: str) -> str:
    """The `.data` directive for a sidecar path (quoted when it is not a bare word)."""
    bare = _BARE_PATH.fullmatch(relative_path) is not None
    return f".data {relative_path if bare else json.dumps(relative_path)}"


def disassemble(program: Program, *, data_path: str | None = None) -> str:
    """Canonical `.tasm` text; a `.data` line only when `data_path` (the sidecar) is given."""
    out = io.StringIO()
    out.write(f".target {program.target}\n.isa {program.isa_version}\n")
    if program.tool_version is not None:
        out.write(f".tool_version {program.tool_version}\n")
    if program.arch is not None:
        out.write(f".arch {dump_object(program.arch)}\n")
    out.write(f".spaces {' '.join(program.spaces)}\n")
    for s in program.symbols:
        shape = "x".join(map(str, s.shape))
        out.write(f".symbol {s.name} {s.space} {s.addr:#x} {shape} {s.dtype}\n")
    if data_path is not None:
        out.write(format_data_line(data_path) + "\n")
    write_body(program, out)
    return out.getvalue()
