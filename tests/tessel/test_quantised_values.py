"""Values a recipe rounds while the program runs (compiler/passes/quantised_values.py): matmul
inputs and KV-cache writes become quantize ops, which the reference executes as its quantised
mode's hook does and every target lowers to vquant."""
from pathlib import Path

import numpy as np
import pytest

from arch import load_arch
from compiler.driver import decode_logits, kv_feeds, prefill_logits, token_feeds
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.frontend.graph_text import from_text, to_text
from compiler.ir import GraphError, OpKind
from compiler.passes.quantised import stored_formats
from compiler.phase import decode, prefill
from compiler.quant import quantise
from compiler.reference import execute
from tessel.cli import main
from tessel.driver import recipe_graph, run
from tessel.request import make_request
from tessel.targets import target

FIXTURES = Path(__file__).parents[1] / "fixtures"
FP32_TOLERANCE = 1e-4           # fp32 programs against the float64 quantised reference
TOKENS = list(range(1, 11))
TARGETS = {"systolic": "systolic-32", "dataflow": "dataflow-small"}
# systolic-32 and dataflow-small multiply int8 and int4 codes; fp8 and MX MACs added for these runs
NARROW = ["mac_formats.fp8=1", "energy.mac_format_pj.fp8=0.6", "mac_formats.mxfp4=2",
          "energy.mac_format_pj.mxfp4=0.3"]


@pytest.mark.parametrize("fixture", ["tiny-gpt2", "tiny-llama3-tied"])
@pytest.mark.parametrize("recipe", ["w8a8", "w4a4kv4", "fp8", "mxfp4", "w4a8:g32+kv:int4:g8"])
def test_the_rewritten_graph_computes_what_the_hook_computes(fixture, recipe):
    """Bit for bit, prefill and decode: a decode step's cache is the prefill's rounded writes."""
    model = load_model(str(FIXTURES / fixture))
    q = quantise(model, recipe)
    graph, _ = recipe_graph(model, prefill(len(TOKENS)), q.recipe)
    assert graph.of_kind(OpKind.QUANTIZE)
    out = execute(graph, q.weights, token_feeds(np.array(TOKENS)), np.float32)[graph.outputs[0]][0]
    np.testing.assert_array_equal(out, prefill_logits(model, TOKENS, np.float32, q))
    step, _ = recipe_graph(model, decode(len(TOKENS) - 1), q.recipe)
    first, _ = recipe_graph(model, prefill(len(TOKENS) - 1), q.recipe)     # its cache, in fp32
    cache = kv_feeds(first, execute(first, q.weights, token_feeds(np.array(TOKENS[:-1])), np.float32), step)
    out = execute(step, q.weights, {**cache, **token_feeds(np.array(TOKENS[-1:]))}, np.float32)
    out = out[step.outputs[0]][0]
    np.testing.assert_array_equal(out, decode_logits(model, TOKENS, np.float32, q))


@pytest.mark.parametrize("fixture, recipe", [("tiny-mixtral", "w8a8"), ("tiny-qwen3-moe", "w4a8:g16"),
                                             ("tiny-mixtral", "w4a4")])
