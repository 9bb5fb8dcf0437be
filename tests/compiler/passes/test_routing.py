"""Routing: the expanded graph computes exactly the moe op, only routed experts get ops, and
the timing-only policies are seeded, valid and refuse bad input in one line."""
import json
import re

import numpy as np
import pytest

from compiler.frontend import Model
from compiler.frontend.decoder import build_graph
from compiler.ir import GraphError, OpKind
from compiler.passes.routing import (Routing, check_policy, moe_ops, policy_routing, route_graph,
                                     routing_feeds, routing_summary)
from compiler.phase import decode, prefill
from compiler.reference import execute
from tests.families.tiny import TINY

MOE = ("tiny-mixtral", "tiny-qwen3-moe")


def _run(name, phase):
    model = Model(name, TINY[name])
    graph = model.graph(phase)
    tokens = np.arange(phase.batch * phase.seq).reshape(phase.batch, phase.seq) % 90 + 1
    feeds = {"tokens": tokens}
    for op in graph.inputs:
        if op.name.endswith("_cache"):
            feeds[op.name] = np.random.default_rng(len(op.name)).standard_normal(op.type.shape)
    return model, graph, feeds


@pytest.mark.parametrize("name", MOE)
@pytest.mark.parametrize("phase", [prefill(7, batch=2), decode(5, batch=3)], ids=str)
def test_routed_graph_equals_the_moe_op_for_the_routers_choice(name, phase):
    model, graph, feeds = _run(name, phase)
    choices = {}
    expected = execute(graph, model.weights, feeds, routing=choices)
    routing = Routing(choices, "router")
    routed = route_graph(graph, routing)
    assert not routed.of_kind(OpKind.MOE)
    got = execute(routed, model.weights, {**feeds, **routing_feeds(graph, routing)})
    for out in graph.outputs:
        np.testing.assert_allclose(got[out], expected[out], rtol=0, atol=1e-12)


def test_only_experts_that_received_tokens_get_ops():
    _, graph, _ = _run("tiny-mixtral", decode(5, batch=1))
    op = moe_ops(graph)[0]
    choice = {o.name: np.array([[2, 0]]) for o in moe_ops(graph)}
    routed = route_graph(graph, Routing(choice, "test"))
    experts = {m.group(1) for o in routed.ops if not o.kind.is_source
               for m in [re.match(re.escape(op.name) + r"\.expert(\d+)\.", o.name)] if m}
    assert experts == {"0", "2"}
    linears = [o for o in routed.of_kind(OpKind.LINEAR) if o.name.startswith(op.name + ".expert")]
    assert {o.inputs[1] for o in linears} == {
        f"layers.0.block_sparse_moe.experts.{e}.{w}.weight" for e in (0, 2) for w in ("w1", "w3", "w2")}


def test_summary_counts_tokens_touched_experts_and_their_weight_bytes():
    _, graph, _ = _run("tiny-mixtral", decode(5, batch=2))
    choice = {o.name: np.array([[1, 3], [3, 0]]) for o in moe_ops(graph)}
    s = routing_summary(graph, Routing(choice, "test"), itemsize=2)
    c = TINY["tiny-mixtral"]
    assert s["tokens_per_expert"] == [2, 2, 0, 4] and s["experts_touched"] == [3, 3]
    assert s["expert_weight_bytes"] == 2 * 3 * (3 * c.hidden_size * c.moe_intermediate_size) * 2


@pytest.mark.parametrize("policy", ["uniform", "zipf:1.2"])
def test_policies_are_seeded_and_choose_distinct_valid_experts(policy):
    _, graph, _ = _run("tiny-qwen3-moe", prefill(9, batch=2))
    a, b = policy_routing(graph, policy), policy_routing(graph, policy)
    for name, choice in a.choices.items():
        assert np.array_equal(choice, b.choices[name])
        assert choice.shape == (18, 3) and choice.min() >= 0 and choice.max() < 8
        assert all(len(set(row)) == 3 for row in choice.tolist())
    other = policy_routing(graph, policy, seed=1).choices
    assert any(not np.array_equal(other[n], a.choices[n]) for n in other)


def test_zipf_concentrates_tokens_on_few_experts():
    _, graph, _ = _run("tiny-qwen3-moe", prefill(200, batch=1))
    counts = lambda p: np.sort(np.bincount(policy_routing(graph, p).choices[moe_ops(graph)[0].name].ravel(),
                                           minlength=8))[::-1]
    assert counts("zipf:2.0")[0] > 1.5 * counts("uniform")[0]


