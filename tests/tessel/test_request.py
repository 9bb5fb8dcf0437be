"""The run request: phase rules, the numerics policy and the tokens, decided in one place."""
from __future__ import annotations

import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.phase import decode, prefill
from compiler.targets import CompileError
from tessel.request import (DEFAULT_KV, DEFAULT_SEQ, NUMERICS_DEFAULT_MAX_PARAMS, default_tokens,
                            make_request, resolve_phase)

GPT2 = load_model("gpt2")
GRAPH = load_model("examples/mlp.graph")
SYSTOLIC = load_arch("systolic-128")


@pytest.mark.parametrize("model, phase, arch, expected", [
    ("gpt2", prefill(8), "systolic-128", True),
    ("gpt2-medium", decode(4), "systolic-128", True),
    ("gpt2-large", decode(4), "systolic-128", False),          # over 400 M parameters
    ("gpt2", prefill(8, batch=2), "systolic-128", False),      # numerics run one sequence
    ("gpt2", prefill(8), "tpu-v1", False),                     # int8 needs a quantisation pass
])
def test_numerics_policy(model, phase, arch, expected):
    m = load_model(model)
    assert (m.config.n_params <= NUMERICS_DEFAULT_MAX_PARAMS) == (model != "gpt2-large")
    assert make_request(m, "systolic", load_arch(arch), phase).numerics is expected


def test_graph_files_run_timing_only_and_refuse_numerics():
    assert make_request(GRAPH, "systolic", SYSTOLIC).numerics is False
    with pytest.raises(GraphError, match="needs input values; .graph files run timing only"):
        make_request(GRAPH, "systolic", SYSTOLIC, numerics=True)
    with pytest.raises(GraphError, match=r"phases apply to preset and checkpoint models only \(a .graph file has fixed shapes\)"):
        make_request(GRAPH, "systolic", SYSTOLIC, prefill(4))


@pytest.mark.parametrize("phase, arch, dtype, match", [
    (prefill(4), "tpu-v1", None, "int8 needs a quantization pass"),
    (prefill(4, batch=2), "systolic-128", None, "runs one sequence"),
])
def test_asked_numerics_that_cannot_run_is_an_error(phase, arch, dtype, match):
    with pytest.raises(GraphError, match=match):
        make_request(GPT2, "systolic", load_arch(arch), phase, numerics=True, dtype=dtype)


def test_numeric_requests_carry_their_tokens():
    req = make_request(GPT2, "systolic", SYSTOLIC, decode(5))
    assert req.tokens == default_tokens(GPT2, decode(5)) and len(req.tokens) == 6
    given = make_request(GPT2, "systolic", SYSTOLIC, prefill(3), tokens=[1, 2, 3])
    assert given.tokens == (1, 2, 3)
    assert make_request(GPT2, "systolic", SYSTOLIC, prefill(3), numerics=False).tokens is None
    with pytest.raises(GraphError, match="3 tokens do not make a decode kv=5"):
        make_request(GPT2, "systolic", SYSTOLIC, decode(5), tokens=[1, 2, 3])


def test_the_architecture_must_be_the_targets():
    with pytest.raises(CompileError, match="is for target 'systolic', not 'pim'"):
        make_request(GPT2, "pim", SYSTOLIC, prefill(4))


def test_phase_resolution():
    assert resolve_phase(GPT2) == prefill(DEFAULT_SEQ)
    assert resolve_phase(GPT2, "decode") == decode(DEFAULT_KV)
    assert resolve_phase(GPT2, "decode", tokens=[5, 6, 7]) == decode(2)
    assert resolve_phase(GRAPH) is None
    for args, match in [(("decode", 4), "--seq applies to --phase prefill only"),
                        (("prefill", None, 4), "--kv applies to --phase decode only")]:
        with pytest.raises(GraphError, match=match):
            resolve_phase(GPT2, *args)
    with pytest.raises(GraphError, match="--tokens gives 3 tokens, which does not match --seq 4"):
        resolve_phase(GPT2, "prefill", 4, tokens=[1, 2, 3])
    with pytest.raises(GraphError, match="--batch does not apply to a .graph file"):
        resolve_phase(GRAPH, batch=2)
