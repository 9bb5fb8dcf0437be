"""The .graph text format: round trips, examples, and errors with file:line:col."""
from pathlib import Path

import numpy as np
import pytest

from compiler.frontend import PRESETS, build_graph, from_text, load_model, to_text
from compiler.ir import GraphError
from compiler.phase import decode
from compiler.reference import execute
from compiler.verify import verify

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.graph"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_verify_and_round_trip(path):
    graph = verify(load_model(str(path)).fixed_graph)
    assert to_text(from_text(to_text(graph))) == to_text(graph)


def test_gpt2_round_trips_through_text_and_computes_the_same():
    graph = build_graph(PRESETS["gpt2"], decode(3))
    again = from_text(to_text(graph))
    assert [(o.name, o.kind, o.inputs, o.type, o.attrs) for o in again.ops] == \
           [(o.name, o.kind, o.inputs, o.type, o.attrs) for o in graph.ops]
    assert again.outputs == graph.outputs


def test_example_runs_in_the_reference_executor():
    model = load_model(str(Path(__file__).parents[2] / "examples" / "mlp.graph"))
    x = np.random.default_rng(0).standard_normal((2, 16, 256))
    y = execute(model.fixed_graph, model.weights, {"x": x})["y"]
    assert y.shape == (2, 16, 256) and np.isfinite(y).all()


@pytest.mark.parametrize("text, message", [
    ("graph g {\n  input x: fp32[2, 3]\n  y = gelu(x\n  output y\n}", r"g.graph:4:3: unexpected 'output'"),
    ("graph g {\n  input x: fp33[2]\n}", r"g.graph:2:12: unknown dtype 'fp33'"),
    ("graph g {\n  input x: fp32[2]\n  y = frobnicate(x)\n  output y\n}", r"g.graph:3:7: unknown op 'frobnicate'"),
    ("graph g {\n  input x: fp32[2, 3]\n  param w: fp32[4, 5]\n  y = matmul(x, w)\n  output y\n}",
     r"g.graph:4:3: op 'y' \(matmul\): inner dimensions differ: \[2, 3\] x \[4, 5\]"),
    ("graph g {\n  input x: fp32[2]\n  y = gelu(z)\n  output y\n}", r"g.graph:3:3: op 'y' \(gelu\): unknown input 'z'"),
    ("graph g {\n  input x: fp32[2]\n  output q\n}", r"g.graph:3:10: output 'q' is not defined"),
    ("graph g {\n  input x: fp32[2]\n  y = gelu(x)\n}", r"g.graph: graph 'g' declares no output"),
    ("graph g {\n  input x: fp32[2]\n  y = gelu(x) $\n}", r"g.graph:3:15: unexpected character '\$'"),
    ("graph g {\n  input x: fp32[2]\n  input x: fp32[2]\n  output x\n}", r"g.graph:3:3: duplicate op name 'x'"),
    ("graph g {\n  input x: fp32[2]\n", r"g.graph:2:18: unexpected end of file"),
])
def test_malformed_graphs_name_file_line_and_column(text, message):
    with pytest.raises(GraphError, match=f"^{message}"):
        from_text(text, "g.graph")
