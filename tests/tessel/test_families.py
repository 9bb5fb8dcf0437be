"""The Llama-family presets on the user-facing paths that need no target lowering: parameter
counts in `tessel graph --json`, the numerics default, --routing in requests and sweeps, the
GPU kernel list of dense and routed graphs, the workload lines of the reports, model switches.
Whole-model simulations are in test_families_end_to_end.py (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from arch import load_arch
from compiler.frontend import PRESETS, Model, build_graph, load_model
from compiler.ir import GraphError
from compiler.passes.routing import Routing, moe_ops, policy_routing, route_graph
from compiler.phase import decode, prefill
from sim.result import SimResult
from tessel.baselines import compare_gpus, resident_bytes
from tessel.cli import main
from tessel.coe import expert
from tessel.compare import compare_rows
from tessel.driver import policy_routed, workload_facts
from tessel.gpu_kernels import graph_kernels, model_kernels
from tessel.report import render_result, workload_rows
from tessel.request import make_request, routing_policy
from tessel.sweep import SweepError, load_spec
from tessel.sweep.points import tasks
from tests.families.tiny import TINY

ROOT = Path(__file__).parents[2]
SYSTOLIC = load_arch("systolic-128")

# ../shared/reference/models.md: total parameters and, for MoE, active per token
PUBLISHED = {
    "llama-3.2-1b": (1_235_814_400, None), "llama-3.2-3b": (3_212_749_824, None),
    "llama-3.1-8b": (8_030_261_248, None), "llama-3.1-70b": (70_553_706_496, None),
    "mistral-7b": (7_241_732_096, None), "qwen2.5-0.5b": (494_032_768, None),
    "qwen2.5-7b": (7_615_616_512, None), "qwen3-8b": (8_190_735_360, None),
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248),
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704),
}


def _graph_json(capsys, *argv: str) -> dict:
    assert main(["graph", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# two presets in the fast tier (a dense and a MoE one); the rest build whole graphs, so slow
# (tests/compiler/test_decoder.py checks every preset's count on a one-layer graph quickly)
FAST = ("llama-3.2-1b", "mixtral-8x7b")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in PUBLISHED])
def test_graph_json_reports_the_published_parameter_counts(capsys, name):
    total, active = PUBLISHED[name]
    report = _graph_json(capsys, "--model", name, "--seq", "1")
    assert report["params"] == total                  # the graph's parameter ops, summed
    assert PRESETS[name].n_params == total            # the config's count, as Hugging Face's
    assert report.get("active_params") == active      # MoE only


def test_graph_params_of_gpt2_and_of_a_graph_file(capsys):
    assert _graph_json(capsys, "--model", "gpt2", "--seq", "1")["params"] == 124_439_808
    report = _graph_json(capsys, "--model", str(ROOT / "examples/mlp.graph"))
    graph = load_model(str(ROOT / "examples/mlp.graph")).graph()
    assert report["params"] == sum(op.type.numel for op in graph.params) > 0
    assert main(["graph", "--model", "mixtral-8x7b", "--phase", "decode", "--kv", "4"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("46,702,792,704 parameters (12,879,925,248 active per token)")


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_new_presets_run_timing_only_by_default(name):
    request = make_request(load_model(name), "systolic", SYSTOLIC, decode(8))
    assert not request.numerics and request.tokens is None
    assert request.routing == ("uniform" if PUBLISHED[name][1] else None)


def test_tiny_models_run_numerically_and_route_by_the_router():
    dense = make_request(Model("tiny-llama3", TINY["tiny-llama3"]), "systolic", SYSTOLIC, prefill(4))
    moe = make_request(Model("tiny-mixtral", TINY["tiny-mixtral"]), "systolic", SYSTOLIC, prefill(4))
    assert dense.numerics and dense.routing is None
    assert moe.numerics and moe.routing == "router"
    timed = make_request(Model("tiny-mixtral", TINY["tiny-mixtral"]), "systolic", SYSTOLIC,
                         prefill(4), numerics=False, routing="zipf:1.5")
    assert timed.routing == "zipf:1.5"


def test_a_graph_file_with_moe_ops_is_routed_by_the_policy(tmp_path):
    from compiler.frontend import to_text
    path = tmp_path / "moe.graph"
    path.write_text(to_text(build_graph(TINY["tiny-qwen3-moe"], prefill(3))))
    model = load_model(str(path))
    assert routing_policy(model, numerics=False, routing=None) == "uniform"
    assert routing_policy(model, numerics=False, routing="zipf:2") == "zipf:2"
    with pytest.raises(GraphError, match="has no experts to route"):
        routing_policy(load_model(str(ROOT / "examples/mlp.graph")), numerics=False, routing="uniform")


# -- GPU baseline ---------------------------------------------------------------------------
def test_every_new_op_maps_to_a_gpu_kernel():
    graph, _ = policy_routed(build_graph(TINY["tiny-qwen3-moe"], decode(5)), "uniform")
    kinds = {}
    for op in graph.ops:
        kinds.setdefault(op.kind.value, op.name)
    kernels = {k.name: k.kind for k in graph_kernels(graph)}
    expected = {"rmsnorm": "rmsnorm", "rope": "rope", "gather": "embedding", "concat": "copy"}
    for op_kind, kernel_kind in expected.items():
        assert kernels[kinds[op_kind]] == kernel_kind, op_kind
    silu = graph[kinds["silu"]]                   # silu(gate) * up: one kernel, the mul's
    assert silu.name not in kernels and kernels[graph.consumers(silu.name)[0].name] == "silu-gate"
    dense = graph_kernels(build_graph(TINY["tiny-llama3"], prefill(20)))
    assert {k.kind for k in dense} >= {"rmsnorm", "rope", "silu-gate", "elementwise", "gemm",
                                       "attention-matmul"}
    normed = build_graph(TINY["tiny-mixtral"], prefill(3))        # norm_topk_prob: a div op
    routed, _ = policy_routed(normed, "uniform")
    div = next(op.name for op in routed.ops if op.kind.value == "div")
    assert {k.name: k.kind for k in graph_kernels(routed)}[div] == "elementwise"


def test_an_unrouted_moe_graph_has_no_gpu_kernels():
    with pytest.raises(GraphError, match=r"\(moe\): the GPU baseline has no kernel for it \(route"):
        graph_kernels(build_graph(TINY["tiny-mixtral"], prefill(2)))
    with pytest.raises(GraphError, match="kernels depend on its routing"):
        model_kernels(TINY["tiny-mixtral"], prefill(2))


def test_grouped_query_heads_are_rows_of_one_gemm_per_kv_head():
    config = PRESETS["llama-3.2-1b"]                   # 32 query heads, 8 KV heads, head_dim 64
    kernels = {k.name: k for k in graph_kernels(build_graph(config, decode(100)))}
    scores, context = kernels["layers.0.self_attn.scores"], kernels["layers.0.self_attn.context"]
    assert (scores.m, scores.n, scores.k, scores.batch) == (4, 101, 64, 8)
    assert (context.m, context.n, context.k, context.batch) == (4, 64, 101, 8)
    assert scores.flops == 2 * 32 * 101 * 64


@pytest.mark.parametrize("name, phase", [("tiny-qwen3", prefill(6)), ("tiny-mistral", decode(9)),
                                         ("llama-3.2-1b", decode(16))])
def test_model_kernels_of_a_decoder_equal_its_whole_graphs(name, phase):
    config = TINY.get(name) or PRESETS[name]
    assert model_kernels(config, phase) == graph_kernels(build_graph(config, phase))


def test_gpu_rows_of_a_routed_mixtral_and_the_memory_they_would_need():
    graph = build_graph(PRESETS["mixtral-8x7b"], decode(16))
    routed, routing = policy_routed(graph, "uniform")
    fake = _result(time_s=0.01, workload={})
    rows = compare_gpus(routed, fake, ("gpu-t4", "gpu-h200"))
    assert set(rows) == {"gpu-t4", "gpu-h200"}
    assert rows["gpu-t4"].time_s > rows["gpu-h200"].time_s > 0
    # every expert's weights stay resident, routed to or not: 46.7 G parameters in fp16
    assert resident_bytes(routed) >= 2 * PRESETS["mixtral-8x7b"].n_params
    assert "gpu-t4 holds 16 GiB; the weights and inputs need 87" in rows["gpu-t4"].memory_note
    assert rows["gpu-h200"].memory_note == ""
    assert "memory_note" not in fake.to_json()
    small = compare_gpus(build_graph(PRESETS["llama-3.2-1b"], decode(16)), fake, ("gpu-t4",))
    assert small["gpu-t4"].memory_note == "" and "memory_note" not in small["gpu-t4"].to_json()
    # only the routed experts' GEMMs run: the 2 of 8 each layer's one token chose
    chosen = {f"{op}.expert{e}.down" for op, choice in routing.choices.items() for e in choice.ravel()}
    kernels = graph_kernels(routed)
    assert len(chosen) == 32 * 2
    assert {k.name for k in kernels if k.name.endswith(".down")} == chosen


# -- reports ---------------------------------------------------------------------------------
def _result(time_s: float, workload: dict) -> SimResult:
    return SimResult("systolic", "systolic-128", int(time_s * 1e9), 1e9, 10, {"static": 1e-3},
                     {"dma": 1}, {"dma": 0.5}, 0.1, 100, {"dram_read": 1}, (), {}, (),
                     workload=workload)


def test_workload_facts_kv_bytes_and_routing_summary():
    config = PRESETS["llama-3.1-8b"]
    facts = workload_facts(Model("llama-3.1-8b", config), build_graph(config, decode(4)), None, 2)
    assert facts == {"kv_bytes_per_token": 131_072}        # 2 x 32 layers x 8 heads x 128 x 2 B
    config = PRESETS["mixtral-8x7b"]
    graph = build_graph(config, decode(4))
    facts = workload_facts(Model("mixtral-8x7b", config), graph, policy_routing(graph, "uniform"), 2)
    expert_bytes = 3 * 4096 * 14336 * 2
    assert facts["expert_weight_bytes"] == sum(facts["experts_touched"]) * expert_bytes
    assert facts["experts_touched"] == [2] * 32 and sum(facts["tokens_per_expert"]) == 64


def test_text_report_shows_workload_lines_only_when_present():
    assert workload_rows({}) == []
    plain = render_result(_result(1e-3, {}), "t")
    assert "workload" not in plain and "KV cache per token" not in plain
    mixtral = {"kv_bytes_per_token": 131072, "routing": "zipf:1.2 (seed 0)",
               "tokens_per_expert": [40, 12, 6, 3, 2, 1, 0, 0], "experts_touched": [5, 6, 4],
               "expert_weight_bytes": 15 * 352321536}
    text = render_result(_result(1e-3, mixtral), "t")
    for line in ("KV cache per token   131,072 B", "routing              zipf:1.2 (seed 0)",
                 "experts touched      4 .. 6 of 8", "tokens per expert    40 12 6 3 2 1 0 0",
                 "expert weights read  5,284,823,040 B"):
        assert line in text, line
    wide = dict(mixtral, tokens_per_expert=[1] * 100 + [9] * 28)
    assert "min 1, max 9 (JSON: every expert)" in "\n".join(workload_rows(wide))


def test_compare_rows_show_workload_only_when_a_result_has_it():
    plain = [r[0] for r in compare_rows([_result(1e-3, {})], 1)]
    assert "KV cache per token" not in plain and "routing" not in plain
    rows = {r[0]: r[1:] for r in compare_rows([_result(1e-3, {"kv_bytes_per_token": 32768,
                                                               "routing": "uniform (seed 0)"}),
                                               _result(2e-3, {})], 1)}
    assert rows["KV cache per token"] == ("32,768 B", "-")
    assert rows["routing"] == ("uniform (seed 0)", "-")


# -- sweeps and model switches ---------------------------------------------------------------
def test_the_llama_example_sweep_parses():
    spec = load_spec(ROOT / "sweeps/llama-decode-bandwidth.toml")
    assert [m.label for m in spec.models] == ["llama-3.2-1b"] and len(tasks(spec)) == 8
    assert all(t.routing is None for t in tasks(spec))


def _spec(tmp_path, models: str, routing: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f'base = "systolic-32"\nmodels = {models}\n{routing}'
                    '[[phases]]\nkind = "decode"\nkv = 8\n[parameters]\nrows = [16, 32]\n')
    return path


def test_sweep_routing_is_the_moe_models_policy_and_part_of_their_keys(tmp_path):
    plain = tasks(load_spec(_spec(tmp_path, '["gpt2", "mixtral-8x7b"]')))
    zipf = tasks(load_spec(_spec(tmp_path, '["gpt2", "mixtral-8x7b"]', 'routing = "zipf:1.2"\n')))
    assert [t.routing for t in plain] == [None, "uniform"] * 2
    assert [t.routing for t in zipf] == [None, "zipf:1.2"] * 2
    assert plain[0].key == zipf[0].key and plain[1].key != zipf[1].key   # dense keys unchanged
    (tmp_path / "r.json").write_text('{"experts": []}')
    spec = load_spec(_spec(tmp_path, '["mixtral-8x7b"]', 'routing = "file:r.json"\n'))
    assert tasks(spec)[0].routing == f"file:{tmp_path / 'r.json'}" and spec.routing_digest
    with pytest.raises(SweepError, match=r"routing: expected a policy \(uniform, zipf:S, file:PATH\), got 3"):
        load_spec(_spec(tmp_path, '["mixtral-8x7b"]', "routing = 3\n"))


def test_model_switch_sizes_come_from_the_presets():
    assert expert("llama-3.1-8b").weight_bytes == 2 * 8_030_261_248
    assert expert("mixtral-8x7b").weight_bytes == 2 * 46_702_792_704     # every expert is loaded
    assert expert("gpt2").weight_bytes == 2 * 124_439_808


def test_routed_graphs_keep_every_expert_weight_as_a_source():
    graph = build_graph(TINY["tiny-mixtral"], prefill(1))
    routed = route_graph(graph, Routing({op.name: [[0, 1]] for op in moe_ops(graph)}, "test"))
    assert {op.name for op in routed.params} == {op.name for op in graph.params}


def test_the_bench_command_lines_are_valid_tessel_sim_invocations(tmp_path):
    from tessel.bench import WORKLOADS
    from tessel.cli import build_parser
    whole = [w for w in WORKLOADS if w.whole_process]
    assert {(w.model, w.target) for w in whole} >= {
        ("llama-3.2-1b", "systolic"), ("llama-3.2-1b", "pim"), ("llama-3.2-1b", "dataflow"),
        ("mixtral-8x7b", "dataflow"), ("llama-3.1-8b", "systolic")}
    for w in whole:
        args = build_parser().parse_args(w.argv(tmp_path / "r.json")[3:])
        target = args.target if w.node is None else None      # a node preset names its own
        assert (args.model, target or w.target, args.no_functional, args.node) == (
            w.model, w.target, True, w.node)
        assert list(args.set) == list(w.overrides) and args.quant == w.quant
