"""Vector ops' buffer needs (compiler/targets/vector_needs.py): the floors the systolic planner
takes from a graph, and that they are enough for the lowering, which cuts rows by the same
needs, on every op kind the model families use."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from isa import DType

from arch import load_arch
from compiler.builder import GraphBuilder
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.ir import OpKind
from compiler.passes.routing import Routing, moe_ops, route_graph
from compiler.phase import decode, prefill
from compiler.targets.systolic import PIPELINE
from compiler.targets.vector_needs import (SCRATCH, VP_IN, VP_OUT, Floor, elementwise_needs,
                                           layernorm_column_needs, vector_floors)
from tessel.targets import TARGETS
from tests.compiler.targets.test_vector_ops import _simulate

FIXTURES = Path(__file__).parents[2] / "fixtures"


def _floors(graph, dtype=DType.bf16):
    storage = PIPELINE.run(graph, load_arch("systolic-32"), dtype, until="storage")["storage"]
    return vector_floors(graph, storage.views, dtype, lambda v: storage.buffers[v.buffer].dtype.itemsize)


def test_gpt2_floors_are_one_layer_norm_column():
    """Layer norm goes by column blocks when a row does not fit: one column of x beside its
    gain and bias (64-byte aligned) and, in scratch, the column and its square in fp32 with
    three row statistics (+ 256 bytes of alignment)."""
    floors = _floors(load_model("gpt2").graph(decode(16)))
    ln = "layernorm 'h.0.ln_1' (one column)"
    assert floors == {VP_IN: Floor(2 + 2 * 64 + 64, ln), VP_OUT: Floor(2, "add 'embed' (one column)"),
                      SCRATCH: Floor(2 * 4 + 12 + 4 * 64, ln)}
    assert floors[VP_IN].bytes == layernorm_column_needs(1, 2)[VP_IN].one_row


@pytest.mark.slow
@pytest.mark.parametrize("narrow, wide", [("gpt2", "gpt2-xl"), ("llama-3.2-1b", "llama-3.1-8b")])
@pytest.mark.parametrize("preset", ["systolic-32", "systolic-128", "gemmini"])
def test_the_minimum_does_not_grow_with_the_model_width(narrow, wide, preset):
    """768 or 1,600 wide, 2,048 or 4,096: the same minimum, one fold and a column of each op
    (16 GiB of DRAM: llama-3.1-8b does not fit systolic-32's 8)."""
    arch = load_arch(preset, [f"dram_bytes={16 << 30}"])
    minimum = {name: PIPELINE.run(load_model(name).graph(decode(16)), arch, until="floors")["floors"]
               .minimum_bytes() for name in (narrow, wide)}
    assert minimum[narrow] == minimum[wide]


@pytest.mark.slow      # over 0.5 s in the fast tier (make test runs it)
def test_element_wise_ops_need_one_column():
    """A 3,000-wide silu and add: one column each (the lowering cuts wide rows into column
    blocks), so they raise no floor a fold does not; they compile at the minimum."""
    g = GraphBuilder("wide")
    x, y = g.input("x", (5, 3000)), g.input("y", (5, 3000))
    act = g.op(OpKind.SILU, "act", [x])
    g.op(OpKind.ADD, "out", [act, y])
    graph = g.build(["out"])
    floors = _floors(graph)
    assert floors[VP_IN] == Floor(elementwise_needs(OpKind.ADD, 1, 2, "none")[VP_IN].one_row,
                                  "add 'out' (one column)")
    assert floors[SCRATCH] == Floor(2 * 4 + 2 * 64, "silu 'act' (one column)")
    arch = load_arch("systolic-32")
    minimum = PIPELINE.run(graph, arch, until="floors")["floors"].minimum_bytes()
    TARGETS["systolic"].compile(graph, load_arch("systolic-32", [f"sram_bytes={minimum}"]))


@pytest.mark.slow
@pytest.mark.parametrize("phase", [prefill(8), decode(8)], ids=["prefill-8", "decode-8"])
@pytest.mark.parametrize("fixture", ["tiny-llama3-tied", "tiny-qwen3", "tiny-mistral-swa",
                                     "tiny-mixtral", "tiny-qwen2-bias"])
def test_every_family_compiles_at_its_minimum_and_not_below(fixture, phase):
    """rmsnorm (gains stored or computed), rope (a table row per position, or one for every
    head in decode), silu, sliding-window softmax, MoE gathers and concats: the floors hold."""
    graph = load_model(str(FIXTURES / fixture)).graph(phase)
    graph = route_graph(graph, Routing({op.name: [[t % 2, 1 - t % 2] for t in range(op.type.shape[0])]
                                        for op in moe_ops(graph)}, "test"))
    arch = load_arch("systolic-32")
    minimum = PIPELINE.run(graph, arch, until="floors")["floors"].minimum_bytes()
    TARGETS["systolic"].compile(graph, load_arch("systolic-32", [f"sram_bytes={minimum}"]))
    with pytest.raises(CompileError, match=f"the minimum is {minimum:,} bytes, set by "):
        TARGETS["systolic"].compile(graph, load_arch("systolic-32", [f"sram_bytes={minimum - 64}"]))


def _heads(g, seq: int, half: int) -> str:
    x = g.input("x", (1, seq, 2 * 2 * half))
    return g.op(OpKind.TRANSPOSE, "t", [g.op(OpKind.RESHAPE, "r", [x], shape=(1, seq, 2, 2 * half))],
                perm=(0, 2, 1, 3))


def _gain_product(g) -> str:
    return g.op(OpKind.MUL, "gain", [g.param("g1", (1000,)), g.param("g2", (1000,))])


def _concat(g) -> list[str]:
    p0 = g.op(OpKind.MUL, "p0", [g.input("x0", (4, 300)), g.param("s0", (300,))])
    p1 = g.op(OpKind.MUL, "p1", [g.input("x1", (4, 500)), g.param("s1", (500,))])
    return [g.op(OpKind.CONCAT, "c", [p0, p1], axis=1), p1]           # p1 is copied into c


# one wide op each (fp32), rows far wider than the minimum's buffers, so at the minimum they go
# by column blocks: (build, what the minimum's stated cause names besides the fold)
WIDE = {
    "layernorm": (lambda g: [g.op(OpKind.LAYERNORM, "y", [g.input("x", (3, 1000)), g.param("g", (1000,)),
                                                          g.param("b", (1000,))])], "layernorm 'y'"),
    "rmsnorm": (lambda g: [g.op(OpKind.RMSNORM, "y", [g.input("x", (3, 1000)), g.param("g", (1000,))])],
                "rmsnorm 'y'"),
    "rmsnorm-computed-gain": (lambda g: [g.op(OpKind.RMSNORM, "y", [g.input("x", (3, 1000)),
                                                                     _gain_product(g)])], "rmsnorm 'y'"),
    "rope-prefill": (lambda g: [g.op(OpKind.ROPE, "y", [_heads(g, 6, 256)], theta=1e4, start=0)], "rope 'y'"),
    "rope-decode": (lambda g: [g.op(OpKind.ROPE, "y", [_heads(g, 1, 256)], theta=1e4, start=7)], "rope 'y'"),
    "softmax-causal": (lambda g: [g.op(OpKind.SOFTMAX, "y", [g.input("x", (2, 5, 700))], scale=0.5,
                                      causal=True)], "softmax 'y'"),
    "softmax-window": (lambda g: [g.op(OpKind.SOFTMAX, "y", [g.input("x", (2, 5, 700))], scale=0.5,
                                      causal=True, window=300)], "softmax 'y'"),
    "concat": (_concat, "mul 'p0'"),             # a copied column needs less than a product's
    "embedding": (lambda g: [g.op(OpKind.EMBEDDING, "y", [g.param("table", (40, 1000)),
                                                          g.input("ids", (9,), DType.int32)])],
                  "embedding 'y'"),
    "div-by-row": (lambda g: [g.op(OpKind.DIV, "y", [g.input("a", (6, 4000)), g.input("w", (6, 1))])],
                   "one fold of the 32x32 ws array"),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c == "layernorm" else pytest.mark.slow)
                                  for c in WIDE])      # about 0.6 s each: one in the fast tier
