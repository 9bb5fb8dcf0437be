"""Serving on the tensor-parallel ranks of a node: each step is one rank's program run by
every rank on the link (sim/multi.py), the KV cache is what one rank's memory holds after its
share of the weights, and the GPU node prices each collective as NCCL does."""
from __future__ import annotations

import json
import math

import pytest

from arch import load_arch
from arch.links import load_link
from compiler.frontend import load_model
from compiler.parallel.partition import device_graphs
from compiler.parallel.plan import make_plan
from compiler.phase import Segment, Step, decode
from tessel.baselines import compare_gpus_on_plan
from tessel.cli import main
from tessel.driver import run
from tessel.node import run_node
from tessel.request import make_request
from tessel.serve import StepShape
from tessel.serve.placement import Placement
from tessel.serve.simulated import (GpuCosts, SimulatedCosts, SimulatedParts, device_memory_bytes,
                                    kv_bytes_per_token, kv_capacity_tokens)
from tessel.targets import TARGETS
from tests.conftest import FIXTURES

TINY = str(FIXTURES / "tiny-qwen3")       # 2 KV heads: one per rank at tp 2
TWO = Placement(2, load_link("tpu-v4-ici"))


def test_each_rank_holds_its_kv_heads_share_of_every_token_after_its_share_of_the_weights():
    model, arch = load_model(TINY), TARGETS["systolic"].load_arch()
    assert kv_bytes_per_token(model, 2, TWO) * 2 == kv_bytes_per_token(model, 2)
    rank = TWO.graph(model, decode(1))
    weights = sum(math.prod(op.type.shape) for op in rank.params) * 2
    memory = device_memory_bytes(arch)
    assert kv_capacity_tokens(model, memory, 2, TWO) == (memory - weights) // kv_bytes_per_token(model, 2, TWO)
    assert kv_capacity_tokens(model, memory, 2, TWO) > 2 * kv_capacity_tokens(model, memory, 2) - 2


@pytest.mark.parametrize("target", ["systolic", pytest.param("dataflow", marks=pytest.mark.slow)])
def test_identical_decodes_on_a_node_cost_the_batched_decode_of_the_node(target):
    """A step of three decodes at one context is the node's batched decode (`tessel sim
    --devices 2`): equal cycles and energy."""
    model, arch = load_model(TINY), TARGETS[target].load_arch()
    cost = SimulatedCosts(model, target, arch, placement=TWO).cost(StepShape((("decode", 1, 9),) * 3))
    request = make_request(model, target, arch, decode(9, 3), numerics=False)
    node = run_node(request, make_plan(model.config, 2, tp=2), TWO.link).node
    assert (cost.seconds, cost.energy_j) == pytest.approx((node.time_s, node.energy_j), rel=1e-12)
    alone = run(make_request(model, target, arch, decode(9, 3), numerics=False)).result
    assert cost.seconds != alone.time_s


def test_a_nodes_step_by_its_parts_is_within_a_few_percent_of_the_whole():
    model, arch = load_model(TINY), TARGETS["systolic"].load_arch()
    whole = SimulatedCosts(model, "systolic", arch, placement=TWO)
    parts = SimulatedParts(model, "systolic", arch, placement=TWO)
    shape = StepShape(tuple(sorted((("decode", 1, 9),) * 3 + (("prefill", 5, 0),))))
    assert parts.cost(shape).seconds == pytest.approx(whole.cost(shape).seconds, rel=0.08)


def test_a_gpu_node_prices_a_step_as_the_plan_on_gpus():
    """Kernels of one rank's graph and each all-reduce as NCCL runs it on the GPU's link, with
    the GPUs idle meanwhile: what `tessel sim --devices` prices for a GPU node."""
    model, gpu = load_model(TINY), load_arch("gpu-a100-80gb")
    step = Step((Segment(1, 9), Segment(1, 9), Segment(5, 0)))
    shape = StepShape(tuple(sorted((("decode", 1, 9),) * 2 + (("prefill", 5, 0),))))
    plan = make_plan(model.config, 2, tp=2)
    graphs = [part.graph for part in device_graphs(model.config, plan, step)]
    node = compare_gpus_on_plan(graphs, plan, 1, 1.0, 1.0, [gpu.name])[gpu.name]
    priced = GpuCosts(model, gpu, ragged=False, tp=2).cost(shape)
    assert (priced.seconds, priced.energy_j) == pytest.approx((node.time_s, node.energy_j), rel=1e-9)
    assert priced.seconds != GpuCosts(model, gpu, ragged=False).cost(shape).seconds


def trace(tmp_path) -> str:
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,5,4\n0,3,6\n0.001,7,3\n")
    return str(path)


@pytest.mark.parametrize("argv, tp, link, arch", [
    pytest.param(("--target", "systolic", "--tp", "2"), 2, "tpu-v4-ici", "systolic-128",
                 marks=pytest.mark.slow),
    pytest.param(("--target", "gpu", "--tp", "2", "--link", "pcie4-x16"), 2, "pcie4-x16",
                 "gpu-a100-80gb", marks=pytest.mark.slow),     # 1.6 s: the fast tier's budget
    pytest.param(("--node", "a100-4", "--kv-bucket", "4"), 4, "nvlink3-a100", "gpu-a100-80gb",
                 marks=pytest.mark.slow)])                     # 1 s: the fast tier's budget
def test_serve_runs_on_tensor_parallel_ranks(capsys, tmp_path, argv, tp, link, arch):
    out = tmp_path / "summary.json"
    model = str(FIXTURES / "tiny-gpt2") if tp == 4 else TINY        # 4 heads
    assert main(["serve", "--model", model, "--trace", trace(tmp_path), *argv,
                 "--json", str(out), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(out.read_text())
    assert f"x {tp} (tp over {link})" in capsys.readouterr().out
    assert summary["target"]["tp"] == tp and summary["target"]["link"] == link
    assert summary["target"]["arch"] == arch and summary["requests"]["finished"] == 3
    events = json.loads((tmp_path / "run" / "trace.json").read_text())["traceEvents"]
    assert {e["tid"] for e in events if e["ph"] == "X"} == set(range(tp))     # a track a rank


@pytest.mark.parametrize("argv, message", [
    (("--tp", "0"), "--tp 0: must be an integer >= 1"),
    (("--link", "nvlink4-h100"), "--link: only with --tp > 1"),
    (("--tp", "2", "--link", "nowhere"), "--link nowhere: unknown link 'nowhere'"),
    (("--tp", "3"), "--tp 3: "),
    (("--node", "sn40l-8", "--tp", "2"), "--tp: not with --node"),
    (("--node", "sn40l-8", "--arch", "sn40l"), "--arch: not with --node"),
    (("--node", "dgx-h100", "--set", "rows=4"), "--set: not with --node dgx-h100"),
    (("--node", "nowhere"), "nowhere"),
    (("--node", "tpu-v4-8"), "--node tpu-v4-8 (8 devices as tensor-parallel ranks): --tp 8: "),
    (("--compare", "systolic", "--tp", "2", "--link", "pcie4-x16"), "--link: not with --compare"),
])
def test_bad_node_settings_are_one_line(capsys, tmp_path, argv, message):
    code = main(["serve", "--model", TINY, "--trace", trace(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err