def test_a_mixture_of_experts_rounds_each_experts_inputs_as_the_hook_does(fixture, recipe):
    """The moe op's experts' matmul inputs (each expert's rows and its gated hidden) are
    rounded: the rewritten graph (act_format on the moe op) and the hook agree bit for bit,
    and the logits move off the weights-only recipe's."""
    model = load_model(str(FIXTURES / fixture))
    q = quantise(model, recipe)
    graph, plan = recipe_graph(model, prefill(len(TOKENS)), q.recipe)
    moes = graph.of_kind(OpKind.MOE)
    assert moes and all(op.attr("act_format") for op in moes) and set(plan.experts) == {op.name for op in moes}
    out = execute(graph, q.weights, token_feeds(np.array(TOKENS)), np.float32)[graph.outputs[0]][0]
    hooked = prefill_logits(model, TOKENS, np.float32, q)
    np.testing.assert_array_equal(out, hooked)
    weights_only = recipe.split("a")[0] + "a16" + recipe[4:]            # w8a8 -> w8a16
    assert not np.allclose(hooked, prefill_logits(model, TOKENS, np.float32,
                                                  quantise(model, weights_only)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", TARGETS)
def test_routed_experts_round_on_the_vector_unit_and_multiply_on_narrow_macs(name):
    """The routed graph puts a quantize op on each expert's rows and hidden, and the expert
    GEMMs run on the int8 MACs: each costs its MACs x (mac_pj - the int8 MAC's) less than
    under w8a16 (same routing, same int8 weights)."""
    model = load_model(str(FIXTURES / "tiny-mixtral"))
    arch = load_arch(TARGETS[name])
    runs = {recipe: run(make_request(model, name, arch, prefill(6), numerics=False, quant=recipe))
            for recipe in ("w8a8", "w8a16")}
    ops = {recipe: {op.name: op for op in r.result.ops} for recipe, r in runs.items()}
    experts = [n for n in ops["w8a16"] if ".expert" in n and n.rsplit(".", 1)[1] in ("gate", "up", "down")]
    assert len(experts) >= 6
    for n in experts:
        a, b = ops["w8a8"][n], ops["w8a16"][n]
        saved = b.macs * (arch.energy.mac_pj - arch.energy.mac_format_pj["int8"]) * 1e-12
        assert saved > 0 and b.energy_j - a.energy_j == pytest.approx(saved, rel=1e-9)
    rounded = [n for n in ops["w8a8"] if ".expert" in n and (".tokens." in n or ".gated." in n)]
    assert len(rounded) == 2 * len(experts) // 3


@pytest.mark.parametrize("fixture", ["tiny-gpt2", "tiny-mixtral"])
def test_the_gpu_baseline_prices_the_plain_graph_beside_a_rounding_recipe(fixture):
    """The accelerator's quantize ops are not GPU kernels: under w8a8 the fp16 GPU baseline is
    the plain model's (routed alike), and --gpu-quant prices the recipe on it (this failed
    with "the GPU baseline has no kernel for it")."""
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch("systolic-32")
    plain, rounded, both = (run(make_request(model, "systolic", arch, prefill(6), numerics=False,
                                             gpus=("gpu-a100-80gb",), **kw)).result.gpu["gpu-a100-80gb"]
                            for kw in ({}, {"quant": "w8a8"}, {"quant": "w8a8", "gpu_quant": "w8a8"}))
    assert rounded.time_s == plain.time_s and rounded.recipe == ""
    assert both.time_s != plain.time_s and both.recipe == "w8a8"


def test_an_expert_group_that_does_not_divide_the_hidden_is_one_line(capsys, tmp_path):
    """A group must divide both expert inputs: tiny-mixtral's rows (64) and its hidden (32)."""
    recipe = tmp_path / "g64.toml"
    recipe.write_text('[activations]\nformat = "int8"\nscale = "group"\ngroup = 64\n')
    assert main(["sim", "--model", str(FIXTURES / "tiny-mixtral"), "--seq", "4", "--no-functional",
                 "--gpu", "none", "--quant", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert ("activations: group 64 does not divide the 32 channels of the hidden of the experts "
            "of 'layers.0.block_sparse_moe'") in err and "\n" not in err


def test_one_quantize_op_per_value_and_code():
    """GPT-2's c_attn reads ln_1 once; Llama's q, k and v projections share one rounded input."""
    model = load_model(str(FIXTURES / "tiny-llama3-tied"))
    graph, plan = recipe_graph(model, prefill(4), quantise(model, "w8a8").recipe)
    rounded = graph.of_kind(OpKind.QUANTIZE)
    readers = {op.inputs[0] for op in graph.ops if op.name in plan.activations
               and plan.activations[op.name] is not None}
    assert len(rounded) == len(readers) and {op.name for op in rounded} == readers
    assert {op.attr("format") for op in rounded} == {"int8"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("recipe", ["w8a8", "w4a4kv4", "fp8", "mxfp4", "w4a8:g32+kv:int4:g8"])
@pytest.mark.parametrize("phase", [prefill(10), decode(9)], ids=str)
def test_compiled_logits_equal_the_quantised_reference(tiny_hf, name, recipe, phase):
    arch = load_arch(TARGETS[name], ["dtype=fp32", *NARROW])
    model = load_model(str(tiny_hf))
    outcome = run(make_request(model, name, arch, phase, numerics=True, quant=recipe))
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    weights_only = run(make_request(model, name, arch, phase, numerics=True,
                                    quant=recipe.split("+")[0].replace("a4", "a16").replace("a8", "a16")
                                    if recipe.startswith("w") else "w8a16"))
    assert not np.allclose(outcome.reference, weights_only.reference)   # the values are rounded


BFP = ('[weights]\nformat = "bfp4:b16"\n[activations]\nformat = "bfp6:b16"\n'
       '[kv]\nformat = "bfp4:b8"\n[[exceptions]]\nlayers = ["lm_head"]\nweights = "none"\n')


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture", ["tiny-gpt2", "tiny-llama3-tied"])
def test_block_floating_point_everywhere_equals_the_quantised_reference(tmp_path, name, fixture):
    """bfp4 weights in blocks of 16, bfp6 matmul inputs, a bfp4 cache in blocks of 8 (each its
    own code format, an e8m0 exponent a block), on MXINT8's lanes: the reference's logits, and
    the cache stored at (4 + 8/8) / 32 of fp32's bytes."""
    recipe = tmp_path / "bfp.toml"
    recipe.write_text(BFP)
    arch = load_arch(TARGETS[name], ["dtype=fp32", "mac_formats.mxint8=1",
                                     "energy.mac_format_pj.mxint8=0.3"])
    model = load_model(str(FIXTURES / fixture))
    for phase in (prefill(8), decode(7)):
        outcome = run(make_request(model, name, arch, phase, numerics=True, quant=str(recipe)))
        assert outcome.result.logits_rel_error < FP32_TOLERANCE
    kv = outcome.result.workload["quantised_kv"]             # the decode step's cache
    assert kv["stored_bytes"] * 32 == kv["full_bytes"] * (4 + 8 / 8)
    graph, plan = recipe_graph(model, decode(7), quantise(model, str(recipe)).recipe)
    program = target(name).compile(graph, arch, quant=plan).program
    formats = {i["fmt"] for i in program.instructions if i.opcode in ("mfmt", "vquant", "qcfg")}
    assert {"mxint8", "bfp4", "bfp6"} <= formats


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture, recipe", [("tiny-llama3-tied", "w4a4kv4"), ("tiny-qwen3", "w8a8"),
                                             ("tiny-mistral-swa", "w4a8:g16"),
                                             ("tiny-qwen3-moe", "w8a16+kv:int4"),
                                             ("tiny-mixtral", "w8a8"), ("tiny-qwen3-moe", "w4a8:g16")])
def test_llama_and_moe_families_equal_the_quantised_reference(name, fixture, recipe):
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    for phase in (prefill(8), decode(7)):
        outcome = run(make_request(model, name, arch, phase, numerics=True, quant=recipe))
        assert outcome.result.logits_rel_error < FP32_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["w8a8", "kv:int8"])
def test_pim_rounds_in_bf16_as_close_as_its_full_precision_program(tiny_hf, recipe):
    """PIM computes in bf16: its rounded values start from bf16 inputs, so it stays as close to
    the float64 quantised reference as the full-precision program stays to its reference."""
    model = load_model(str(tiny_hf))
    for phase in (prefill(10), decode(9)):
        outcome = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True, quant=recipe))
        full = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True))
        assert outcome.result.logits_rel_error < 2 * max(full.result.logits_rel_error, 5e-3)


