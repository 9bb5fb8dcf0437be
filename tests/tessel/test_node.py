"""`tessel sim --devices N`: a tensor-parallel plan compiled for each target, simulated on one
node, its logits against one device's reference and its figures per device."""

from __future__ import annotations

import json

import pytest

from tessel.cli import main
from tests.conftest import FIXTURES

BF16_TOLERANCE = 3e-2          # as one device: BF16 storage, fp32 accumulation (docs/validation.md)
LLAMA = str(FIXTURES / "tiny-qwen3")     # GQA with 2 KV heads: one per rank at tp 2


def sim(capsys, tmp_path, *argv: str) -> dict:
    out = tmp_path / "node.json"
    code = main(["sim", *argv, "--gpu", "none", "--json", str(out)])
    capsys.readouterr()
    assert code == 0
    return json.loads(out.read_text())


GPT2 = str(FIXTURES / "tiny-gpt2")      # a Hugging Face GPT-2: fused c_attn, 4 heads, 2 layers


@pytest.mark.parametrize("target", ["systolic", pytest.param("pim", marks=pytest.mark.slow),
                                    pytest.param("dataflow", marks=pytest.mark.slow)])
def test_gpt2_split_four_ways_computes_one_devices_logits(capsys, tmp_path, target):
    report = sim(capsys, tmp_path, "--model", GPT2, "--target", target, "--seq", "5",
                 "--devices", "4", "--tp", "2", "--pp", "2")
    assert report["logits_rel_error"] < BF16_TOLERANCE


MOE = str(FIXTURES / "tiny-qwen3-moe")   # experts and a dense layer (HF checkpoint)


@pytest.mark.parametrize("target, tp, pp", [
    ("systolic", 2, 1), pytest.param("dataflow", 2, 1, marks=pytest.mark.slow),
    pytest.param("pim", 1, 2, marks=pytest.mark.slow)])    # tp 2 leaves PIM 8-wide experts
def test_a_mixture_of_experts_routes_every_device_as_the_whole_router(capsys, tmp_path, target,
                                                                       tp, pp):
    report = sim(capsys, tmp_path, "--model", MOE, "--target", target, "--seq", "4",
                 "--devices", "2", "--tp", str(tp), "--pp", str(pp))
    assert report["logits_rel_error"] < BF16_TOLERANCE


PREFILL, DECODE = ("--seq", "4"), ("--phase", "decode", "--kv", "4")


@pytest.mark.parametrize("target, phase, dispatch", [
    ("systolic", PREFILL, "all_to_all"),
    pytest.param("pim", PREFILL, "all_to_all", marks=pytest.mark.slow),
    pytest.param("dataflow", PREFILL, "all_to_all", marks=pytest.mark.slow),
    pytest.param("systolic", DECODE, "replicated", marks=pytest.mark.slow),
    pytest.param("dataflow", DECODE, "replicated", marks=pytest.mark.slow)])
def test_expert_parallelism_computes_one_devices_logits(capsys, tmp_path, target, phase, dispatch):
    """Each rank holds half the experts whole. all_to_all: each rank routes its half of the
    tokens, sends every pair to its expert's rank and back, and the outputs are all-gathered;
    replicated (a decode step's one token cannot be split, so the default there): every rank
    runs its experts on the tokens that chose them, and the partial outputs meet in the
    all-reduce."""
    report = sim(capsys, tmp_path, "--model", MOE, "--target", target, *phase,
                 "--devices", "2", "--tp", "2", "--ep", "2")
    assert report["logits_rel_error"] < BF16_TOLERANCE
    assert report["plan"]["ep"] == 2 and report["plan"]["dispatch"] == dispatch
    kinds = [c["kind"] for c in report["collectives"]]
    exchanges = kinds.count("all_to_all")
    assert exchanges == (2 * kinds.count("all_gather") if dispatch == "all_to_all" else 0)
    assert dispatch == "replicated" or exchanges >= 2
    assert set(report["gpu"]) and all(g["time_s"] > 0 for g in report["gpu"].values()) \
        if report["gpu"] else True


