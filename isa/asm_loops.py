"""Loops in `.tasm` text: `.loop count=N` ... `.endloop` around a body, and per-operand strides.

    .loop count=12
      .loop count=4
        dma0 load dst=sram[0x0]+=0x40 src=dram[0x0]+=0x40+=0x1000 rows=1 row_bytes=64
      .endloop
    .endloop

An address operand inside loops may end in strides `+=N` or `-=N` (bytes, decimal or 0x hex),
one per enclosing loop, innermost first; `+=0` holds the place of a loop it does not move in.
The assembler turns them into each loop's `stride` words (sorted by body word, then field) and
the loop lines into `loop` headers; the disassembler prints them back, indenting bodies by two
spaces a level and leaving out trailing zero strides, so canonical text round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TextIO

from isa.asm_lines import Statement
from isa.errors import AsmError, FieldError
from isa.instr import Instr
from isa.loops import Loop, loop_structure, loop_words
from isa.opcodes import OPCODES
from isa.program import Program

__all__ = ["Stride", "STRIDE_KIND", "assemble_body", "split_strides", "write_body"]

Stride = tuple[int, int, int]     # (loop level, innermost 0; field position; delta bytes)
STRIDE_KIND = OPCODES["stride"].field("delta").kind
_COUNT_KIND = OPCODES["loop"].field("count").kind
_BODY_KIND = OPCODES["loop"].field("body").kind
_MOVE = re.compile(r"[+-]=[0-9A-Za-z]+")
_INDENT = "  "

InstrReader = Callable[[Statement, int], tuple[Instr, list[Stride]]]
Fail = Callable[..., AsmError]


def split_strides(text: str) -> tuple[str, list[tuple[int, str]]]:
    """`dram[0x0]+=0x40-=8` -> ("dram[0x0]", [(9, "+=0x40"), (15, "-=8")]) (offsets in
    `text`)."""
    start = min(i for i in (text.find("+="), text.find("-=")) if i >= 0)
    return text[:start], [(m.start(), m.group()) for m in _MOVE.finditer(text, start)]


class _Block:
    """An open `.loop` (or the program): its items and the strides its loop will carry."""

    __slots__ = ("statement", "count", "items", "strides", "stride_words", "body_start")

    def __init__(self, statement: Statement | None, count: int) -> None:
        self.statement = statement
        self.count = count
        self.items: list[tuple] = []
        self.strides: list[tuple[int, int, int]] = []     # (body word, field position, delta)
        self.stride_words = 0
        self.body_start = 0


def _op_name(statement: Statement, depth: int, fail: Fail) -> str:
    """An `.op` line's name; a template {+N} (filled in by its loop's iteration) only inside
    a loop."""
    name = str(statement.parts[0])
    if "{" in name and depth == 0:
        raise fail(statement, None, f".op {name}: a name template {{+N}} needs a loop around it "
                                    "(its iteration fills it in)")
    return name


def assemble_body(body: Sequence[Statement], read: InstrReader,
                  fail: Fail) -> tuple[tuple[Instr, ...], tuple[tuple[int, str], ...]]:
    """Instructions and op marks of the body statements (instr, op, loop, endloop)."""
    if not any(s.kind in ("loop", "endloop") for s in body):
        instructions, ops = [], []
        for statement in body:
            if statement.kind == "instr":
                instructions.append(read(statement, 0)[0])
            else:
                ops.append((len(instructions), _op_name(statement, 0, fail)))
        return tuple(instructions), tuple(ops)
    stack = [_Block(None, 1)]
    for statement in body:
        kind = statement.kind
        if kind == "instr":
            instr, strides = read(statement, len(stack) - 1)
            for level, _, _ in strides:
                stack[-1 - level].stride_words += 1
            stack[-1].items.append(("instr", instr, strides))
        elif kind == "op":
            stack[-1].items.append(("op", _op_name(statement, len(stack) - 1, fail)))
        elif kind == "loop":
            block = _Block(statement, _count(statement, fail))
            stack[-1].items.append(("loop", block))
            stack.append(block)
        else:
            if len(stack) == 1:
                raise fail(statement, None, ".endloop without .loop")
            if not any(item[0] != "op" for item in stack[-1].items):
                raise fail(stack[-1].statement, None, ".loop with an empty body")
            stack.pop()
    if len(stack) > 1:
        raise fail(stack[-1].statement, None, ".loop without .endloop")
    words: list[Instr | None] = []
    marks: list[tuple[int, str]] = []
    _emit(stack[0], [], words, marks, fail)
    return tuple(words), tuple(marks)       # type: ignore[arg-type]


def _count(statement: Statement, fail: Fail) -> int:
    name, _, text = str(statement.parts[0]).partition("=")
    if name != "count" or "+=" in text or "-=" in text:
        raise fail(statement, 0, f".loop takes count=N, got {statement.parts[0]}")
    try:
        return _COUNT_KIND.from_text("count", text)
    except FieldError as error:
        raise fail(statement, 0, str(error), len("count=")) from None


def _emit(block: _Block, loops: list[_Block], words: list, marks: list, fail: Fail) -> None:
    """Append the words of `block`'s items; `loops` are the enclosing blocks, outermost first."""
    for item in block.items:
        if item[0] == "op":
            marks.append((len(words), item[1]))
        elif item[0] == "instr":
            _, instr, strides = item
            for level, position, delta in strides:
                loop = loops[-1 - level]
                loop.strides.append((len(words) - loop.body_start, position, delta))
            words.append(instr)
        else:
            child = item[1]
            header = len(words)
            words.extend([None] * (1 + child.stride_words))
            child.body_start = len(words)
            _emit(child, loops + [child], words, marks, fail)
            try:
                body = _BODY_KIND.coerce("body", len(words) - child.body_start)
            except FieldError as error:
                raise fail(child.statement, None, f".loop: {error}") from None
            words[header:header + 1 + child.stride_words] = loop_words(child.count, body, child.strides)


