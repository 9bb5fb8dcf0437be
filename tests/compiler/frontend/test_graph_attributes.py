""".graph attributes: every one known to its op kind, of the right type, or refused at its
line:column naming the op, the attribute and the value; non-UTF-8 files are one line too."""
import pytest

from compiler.builder import GraphBuilder
from compiler.frontend import from_text
from compiler.ir import GraphError, OpKind
from compiler.ops import ATTRIBUTES
from tests.bad_input import refuses

HEAD = "graph g {\n  input x: fp32[2, 3]\n  input w: fp32[3]\n"


def graph_with(line: str) -> str:
    return HEAD + f"  {line}\n  output y\n}}\n"


BAD = [
    ("y = softmax(x, casual=true)",
     r"g.graph:4:18: op 'y' \(softmax\): unknown attribute 'casual' = true \(softmax takes scale, causal, window; did you mean 'causal'\?\)"),
    ("y = gelu(x, fast=true)", r"g.graph:4:15: op 'y' \(gelu\): unknown attribute 'fast' = true \(gelu takes none\)"),
    ("y = add(x, x, alpha=2)", r"op 'y' \(add\): unknown attribute 'alpha' = 2 \(add takes none\)"),
    ("y = matmul(x, x, transpose=true)", r"unknown attribute 'transpose' = true .*did you mean 'transpose_b'"),
    ("y = softmax(x, causal=true, causal=false)", r"g.graph:4:31: op 'y' \(softmax\): duplicate attribute 'causal'"),
    ("y = softmax(x, causal=1)", r"attribute 'causal' must be true or false, got 1"),
    ("y = softmax(x, scale=1e999)", r"attribute 'scale' must be a finite number, got inf"),
    ("y = softmax(x, scale=true)", r"attribute 'scale' must be a finite number, got true"),
    ("y = softmax(x, scale=[1])", r"attribute 'scale' must be a finite number, got \[1\]"),
    ("y = layernorm(x, w, w, eps=0)", r"g.graph:4:26: op 'y' \(layernorm\): attribute 'eps' must be a positive finite number, got 0"),
    ("y = layernorm(x, w, w, eps=-1e-5)", r"attribute 'eps' must be a positive finite number, got -1e-05"),
    ("y = matmul(x, x, transpose_b=[1])", r"attribute 'transpose_b' must be true or false, got \[1\]"),
    ("y = slice(x, axis=1.0, start=0, stop=1)", r"attribute 'axis' must be an integer, got 1.0"),
    ("y = slice(x, axis=1, start=0)", r"g.graph:4:3: op 'y' \(slice\): missing attribute 'stop'"),
    ("y = reshape(x)", r"op 'y' \(reshape\): missing attribute 'shape'"),
    ("y = reshape(x, shape=6)", r"attribute 'shape' must be a list of integers, got 6"),
    ("y = transpose(x, perm=true)", r"attribute 'perm' must be a list of integers, got true"),
    ("y = embedding(w, x, padding=0)", r"op 'y' \(embedding\): unknown attribute 'padding' = 0"),
    ("input r: fp32[3, 4]\n  y = rope(r, theta=10000.0, start=0, pairs=[1, 1])",
     r"g.graph:5:3: op 'y' \(rope\): attribute 'pairs' must order the 2 rotated pairs of head_dim 4 "
     r"\(each of 0..1 once\), got \[1, 1\]"),
    ("y = rope(x, theta=10000.0, start=0, pairs=true)", r"attribute 'pairs' must be a list of integers"),
]


@pytest.mark.parametrize("line, message", BAD, ids=[line for line, _ in BAD])
def test_unknown_or_mistyped_attributes_are_refused(tmp_path, capsys, line, message):
    path = tmp_path / "g.graph"
    path.write_text(graph_with(line))
    refuses(capsys, ["graph", "--model", path], message)


def test_a_huge_dimension_is_refused(tmp_path, capsys):
    path = tmp_path / "g.graph"
    path.write_text("graph g {\n  input x: fp32[2, 99999999999]\n  output x\n}\n")
    refuses(capsys, ["graph", "--model", path], r"g.graph:2:20: dimension 99999999999 is larger than 2147483647")


def test_non_utf8_graph_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "g.graph"
    path.write_bytes(graph_with("y = gelu(x)").encode() + b"# \xff\xfe\n")
    refuses(capsys, ["graph", "--model", path], r"g.graph: not UTF-8 text \(byte \d+\)")


def test_attributes_that_are_known_still_parse():
    graph = from_text(graph_with("y = softmax(x, scale=0.5, causal=true)"))
    assert graph["y"].attrs == (("causal", True), ("scale", 0.5))


def test_programmatic_graphs_are_held_to_the_same_table():
    g = GraphBuilder("g")
    x = g.input("x", (2, 3))
    with pytest.raises(GraphError, match=r"op 'y' \(softmax\): unknown attribute 'casual' = true"):
        g.op(OpKind.SOFTMAX, "y", [x], casual=True)


def test_every_attribute_in_the_table_is_documented():
    from pathlib import Path
    doc = (Path(__file__).parents[3] / "docs" / "graph-format.md").read_text()
    for kind, attributes in ATTRIBUTES.items():
        for name in attributes:
            row = next(line for line in doc.splitlines() if line.startswith(f"| `{kind.value}`"))
            assert f"`{name}`" in row, (kind, name)
