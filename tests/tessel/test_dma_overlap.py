"""A systolic DMA engine that keeps requests in flight (arch field dma_overlap): a transfer holds
the DRAM port for its bytes, its data lands the access latency later. Where decode is bound by
the DRAM's bandwidth, a quantised program then speeds up by the bytes it no longer reads."""
import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode
from compiler.targets.sweep import flat_emission
from tessel.driver import compile_model_graph, recipe_graph, run
from tessel.request import make_request
from tessel.targets import target

OVERLAP = ["dma_overlap=true", "dram_bw_gbps=32"]      # gpt2's decode: DRAM-bound


@pytest.mark.slow
def test_a_bandwidth_bound_decode_speeds_up_by_its_bytes():
    model = load_model("gpt2")
    arch = load_arch("systolic-128", OVERLAP)
    results = {q: run(make_request(model, "systolic", arch, decode(128), numerics=False,
                                   quant=q)).result for q in (None, "w8a16", "w4a16:g128")}
    full = results[None]
    for q in ("w8a16", "w4a16:g128"):
        predicted = full.bytes["dram_read"] / results[q].bytes["dram_read"]
        speedup = full.time_s / results[q].time_s
        assert speedup == pytest.approx(predicted, rel=0.05)


@pytest.mark.slow
def test_overlapped_transfers_time_per_pattern_as_the_flat_program():
    model = load_model("gpt2")
    arch = load_arch("systolic-128", OVERLAP)
    from compiler.quant import resolve_recipe
    graph, plan = recipe_graph(model, decode(16), resolve_recipe("w4a16:g128+kv:int4"))
    compact = compile_model_graph(model, graph, "systolic", arch, quant=plan)
    with flat_emission():
        flat = compile_model_graph(model, graph, "systolic", arch, quant=plan)
    assert len(compact.program.instructions) < len(flat.program.instructions)
    a, b = (target("systolic").simulate(lo.program, arch, functional=False).result
            for lo in (compact, flat))
    assert (a.cycles, a.energy_j, a.unit_busy_cycles) == (b.cycles, b.energy_j, b.unit_busy_cycles)
