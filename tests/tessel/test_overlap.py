"""`--set overlap=split` (compiler/parallel/overlap.py): a tensor-parallel device's batch in two
halves whose compute and all-reduces interleave. The split graph computes what the unsplit one
does, compiles to programs whose loops unroll to the flat emission, computes the reference
logits when simulated, and hides the link under the other half's compute."""
from __future__ import annotations

import json

import numpy as np
import pytest

import isa
from arch import load_arch
from arch.links import load_link
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.parallel.handoff import stage_program
from compiler.parallel.overlap import split_batch, split_part
from compiler.parallel.partition import device_graphs
from compiler.parallel.plan import make_plan
from compiler.parallel.reference import execute_plan
from compiler.phase import decode, prefill
from compiler.roll import roll
from compiler.targets.data import read_value
from compiler.targets.sweep import flat_emission
from sim.multi import simulate_node
from tessel.cli import main
from tessel.driver import compile_model_graph
from tessel.targets import TARGETS
from tests.conftest import FIXTURES

LLAMA, GPT2 = str(FIXTURES / "tiny-qwen3"), str(FIXTURES / "tiny-gpt2")
BF16_TOLERANCE = 3e-2


def feeds_for(parts, plan, rng) -> list[dict]:
    """Distinct token rows (a mix-up of the halves would show) and random caches per device;
    a later stage's `hidden` comes from the stage before."""
    tokens = None
    feeds = []
    for part in parts:
        f = {}
        for op in part.graph.inputs:
            if op.name == "tokens":
                tokens = tokens if tokens is not None else rng.integers(0, 60, op.type.shape)
                f["tokens"] = tokens.astype(np.int32)
            elif op.name != "hidden":
                f[op.name] = rng.standard_normal(op.type.shape)
        feeds.append(f)
    return feeds


@pytest.mark.parametrize("spec", [LLAMA, GPT2])
@pytest.mark.parametrize("tp, pp", [(2, 1), (2, 2)])
@pytest.mark.parametrize("phase", [prefill(5, batch=2), decode(6, batch=4)], ids=["prefill", "decode"])
def test_the_halves_compute_what_the_whole_batch_does(spec, tp, pp, phase):
    model = load_model(spec)
    plan = make_plan(model.config, tp * pp, tp=tp, pp=pp)
    parts = device_graphs(model.config, plan, phase)
    split = [split_part(p) for p in parts]
    feeds = feeds_for(parts, plan, np.random.default_rng(1))
    whole = execute_plan(plan, parts, model.weights, feeds)
    halves = execute_plan(plan, split, model.weights, feeds)
    for d, outputs in enumerate(whole):
        assert outputs.keys() == halves[d].keys()
        for name, value in outputs.items():
            np.testing.assert_array_equal(halves[d][name], value)


def test_the_halves_interleave_at_each_all_reduce():
    """Half 0 up to its all-reduce, then half 1 up to its own: one half's all-reduce is in
    flight while the other computes."""
    model = load_model(LLAMA)
    plan = make_plan(model.config, 2, tp=2)
    graph = split_part(device_graphs(model.config, plan, decode(6, batch=2))[0]).graph
    reduces = [op.name for op in graph.ops if op.kind.value == "allreduce"]
    assert reduces[:4] == ["layers.0.self_attn.o_proj.allreduce.h0", "layers.0.self_attn.o_proj.allreduce.h1",
                           "layers.0.mlp.down_proj.allreduce.h0", "layers.0.mlp.down_proj.allreduce.h1"]
    order = [op.name for op in graph.ops]
    assert order.index("layers.0.self_attn.o_proj.allreduce.h0") < order.index("layers.0.self_attn.scores.h1")
    assert [op.name for op in graph.inputs] == [op.name for op in
                                                device_graphs(model.config, plan, decode(6, batch=2))[0].graph.inputs]


@pytest.mark.parametrize("spec, phase, message", [
    (LLAMA, prefill(4, batch=3), "a batch of 3 does not split into 2 halves"),
    (str(FIXTURES / "tiny-qwen3-moe"), prefill(4, batch=2), "splitting a mixture of experts is not built"),
])
def test_what_cannot_be_split_is_refused(spec, phase, message):
    model = load_model(spec)
    plan = make_plan(model.config, 2, tp=2)
    with pytest.raises(GraphError, match=message):
        split_batch(device_graphs(model.config, plan, phase)[0].graph)