def test_the_program_rounds_on_the_vector_unit_and_says_so(tiny_hf):
    model = load_model(str(tiny_hf))
    result = run(make_request(model, "systolic", load_arch("systolic-32"), decode(9), numerics=False,
                              quant="w8a8+kv:int8")).result
    note = [a for a in result.assumptions if "rounded to int8 by the vector unit (vquant)" in a]
    assert note and "held and moved at the operand type's width (a KV cache stored as codes excepted)" in note[0]
    base = run(make_request(model, "systolic", load_arch("systolic-32"), decode(9), numerics=False,
                            quant="w8a16")).result
    assert result.unit_busy_cycles["vpu"] > base.unit_busy_cycles["vpu"]


def test_a_graph_that_skips_the_rewrite_is_refused():
    """A plan that rounds values, compiled on a graph without its quantize ops, would run them
    at full precision: refused in one line."""
    model = load_model("gpt2")
    graph = model.graph(decode(4))
    from compiler.quant import plan as make_plan, resolve_recipe
    plan = make_plan(graph, resolve_recipe("w8a8"), model.config.n_layer)
    with pytest.raises(CompileError, match=r"^recipe 'w8a8': the input of 'h\.0\.attn\.c_attn' is "
                                           r"planned quantised and the graph does not round it"):
        stored_formats(graph, plan)


