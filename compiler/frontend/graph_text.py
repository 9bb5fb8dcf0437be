"""The .graph text format: parse to a Graph (lark) and print a Graph back.

Users describe their own graphs of the supported ops; `to_text(from_text(t))` is stable,
and `tessel graph --emit` writes any model (GPT-2 presets included) in this format.
Every error carries file:line:col; an attribute its op does not take, a duplicate one or a
value of the wrong type is refused at the attribute (the table: compiler.ops.ATTRIBUTES).
lark is imported by the parsing functions, on first use: printing a graph, or simulating a
preset model, never loads it.
"""
from __future__ import annotations

import json

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.builder import GraphBuilder
from compiler.ir import DType, Graph, GraphError, OpKind
from compiler.ops import attribute_error

if TYPE_CHECKING:
    from lark import Lark, Token, Tree, UnexpectedInput

__all__ = ["from_text", "to_text", "load_graph_file"]

_COMPUTE_KINDS = {k.value: k for k in OpKind if not k.is_source}
_MAX_DIM = (1 << 31) - 1     # element counts of a few such dimensions still fit an int64


@lru_cache(maxsize=1)
def _parser() -> Lark:
    from lark import Lark

    grammar = (Path(__file__).parent / "graph.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _where(source: str, node: Token | Tree) -> str:
    from lark import Token

    meta = node if isinstance(node, Token) else node.meta
    return f"{source}:{meta.line}:{meta.column}"


def _syntax_error(source: str, e: UnexpectedInput) -> GraphError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(e, UnexpectedEOF):
        return GraphError(f"{source}: unexpected end of file (missing '}}'?)")
    if isinstance(e, UnexpectedToken):
        what = "end of file" if e.token.type == "$END" else f"'{e.token}'"
        return GraphError(f"{source}:{e.line}:{e.column}: unexpected {what}")
    if isinstance(e, UnexpectedCharacters):
        return GraphError(f"{source}:{e.line}:{e.column}: unexpected character {e.char!r}")
    return GraphError(f"{source}:{e.line}:{e.column}: syntax error")


def _value(source: str, node: Tree) -> Any:
    if node.data == "number":
        text = str(node.children[0])
        return float(text) if any(c in text for c in ".eE") else int(text)
    if node.data in ("true", "false"):
        return node.data == "true"
    if node.data == "string":                  # "int8": a quantize op's format
        return json.loads(str(node.children[0]))
    values = [_value(source, child) for child in node.children]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise GraphError(f"{_where(source, node)}: lists may hold integers only")
    return tuple(values)


def _dtype(source: str, node: Tree) -> tuple[DType, tuple[int, ...]]:
    name, *dims = node.children
    try:
        dtype = DType[str(name)]
    except KeyError:
        names = ", ".join(d.name for d in DType)
        raise GraphError(f"{_where(source, name)}: unknown dtype '{name}' (one of {names})") from None
    too_big = [d for d in dims if int(d) > _MAX_DIM]
    if too_big:
        raise GraphError(f"{_where(source, too_big[0])}: dimension {too_big[0]} is larger than "
                         f"{_MAX_DIM} (2^31 - 1)")
    return dtype, tuple(int(d) for d in dims)


def from_text(text: str, source: str = "<graph>") -> Graph:
    """Parse .graph text; `source` (usually the file name) prefixes every error."""
    from lark import UnexpectedInput

    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(source, e) from None
    name, *stmts = tree.children
    builder, outputs = GraphBuilder(str(name)), []
    for stmt in stmts:
        try:
            _statement(builder, outputs, source, stmt)
        except GraphError as e:
            if str(e).startswith(source):
                raise
            raise GraphError(f"{_where(source, stmt)}: {e}") from None
    if not outputs:
        raise GraphError(f"{source}: graph '{name}' declares no output")
    return builder.build(outputs)


def _statement(builder: GraphBuilder, outputs: list[str], source: str, stmt: Tree) -> None:
    if stmt.data in ("input", "param"):
        name, type_node = stmt.children
        dtype, shape = _dtype(source, type_node)
        kind = OpKind.INPUT if stmt.data == "input" else OpKind.PARAM
        builder.source(kind, str(name), shape, dtype)
    elif stmt.data == "assign":
        name, kind_token, *args = stmt.children
        kind = _COMPUTE_KINDS.get(str(kind_token))
        if kind is None:
            raise GraphError(f"{_where(source, kind_token)}: unknown op '{kind_token}' "
                             f"(one of {', '.join(sorted(_COMPUTE_KINDS))})")
        operands = [str(a.children[0]) for a in args if a.data == "operand"]
        builder.op(kind, str(name), operands, **_attributes(source, str(name), kind, args))
    else:
        for token in stmt.children:
            try:
                builder.type_of(str(token))
            except KeyError:
                raise GraphError(f"{_where(source, token)}: output '{token}' is not defined") from None
            outputs.append(str(token))


def _attributes(source: str, name: str, kind: OpKind, args: list[Tree]) -> dict[str, Any]:
    """The op's attributes, each known to its kind and of the right type (compiler.ops)."""
    attrs: dict[str, Any] = {}
    for arg in args:
        if arg.data != "attribute":
            continue
        key, value = str(arg.children[0]), _value(source, arg.children[1])
        problem = (f"duplicate attribute '{key}'" if key in attrs
                   else attribute_error(kind, key, value))
        if problem:
            raise GraphError(f"{_where(source, arg)}: op '{name}' ({kind.value}): {problem}")
        attrs[key] = value
    return attrs


def load_graph_file(path: Path) -> Graph:
    try:
        content = path.read_bytes()
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GraphError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return from_text(text, str(path))


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def to_text(graph: Graph) -> str:
    """The graph in .graph syntax, ops in topological order."""
    lines = [f"graph {graph.name} {{"]
    for op in graph.ops:
        if op.kind.is_source:
            lines.append(f"  {op.kind.value} {op.name}: {op.type}")
        else:
            args = list(op.inputs) + [f"{k}={_format(v)}" for k, v in op.attrs]
            lines.append(f"  {op.name} = {op.kind.value}({', '.join(args)})")
    lines.append(f"  output {', '.join(graph.outputs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
