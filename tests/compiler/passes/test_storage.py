"""Storage planning: every value, read through its view of a buffer, is the value itself."""
import numpy as np
import pytest

from compiler.frontend import load_model
from compiler.ir import DType, OpKind
from compiler.passes.storage import View, plan_storage
from compiler.phase import decode, prefill
from compiler.reference import EVALUATORS


def element_index(view: View) -> np.ndarray:
    return view.offset + sum(np.indices(view.shape)[k] * s for k, s in enumerate(view.strides))


@pytest.mark.parametrize("phase", [prefill(5, batch=2), decode(4, batch=2)], ids=str)
def test_views_hold_every_value(tiny_hf, phase):
    model = load_model(str(tiny_hf))
    graph = model.graph(phase)
    plan = plan_storage(graph, DType.fp32)
    rng = np.random.default_rng(0)
    values = {}
    for op in graph.ops:
        if op.kind is OpKind.INPUT:
            values[op.name] = (rng.integers(0, 512, op.type.shape) if op.name == "tokens"
                               else rng.standard_normal(op.type.shape))
        elif op.kind is OpKind.PARAM:
            values[op.name] = model.weights[op.name].astype(float)
        else:
            values[op.name] = EVALUATORS[op.kind](op, [values[i] for i in op.inputs])
    memory = {b.name: np.full(b.numel, np.nan) for b in plan.buffers.values()}
    for op in graph.ops:                      # producers write only their own (non-view) results
        if not op.kind.is_layout:
            view = plan.views[op.name]
            memory[view.buffer][element_index(view)] = values[op.name]
    for op in graph.ops:
        view = plan.views[op.name]
        np.testing.assert_array_equal(memory[view.buffer][element_index(view)], values[op.name], op.name)
    # layout ops and KV caches take no buffer of their own, except a re-rooted head merge
    rooted = [op.name for op in graph.ops if op.kind.is_layout and op.name in plan.buffers]
    if phase.kind == "prefill":
        assert rooted == ["h.0.attn.flat", "h.1.attn.flat"]
        assert plan.views["h.0.attn.context"].buffer == "h.0.attn.flat"
    else:
        assert rooted == []
        assert plan.views["h.0.k_cache"].buffer == "h.0.attn.k_all"


@pytest.mark.parametrize("shape, strides, new, expected", [
    ((2, 3, 4), (12, 4, 1), (6, 4), (4, 1)),
    ((2, 3, 4), (12, 4, 1), (2, 3, 2, 2), (12, 4, 2, 1)),
    ((3, 4), (1, 3), (12,), None),                      # a transposed matrix cannot flatten
    ((4, 2, 3), (3, 12, 1), (4, 6), None),
    ((1, 5), (5, 1), (5,), (1,)),
])
def test_reshape_views_follow_numpy(shape, strides, new, expected):
    view = View("b", shape, strides).reshape(new)
    assert (view.strides if view else None) == expected