GRAPH = """graph g {{
  input x: fp32[1, {rows}, 256]
  param w: fp32[256, 64]
  xq = quantize(x, {attrs})
  y = linear(xq, w)
  output y
}}"""


MOE_GRAPH = """graph g {{
  input x: fp32[4, 16]
  param router: fp32[16, 2]
  param g0: fp32[16, 32]
  param u0: fp32[16, 32]
  param d0: fp32[32, 16]
  param g1: fp32[16, 32]
  param u1: fp32[16, 32]
  param d1: fp32[32, 16]
  logits = linear(x, router)
  y = moe(x, logits, g0, u0, d0, g1, u1, d1, top_k=1{attrs})
  output y
}}"""


@pytest.mark.parametrize("attrs, message", [
    (', act_format="int8"', r"rounded experts take act_format, act_group and hidden_group together"),
    (', act_format="int8", act_group=16, hidden_group=12', r"hidden_group 12 does not divide the 32 elements it scales"),
    (', act_format="mxfp4", act_group=16, hidden_group=32', r"act_group 16: mxfp4 scales blocks of 32"),
    (', act_format="int9", act_group=0, hidden_group=0', r"attribute 'act_format' must be a code format"),
])
def test_bad_rounded_expert_attributes_are_one_line(attrs, message):
    with pytest.raises(GraphError, match=message):
        from_text(MOE_GRAPH.format(attrs=attrs), "g.graph")


def test_rounded_experts_round_trip_through_the_text_format():
    graph = from_text(MOE_GRAPH.format(attrs=', act_format="int8", act_group=16, hidden_group=32'), "g.graph")
    assert to_text(from_text(to_text(graph), "again")) == to_text(graph)
    assert 'act_format="int8", act_group=16, hidden_group=32' in to_text(graph)


@pytest.mark.parametrize("attrs, message", [
    ('format="int8", group=100', r"op 'xq' \(quantize\): group 100 does not divide the last axis \(256 elements\)"),
    ('format="int9", group=0', r"attribute 'format' must be a code format \(int2, .*\), got 'int9'"),
    ('format="mxfp4", group=16', r"group 16: mxfp4 scales blocks of 32 \(group must be 32\)"),
    ('format="fp8_e4m3", group=64', r"group 64: fp8_e4m3 takes one scale for the tile \(group must be 0\)"),
    ('format="bfp4", group=0', r"group 0: bfp4 scales blocks of `group` values \(group must be its block, > 0\)"),
    ('format="bfp4", group=48', r"group 48 does not divide the last axis \(256 elements\)"),
    ('format="int8"', r"missing attribute 'group'"),
    ('format=8, group=0', r"attribute 'format' must be a code format"),
])
def test_bad_quantize_attributes_are_one_line(attrs, message):
    with pytest.raises(GraphError, match=message):
        from_text(GRAPH.format(rows=4, attrs=attrs), "g.graph")


def test_a_quantize_op_round_trips_through_the_text_format():
    graph = from_text(GRAPH.format(rows=4, attrs='format="mxint8", group=32'), "g.graph")
    assert to_text(from_text(to_text(graph), "again")) == to_text(graph)
    assert 'quantize(x, format="mxint8", group=32)' in to_text(graph)