@pytest.mark.parametrize("argv, message", [
    (("--devices", "2", "--set", "overlap=sometimes"), "--set overlap=sometimes: overlap must be split or none"),
    (("--set", "overlap=split"), "--set overlap=split: only with --devices N"),
    (("--devices", "2", "--pp", "2", "--set", "overlap=split"), "needs --tp > 1"),
    (("--devices", "2", "--target", "pim", "--set", "overlap=split"),
     "the pim target runs one sequence at a time"),
])
def test_overlap_settings_are_refused_in_one_line(capsys, argv, message):
    code = main(["sim", "--model", LLAMA, "--seq", "4", "--batch", "2", "--no-functional",
                 "--gpu", "none", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err


@pytest.mark.slow
@pytest.mark.parametrize("target", ["systolic", "dataflow"])
@pytest.mark.parametrize("spec, phase", [(LLAMA, decode(7, batch=2)), (GPT2, prefill(8, batch=2))])
def test_split_programs_loop_exactly_as_their_flat_emission(target, spec, phase):
    """The sweeps replay the all-reduces of the layers a loop stands for, so a half that reads
    its sum after the loop waits for the right one."""
    model = load_model(spec)
    plan = make_plan(model.config, 2, tp=2)
    graph = split_part(device_graphs(model.config, plan, phase)[0]).graph
    spec_ = TARGETS[target]
    arch = spec_.load_arch()
    compact = roll(spec_.compile(graph, arch).program, arch.machine_view().limits)
    with flat_emission():
        flat = spec_.compile(graph, arch).program
    assert len(compact.instructions) < len(flat.instructions) or "decode" in graph.name
    assert isa.unroll(compact) == flat


def simulate_split(spec: str, target: str, phase, arch: str):
    """The split node's simulated logits against the unsplit plan's fp64 reference."""
    model = load_model(spec)
    plan = make_plan(model.config, 2, tp=2)
    parts = device_graphs(model.config, plan, phase)
    split = [split_part(p) for p in parts]
    feeds = feeds_for(parts, plan, np.random.default_rng(2))
    reference = execute_plan(plan, parts, model.weights, feeds)[0][parts[0].graph.outputs[0]]
    chip = load_arch(arch)
    lowered = [compile_model_graph(model, p.graph, target, chip, None, f, p.weights(model.weights))
               for p, f in zip(split, feeds)]
    programs = [stage_program(low, p.graph, 2, first=True, last=True) for low, p in zip(lowered, split)]
    node = simulate_node(programs, [TARGETS[target].machine(chip) for _ in split],
                         load_link(TARGETS[target].default_link), functional=True)
    logits = read_value(lambda s: node.memories[0].read_symbol(programs[0], s), lowered[0].plan,
                        split[0].graph.outputs[0])
    return logits, reference


@pytest.mark.parametrize("target, arch", [("systolic", "systolic-32"),
                                          ("dataflow", "sn40l")])
@pytest.mark.parametrize("spec, phase", [(LLAMA, decode(6, batch=2)), (GPT2, prefill(5, batch=2))],
                         ids=["llama-decode", "gpt2-prefill"])
@pytest.mark.slow
def test_a_split_node_computes_the_reference_logits(target, arch, spec, phase):
    logits, reference = simulate_split(spec, target, phase, arch)
    assert logits.shape == reference.shape and logits.shape[0] == 2
    assert np.abs(logits - reference).max() / np.abs(reference).max() < BF16_TOLERANCE


@pytest.mark.slow
def test_the_split_hides_the_link_under_the_other_halfs_compute(capsys, tmp_path):
    """A prefill whose all-reduces are 15 % of the step over PCIe: split, nearly all of the
    link's time runs under compute, and the step is shorter although each half reads every
    weight again (llama-3.2-1b, 4 ranks, batch 2 x 256, systolic-128)."""
    reports = {}
    for mode in ("none", "split"):
        out = tmp_path / f"{mode}.json"
        assert main(["sim", "--model", "llama-3.2-1b", "--seq", "256", "--batch", "2",
                     "--devices", "4", "--link", "pcie4-x16", "--no-functional", "--gpu", "none",
                     "--set", f"overlap={mode}", "--json", str(out)]) == 0
        reports[mode] = json.loads(out.read_text())
    capsys.readouterr()
    whole, split = reports["none"], reports["split"]
    assert split["overlap"] == "split"
    exposed = [r["devices"][0]["exposed_comm_cycles"] / r["cycles"] for r in (whole, split)]
    assert exposed[0] > 0.10 and exposed[1] < 0.02
    assert split["cycles"] < 0.92 * whole["cycles"]
