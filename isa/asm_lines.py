"""Split `.tasm` text into statements, one per line, with the lark grammar in asm.lark.

Statements carry their line and source text so that later checks can point at a column.
Plain instruction lines (`queue mnemonic name=value ...`, no comment) are read by a regular
expression built from the grammar's own QUEUE/MNEMONIC/FIELD terminals, so they are exactly
the lines the grammar reads that way; every other line goes through lark. A million-line
file is thus read in seconds instead of minutes. lark itself is imported when the first
statement is parsed: commands that read no `.tasm` text (simulating a model) never load it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from isa.errors import AsmError

if TYPE_CHECKING:
    import lark

__all__ = ["Statement", "read_statements", "column_of"]

_WORDS = {
    "QUEUE": "a queue (e.g. dma0)", "MNEMONIC": "a mnemonic", "NAME": "a name",
    "NUMBER": "a number", "SHAPE": "a shape (e.g. 64x128)", "TARGET": "a target name",
    "SYMBOL": "a symbol name", "PATH": "a path", "STRING": "a quoted path",
    "FIELD": "a field (name=value, no blanks)", "ARCH": "a JSON object",
    "VERSION": "a version (e.g. 0.1.0)", "_NL": "end of line", "$END": "end of line",
}


class Statement(NamedTuple):
    """One directive or instruction: `kind` is target/isa/spaces/symbol/data/op/arch/
    tool_version/loop/endloop/instr.

    parts: the line's tokens after the directive keyword (for instr: queue, mnemonic,
    then one `name=value` per field).
    """

    kind: str
    line: int
    parts: tuple[str, ...]
    text: str


class _Callbacks:
    """Lark callbacks (mixed into lark.Transformer by `_parser`): each rule returns
    (kind, tokens) instead of a tree node."""

    def start(self, statements):
        return statements

    def target(self, tokens):
        return ("target", tokens)

    def isa(self, tokens):
        return ("isa", tokens)

    def spaces(self, tokens):
        return ("spaces", tokens)

    def symbol(self, tokens):
        return ("symbol", tokens)

    def data(self, tokens):
        return ("data", tokens)

    def op(self, tokens):
        return ("op", tokens)

    def arch(self, tokens):
        return ("arch", tokens)

    def tool_version(self, tokens):
        return ("tool_version", tokens)

    def loop(self, tokens):
        return ("loop", tokens)

    def endloop(self, tokens):
        return ("endloop", tokens)

    def instr(self, tokens):
        return ("instr", tokens)


@functools.cache
def _parser() -> lark.Lark:
    import lark

    grammar = (Path(__file__).parent / "asm.lark").read_text(encoding="utf-8")
    transformer = type("Callbacks", (_Callbacks, lark.Transformer), {})()
    return lark.Lark(grammar, parser="lalr", lexer="contextual", transformer=transformer)


@functools.cache
def _plain_instruction() -> re.Pattern[str]:
    def terminal(name: str) -> str:
        return _parser().get_terminal(name).pattern.to_regexp()

    return re.compile(rf"[ \t]*(?P<queue>{terminal('QUEUE')})[ \t]+(?P<mnemonic>"
                      rf"{terminal('MNEMONIC')})(?P<fields>(?:[ \t]+{terminal('FIELD')})*)[ \t]*")


def read_statements(text: str, filename: str) -> list[Statement]:
    """All statements of `text`, in order; AsmError `file:line:col: ...` on a malformed line."""
    plain = _plain_instruction().fullmatch
    statements = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        match = plain(line)
        if match is not None:
            parts = (match["queue"], match["mnemonic"], *match["fields"].split())
            statements.append(Statement("instr", number, parts, line))
        elif line.strip():
            statements += [Statement(kind, number, tuple(tokens), line)
                           for kind, tokens in _parse_line(line, number, filename)]
    return statements


def _parse_line(line: str, number: int, filename: str) -> list:
    import lark

    try:
        return _parser().parse(line)
    except lark.exceptions.UnexpectedInput as error:
        token = getattr(error, "token", None)
        at_end = isinstance(error, lark.exceptions.UnexpectedEOF) or (
            token is not None and token.type == "$END")
        column = len(line.rstrip()) + 1 if at_end else error.column
        raise AsmError(f"{filename}:{number}:{column}: {_describe(error)}") from None


def column_of(statement: Statement, part: int) -> int:
    """1-based column where `statement.parts[part]` starts (lark tokens know theirs)."""
    column = getattr(statement.parts[part], "column", None)
    if column is None:
        (_, tokens), = _parser().parse(statement.text)
        column = tokens[part].column
    return column


def _describe(error: lark.exceptions.UnexpectedInput) -> str:
    import lark

    names = getattr(error, "expected", None) or getattr(error, "allowed", None) or set()
    expected = sorted({_WORDS.get(n) or _literal(n) for n in names if n != "COMMENT"})
    wanted = f", expected {' or '.join(expected)}" if expected else ""
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        return f"unexpected character {error.char!r}{wanted}"
    token = getattr(error, "token", None)
    if token is None or token.type in ("$END", "_NL"):
        return f"unexpected end of line{wanted}"
    return f"unexpected {str(token)!r}{wanted}"


def _literal(terminal: str) -> str:
    import lark

    try:
        pattern = _parser().get_terminal(terminal).pattern
    except KeyError:
        return terminal
    return repr(pattern.value) if isinstance(pattern, lark.lexer.PatternStr) else terminal