def write_body(program: Program, out: TextIO) -> None:
    """The canonical text of `program`'s instructions and op marks (LoopError when its loop
    words do not form loops: such a program has no text)."""
    instructions = program.instructions
    structure = loop_structure(instructions, None, program.ops)
    by_header = {loop.header: loop for loop in structure.loops}
    strided = structure.strided()
    marks = iter(program.ops)
    mark = next(marks, None)
    open_loops: list[Loop] = []
    for index, instr in enumerate(instructions):
        while open_loops and open_loops[-1].body_end == index:
            open_loops.pop()
            out.write(f"{_INDENT * len(open_loops)}.endloop\n")
        indent = _INDENT * len(open_loops)
        while mark is not None and mark[0] == index:
            out.write(f"{indent}.op {mark[1]}\n")
            mark = next(marks, None)
        loop = by_header.get(index)
        if loop is not None:
            out.write(f"{indent}.loop count={loop.count}\n")
            open_loops.append(loop)
        elif index in strided:
            out.write(indent + _moving(index, instr, open_loops) + "\n")
        elif instr.opcode != "stride":
            out.write(indent)
            out.write(str(instr))
            out.write("\n")
    while open_loops:
        open_loops.pop()
        out.write(f"{_INDENT * len(open_loops)}.endloop\n")
    while mark is not None:
        out.write(f".op {mark[1]}\n")
        mark = next(marks, None)


def _moving(index: int, instr: Instr, open_loops: list[Loop]) -> str:
    """An instruction line whose strided operands carry their `+=`/`-=` suffixes."""
    spec = OPCODES[instr.opcode]
    parts = [str(instr.queue), instr.opcode]
    for position, (field, (_, value)) in enumerate(zip(spec.fields, instr.fields)):
        deltas = [loop.delta(index, position) for loop in reversed(open_loops)]
        while deltas and not deltas[-1]:
            deltas.pop()
        style = "#x" if type(value) is not int else "d"      # bytes in hex, a row or column not
        suffix = "".join(f"-={-d:{style}}" if d < 0 else f"+={d:{style}}" if d else "+=0"
                         for d in deltas)
        parts.append(f"{field.name}={field.kind.format(value)}{suffix}")
    return " ".join(parts)
