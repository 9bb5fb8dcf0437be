"""The Llama-family ops on the shared lowering (vector unit, batched GEMMs, gathers): small
graphs compiled for the systolic and dataflow targets, simulated with numerics, against the
reference executor."""
from dataclasses import replace

import numpy as np
import pytest

from arch import load_arch
from isa import unroll
from isa.unroll import executed_count
from compiler.builder import GraphBuilder
from compiler.errors import CompileError
from compiler.frontend.decoder import build_graph
from compiler.ir import DType, Graph, OpKind
from compiler.passes.routing import policy_routing, route_graph
from compiler.phase import prefill
from compiler.pipeline import dump_after
from compiler.reference import execute
from compiler.targets.constants import constant_shapes
from compiler.targets.data import read_value
from compiler.targets.dataflow import PIPELINE as DATAFLOW
from compiler.targets.dataflow.sections import STAGES_MAX, layer_of, partition, template_of
from compiler.targets.movement import GATHER_REACH_BYTES
from compiler.targets.systolic import PIPELINE as SYSTOLIC
from compiler.passes.storage import plan_storage
from tessel.targets import target
from tests.families.tiny import TINY

# fp32 storage: the lowering's arithmetic is fp32 against the float64 reference
FP32_TOLERANCE = 2e-5
ARCHS = [("systolic", "systolic-32", ()), ("dataflow", "sn40l", ()),
         ("dataflow", "dataflow-small", ("kernel_granularity=layer",))]


def _simulate(graph: Graph, where: str, preset: str, overrides=(), dtype="fp32", given=None):
    """(simulated outputs, reference outputs, instruction count): random float sources, the
    `given` values (int32 ids must be given)."""
    rng = np.random.default_rng(0)
    values = {op.name: rng.standard_normal(op.type.shape) for op in graph.ops
              if op.kind.is_source and op.type.dtype is not DType.int32}
    values.update(given or {})
    weights = {p.name: values[p.name] for p in graph.params}
    feeds = {i.name: values[i.name] for i in graph.inputs}
    arch = load_arch(preset, [*overrides, f"dtype={dtype}"])
    t = target(where)
    lowered = t.compile(graph, arch)
    program = replace(lowered.program, data=lowered.initial_data(graph, weights, feeds))
    sim = t.simulate(program, arch, functional=True)
    got = {o: read_value(lambda s: sim.memory.read_symbol(program, s), lowered.plan, o) for o in graph.outputs}
    return got, execute(graph, weights, feeds), executed_count(program)


def _check(graph: Graph, tolerance=FP32_TOLERANCE, dtype="fp32", given=None) -> None:
    for where, preset, overrides in ARCHS:
        got, want, _ = _simulate(graph, where, preset, overrides, dtype, given)
        for name in graph.outputs:
            err = np.abs(got[name] - want[name]).max() / np.abs(want[name]).max()
            assert err < tolerance, (where, preset, name, err)


def _graph(name: str, build) -> Graph:
    g = GraphBuilder(name)
    outputs = build(g)
    return g.build(outputs)


def test_rmsnorm_with_a_parameter_gain_and_a_computed_gain():
    def build(g):
        x = g.input("x", (5, 48))
        a = g.op(OpKind.RMSNORM, "a", [x, g.param("a.weight", (48,))], eps=1e-5)
        gain = g.op(OpKind.MUL, "gain", [g.param("g1", (48,)), g.param("g2", (48,))])
        return [a, g.op(OpKind.RMSNORM, "b", [x, gain], eps=1e-6)]
    _check(_graph("rms", build))
    _check(_graph("rms", build), tolerance=3e-2, dtype="bf16")


