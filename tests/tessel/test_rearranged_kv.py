"""A rearranged KV cache on the systolic and dataflow targets: the channel order folded into the
projections (compiler/passes/kv_fold.py), so the programs' logits are the reference executor's
rearranged quantised logits (which store each head's channels in the order and read them back
in place), and the folded program is the unrearranged one, instruction for instruction and
cycle for cycle."""
from pathlib import Path

import numpy as np
import pytest

import isa
from arch import load_arch
from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import load_model
from compiler.ir import OpKind
from compiler.passes.kv_fold import kv_fold
from compiler.phase import decode, prefill
from compiler.quant import quantise, resolve_recipe
from compiler.targets.data import read_value
from tessel.cli import main
from tessel.driver import recipe_graph, run
from tessel.request import default_tokens, make_request
from tessel.targets import target

FIXTURES = Path(__file__).parents[1] / "fixtures"
FP32_TOLERANCE = 1e-4           # as tests/tessel/test_narrow_kv.py
TARGETS = {"systolic": "systolic-32", "dataflow": "dataflow-small"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture, recipe", [
    ("tiny-gpt2", "kv:int8:rearrange"), ("tiny-gpt2", "kv:int4:g8:rearrange"),
    ("tiny-gpt2", "w4a16:g16+kv:int4:g8:rearrange"),      # W_o's rows permuted, then quantised
    ("tiny-qwen3", "kv:bfp8:rearrange"), ("tiny-qwen3", "kv:int4:g16:rearrange"),
    ("tiny-llama3-tied", "kv:int8:rearrange")])
@pytest.mark.parametrize("phase", [prefill(10), decode(9)], ids=str)
def test_compiled_logits_equal_the_rearranged_reference(name, fixture, recipe, phase):
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    outcome = run(make_request(model, name, arch, phase, numerics=True, quant=recipe))
    tokens = default_tokens(model, phase)
    logits = prefill_logits if phase.kind == "prefill" else decode_logits
    want = logits(model, tokens, np.float64, quantise(model, recipe, calibration=tokens))
    assert np.abs(outcome.logits - want).max() < FP32_TOLERANCE * np.abs(want).max()
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    if phase.kind == "decode":
        assert outcome.result.workload["quantised_kv"]["count"] == 2 * model.config.n_layer


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture, phase", [("tiny-gpt2", decode(9)), ("tiny-qwen3", prefill(10))],
                         ids=["tiny-gpt2-decode", "tiny-qwen3-prefill"])
def test_the_folded_program_costs_what_the_unrearranged_one_does(name, fixture, phase):
    """The fold changes weights and rope tables, not one instruction: the same opcodes in the
    same order, the same cycles and energy."""
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch(TARGETS[name])
    q = quantise(model, "kv:int4:g8:rearrange", calibration=default_tokens(model, phase))
    graph, plan = recipe_graph(model, phase, resolve_recipe("kv:int4:g8:rearrange"))
    fold = kv_fold(graph, plan, q.kv_order)
    rearranged = fold.graph
    assert fold.params and all(op.attr("pairs") for op in rearranged.of_kind(OpKind.ROPE))
    plain, plain_plan = recipe_graph(model, phase, resolve_recipe("kv:int4:g8"))
    a, b = (target(name).compile(g, arch, quant=p) for g, p in ((rearranged, plan), (plain, plain_plan)))
    assert [i.opcode for i in a.program.instructions] == [i.opcode for i in b.program.instructions]
    x, y = (target(name).simulate(lo.program, arch, functional=False).result for lo in (a, b))
    assert (x.cycles, x.ops, x.energy_j, x.unit_busy_cycles) == (y.cycles, y.ops, y.energy_j, y.unit_busy_cycles)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["tiny-gpt2", "tiny-llama3-tied"])
def test_the_pim_target_rounds_in_the_folded_order_in_bf16(fixture):
    """The fold is the graph's, so PIM runs it too: its cache stays bf16 rows, rounded in the
    rearranged order as the recipe says, as close to the float64 reference as the same recipe
    without the order, and timed alike (the same instructions)."""
    model = load_model(str(FIXTURES / fixture))
    arch, tokens = load_arch("pim-gpt"), list(range(5, 15))
    runs = {recipe: run(make_request(model, "pim", arch, decode(9), numerics=True, tokens=tokens,
                                     quant=recipe)).result
            for recipe in ("kv:int4:g4:rearrange", "kv:int4:g4")}
    folded, plain = runs["kv:int4:g4:rearrange"], runs["kv:int4:g4"]
    assert folded.logits_rel_error < 1.5 * plain.logits_rel_error
    assert folded.cycles == plain.cycles and "quantised_kv" not in folded.workload


@pytest.mark.slow
def test_a_program_file_holds_the_folded_weights_and_cache(tmp_path):
    """`tessel compile --with-data`: the file's weights, rope tables and decode cache are in the
    order its tokens calibrate, so simulating the file gives the rearranged reference's logits."""
    model, recipe, tokens = load_model(str(FIXTURES / "tiny-qwen3")), "kv:int4:g16:rearrange", list(range(5, 15))
    prog = tmp_path / "r.tbin"
    assert main(["compile", "--model", str(FIXTURES / "tiny-qwen3"), "--arch", "systolic-32",
                 "--set", "dtype=fp32", "--phase", "decode", "--kv", "9", "--quant", recipe,
                 "--tokens", ",".join(map(str, tokens)), "--with-data", "-o", str(prog)]) == 0
    arch = load_arch("systolic-32", ["dtype=fp32"])
    program = isa.load(prog)
    sim = target("systolic").simulate(program, arch, functional=True)
    graph, plan = recipe_graph(model, decode(9), resolve_recipe(recipe))
    views = target("systolic").compile(graph, arch, quant=plan).plan     # where the logits are
    got = read_value(lambda s: sim.memory.read_symbol(program, s), views, graph.outputs[0])[0]
    want = decode_logits(model, tokens, np.float64, quantise(model, recipe, calibration=tokens))
    assert np.abs(got - want).max() < FP32_TOLERANCE * np.abs(want).max()
