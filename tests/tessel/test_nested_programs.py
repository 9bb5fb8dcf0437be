"""Bit-nested (matryoshka) expert weights on the targets (compiler/quant/nested.py, D2MoE): the
program stores each expert's W-bit codes as bit planes and reads the top b planes (loadp) at the
width the --expert-bits policy gives the expert; the logits are the reference's nested read,
and the bytes read are b/W of the codes plus the scales."""
import math
from pathlib import Path

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from tessel.cli import main
from tessel.driver import run
from tessel.request import make_request

FIXTURES = Path(__file__).parents[1] / "fixtures"
FP32_TOLERANCE = 1e-4
TARGETS = {"systolic": "systolic-32", "dataflow": "dataflow-small"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture, recipe, bits", [
    ("tiny-qwen3-moe", "w8a16:nested", "4"), ("tiny-qwen3-moe", "w8a16:nested", "2,3,4,5,6,7,8,8"),
    ("tiny-mixtral", "w4a16:nested", "2"), ("tiny-mixtral", "w8a16:nested", "hot:2:8:3")])
def test_nested_reads_equal_the_reference(name, fixture, recipe, bits):
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    for phase in (prefill(6), decode(5)):
        outcome = run(make_request(model, name, arch, phase, numerics=True, quant=recipe,
                                   expert_bits=bits))
        assert outcome.result.logits_rel_error < FP32_TOLERANCE
    whole = run(make_request(model, name, arch, decode(5), numerics=True, quant=recipe))
    assert (outcome.reference != whole.reference).any()       # the reads are narrower


def test_fewer_bits_read_fewer_bytes_exactly():
    """tiny-mixtral's experts stored int8 in bit planes: read at 8, 4 and 2 bits, the program's
    DRAM reads fall by the planes not read, which the report's nested_read_bytes counts."""
    model = load_model(str(FIXTURES / "tiny-mixtral"))
    arch = load_arch("systolic-32")
    results = {b: run(make_request(model, "systolic", arch, prefill(8), numerics=False,
                                   quant="w8a16:nested", expert_bits=b, routing="uniform")).result
               for b in ("8", "4", "2")}
    facts = {b: r.workload["quantised_weights"] for b, r in results.items()}
    assert facts["8"]["nested_read_bytes"] == facts["8"]["nested_stored_bytes"]
    for b in ("4", "2"):
        saved = facts["8"]["nested_read_bytes"] - facts[b]["nested_read_bytes"]
        assert saved * 8 == _expert_planes(model) * (8 - int(b))
        assert results["8"].bytes["dram_read"] > results[b].bytes["dram_read"]