@pytest.mark.parametrize("seq, start", [(6, 0), (6, 11), (1, 7)], ids=["prefill", "offset", "decode"])
def test_rope_on_the_heads_view_of_a_projection(seq, start):
    """[B, S, H*Dh] -> [B, H, S, Dh] strided view; llama3 frequency scaling on one of them."""
    def build(g):
        x = g.input("x", (1, seq, 3 * 16))
        heads = g.op(OpKind.TRANSPOSE, "t", [g.op(OpKind.RESHAPE, "r", [x], shape=(1, seq, 3, 16))],
                     perm=(0, 2, 1, 3))
        plain = g.op(OpKind.ROPE, "plain", [heads], theta=10000.0, start=start)
        scaled = g.op(OpKind.ROPE, "scaled", [heads], theta=5e5, start=start, factor=8.0,
                      low_freq_factor=1.0, high_freq_factor=4.0, original_max_position=8)
        folded = g.op(OpKind.ROPE, "folded", [heads], theta=10000.0, start=start,
                      pairs=(5, 2, 7, 0, 1, 3, 6, 4))     # a channel order folded in (kv_fold)
        return [plain, scaled, folded]
    graph = _graph("rope", build)
    assert len(constant_shapes(graph)) == 3         # one [cos | sin] table per attribute set
    _check(graph)
    got, want, _ = _simulate(graph, "pim", "pim-gpt", dtype="bf16")      # its ASIC's lowering
    assert all(np.abs(got[o] - want[o]).max() < 3e-2 * np.abs(want[o]).max() for o in graph.outputs)


def test_silu_div_and_row_broadcast():
    def build(g):
        a, b, w = g.input("a", (6, 40)), g.input("b", (6, 40)), g.input("w", (6, 1))
        s = g.op(OpKind.SILU, "s", [a])
        d = g.op(OpKind.DIV, "d", [a, g.op(OpKind.ADD, "pos", [g.op(OpKind.MUL, "sq", [b, b]), b])])
        rows = g.op(OpKind.MUL, "rows", [w, a])              # b is the first operand: swapped
        return [s, d, rows, g.op(OpKind.DIV, "per_row", [a, w])]
    _check(_graph("ew", build), tolerance=1e-4)


def test_silu_of_large_magnitudes_is_its_limit():
    """exp(-x) overflows fp32 for x < -89: x / inf is -0, silu's limit, not NaN."""
    graph = _graph("silu_big", lambda g: [g.op(OpKind.SILU, "s", [g.input("a", (2, 4))])])
    a = np.array([[-200.0, -90.0, -1.0, 0.0], [0.5, 3.0, 90.0, 200.0]])
    got, want, _ = _simulate(graph, "systolic", "systolic-32", given={"a": a})
    np.testing.assert_allclose(got["s"], want["s"], rtol=1e-6, atol=1e-30)


def test_dividing_by_a_broadcast_first_operand_is_refused():
    def build(g):
        return [g.op(OpKind.DIV, "d", [g.input("w", (6, 1)), g.input("a", (6, 40))])]
    with pytest.raises(CompileError, match=r"op 'd' \(div\): broadcasting its first operand \[6, 1\] "
                                           r"to \[6, 40\] is not supported"):
        target("systolic").compile(_graph("bad", build), load_arch("systolic-32"))


def _concat_graph(axis: int, also_output: bool) -> Graph:
    def build(g):
        shapes = [(3 + i, 8) if axis == 0 else (4, 3 + i) for i in range(3)]
        parts = [g.op(OpKind.MUL, f"p{i}", [g.input(f"x{i}", shape), g.param(f"s{i}", shape[1:])])
                 for i, shape in enumerate(shapes)]
        return [g.op(OpKind.CONCAT, "c", parts, axis=axis), *(["p1"] if also_output else [])]
    return _graph("cat", build)


@pytest.mark.parametrize("axis", [0, 1])
def test_concat_inputs_write_into_their_slices_or_are_copied_there(axis):
    """p0 and p2 are used only by the concat (written in place); p1 is also an output (copied)."""
    _check(_concat_graph(axis, also_output=True))
    _check(_concat_graph(axis, also_output=False))


def _vector_copies(graph: Graph) -> int:
    program = unroll(target("systolic").compile(graph, load_arch("systolic-32")).program)
    return sum(i.opcode == "vec" and i["func"] == "copy" for i in program.instructions)


def test_a_concat_of_values_used_nowhere_else_moves_nothing():
    assert _vector_copies(_concat_graph(0, also_output=False)) == 0
    assert _vector_copies(_concat_graph(0, also_output=True)) == 1


@pytest.mark.parametrize("s, t, window", [(7, 7, 3), (1, 9, 4), (1, 3, 4)],
                         ids=["prefill", "decode", "window-covers-all"])
