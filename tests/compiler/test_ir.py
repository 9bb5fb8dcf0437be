"""Graph IR invariants: immutability, verify, shape errors naming the op."""
import dataclasses

import pytest

from compiler.builder import GraphBuilder
from compiler.ir import DType, Graph, GraphError, Op, OpKind, TensorType
from compiler.verify import verify


def small_graph() -> Graph:
    g = GraphBuilder("g")
    x = g.input("x", (4, 8))
    w = g.param("w", (8, 16))
    y = g.op(OpKind.MATMUL, "y", [x, w])
    return g.build([g.op(OpKind.GELU, "z", [y])])


def test_ops_are_immutable_and_ordered():
    graph = small_graph()
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph["y"].name = "other"
    assert [op.name for op in graph.ops] == ["x", "w", "y", "z"]
    assert graph["z"].type == TensorType((4, 16), DType.fp32)
    assert [op.name for op in graph.consumers("y")] == ["z"]


def test_verify_catches_a_stored_type_that_disagrees():
    graph = small_graph()
    wrong = dataclasses.replace(graph["z"], type=TensorType((4, 15), DType.fp32))
    bad = Graph("g", [wrong if op.name == "z" else op for op in graph.ops], ["z"])
    with pytest.raises(GraphError, match=r"op 'z' says fp32\[4, 15\] but its inputs give fp32\[4, 16\]"):
        verify(bad)


def test_verify_catches_dead_ops():
    graph = small_graph()
    bad = Graph("g", graph.ops, ["y"])
    with pytest.raises(GraphError, match="op 'z' does not reach any output"):
        verify(bad)


def test_cycles_and_unknown_inputs_are_rejected():
    t = TensorType((2,), DType.fp32)
    with pytest.raises(GraphError, match="cycle"):
        Graph("g", [Op("a", OpKind.GELU, ("b",), t), Op("b", OpKind.GELU, ("a",), t)], ["a"])
    with pytest.raises(GraphError, match="op 'a' reads unknown value 'c'"):
        Graph("g", [Op("a", OpKind.GELU, ("c",), t)], ["a"])


@pytest.mark.parametrize("kind, inputs, attrs, message", [
    (OpKind.ADD, ["x", "w"], {}, r"shapes \[4, 8\] and \[8, 16\] do not broadcast"),
    (OpKind.GELU, ["x", "x"], {}, "takes 1 inputs, got 2"),
    (OpKind.RESHAPE, ["x"], {"shape": [5, 5]}, r"cannot reshape \[4, 8\] to \[5, 5\]"),
    (OpKind.SLICE, ["x"], {"axis": 1, "start": 4, "stop": 9}, r"slice \[4:9\] out of range"),
    (OpKind.TRANSPOSE, ["x"], {"perm": [0, 0]}, r"perm \[0, 0\] is not a permutation"),
    (OpKind.EMBEDDING, ["w", "x"], {}, "ids must be int32"),
])
def test_shape_errors_name_the_op(kind, inputs, attrs, message):
    g = GraphBuilder("g")
    g.input("x", (4, 8))
    g.param("w", (8, 16))
    with pytest.raises(GraphError, match=f"op 'bad' \\({kind.value}\\): {message}"):
        g.op(kind, "bad", inputs, **attrs)