@pytest.mark.slow
def test_each_op_kind_runs_at_its_minimum_with_its_floor_stated(case):
    """The planner's floors and the lowering's blocks come from the same needs: at the minimum
    every op runs by column blocks (more instructions than with whole rows; numerics against
    the reference), 64 bytes below the op that sets a floor is named."""
    build, setter = WIDE[case]
    g = GraphBuilder(case)
    graph = g.build(build(g))
    arch = load_arch("systolic-32", ["dtype=fp32"])
    minimum = PIPELINE.run(graph, arch, until="floors")["floors"].minimum_bytes()
    ids = {"ids": np.array([39, 0, 7, 7, 12, 1, 38, 20, 3], dtype=np.int32)} if case == "embedding" else None
    got, want, count = _simulate(graph, "systolic", "systolic-32", (f"sram_bytes={minimum}",), given=ids)
    for name in graph.outputs:
        assert np.abs(got[name] - want[name]).max() <= 2e-5 * np.abs(want[name]).max(), name
    assert count > _simulate(graph, "systolic", "systolic-32", given=ids)[2]
    below = load_arch("systolic-32", ["dtype=fp32", f"sram_bytes={minimum - 64}"])
    with pytest.raises(CompileError, match=rf"the minimum is {minimum:,} bytes, set by .*{re.escape(setter)}"):
        TARGETS["systolic"].compile(graph, below)
