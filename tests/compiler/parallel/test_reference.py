"""A partitioned model computes the single-device logits: TP, PP and TP x PP, prefill and decode.

Tolerance: max |plan - single| / max |single| (the project's logit measure). In float64 the
plans agree to 1e-12 (only the all-reduce's association order differs); in float32 to 1e-5,
390x inside BF16's 2^-8 (3.9e-3) rounding of the logits. Pipeline parallelism alone runs the
same ops in the same order, so it is exact.
"""
import json

import numpy as np
import pytest

from compiler import driver
from compiler.frontend import Model, load_model
from compiler.ir import GraphError
from compiler.parallel.partition import device_graphs
from compiler.parallel.plan import make_plan
from compiler.parallel.reference import decode_logits, execute_plan, prefill_logits
from compiler.phase import prefill
from tests.conftest import FIXTURES
from tests.families.tiny import TINY

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}
MODELS = {
    "tiny-gpt2": load_model(str(FIXTURES / "tiny-gpt2")),                 # HF checkpoint, fused c_attn
    "tiny-llama3": Model("tiny-llama3", TINY["tiny-llama3"], seed=3),     # GQA: 1 KV head per rank
    "tiny-llama-sharded": load_model(str(FIXTURES / "tiny-llama-sharded")),  # q/k/v, o_proj, MLP biases
    "tiny-qwen3-moe": load_model(str(FIXTURES / "tiny-qwen3-moe")),        # experts and a dense layer
}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def tokens(model: Model) -> list[int]:
    return list(np.random.default_rng(11).integers(0, model.config.vocab_size, size=7))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tp, pp", [(2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.slow      # over 0.6 s in the fast tier (make test runs it)
def test_a_plan_computes_the_single_device_logits(name, tp, pp, dtype, phase):
    model, ids = MODELS[name], tokens(MODELS[name])
    plan = make_plan(model.config, tp * pp, tp=tp, pp=pp)
    ours, single = ((prefill_logits, driver.prefill_logits) if phase == "prefill"
                    else (decode_logits, driver.decode_logits))
    actual, expected = ours(model, plan, ids, dtype), single(model, ids, dtype)
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= (0.0 if tp == 1 else TOLERANCE[dtype])


@pytest.mark.parametrize("phase, dispatch", [("prefill", "all_to_all"), ("prefill", "replicated"),
                                             ("decode", "replicated")])
def test_expert_parallelism_computes_the_single_device_logits(phase, dispatch):
    """Each rank its own experts, whole: its half of the tokens sent to the experts' ranks and
    back by all-to-all, or every token on every rank, the partial outputs all-reduced (a
    decode step's one token cannot be split)."""
    model, ids = MODELS["tiny-qwen3-moe"], tokens(MODELS["tiny-qwen3-moe"])
    ids = ids[:len(ids) // 2 * 2]
    plan = make_plan(model.config, 2, tp=2, ep=2, dispatch=dispatch)
    ours, single = ((prefill_logits, driver.prefill_logits) if phase == "prefill"
                    else (decode_logits, driver.decode_logits))
    actual, expected = ours(model, plan, ids, np.float64), single(model, ids, np.float64)
    assert relative_error(actual, expected) <= TOLERANCE[np.float64]


def test_every_rank_ends_with_the_same_values():
    model = MODELS["tiny-llama3"]
    plan = make_plan(model.config, 4, tp=2, pp=2)
    parts = device_graphs(model.config, plan, prefill(5))
    feeds = [{"tokens": np.array([[1, 2, 3, 4, 5]], np.int32)}] * 2 + [{}] * 2
    out = execute_plan(plan, parts, model.weights, feeds, np.float32)
    for stage in (0, 1):
        a, b = out[plan.device(stage, 0)], out[plan.device(stage, 1)]
        head = parts[plan.device(stage, 0)].graph.outputs[0]      # hidden state, then logits
        np.testing.assert_array_equal(a[head], b[head])
        # each rank's cache holds its own KV head: together they are the single device's
        k0, k1 = (a["layers.%d.self_attn.k.rope" % stage], b["layers.%d.self_attn.k.rope" % stage])
        assert k0.shape == k1.shape == (1, 1, 5, 16) and not np.array_equal(k0, k1)


def test_the_hugging_face_logits_come_out_of_a_plan():
    fixture = FIXTURES / "tiny-gpt2"
    ids = json.loads((fixture / "tokens.json").read_text())["tokens"]
    plan = make_plan(MODELS["tiny-gpt2"].config, 4, tp=2, pp=2)
    logits = prefill_logits(MODELS["tiny-gpt2"], plan, ids)
    assert relative_error(logits, np.load(fixture / "expected_logits.npy")) < 1e-4


def test_decode_needs_a_cache():
    model = MODELS["tiny-llama3"]
    with pytest.raises(GraphError, match="decode needs at least 2 tokens"):
        decode_logits(model, make_plan(model.config, 2, tp=2), [3])
