"""Serving steps (compiler/phase.py `Step`): several requests in one pass, each a prefill chunk
or a decode at its own cache length. The reference gives each request the logits it has run
alone; every target computes them within BF16; a step of equal decodes is the batched decode,
to the cycle."""
from __future__ import annotations

import numpy as np
import pytest

from arch import load_arch
from compiler.driver import prefill_logits, step_feeds, step_logits
from compiler.frontend import load_model
from compiler.ir import GraphError
from compiler.phase import Segment, Step, decode, groups
from compiler.targets.data import read_value
from tessel.driver import compile_model_graph
from tessel.targets import TARGETS
from tests.conftest import FIXTURES

BF16_TOLERANCE = 3e-2
FAMILIES = [str(FIXTURES / name) for name in ("tiny-gpt2", "tiny-qwen3", "tiny-mistral-swa",
                                              "tiny-qwen3-moe")]
# (tokens so far, of which cached): fresh prefills, decodes and prefill chunks, some alike
SHAPES = [(3, 0), (3, 0), (6, 5), (6, 5), (7, 4), (2, 0)]


def requests(model, shapes=SHAPES, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, model.config.vocab_size, n).tolist(), cached) for n, cached in shapes]


def alone(model, reqs) -> np.ndarray:
    """Each request's last-token logits, run by itself over all its tokens."""
    return np.stack([prefill_logits(model, tokens)[-1] for tokens, _ in reqs])


@pytest.mark.parametrize("spec", FAMILIES)
def test_each_request_of_a_step_gets_the_logits_it_has_alone(spec):
    model = load_model(spec)
    reqs = requests(model)
    got, expected = step_logits(model, reqs), alone(model, reqs)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()


def test_requests_alike_attend_as_one_batch():
    step = Step(tuple(Segment(n - c, c) for n, c in SHAPES))
    found = [(g.start, g.batch, g.seq, g.kv) for g in groups(step)]
    assert found == [(0, 2, 3, 0), (6, 2, 1, 5), (8, 1, 3, 4), (11, 1, 2, 0)]
    assert step.seq == 13 and step.total_len == 7
    alone_each = Step(step.segments, batched=False)       # PIM: one sequence at a time
    assert [g.batch for g in groups(alone_each)] == [1] * len(SHAPES)


@pytest.mark.parametrize("segments, message", [
    ((), "a step needs at least one segment"),
    ((Segment(1, 0), "x"), "step segment 1: 'x' is not a Segment"),
])
def test_a_malformed_step_is_refused(segments, message):
    with pytest.raises(GraphError, match=message):
        Step(segments)


@pytest.mark.parametrize("tokens, context, message", [
    (0, 3, "segment tokens must be an integer >= 1, got 0"),
    (2, -1, "segment context must be an integer >= 0, got -1"),
])
def test_a_malformed_segment_is_refused(tokens, context, message):
    with pytest.raises(GraphError, match=message):
        Segment(tokens, context)


def test_a_step_past_the_context_is_refused():
    model = load_model(FAMILIES[1])
    too_long = model.config.max_position_embeddings
    with pytest.raises(GraphError, match="positions exceed the context"):
        model.graph(Step((Segment(1, too_long),)))


ARCHS = {"systolic": "systolic-32", "pim": "pim-gpt", "dataflow": "sn40l"}


@pytest.mark.parametrize("target", ["systolic", pytest.param("pim", marks=pytest.mark.slow),
                                    "dataflow"])
@pytest.mark.slow
@pytest.mark.parametrize("spec", FAMILIES[:2])
def test_every_target_computes_a_mixed_step(spec, target):
    """Fresh prefills, decodes and a prefill chunk against its cache in one program."""
    model = load_model(spec)
    reqs = requests(model, seed=1)
    step, feeds = step_feeds(model, reqs, batched=not TARGETS[target].one_sequence)
    graph, arch = model.graph(step), load_arch(ARCHS[target])
    lowered = compile_model_graph(model, graph, target, arch, None, feeds)
    sim = TARGETS[target].simulate(lowered.program, arch, functional=True)
    got = read_value(lambda s: sim.memory.read_symbol(lowered.program, s), lowered.plan,
                     graph.outputs[0])[0]
    expected = alone(model, reqs)
    assert np.abs(got - expected).max() / np.abs(expected).max() < BF16_TOLERANCE


@pytest.mark.parametrize("target", list(ARCHS))
@pytest.mark.parametrize("spec", FAMILIES[:2])
@pytest.mark.slow      # over 0.5 s in the fast tier (make test runs it)
def test_a_step_of_equal_decodes_is_the_batched_decode_to_the_cycle(spec, target):
    """B requests decoding at one cache length are the existing decode of batch B: the same
    cycles and energy (PIM runs one sequence at a time: B = 1)."""
    model, arch = load_model(spec), load_arch(ARCHS[target].replace("systolic-32", "systolic-128"))
    batch = 1 if target == "pim" else 4
    results = []
    for phase in (decode(16, batch=batch), Step((Segment(1, 16),) * batch)):
        program = TARGETS[target].compile(model.graph(phase), arch).program
        results.append(TARGETS[target].simulate(program, arch, functional=False).result)
    assert results[0].cycles == results[1].cycles
    assert results[0].energy_j == pytest.approx(results[1].energy_j, rel=1e-12)