@pytest.mark.parametrize("phase", [prefill(8), prefill(4, batch=2), decode(11)])
def test_a_timing_only_hot_policy_ranks_the_experts_by_the_sequences_routing(phase):
    """With no calibration tokens, `hot:K:HI:LO` reads, in each layer, the K experts that the
    routing policy sends the sequence's tokens to most at HI bits and the rest at LO: a
    prefill's own decision; for a decode step, the policy's decision for a prefill of its
    whole sequence (kv + 1 tokens), not its one token's. The bytes read lie between the
    uniform LO and HI runs'."""
    import numpy as np
    from compiler.passes.routing import policy_routing
    from tessel.driver import ranking_routing, recipe_graph
    from compiler.quant import resolve_recipe
    model = load_model(str(FIXTURES / "tiny-mixtral"))
    policy = "zipf:2"
    routing = ranking_routing(model, phase, "hot:1:8:2", policy)
    sequence = policy_routing(model.graph(prefill(phase.kv + phase.seq, phase.batch)), policy)
    if phase.kind == "prefill":                          # the step's own decision
        step = policy_routing(model.graph(phase), policy)
        assert all((step.choices[op] == sequence.choices[op]).all() for op in step.choices)
    assert routing.choices.keys() == sequence.choices.keys()
    assert all((routing.choices[op] == sequence.choices[op]).all() for op in sequence.choices)
    _, plan = recipe_graph(model, phase, resolve_recipe("w8a16:nested"), "hot:1:8:2",
                           routing=routing)
    graph = model.graph(phase)
    for op, choice in routing.choices.items():
        counts = np.bincount(choice.ravel(), minlength=len(graph[op].inputs[2:]) // 3)
        params = graph[op].inputs[2:]
        widths = [plan.widths[params[3 * e]] for e in range(len(counts))]
        assert widths == [8 if e == int(np.argmax(counts)) else 2 for e in range(len(counts))]
    arch = load_arch("systolic-32")
    read = {b: run(make_request(model, "systolic", arch, phase, numerics=False, routing=policy,
                                quant="w8a16:nested", expert_bits=b)).result
            .workload["quantised_weights"]["nested_read_bytes"] for b in ("2", "hot:1:8:2", "8")}
    assert read["2"] < read["hot:1:8:2"] < read["8"]


def test_compile_takes_a_hot_policy_without_data(tmp_path, capsys):
    """`tessel compile` (no --with-data) ranks a `hot` policy's experts by --routing too."""
    out = tmp_path / "hot.tbin"
    assert main(["compile", "--model", str(FIXTURES / "tiny-mixtral"), "--seq", "8", "--target",
                 "systolic", "--arch", "systolic-32", "--quant", "w8a16:nested", "--expert-bits",
                 "hot:1:8:2", "--routing", "zipf:2", "-o", str(out)]) == 0
    assert out.stat().st_size > 0


def _expert_planes(model) -> int:
    """Bytes of the experts' 8 bit planes (a row of N codes: 8 planes of ceil(N/8) bytes); the
    scales, and the attention's nested weights (read whole), do not narrow."""
    from compiler.ir import OpKind
    graph = model.graph(prefill(1))
    experts = [graph[n].type.shape for op in graph.of_kind(OpKind.MOE) for n in op.inputs[2:]]
    return sum(k * 8 * math.ceil(n / 8) for k, n in experts)


@pytest.mark.parametrize("argv, message", [
    (["--expert-bits", "4"], "--expert-bits reads bit-nested expert weights: give a --quant recipe"),
    (["--quant", "w8a16", "--expert-bits", "4"], "does not store them bit-nested (w8a16)"),
    (["--quant", "w8a16:nested", "--expert-bits", "hot:5:8:4", "--no-functional"],
     "--expert-bits hot:5:8:4: 5 hot experts of 4"),
    (["--quant", "w8a16:nested", "--expert-bits", "hot:1:9:4", "--no-functional"],
     "9 bits: a nested read takes 2 to 8 bits"),
    (["--quant", "w8a16:nested", "--expert-bits", "hot:1:8:4", "--no-functional", "--phase",
      "decode", "--kv", "3", "--routing", "file:ROUTING"],
     "which --routing file:"),
    (["--quant", "w8a16:nested", "--expert-bits", "9"], "9 bits: a nested read takes 2 to 8 bits"),
    (["--quant", "w8a16:nested", "--expert-bits", "4,4"], "2 widths for 4 experts: give one per expert"),
    (["--quant", "w8a16:nested", "--expert-bits", "4", "--target", "pim"],
     "bit-nested weights are not built on the PIM target"),
])
def test_bad_expert_bits_are_one_line(capsys, tmp_path, argv, message):
    routing = tmp_path / "routing.json"          # one decode step's choices, 2 moe layers
    routing.write_text('{"experts": [[[0, 1]], [[2, 3]]]}')
    argv = [f"file:{routing}" if a == "file:ROUTING" else a for a in argv]
    seq = [] if "--phase" in argv else ["--seq", "4"]
    args = ["sim", "--model", str(FIXTURES / "tiny-mixtral"), *seq, "--gpu", "none", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["compile", "--model", str(FIXTURES / "tiny-mixtral"), "--seq", "4", "--expert-bits", "4",
      "-o", "P"], "--expert-bits reads bit-nested expert weights: give a --quant recipe"),
    (["sim", "P", "--expert-bits", "4"], "--expert-bits"),
])
def test_expert_bits_without_a_model_recipe_is_one_line(capsys, tmp_path, argv, message):
    argv = [str(tmp_path / "p.tbin") if a == "P" else a for a in argv]
    if argv[0] == "sim":                # a program file: made first, then --expert-bits refused
        assert main(["compile", "--model", str(FIXTURES / "tiny-mixtral"), "--seq", "4",
                     "-o", argv[1]]) == 0
        capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