@pytest.mark.parametrize("argv, message", [
    (("--ep-dispatch", "all_to_all", "--seq", "3"),
     "--ep-dispatch all_to_all: the 3 tokens of the pass do not split over 2 ranks"),
    (("--ep-dispatch", "replicated", "--ep", "1", "--seq", "4"), "--ep-dispatch: only with --ep > 1"),
])
def test_expert_dispatch_that_cannot_run_is_refused_in_one_line(capsys, argv, message):
    args = ["sim", "--model", MOE, "--devices", "2", "--tp", "2", "--no-functional",
            "--gpu", "none", *argv]
    if "--ep" not in argv:
        args += ["--ep", "2"]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err


def test_a_mixture_of_experts_times_by_the_routing_policy(capsys, tmp_path):
    report = sim(capsys, tmp_path, "--model", MOE, "--seq", "4", "--devices", "2",
                 "--no-functional", "--routing", "zipf:1.2")
    assert report["cycles"] > 0 and len(report["devices"]) == 2


LAYERS = json.loads((FIXTURES / "tiny-qwen3" / "config.json").read_text())["num_hidden_layers"]


FAST = {("tp2xpp2", "prefill"), ("tp2", "decode")}      # the rest run in the full suite
PLANS = [pytest.param(target, phase, tp, pp, id=f"{name}-{kind}-{target}",
                      marks=[] if (name, kind) in FAST and (kind == "prefill" or target == "systolic")
                      else [pytest.mark.slow])
         for name, tp, pp in (("tp2", 2, 1), ("pp2", 1, 2), ("tp2xpp2", 2, 2))
         for kind, phase in (("prefill", ("--seq", "5")), ("decode", ("--phase", "decode", "--kv", "4")))
         for target in ("systolic", "pim", "dataflow")]


@pytest.mark.parametrize("target, phase, tp, pp", PLANS)
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_a_plan_computes_one_devices_logits(capsys, tmp_path, target, phase, tp, pp):
    report = sim(capsys, tmp_path, "--model", LLAMA, "--target", target, *phase,
                 "--devices", str(tp * pp), "--tp", str(tp), "--pp", str(pp))
    assert report["logits_rel_error"] < BF16_TOLERANCE
    kinds = [c["kind"] for c in report["collectives"]]
    assert kinds.count("all_reduce") == (2 * LAYERS if tp > 1 else 0)   # 2 a layer, a stage each
    assert kinds.count("send_recv") == tp * (pp - 1)
    for c in report["collectives"]:
        assert c["members"] in ([[s * tp, s * tp + 1] for s in range(pp)] if c["kind"] == "all_reduce"
                                else [[r, r + tp] for r in range(tp)])
    for d, device in enumerate(report["devices"]):
        assert device["cycles"] == report["cycles"]
        mine = [c["cycles"] for c in report["collectives"] if d in c["members"]]
        assert device["link_busy_cycles"] == sum(mine)
        assert 0 <= device["exposed_comm_cycles"] <= device["link_busy_cycles"]


def test_pipeline_stages_run_one_after_another_with_the_hand_off_between():
    """One micro-batch: stage 1 starts when stage 0 has sent its hidden state, so the node
    takes each stage's own time plus one hand-off (exact on a machine whose timing does not
    depend on the absolute cycle, unlike PIM's refresh)."""
    import math

    from arch import load_arch
    from arch.links import load_link
    from compiler.frontend import load_model
    from compiler.parallel.handoff import stage_program
    from compiler.parallel.partition import device_graphs
    from compiler.parallel.plan import make_plan
    from compiler.phase import prefill
    from sim.collectives import collective_cost
    from sim.machines.systolic.machine import SystolicMachine
    from sim.multi import simulate_node
    from sim.simulate import simulate
    from tessel.driver import compile_model_graph

    model, arch, link = load_model(LLAMA), load_arch("systolic-32"), load_link("tpu-v4-ici")
    plan = make_plan(model.config, 2, pp=2)
    parts = device_graphs(model.config, plan, prefill(6))
    lowered = [compile_model_graph(model, p.graph, "systolic", arch) for p in parts]
    alone = [simulate(low.program, SystolicMachine(arch), functional=False).result.cycles
             for low in lowered]
    programs = [stage_program(low, p.graph, 1, first=s == 0, last=s == 1)
                for s, (low, p) in enumerate(zip(lowered, parts))]
    node = simulate_node(programs, [SystolicMachine(arch)] * 2, link)
    hidden = parts[0].graph[parts[0].graph.outputs[0]].type.numel * 2
    hand_off = math.ceil(collective_cost(link, "send_recv", hidden, 2).seconds * arch.clock_hz - 1e-9)
    assert node.cycles == alone[0] + hand_off + alone[1]
    assert node.idle_cycles == (alone[1], alone[0])     # each waits out the other stage


