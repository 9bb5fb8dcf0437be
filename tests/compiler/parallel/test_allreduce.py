"""The allreduce op: its rule (type, attributes, FLOPs, link bytes) and the ring's sum order."""
import numpy as np
import pytest

from compiler.builder import GraphBuilder
from compiler.cost import graph_cost
from compiler.frontend import from_text
from compiler.ir import DType, GraphError, OpKind
from compiler.ops import ring_chunks
from compiler.parallel.reference import ring_allreduce
from compiler.reference import execute


def allreduce_graph(shape, ranks, rank, dtype=DType.fp32):
    g = GraphBuilder("ar")
    x = g.input("x", shape, dtype)
    return g.build([g.op(OpKind.ALLREDUCE, "sum", [x], ranks=ranks, rank=rank)])


def test_the_result_has_the_input_type():
    assert allreduce_graph((2, 3, 8), 4, 3)["sum"].type == allreduce_graph((2, 3, 8), 4, 3)["x"].type


@pytest.mark.parametrize("attrs, message", [
    ("ranks=1, rank=0", "attribute 'ranks' must be an integer of at least 2"),
    ("ranks=2, rank=-1", "attribute 'rank' must be a non-negative integer"),
    ("ranks=2, rank=2", "rank 2 must be below ranks 2"),
    ("rank=0", "missing attribute 'ranks'"),
    ("ranks=4, rank=0, group=1", "unknown attribute 'group'"),
])
def test_bad_attributes_are_refused(attrs, message):
    with pytest.raises(GraphError, match=message):
        from_text(f"graph g {{ input x: fp32[4]\n y = allreduce(x, {attrs})\n output y }}")


def test_integer_tensors_are_refused():
    with pytest.raises(GraphError, match="expects floating-point operands"):
        allreduce_graph((4,), 2, 0, DType.int32)


@pytest.mark.parametrize("numel, ranks, flops, sent", [
    (12, 4, [9, 9, 9, 9], [18, 18, 18, 18]),     # divisible: (n-1)/n x N adds, 2(n-1)/n x N sent
    (10, 4, [8, 7, 7, 8], [14, 15, 16, 15]),     # chunks 3, 3, 2, 2: rank r adds all but chunk r-1
    (5, 2, [3, 2], [5, 5]),                      # two ranks: each sends the whole tensor once
])
def test_flops_and_link_bytes_follow_the_ring(numel, ranks, flops, sent):
    costs = [graph_cost(allreduce_graph((numel,), ranks, r)).ops[0] for r in range(ranks)]
    assert [c.flops for c in costs] == flops
    assert [c.bytes for c in costs] == [4 * s for s in sent]     # fp32
    assert sum(ring_chunks(numel, ranks)) == numel


def test_a_lone_device_graph_with_an_allreduce_is_refused_by_execute():
    with pytest.raises(GraphError, match=r"op 'sum' \(allreduce\) needs the values of 2 devices"):
        execute(allreduce_graph((4,), 2, 0), {}, {"x": np.ones(4)})


def test_the_ring_adds_chunk_c_from_rank_c_plus_1_around_to_rank_c():
    # float32 keeps 24 bits: 1e8 + 1 rounds back to 1e8, so the order of the adds shows
    big = np.float32(1e8)
    parts = [np.array([1, big, -big], np.float32),          # rank 0
             np.array([big, 1, big], np.float32),           # rank 1
             np.array([-big, -big, 1], np.float32)]         # rank 2
    # chunk 0: (r1 + r2) + r0 = (1e8 - 1e8) + 1; chunk 1: (r2 + r0) + r1 = (-1e8 + 1e8) + 1;
    # chunk 2: (r0 + r1) + r2 = (-1e8 + 1e8) + 1 -- each 1, where rank order 0, 1, 2 loses two
    np.testing.assert_array_equal(ring_allreduce(parts), [1, 1, 1])
    assert (parts[0] + parts[1] + parts[2]).tolist() == [0, 0, 1]


def test_the_ring_sum_keeps_shape_and_dtype_and_handles_uneven_chunks():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((3, 7)).astype(np.float32) for _ in range(4)]
    total = ring_allreduce(parts)
    assert total.shape == (3, 7) and total.dtype == np.float32
    np.testing.assert_allclose(total, np.sum(parts, axis=0), rtol=1e-6, atol=1e-6)