def test_softmax_sliding_window(s, t, window):
    def build(g):
        return [g.op(OpKind.SOFTMAX, "p", [g.input("x", (2, s, t))], scale=0.5, causal=True, window=window)]
    graph = _graph("win", build)
    assert len(constant_shapes(graph)) == (0 if t <= window else 1)
    _check(graph)


def test_grouped_query_matmuls_read_the_kv_head_in_place():
    """q [B, Hkv, G, S, Dh] x k [B, Hkv, 1, T, Dh]^T, and probs x v; b broadcast on an outer axis too."""
    def build(g):
        q, k, v = g.input("q", (1, 2, 3, 4, 8)), g.input("k", (1, 2, 1, 6, 8)), g.input("v", (1, 2, 1, 6, 8))
        scores = g.op(OpKind.MATMUL, "scores", [q, k], transpose_b=True)
        ctx = g.op(OpKind.MATMUL, "ctx", [g.op(OpKind.SOFTMAX, "probs", [scores]), v])
        outer = g.op(OpKind.MATMUL, "outer", [g.input("a", (2, 3, 5, 8)), g.input("b", (1, 3, 8, 6))])
        return [scores, ctx, outer]
    _check(_graph("gqa", build))


def test_a_group_of_single_queries_is_one_gemm():
    def build(g):
        q, k = g.input("q", (1, 2, 4, 1, 8)), g.input("k", (1, 2, 1, 6, 8))
        return [g.op(OpKind.MATMUL, "scores", [q, k], transpose_b=True)]
    program = unroll(target("systolic").compile(_graph("one", build), load_arch("systolic-32")).program)
    assert sum(i.opcode == "gemm" for i in program.instructions) == 2      # one per KV head


def test_gather_of_a_computed_table():
    """MoE permutes gather rows of a value computed just before (ordering and placement)."""
    def build(g):
        table = g.op(OpKind.MUL, "table", [g.input("x", (10, 16)), g.param("s", (16,))])
        rows = g.op(OpKind.GATHER, "rows", [table, g.input("ids", (7,), DType.int32)])
        return [g.op(OpKind.ADD, "out", [rows, g.param("b", (16,))])]
    _check(_graph("gather", build), given={"ids": np.array([9, 0, 3, 3, 7, 1, 9], dtype=np.int32)})


def test_a_dataflow_section_ends_before_a_gather_of_its_own_value():
    def build(g):
        table = g.op(OpKind.MUL, "layers.0.table", [g.input("x", (10, 16)), g.param("s", (16,))])
        rows = g.op(OpKind.GATHER, "layers.0.rows", [table, g.input("ids", (7,), DType.int32)])
        return [g.op(OpKind.ADD, "layers.0.out", [rows, g.param("b", (16,))])]
    graph = _graph("cut", build)
    calls = partition(graph, plan_storage(graph, DType.bf16), "layer", 64, 1 << 20)
    assert [c.sections[0].ops for c in calls] == [("layers.0.table",), ("layers.0.rows", "layers.0.out")]


def test_llama_layer_names_group_and_template_like_gpt2():
    assert layer_of("layers.12.mlp.gate_proj") == 12 and layer_of("h.3.attn") == 3
    assert template_of("layers.12.mlp.gate_proj") == "layers.*.mlp.gate_proj"
    assert template_of("h.3.attn.qkv") == "h.*.attn.qkv" and layer_of("lm_head") is None


def test_gather_tables_go_first_smallest_first_and_far_ones_use_gatherw():
    """Three embedding tables, smallest first in DRAM: the two that start in the first 256 MiB
    are read with gather, the one after them with gatherw (64-byte units, 16 GiB reach)."""
    rows = GATHER_REACH_BYTES // (1024 * 2)            # bf16 rows of 1024: exactly the reach

    def build(g):
        outs = []
        for name, n in (("big", rows + 1), ("small", 4), ("edge", rows)):
            outs.append(g.op(OpKind.EMBEDDING, f"{name}.rows",
                             [g.param(f"{name}.weight", (n, 1024)), g.input(f"{name}.ids", (2,), DType.int32)]))
        return outs
    program = unroll(target("systolic").compile(_graph("reach", build), load_arch("systolic-128")).program)
    at = {s.name: s.addr for s in program.symbols}
    assert at["small.weight"] < at["edge.weight"] < GATHER_REACH_BYTES <= at["big.weight"]
    gathers = {i["table"].addr: i.opcode for i in program.instructions if i.opcode.startswith("gather")}
    assert gathers == {at["small.weight"]: "gather", at["edge.weight"]: "gather",
                       at["big.weight"]: "gatherw"}


