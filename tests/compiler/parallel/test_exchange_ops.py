"""all_gather, all_to_all and a mixture of experts whose tokens are split over ranks, read from
.graph text: their types and costs, and every malformed attribute refused in one line."""
import re

import pytest

from compiler.cost import graph_cost
from compiler.frontend import from_text
from compiler.ir import GraphError

MOE = ("graph g {{ input x: fp32[2, 4]\n input r: fp32[2, {router}]\n"
       " param g0: fp32[4, 8]\n param u0: fp32[4, 8]\n param d0: fp32[8, 4]\n"
       " param g1: fp32[4, 8]\n param u1: fp32[4, 8]\n param d1: fp32[8, 4]\n"
       " y = moe(x, r, g0, u0, d0, g1, u1, d1, top_k=1, {attrs})\n output y }}")


def test_the_exchanges_have_their_types_and_link_bytes():
    graph = from_text("graph g { input x: fp32[6, 4]\n a = all_to_all(x, ranks=3, rank=1)\n"
                      " b = all_gather(a, ranks=3, rank=1)\n output b }")
    assert graph["a"].type.shape == (6, 4) and graph["b"].type.shape == (18, 4)
    cost = {op.name: op for op in graph_cost(graph).ops}
    assert (cost["a"].flops, cost["a"].bytes) == (0, 2 * 6 * 4 * 4 // 3)
    assert (cost["b"].flops, cost["b"].bytes) == (0, 2 * 6 * 4 * 4)


@pytest.mark.parametrize("text, message", [
    ("a = all_to_all(x, ranks=4, rank=0)", "axis 0 of [6, 4] does not split into 4 chunks"),
    ("a = all_to_all(x, ranks=3, rank=3)", "rank 3 must be below ranks 3"),
    ("a = all_gather(x, ranks=1, rank=0)", "attribute 'ranks' must be an integer of at least 2"),
    ("a = all_gather(x, rank=0)", "missing attribute 'ranks'"),
    ("a = all_gather(x, ranks=2, rank=0, axis=1)", "unknown attribute 'axis'"),
])
def test_malformed_exchanges_are_refused(text, message):
    with pytest.raises(GraphError, match=re.escape(message)):
        from_text(f"graph g {{ input x: fp32[6, 4]\n {text}\n output a }}")


def test_a_moe_split_over_ranks_counts_every_ranks_tokens():
    whole = graph_cost(from_text(MOE.format(router=4, attrs="first_expert=0")))
    split = graph_cost(from_text(MOE.format(router=4, attrs="first_expert=0, ranks=2, rank=0")))
    assert split.ops[-1].flops > whole.ops[-1].flops


@pytest.mark.parametrize("router, attrs", [
    (2, "ranks=2, rank=0"),                       # no first_expert
    (4, "first_expert=0, ranks=2"),               # no rank
    (4, "first_expert=0, ranks=2, rank=2"),       # rank past ranks
    (4, "first_expert=0, ranks=4, rank=0"),       # 2 of a router's 4 given, not 4 / ranks
])
def test_a_malformed_split_moe_is_refused(router, attrs):
    with pytest.raises(GraphError, match="tokens split over ranks"):
        from_text(MOE.format(router=router, attrs=attrs))
