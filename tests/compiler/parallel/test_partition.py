"""Device graphs: Megatron's tensor-parallel split and pipeline stages, built by the frontends."""
import numpy as np
import pytest

from compiler.frontend import PRESETS, Model, build_graph, from_text, load_model, to_text
from compiler.frontend.decoder import build_part as decoder_part
from compiler.frontend.gpt2 import build_part as gpt2_part
from compiler.ir import GraphError, OpKind
from compiler.parallel.partition import device_graph, device_graphs
from compiler.parallel.plan import ParallelPlan, PlanError, make_plan
from compiler.parallel.shard import Part, Shard
from compiler.phase import decode, prefill
from compiler.verify import verify
from tests.conftest import FIXTURES
from tests.families.tiny import TINY

LLAMA = TINY["tiny-llama3"]          # 4 query heads, 2 KV heads (GQA), 2 layers, tied head
GPT2 = load_model(str(FIXTURES / "tiny-gpt2"))


@pytest.mark.parametrize("config", [
    pytest.param(c, marks=[] if c.name in ("gpt2", "llama-3.2-1b") else [pytest.mark.slow])
    for c in PRESETS.values()] + list(TINY.values()), ids=lambda c: c.name)
def test_the_whole_model_shard_holds_whole_parameters_and_no_collective(config):
    """Shard() is one device: nothing sliced, nothing to all-reduce. (That its graph is the one
    single-device runs always had is held by the pinned reports' program hashes.)"""
    build = decoder_part if hasattr(config, "num_key_value_heads") else gpt2_part
    for phase in (prefill(3), decode(4)):
        part = build(config, phase, Shard())
        assert part.parts == {}
        assert not part.graph.of_kind(OpKind.ALLREDUCE)


# tiny-mistral has one KV head: it takes no tensor parallelism
SPLITTABLE = [GPT2.config, *(c for c in TINY.values() if c.num_key_value_heads > 1)]