def test_gather_beyond_every_reach_is_refused():
    from compiler.targets.movement import FAR_GATHER_REACH_BYTES, check_gather_reach, gather_opcode
    assert FAR_GATHER_REACH_BYTES == 64 * GATHER_REACH_BYTES
    with pytest.raises(CompileError, match=r"would start at hbm byte 17,179,869,184; gatherw reaches"):
        check_gather_reach("t", "hbm", FAR_GATHER_REACH_BYTES)
    with pytest.raises(CompileError, match="not a 64-byte aligned address"):
        gather_opcode("t", GATHER_REACH_BYTES + 32)


def test_dataflow_keeps_the_experts_with_most_tokens_in_hbm_when_it_is_short():
    """Skewed routing, HBM for about half the expert weights: every expert in DDR got no more
    tokens than any expert in HBM, and experts no token chose go to DDR first."""
    config = TINY["tiny-qwen3-moe"]
    unrouted = build_graph(config, prefill(3))
    routing = policy_routing(unrouted, "zipf:1.5")
    graph = route_graph(unrouted, routing)
    experts = {}            # weight -> tokens routed to its expert
    for op in unrouted.of_kind(OpKind.MOE):
        counts = np.bincount(routing.choices[op.name].reshape(-1), minlength=config.num_experts)
        for e in range(config.num_experts):
            for w in op.inputs[2 + 3 * e: 5 + 3 * e]:
                experts[w] = int(counts[e])
    roomy = DATAFLOW.run(graph, load_arch("sn40l"), until="placement")["placement"]
    expert_bytes = sum(graph[w].type.numel * 2 for w in experts)
    short = load_arch("sn40l", [f"hbm_bytes={roomy.hbm_end - expert_bytes // 2}"])
    placement = DATAFLOW.run(graph, short, until="placement")["placement"]
    tier = {w: placement.where[w][0] for w in experts}
    assert set(tier.values()) == {"hbm", "ddr"} and 0 in experts.values()
    assert max(experts[w] for w in experts if tier[w] == "ddr") <= min(experts[w] for w in experts if tier[w] == "hbm")
    assert "DDR" in placement.tier_note() and roomy.tier_note() is None


def test_a_section_has_at_most_the_stages_df_section_encodes():
    """A Qwen3-MoE prefill layer has 640 expert ops; df.section's stages field is 8 bits."""
    def build(g):
        x = g.input("x", (2, 8))
        for i in range(300):
            x = g.op(OpKind.SILU, f"layers.0.act{i}", [x])
        return [x]
    graph = _graph("deep", build)
    calls = partition(graph, plan_storage(graph, DType.bf16), "layer", 1040, 1 << 28)
    assert [len(c.sections[0].ops) for c in calls] == [STAGES_MAX, 300 - STAGES_MAX] and STAGES_MAX == 255


def test_rows_wider_than_the_vector_buffers_are_cut_into_column_blocks():
    """A 3,000-wide fp32 row (12 KB) on a 64 KiB scratchpad (vp_in slots of about 2 KB):
    silu, a product, a row broadcast and a column broadcast, computed per column block."""
    g = GraphBuilder("wide")
    x, y = g.input("x", (5, 3000)), g.input("y", (5, 3000))
    z, w = g.input("z", (5, 1)), g.input("w", (3000,))
    act = g.op(OpKind.SILU, "act", [x])
    prod = g.op(OpKind.MUL, "prod", [act, y])
    scaled = g.op(OpKind.DIV, "scaled", [prod, z])
    g.op(OpKind.ADD, "out", [scaled, w])
    graph = g.build(["out"])
    got, want, count = _simulate(graph, "systolic", "systolic-32", ("sram_bytes=65536",),
                                 given={"z": np.full((5, 1), 1.5) + np.arange(5)[:, None]})
    assert np.abs(got["out"] - want["out"]).max() / np.abs(want["out"]).max() < FP32_TOLERANCE
    _, _, whole_rows = _simulate(graph, "systolic", "systolic-32", ())
    assert count > whole_rows          # the narrow buffers took more, smaller blocks