@pytest.mark.slow
def test_timing_only_node_reports_tokens_per_second_and_gpu_nodes(capsys, tmp_path):
    out = tmp_path / "node.json"
    assert main(["sim", "--model", "gpt2", "--seq", "8", "--devices", "2", "--no-functional",
                 "--gpu", "h100-sxm", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["tokens_per_s"] == pytest.approx(8 / report["time_s"])
    assert report["link"]["name"] == "tpu-v4-ici" and report["plan"]["tp"] == 2
    assert "gpu-h100-sxm" in report["gpu"] and "GPU nodes (2 GPUs" in text


@pytest.mark.parametrize("argv, message", [
    (["--tp", "2"], r"^error: --tp: only with --devices N$"),
    (["--devices", "2", "--link", "nvlink9"], r"unknown link 'nvlink9'"),
    (["--devices", "5"], r"--tp 5: .*not divisible by 5"),
    (["--devices", "2", "--pp", "2", "--tp", "1", "--microbatches", "3"],
     r"--microbatches 3: does not divide --batch 1"),
    (["--microbatches", "2"], r"^error: --microbatches: only with --devices N$"),
    (["--devices", "2", "--set-link", "link_bw_gbps=-1"], r"link_bw_gbps"),
])
def test_bad_plans_are_one_line_and_status_2(capsys, argv, message):
    import re
    code = main(["sim", "--model", "gpt2", "--seq", "4", "--no-functional", "--gpu", "none", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err


@pytest.mark.slow
def test_a_node_preset_sets_device_count_and_link(capsys, tmp_path):
    report = sim(capsys, tmp_path, "--model", "gpt2", "--seq", "4", "--node", "tpu-v4-8",
                 "--tp", "4", "--pp", "2", "--no-functional")
    assert report["link"]["name"] == "tpu-v4-ici" and len(report["devices"]) == 8
    assert report["devices"][0]["arch"]["dram_bytes"] == 32 * 2**30   # the node's override


@pytest.mark.slow
def test_compare_puts_nodes_side_by_side_with_a_gpu_node(capsys, tmp_path):
    out = tmp_path / "nodes.json"
    assert main(["compare", "--model", "gpt2", "--seq", "4", "--nodes", "sn40l-8,dgx-h100",
                 "--tp", "4", "--pp", "2", "--no-functional", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sn40l-8" in text and "dgx-h100" in text and "8 x gpu-h100-sxm" in text
    report = json.loads(out.read_text())
    assert report["sn40l-8"]["plan"] == {"devices": 8, "tp": 4, "pp": 2, "ep": 1,
                                         "dispatch": None}
    assert report["dgx-h100"]["time_s"] > 0


@pytest.mark.parametrize("argv, message", [
    (["sim", "--node", "dgx-h100"], r"--node dgx-h100: a node of gpu-h100-sxm \(gpu\) is a baseline"),
    (["sim", "--node", "sn40l-8", "--arch", "sn40l"], r"--arch: not with --node"),
    (["compare", "--nodes", "sn40l-8", "--targets", "pim"], r"--targets: not with --nodes"),
    (["compare", "--tp", "2"], r"--tp: only with --nodes"),
    (["compare", "--nodes", "sn40l-8", "--gpu", "h100-sxm"], r"--gpu: not with --nodes"),
    (["sim", "--devices", "2", "--gpu-calibration", "x.json"], r"--gpu-calibration: not with --devices"),
])
def test_bad_node_arguments_are_one_line(capsys, argv, message):
    import re
    code = main([*argv, "--model", "gpt2", "--seq", "4", "--no-functional"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err


@pytest.mark.parametrize("target", ["systolic", pytest.param("pim", marks=pytest.mark.slow),
                                    pytest.param("dataflow", marks=pytest.mark.slow)])
def test_a_symmetric_node_timed_on_one_device_equals_the_merged_run(target):
    """Tensor-parallel ranks share one program: one device's run stands for all. The merged
    engine, given equal copies, must give every figure alike."""
    import dataclasses

    from arch.links import load_link
    from compiler.frontend import load_model
    from compiler.parallel.partition import device_graphs
    from compiler.parallel.plan import make_plan
    from compiler.phase import decode
    from sim.multi import simulate_node
    from tessel.driver import compile_model_graph
    from tessel.targets import TARGETS

    spec = TARGETS[target]
    model, arch, link = load_model(LLAMA), spec.load_arch(), load_link(spec.default_link)
    part = device_graphs(model.config, make_plan(model.config, 2, tp=2), decode(6))[0]
    program = compile_model_graph(model, part.graph, target, arch).program
    one = simulate_node([program, program], [spec.machine(arch)] * 2, link)
    merged = simulate_node([program, dataclasses.replace(program)], [spec.machine(arch)] * 2, link)
    assert one.cycles == merged.cycles
    for field in ("link_busy_cycles", "link_bytes", "exposed_cycles", "idle_cycles"):
        assert getattr(one, field) == getattr(merged, field), field
    for a, b in zip(one.devices, merged.devices):
        assert a.energy_breakdown_j == pytest.approx(b.energy_breakdown_j, rel=1e-12)
        assert a.ops == b.ops and a.unit_busy_cycles == b.unit_busy_cycles
    assert sum(c.count for c in one.collectives) == len(merged.collectives)


@pytest.mark.parametrize("target", ["systolic", pytest.param("dataflow", marks=pytest.mark.slow)])
def test_one_rank_per_stage_stands_for_its_ranks(target):
    """TP=2 x PP=2, timing only: one rank of each stage is simulated for both, exactly as the
    whole node (four separate programs) runs."""
    import dataclasses

    from arch.links import load_link
    from compiler.frontend import load_model
    from compiler.parallel.handoff import stage_program
    from compiler.parallel.partition import device_graphs
    from compiler.parallel.plan import make_plan
    from compiler.phase import prefill
    from sim.multi import simulate_node
    from tessel.driver import compile_model_graph
    from tessel.targets import TARGETS

    spec = TARGETS[target]
    model, arch, link = load_model(LLAMA), spec.load_arch(), load_link(spec.default_link)
    plan = make_plan(model.config, 4, tp=2, pp=2)
    parts = device_graphs(model.config, plan, prefill(5))
    stages = [stage_program(compile_model_graph(model, parts[s * 2].graph, target, arch),
                            parts[s * 2].graph, 2, first=s == 0, last=s == 1, microbatches=2)
              for s in range(2)]
    shared = [stages[d // 2] for d in range(4)]
    copies = [dataclasses.replace(stages[d // 2]) for d in range(4)]
    machines = [spec.machine(arch)] * 4
    one, whole = simulate_node(shared, machines, link), simulate_node(copies, machines, link)
    assert one.cycles == whole.cycles
    for field in ("link_busy_cycles", "link_bytes", "exposed_cycles", "idle_cycles"):
        assert getattr(one, field) == getattr(whole, field), field
    for a, b in zip(one.devices, whole.devices):
        assert a.energy_breakdown_j == pytest.approx(b.energy_breakdown_j, rel=1e-12)
    key = sorted((c.kind, c.members, c.cycles) for c in one.collectives)
    assert key == sorted((c.kind, c.members, c.cycles) for c in whole.collectives)



def test_compare_nodes_routes_a_mixture_of_experts_by_the_policy_given(capsys, tmp_path):
    node = tmp_path / "pair.toml"
    node.write_text('name = "pair"\ndevice = "sn40l"\ndevices = 2\nlink = "sn40l-rdn"\n')
    runs = {}
    for policy in ("uniform", "zipf:3"):
        out = tmp_path / f"{policy[:4]}.json"
        assert main(["compare", "--model", MOE, "--seq", "4", "--nodes", str(node),
                     "--no-functional", "--routing", policy, "--json", str(out)]) == 0
        runs[policy] = json.loads(out.read_text())["pair"]["cycles"]
    capsys.readouterr()
    assert runs["uniform"] != runs["zipf:3"]