def test_file_policy_reads_choices_and_refuses_bad_ones(tmp_path):
    _, graph, _ = _run("tiny-mixtral", decode(5, batch=2))
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"experts": [[[0, 1], [2, 3]], [[3, 2], [1, 0]]]}))
    r = policy_routing(graph, f"file:{path}")
    assert r.choices[moe_ops(graph)[1].name].tolist() == [[3, 2], [1, 0]]
    for bad, message in [({"experts": [[[0, 1], [2, 3]]]}, "must list 2 moe layers, got 1"),
                         ({"experts": [[[0, 1], [2, 9]], [[0, 1], [2, 3]]]}, r"experts\[0\]'.*outside 0..3"),
                         ({"experts": [[[0, 0], [2, 3]], [[0, 1], [2, 3]]]}, "token 0 chooses expert 0 twice"),
                         ({"experts": [[[0, 1, 2], [2, 3, 1]], [[0, 1], [2, 3]]]}, r"needs \[2 tokens, 2 experts\]")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(GraphError, match=message):
            policy_routing(graph, f"file:{path}")
    with pytest.raises(GraphError, match="cannot read routing file"):
        policy_routing(graph, f"file:{tmp_path / 'missing.json'}")


@pytest.mark.parametrize("spec", ["zipf", "zipf:-1", "zipf:nan", "random", "file:", "uniform:2"])
def test_bad_policies_are_refused(spec):
    with pytest.raises(GraphError, match="--routing"):
        check_policy(spec)


def _shard_moe(first: int, held: int, experts: int = 4, tokens: int = 3, d: int = 8, f: int = 4):
    """A graph of one expert-parallel moe op: experts first..first+held-1 of a router of
    `experts`, and weights for them."""
    from compiler.builder import GraphBuilder
    g = GraphBuilder("shard")
    x, logits = g.input("x", (tokens, d)), g.input("logits", (tokens, experts))
    weights = [g.param(f"e{e}.{w}", shape) for e in range(first, first + held)
               for w, shape in (("gate", (d, f)), ("up", (d, f)), ("down", (f, d)))]
    out = g.op(OpKind.MOE, "moe", [x, logits, *weights], top_k=2, norm_topk_prob=True,
               first_expert=first)
    rng = np.random.default_rng(5)
    params = {name: rng.standard_normal(shape) for name, shape in
              ((w, s) for w, s in zip(weights, [(d, f), (d, f), (f, d)] * held))}
    feeds = {"x": rng.standard_normal((tokens, d)), "logits": rng.standard_normal((tokens, experts))}
    return g.build([out]), params, feeds


@pytest.mark.parametrize("choice", [[[0, 3], [2, 1], [3, 2]], [[0, 1], [1, 0], [0, 1]]],
                         ids=["some-held", "none-held"])
def test_an_expert_parallel_shard_routes_only_the_experts_it_holds(choice):
    """Experts 2 and 3 of 4: the routed graph equals the op (its experts' share of the sum,
    renormalised over all chosen), and a shard no token chose gives zeros."""
    graph, params, feeds = _shard_moe(first=2, held=2)
    routing = Routing({"moe": np.array(choice)}, "test")
    routed = route_graph(graph, routing)
    expected = execute(graph, params, feeds, routing={})       # the op: the router's own choice
    from compiler import reference
    op = graph["moe"]
    want = reference.moe(op, [feeds["x"], feeds["logits"], *(params[w] for w in op.inputs[2:])],
                         np.array(choice))
    got = execute(routed, params, {**feeds, **routing_feeds(graph, routing)})["moe"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    if choice[0] == [0, 1]:
        assert not got.any()
    assert expected["moe"].shape == got.shape


def test_a_shard_past_the_routers_experts_is_refused():
    with pytest.raises(GraphError, match=r"op 'moe' \(moe\): experts 3\.\.4 \(first_expert and "
                                         r"the 2 given\) run past the router's 4"):
        _shard_moe(first=3, held=2)
    from compiler.ops import attribute_error
    assert attribute_error(OpKind.MOE, "first_expert", -1) == (
        "attribute 'first_expert' must be a non-negative integer (the router's id of the first "
        "expert given), got -1")