@pytest.mark.parametrize("config", SPLITTABLE, ids=lambda c: c.name)
@pytest.mark.parametrize("tp, pp", [(2, 1), (1, 2), (2, 2)])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_every_device_graph_verifies_and_prints(config, tp, pp):
    plan = make_plan(config, tp * pp, tp=tp, pp=pp)
    for phase in (prefill(5), decode(6, batch=2)):
        for part in device_graphs(config, plan, phase):
            graph = verify(part.graph)
            assert to_text(from_text(to_text(graph))) == to_text(graph)
            assert len(graph.of_kind(OpKind.ALLREDUCE)) == (2 * config.n_layer // pp if tp > 1 else 0)


def test_tensor_parallel_ranks_split_heads_and_mlp_columns():
    plan = make_plan(LLAMA, 2, tp=2)
    full = build_graph(LLAMA, decode(6))
    for rank, part in enumerate(device_graphs(LLAMA, plan, decode(6))):
        g = part.graph
        assert g.name == f"tiny-llama3-decode.rank{rank}of2"
        assert g["layers.0.self_attn.q_proj.weight"].type.shape == (64, 32)    # 2 of 4 query heads
        assert g["layers.0.self_attn.k_proj.weight"].type.shape == (64, 16)    # 1 of 2 KV heads
        assert g["layers.1.k_cache"].type.shape == (1, 1, 6, 16)               # its KV head only
        assert g["layers.0.self_attn.o_proj.weight"].type.shape == (32, 64)    # rows
        assert g["layers.0.mlp.gate_proj.weight"].type.shape == (64, 48)
        assert g["layers.0.mlp.down_proj.weight"].type.shape == (48, 64)
        assert part.parts["layers.0.self_attn.k_proj.weight"] == Part(-1, ((16 * rank, 16 * rank + 16),))
        assert part.parts["layers.0.mlp.down_proj.weight"] == Part(0, ((48 * rank, 48 * rank + 48),))
        for name in ("embed_tokens.weight", "norm.weight", "layers.1.input_layernorm.weight"):
            assert name not in part.parts and g[name].type == full[name].type   # replicated
        reduce = g["layers.0.self_attn.o_proj.allreduce"]
        assert reduce.attrs == (("rank", rank), ("ranks", 2))
        assert [c.name for c in g.consumers(reduce.name)] == ["layers.0.attn.residual"]


def test_gpt2_fused_qkv_is_sliced_per_head_and_row_biases_are_added_once():
    plan = make_plan(GPT2.config, 2, tp=2)
    part = device_graph(GPT2.config, plan, prefill(3), device=1)
    D = GPT2.config.n_embd   # 64: 4 heads of 16, rank 1 holds heads 2 and 3
    q, k, v = (32, 64), (D + 32, D + 64), (2 * D + 32, 2 * D + 64)
    assert part.parts["h.0.attn.c_attn.weight"] == Part(-1, (q, k, v))
    assert part.parts["h.0.attn.c_attn.bias"] == part.parts["h.0.attn.c_attn.weight"]
    g = part.graph
    assert g["h.0.attn.c_proj"].inputs == ("h.0.attn.flat", "h.0.attn.c_proj.weight")     # no bias
    assert g["h.0.attn.c_proj.add_bias"].inputs == ("h.0.attn.c_proj.allreduce", "h.0.attn.c_proj.bias")
    assert "h.0.attn.c_proj.bias" not in part.parts and "h.0.mlp.c_proj.bias" not in part.parts
    assert g["h.0.mlp.c_fc.bias"].type.shape == (128,)
    w = part.weights(GPT2.weights)
    full = np.asarray(GPT2.weights["h.0.attn.c_attn.weight"])
    np.testing.assert_array_equal(w["h.0.attn.c_attn.weight"][:, 32:64], full[:, slice(*k)])
    np.testing.assert_array_equal(w["h.0.attn.c_proj.weight"],
                                  GPT2.weights["h.0.attn.c_proj.weight"][32:])   # rows of heads 2, 3
    assert set(w) == {p.name for p in g.params}


def test_rank_weights_are_slices_of_the_full_seeded_weights():
    model = Model("tiny-llama3", LLAMA, seed=7)
    for part in device_graphs(LLAMA, make_plan(LLAMA, 2, tp=2), prefill(2)):
        weights = part.weights(model.weights)
        for name, piece in part.parts.items():
            np.testing.assert_array_equal(weights[name], piece.take(np.asarray(model.weights[name])))
    joined = np.concatenate([device_graph(LLAMA, make_plan(LLAMA, 2, tp=2), prefill(2), r)
                             .weights(model.weights)["layers.1.mlp.up_proj.weight"] for r in (0, 1)], axis=1)
    np.testing.assert_array_equal(joined, model.weights["layers.1.mlp.up_proj.weight"])


def test_a_tensor_that_does_not_fit_the_graph_is_refused():
    part = device_graph(LLAMA, make_plan(LLAMA, 2, tp=2), prefill(2), 0)
    with pytest.raises(GraphError, match=r"parameter 'norm.weight' of tiny-llama3-prefill.rank0of2: "
                                         r"the full model's tensor gives \[3\], the graph expects \[64\]"):
        part.weights({"norm.weight": np.zeros(3)})["norm.weight"]


def test_pipeline_stages_hand_over_the_hidden_state():
    plan = make_plan(LLAMA, 2, pp=2)
    first, last = device_graphs(LLAMA, plan, decode(4))
    assert [op.name for op in first.graph.inputs] == ["tokens", "layers.0.k_cache", "layers.0.v_cache"]
    assert first.graph.outputs[0] == "layers.0.mlp.residual" and "norm" not in first.graph
    assert [op.name for op in last.graph.inputs] == ["hidden", "layers.1.k_cache", "layers.1.v_cache"]
    assert last.graph["hidden"].type == first.graph["layers.0.mlp.residual"].type
    assert last.graph.outputs[0] == "lm_head" and "embed" not in last.graph
    assert last.graph["lm_head"].inputs == ("norm", "embed_tokens.weight")   # its copy of the tied table


def test_moe_experts_are_split_by_columns_and_reduced_after_the_moe():
    config = TINY["tiny-mixtral"]
    g = device_graph(config, make_plan(config, 2, tp=2), prefill(3), 0).graph
    assert g["layers.0.block_sparse_moe.experts.3.w1.weight"].type.shape == (64, 48)
    assert g["layers.0.block_sparse_moe.experts.3.w2.weight"].type.shape == (48, 64)
    assert g["layers.0.block_sparse_moe.gate.weight"].type.shape == (64, 4)      # router replicated
    assert g["layers.0.block_sparse_moe.out"].inputs == ("layers.0.block_sparse_moe.allreduce",)


@pytest.mark.parametrize("dispatch", ["all_to_all", "replicated"])
def test_expert_parallel_ranks_hold_whole_experts_of_their_own(dispatch):
    config = TINY["tiny-mixtral"]
    plan = make_plan(config, 2, tp=2, ep=2, dispatch=dispatch)
    half = config.num_experts // 2
    for rank in (0, 1):
        part = device_graph(config, plan, prefill(4), rank)
        moe = part.graph["layers.0.block_sparse_moe"]
        assert moe.attr("first_expert") == rank * half and len(moe.inputs) == 2 + 3 * half
        held = {int(name.split(".")[4]) for name in moe.inputs[2:]}
        assert held == set(range(rank * half, (rank + 1) * half))
        assert not any(".experts." in name for name in part.parts)    # whole, not sliced
        after = part.graph.consumers(moe.name)[0]
        if dispatch == "all_to_all":       # its own 2 of the 4 tokens, all-gathered after
            assert (moe.attr("ranks"), moe.attr("rank")) == (2, rank)
            assert part.graph[moe.inputs[0]].type.shape[0] == 2
            assert after.kind is OpKind.ALL_GATHER and after.type.shape[0] == 4
        else:                              # every token; the partial outputs all-reduced
            assert moe.attr("ranks") is None and after.kind is OpKind.ALLREDUCE
    with pytest.raises(GraphError, match="--ep-dispatch all_to_all: the 3 tokens of the pass "
                                         "do not split over 2 ranks"):
        device_graph(config, make_plan(config, 2, tp=2, ep=2), prefill(3), 0)
    with pytest.raises(PlanError, match=r"--ep 2: a stage's experts are spread over its "
                                        r"tensor-parallel ranks, so --ep must equal --tp \(1\)"):
        make_plan(config, 2, pp=2, ep=2)
    with pytest.raises(GraphError, match="shard: 2 cannot be split over 4 ranks"):
        device_graph(LLAMA, ParallelPlan(4, tp=4), prefill(3), 0)     # unchecked plan
