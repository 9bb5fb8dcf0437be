"""`tessel compare --quant` (tessel/compare_quant.py): each recipe's row is the reference
executor's quantised error, its bytes by role and its GPU price, each as the module that owns
it computes it alone; `none` is the unquantised baseline."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from compiler.quant import plan, recipe_reports, resolve_recipe, role_bytes
from sim.gpu import gpu_baseline
from tessel.cli import main
from tessel.compare_quant import compare_recipes
from tessel.gpu_kernels import graph_kernels
from tessel.gpu_quant import narrowing
from tessel.driver import run
from tessel.request import default_tokens, make_request
from tessel.targets import TARGETS

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny-gpt2")


def test_each_row_is_what_its_owners_compute_alone():
    model, phase = load_model(TINY), decode(6)
    tokens = default_tokens(model, phase)
    rows = {r.recipe: r for r in compare_recipes(model, phase, ["none", "w8a8", "w4a16:g32"],
                                                   ["gpu-a100-80gb"], "graph", tokens)}
    assert (rows["none"].relative_error, rows["none"].top1_agreement) == (0.0, 1.0)
    a100 = load_arch("gpu-a100-80gb")
    graph, one = model.graph(phase), model.graph(prefill(1))
    none = gpu_baseline(graph_kernels(graph), a100, "graph")
    assert rows["none"].gpu["gpu-a100-80gb"] == {"time_s": none.time_s, "energy_j": none.energy_j}
    for name in ("w8a8", "w4a16:g32"):
        recipe = resolve_recipe(name)
        report, = recipe_reports(model, [recipe], tokens, np.float32)
        assert (rows[name].relative_error, rows[name].top1_agreement) == (
            report.relative_error, report.top1_agreement)
        b = role_bytes(one, plan(one, recipe, model.config.n_layer))
        assert rows[name].weights_ratio == b.weights / b.weights_bf16
        priced = gpu_baseline(graph_kernels(graph, narrowing(graph, recipe)), a100, "graph")
        assert rows[name].gpu["gpu-a100-80gb"]["time_s"] == priced.time_s
    # narrower weights never cost a memory-bound decode more time: on the efficiency curve (by
    # tiles the tiny model's GEMVs are as long on the tensor cores, a 64-row tile for one row, as
    # on DRAM, and the dequantisation shows)
    curve = dataclasses.replace(a100, tiled_gemm=None)
    narrow = narrowing(graph, resolve_recipe("w4a16:g32"))
    assert (gpu_baseline(graph_kernels(graph, narrow), curve, "graph").time_s
            <= gpu_baseline(graph_kernels(graph), curve, "graph").time_s)


def test_the_command_prints_a_row_per_recipe_and_writes_json(capsys, tmp_path):
    out = tmp_path / "q.json"
    assert main(["compare", "--model", TINY, "--phase", "decode", "--kv", "4", "--quant",
                 "none,w8a8,kv:bfp8", "--gpu", "t4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tessel compare --quant" in text and "gpu-t4 speedup" in text
    assert [line.split()[0] for line in text.splitlines()[3:6]] == ["none", "w8a8", "kv:bfp8"]
    rows = json.loads(out.read_text())
    assert [r["recipe"] for r in rows] == ["none", "w8a8", "kv:bfp8"]
    assert rows[2]["kv_bytes_per_token"] < rows[0]["kv_bytes_per_token"]


def test_a_mixture_of_experts_is_routed_for_the_gpus_and_the_targets(capsys):
    """A MoE model's recipes side by side (this failed: the GPU kernels of an unrouted moe op),
    the GPUs and targets routed by --routing."""
    mixtral = str(Path(TINY).parent / "tiny-mixtral")
    assert main(["compare", "--model", mixtral, "--phase", "decode", "--kv", "8", "--quant",
                 "none,w8a8,w4a16", "--gpu", "a100-80gb", "--targets", "systolic:systolic-32",
                 "--routing", "zipf:1.2", "--no-functional"]) == 0
    lines = capsys.readouterr().out.splitlines()[3:6]
    assert [line.split()[0] for line in lines] == ["none", "w8a8", "w4a16"]


@pytest.mark.parametrize("recipe, per_channel", [(None, 2), ("w8a8", 1)])
def test_the_activation_bytes_count_each_tokens_experts(recipe, per_channel):
    """A token's top_k experts each read its row of x (gate, up) and their gated hidden
    (down): k (D + F) channels a layer, in BF16 or, under w8a8, one byte each and an fp16
    scale per row."""
    model = load_model(str(Path(TINY).parent / "tiny-mixtral"))
    one = model.graph(prefill(1))
    planned = plan(one, resolve_recipe(recipe or "w8a16"), model.config.n_layer)
    if recipe is None:
        planned = dataclasses.replace(planned, experts=dict.fromkeys(planned.experts))
    dense = dataclasses.replace(planned, experts={})
    moes = [op for op in one.ops if op.kind.value == "moe"]
    d, f, k = one[moes[0].inputs[0]].type.shape[-1], one[moes[0].inputs[2]].type.shape[-1], moes[0].attr("top_k")
    scale = 0 if recipe is None else 2                  # an fp16 scale per row
    want = len(moes) * k * ((d + f) * per_channel + 2 * scale)
    assert role_bytes(one, planned).activations_per_token - role_bytes(one, dense).activations_per_token == want


def test_targets_get_a_column_each_from_their_quantised_programs(capsys):
    model, phase = load_model(TINY), decode(6)
    rows = {r.recipe: r for r in compare_recipes(model, phase, ["none", "w4a16:g32"], [], "graph",
                                                   None, ["systolic", "dataflow"])}
    for target in ("systolic", "dataflow"):
        for name, quant in (("none", None), ("w4a16:g32", "w4a16:g32")):
            alone = run(make_request(model, target, TARGETS[target].load_arch(), phase,
                                     numerics=False, quant=quant)).result
            assert rows[name].targets[target] == {"time_s": alone.time_s, "energy_j": alone.energy_j}
    assert main(["compare", "--model", TINY, "--phase", "decode", "--kv", "6", "--quant",
                 "none,w4a16:g32", "--targets", "systolic", "--no-functional"]) == 0
    assert "systolic speedup" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--quant", "none,w4a16:g32", "--targets", "pim"], "on the PIM target a scale group holds whole MAC columns"),
    (["--quant", "none,kv:bfp8", "--targets", "systolic"], "reaches across its 4 heads of 16, which is not built on the targets yet"),
    (["--quant", "none,w8a16", "--targets", "tpu"], "--targets: unknown target 'tpu'"),
    (["--quant", "none,w8a8", "--targets", "systolic"], "and systolic-128 has no int8 MACs (arch field mac_formats: none)"),
    (["--quant", "none,w8a8", "--targets", "systolic:pim-gpt"], "architecture 'pim-gpt' is for target 'pim', not 'systolic'"),
    (["--quant", "w8a16", "--nodes", "dgx-h100"], "--nodes: not with --quant"),
    (["--quant", "w8a8,w8a8"], "--quant: recipe 'w8a8' given twice"),
    (["--quant", ","], "--quant: give one or more recipes"),
    (["--quant", "fp8", "--gpu", "a100-80gb"], "has no field 'tensor_tops.fp8'"),
])
def test_bad_recipe_comparisons_are_one_line(capsys, argv, message):
    assert main(["compare", "--model", TINY, "--phase", "decode", "--kv", "4", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_target_may_name_its_preset(capsys):
    """systolic-32 has int8 and int4 MACs: w8a8 and w4a4 run there, beside the default presets."""
    assert main(["compare", "--model", TINY, "--phase", "decode", "--kv", "4", "--no-functional",
                 "--quant", "none,w8a8,w4a4", "--targets", "systolic:systolic-32,dataflow"]) == 0
    out = capsys.readouterr().out
    assert "systolic:systolic-32 speedup" in out and "dataflow speedup" in out


@pytest.mark.parametrize("recipe", ["w8a8", "w4a16"])
def test_the_gpus_keep_a_routed_graphs_router_at_full_precision(recipe):
    """A routed graph holds each router's linear but not the moe op that names it: the GPU
    plan keeps it full as the unrouted one does (it was quantised), and every expert linear
    is narrowed."""
    from compiler.passes.routing import moe_routers
    from tessel.driver import policy_routed
    model, phase = load_model(str(Path(TINY).parent / "tiny-mixtral")), decode(8)
    plain = model.graph(phase)
    routed, _ = policy_routed(plain, "uniform")
    routers = moe_routers(plain)
    assert routers and all(name in routed for name in routers)
    kept = narrowing(routed, recipe, model.config.n_layer, routers).plan
    assert not routers & set(kept.activations)
    assert not {routed[name].inputs[1] for name in routers} & set(kept.weights)
    lost = narrowing(routed, recipe, model.config.n_layer).plan     # without them: quantised
    assert routers <= set(lost.activations)
    experts = [op.name for op in routed.ops if op.kind.value == "linear" and op.name not in routers
               and ".expert" in op.name]
    assert experts and set(experts) <= set(kept.activations)


def test_tessel_sim_and_compare_hand_the_gpus_the_routers(monkeypatch, capsys):
    """`tessel sim --gpu-quant` and `tessel compare --quant` on a mixture of experts plan the
    GPU kernels of the routed graph with the model's routers kept full, as the request's
    check on the unrouted graph does."""
    import tessel.compare_quant
    import tessel.gpu_quant
    seen = []

    def spy(graph, recipe, n_layers=None, routers=frozenset()):
        from compiler.passes.routing import moe_routers
        seen.append((bool(moe_routers(graph)), routers | moe_routers(graph)))
        return narrowing(graph, recipe, n_layers, routers)
    monkeypatch.setattr(tessel.gpu_quant, "narrowing", spy)
    monkeypatch.setattr(tessel.compare_quant, "narrowing", spy)
    mixtral = str(Path(TINY).parent / "tiny-mixtral")
    want = moe_routers_of(mixtral)
    assert main(["sim", "--model", mixtral, "--target", "systolic", "--arch", "systolic-32",
                 "--phase", "decode", "--kv", "8", "--no-functional", "--routing", "uniform",
                 "--gpu", "a100-80gb", "--gpu-quant", "w8a8"]) == 0
    assert main(["compare", "--model", mixtral, "--phase", "decode", "--kv", "8", "--quant",
                 "none,w8a8", "--gpu", "a100-80gb", "--routing", "uniform"]) == 0
    capsys.readouterr()
    assert [unrouted for unrouted, _ in seen].count(False) == 2     # the two routed graphs
    assert all(routers == want for _, routers in seen)


def moe_routers_of(path: str) -> frozenset[str]:
    from compiler.passes.routing import moe_routers
    return moe_routers(load_model(path).graph(decode(8)))
