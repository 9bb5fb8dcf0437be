"""KV caches stored in their narrow format on the systolic and dataflow targets
(compiler/passes/quantised_values.py narrow_caches): an append writes its rounded rows as codes
and scales (storeq), attention reads the cache back (loadq); the logits stay the quantised
reference's, and the cache's bytes are the format's."""
from pathlib import Path

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from tessel.driver import recipe_graph, run
from tessel.request import make_request
from tessel.targets import target

FIXTURES = Path(__file__).parents[1] / "fixtures"
FP32_TOLERANCE = 1e-4
TARGETS = {"systolic": "systolic-32", "dataflow": "dataflow-small"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture, recipe", [("tiny-gpt2", "kv:int8"), ("tiny-gpt2", "kv:int4:g8"),
                                             ("tiny-gpt2", "w4a4kv4"), ("tiny-llama3-tied", "kv:int8"),
                                             ("tiny-qwen3", "w8a8+kv:int4"), ("tiny-gpt2", "kv:bfp4:b16"),
                                             ("tiny-llama3-tied", "kv:bfp6:b8")])
def test_a_narrow_cache_gives_the_quantised_reference(name, fixture, recipe):
    model = load_model(str(FIXTURES / fixture))
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    outcome = run(make_request(model, name, arch, decode(9), numerics=True, quant=recipe))
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    facts = outcome.result.workload["quantised_kv"]
    assert facts["count"] == 2 * model.config.n_layer


def test_the_program_writes_codes_and_reads_them_back(tiny_hf):
    model = load_model(str(tiny_hf))
    from compiler.quant import resolve_recipe
    graph, plan = recipe_graph(model, decode(9), resolve_recipe("kv:int8"))
    lowered = target("systolic").compile(graph, load_arch("systolic-32"), quant=plan)
    opcodes = [i.opcode for i in lowered.program.instructions]
    assert "storeq" in opcodes and "loadq" in opcodes
    cache = [f for f in lowered.quantised.values() if f.layout == "rows"]
    assert len(cache) == 4 and {f.group for f in cache} == {16}     # a scale per token and head


@pytest.mark.slow
@pytest.mark.parametrize("recipe, per_token", [("kv:int8", 8 + 16 / 64), ("kv:bfp8", 8 + 8 / 32),
                                               ("kv:mxfp8_e4m3", 8 + 8 / 32), ("kv:int4", 4 + 16 / 64),
                                               ("kv:bfp4", 4 + 8 / 32), ("kv:bfp4:b64", 4 + 8 / 64),
                                               ("kv:bfp6:b16", 6 + 8 / 16)])
def test_the_report_gives_the_caches_bytes_in_their_format(recipe, per_token):
    """gpt2's heads of 64: int8 per token and head takes (8 + 16/64)/16 of bf16's bytes, bfp8
    and MXFP8 (8 + 8/32)/16: the cache halves, scales included, exactly; d-Matrix's BFP12
    (4-bit mantissas, an 8-bit exponent per 32 or 64 channels) a quarter and a bit."""
    model = load_model("gpt2")
    result = run(make_request(model, "systolic", load_arch("systolic-128"), decode(64),
                              numerics=False, quant=recipe)).result
    facts = result.workload["quantised_kv"]
    assert facts["count"] == 24
    assert facts["stored_bytes"] * 16 == facts["full_bytes"] * per_token


@pytest.mark.slow
@pytest.mark.parametrize("name, preset", [("systolic", "systolic-128"), ("dataflow", "sn40l")])
def test_a_long_cache_reads_the_bytes_its_format_saves(name, preset):
    """gpt2 decode against 1000 cached tokens: the off-chip reads fall by the cache's bytes
    less its codes and scales (the whole cache is read once a step); sn40l, whose decode is
    bound by its HBM bytes, gets faster. systolic-128's KV blocks are each one DMA bound by its
    access latency (docs/validation.md), so its time barely moves."""
    model = load_model("gpt2")
    full, narrow = (run(make_request(model, name, load_arch(preset), decode(1000), numerics=False,
                                     quant=q)).result for q in (None, "kv:bfp8"))
    read = "dram_read" if name == "systolic" else "hbm_read"
    kv = narrow.workload["quantised_kv"]
    saved = kv["full_bytes"] - kv["stored_bytes"]
    assert full.bytes[read] - narrow.bytes[read] == pytest.approx(saved, rel=0.01)
    if name == "dataflow":
        assert narrow.time_s < 0.96 * full.time_s


def test_pim_keeps_its_cache_in_bf16(tiny_hf):
    model = load_model(str(tiny_hf))
    result = run(make_request(model, "pim", load_arch("pim-gpt"), decode(9), numerics=False,
                              quant="kv:int8")).result
    assert "quantised_kv" not in result.workload


@pytest.mark.slow
@pytest.mark.parametrize("fixture, extra", [
    ("tiny-gpt2", ["--phase", "decode", "--kv", "9", "--quant", "w4a4kv4"]),
    ("tiny-qwen3", ["--phase", "decode", "--kv", "9", "--quant", "kv:int4:g16:rearrange",
                    "--tokens", "5,9,2,7,11,3,8,1,6,4"]),     # the order calibrated on them
    ("tiny-mixtral", ["--seq", "6", "--quant", "w8a16:nested", "--expert-bits", "4"])])
def test_a_program_file_carries_the_narrow_cache_and_planes(tmp_path, fixture, extra):
    """A decode program with a narrow cache (one in a rearranged channel order folded into its
    weights), or one reading nested experts, written with its data and simulated from the file:
    the same cycles as the model run, which checks logits."""
    import json
    from tessel.cli import main
    model = str(FIXTURES / fixture)
    where = ["--target", "systolic", "--arch", "systolic-32"]
    prog = tmp_path / "q.tbin"
    assert main(["compile", "--model", model, *where, *extra, "--with-data", "-o", str(prog)]) == 0
    assert main(["sim", str(prog), "--json", str(tmp_path / "a.json")]) == 0
    assert main(["sim", "--model", model, *where, *extra, "--gpu", "none",
                 "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["cycles"] == b["cycles"] and b["logits_rel_error"] < 3e-2