def test_one_scale_over_several_vector_blocks_is_refused(capsys, tmp_path):
    path = tmp_path / "g.graph"
    path.write_text(GRAPH.format(rows=8192, attrs='format="int8", group=0'))
    assert main(["sim", "--model", str(path), "--target", "pim", "--gpu", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "op 'xq': one int8 scale for the whole value (8192 rows of 256) needs it in one block" in err
    assert "\n" not in err


@pytest.mark.parametrize("arch, recipe, message", [
    ("systolic-32", "fp8", "'h.0.attn.c_attn' multiplies fp8_e4m3 inputs by fp8_e4m3 weights "
     "('h.0.attn.c_attn.weight'), and systolic-32 has no fp8 MACs (arch field mac_formats: int8, int4)"),
    ("systolic-128", "w8a8", "and systolic-128 has no int8 MACs (arch field mac_formats: none)"),
    ("systolic-32", "mxfp4", "has no mxfp4 MACs (arch field mac_formats: int8, int4)"),
    ("sn40l", "fp8", "and sn40l has no fp8 MACs (arch field mac_formats: int8)"),
])
def test_a_recipe_the_array_has_no_macs_for_is_one_line(capsys, tiny_hf, arch, recipe, message):
    where = "dataflow" if arch in ("sn40l", "dataflow-small") else "systolic"
    assert main(["sim", "--model", str(tiny_hf), "--target", where, "--arch", arch, "--seq", "4",
                 "--no-functional", "--gpu", "none", "--quant", recipe]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_mixed_code_families_have_no_mac_format(capsys, tmp_path, tiny_hf):
    recipe = tmp_path / "mixed.toml"
    recipe.write_text('[weights]\nformat = "int8"\n[activations]\nformat = "fp8_e4m3"\n'
                      '[[exceptions]]\nlayers = ["lm_head"]\nweights = "none"\nactivations = "none"\n')
    assert main(["sim", "--model", str(tiny_hf), "--target", "systolic", "--arch", "systolic-32",
                 "--seq", "4", "--no-functional", "--gpu", "none", "--quant", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'h.0.attn.c_attn' multiplies fp8_e4m3 inputs by int8 weights: no MAC format takes both" in err


@pytest.mark.slow
def test_narrow_macs_pack_k_and_cost_their_own_energy():
    """w4a4 on int4 lanes (two codes a lane): a ws fold reduces 2 x rows of K, so the matrix
    unit is busy less than with one code a lane; every linear's products are priced at the
    int4 MAC's energy, the attention's at the operand type's."""
    model = load_model("gpt2")
    runs = {}
    for pack in (1, 2):
        arch = load_arch("systolic-32", [f"mac_formats.int4={pack}"])
        runs[pack] = run(make_request(model, "systolic", arch, prefill(64), numerics=False,
                                      quant="w4a4")).result
    assert runs[2].unit_busy_cycles["mxu"] < 0.8 * runs[1].unit_busy_cycles["mxu"]
    assert runs[2].macs == runs[1].macs
    full = run(make_request(model, "systolic", load_arch("systolic-32"), prefill(64),
                            numerics=False, quant="w4a16")).result
    e = load_arch("systolic-32").energy
    linear_macs = 64 * 12 * 768 * (3 * 768 + 768 + 2 * 4 * 768)
    saved = linear_macs * (e.mac_pj - e.mac_format_pj["int4"]) * 1e-12
    assert runs[2].energy_breakdown_j["compute"] == pytest.approx(
        full.energy_breakdown_j["compute"] - saved, rel=1e-9)


@pytest.mark.parametrize("name, preset, noted", [("pim", "pim-gpt", True),
                                                 ("dataflow", "dataflow-small", False),
                                                 ("systolic", "systolic-32", False)])
def test_the_report_says_where_two_quantised_operands_multiply_at_the_operand_type(
        tiny_hf, name, preset, noted):
    result = run(make_request(load_model(str(tiny_hf)), name, load_arch(preset), decode(9),
                              numerics=False, quant="w8a8")).result
    line = "8 matmuls of two quantised operands multiply their values at the operand type"
    assert any(line in a for a in result.assumptions) == noted
