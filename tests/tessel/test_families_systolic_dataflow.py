"""Every Llama-style family (tests/families/tiny.py) compiled for the systolic and dataflow
targets in BF16 and simulated with numerics: logits within 3e-2 of the reference executor,
prefill and a cached decode step. Mixture-of-experts models are routed by their router's own
choice (tessel/driver.py)."""
import pytest

from arch import load_arch
from compiler.frontend import Model
from compiler.phase import decode, prefill
from tessel.driver import run
from tessel.request import make_request
from tests.families.tiny import TINY

pytestmark = pytest.mark.slow   # end-to-end: compiles and simulates whole models

BF16_TOLERANCE = 3e-2           # docs/validation.md: bf16 storage, fp32 accumulation
PRESETS = {"systolic": "systolic-128", "dataflow": "sn40l"}


@pytest.mark.parametrize("phase", [prefill(10), decode(9)], ids=str)
@pytest.mark.parametrize("where", sorted(PRESETS))
@pytest.mark.parametrize("name", sorted(TINY))
def test_bf16_logits_match_the_reference(name, where, phase):
    arch = load_arch(PRESETS[where], ["dtype=bf16"])
    outcome = run(make_request(Model(name, TINY[name]), where, arch, phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
    if TINY[name].num_experts:
        assert outcome.result.workload["routing"].startswith("router")


@pytest.mark.parametrize("where", sorted(PRESETS))
def test_small_buffers_and_layer_sections_compute_the_same_logits(where):
    """Many tiles per GEMM (systolic-32) and a dataflow layer split into several sections."""
    arch = (load_arch("systolic-32", ["dtype=fp32"]) if where == "systolic"
            else load_arch("dataflow-small", ["dtype=fp32", "kernel_granularity=layer"]))
    for name in ("tiny-mistral", "tiny-qwen3-moe"):
        outcome = run(make_request(Model(name, TINY[name]), where, arch, decode(9), numerics=True))
        assert outcome.result.logits_rel_error < 1e-4


@pytest.mark.parametrize("name, attention", [("tiny-llama3", "fused"), ("tiny-mistral", "unfused"),
                                             ("tiny-qwen3-moe", "fused")])
def test_logits_at_the_minimum_sram(name, attention):
    """At its minimum SRAM (one fold of the 32x32 array and one column of every other op) a
    whole model still computes its logits: RMS norm, rotary embedding and (unfused) the
    sliding-window softmax by column blocks, embeddings by column slices. 40 positions make
    the softmax rows wider than its slots: blocks of 20 columns, the first hidden entirely
    from the rows past 26 by the 6-wide window."""
    from compiler.targets.systolic import PIPELINE
    model, phase = Model(name, TINY[name]), prefill(40)
    arch = load_arch("systolic-32", ["dtype=bf16", f"attention={attention}"])
    minimum = PIPELINE.run(model.graph(phase), arch, until="floors")["floors"].minimum_bytes()
    small = load_arch("systolic-32", ["dtype=bf16", f"attention={attention}", f"sram_bytes={minimum}"])
    outcome = run(make_request(model, "systolic", small, phase, numerics=True))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE
