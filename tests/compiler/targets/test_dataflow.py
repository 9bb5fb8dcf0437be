"""The dataflow target: sectioning, tier placement, and one section and run per call."""
import pytest

from arch import ArchError, load_arch
from compiler.frontend import load_model
from compiler.passes.storage import plan_storage
from compiler.phase import decode, prefill
from compiler.pipeline import compile_graph, dump_after
from compiler.targets.dataflow import PIPELINE
from compiler.targets.dataflow.place import place
from compiler.targets.dataflow.sections import partition, template_of
from isa import DType, unroll


@pytest.fixture(scope="module")
def graph():
    return load_model("gpt2").graph(decode(4))


def test_granularities_give_per_op_per_layer_and_looped_calls(graph):
    plan = plan_storage(graph, DType.bf16)
    ops = [op for op in graph.ops if not (op.kind.is_source or op.kind.is_layout)]
    per_op = partition(graph, plan, "operator", 1040, 1 << 28)
    per_layer = partition(graph, plan, "layer", 1040, 1 << 28)
    looped = partition(graph, plan, "model", 1040, 1 << 28)
    assert len(per_op) == len(ops)
    assert len(per_layer) == 12 + 2 and all(c.loops == 1 for c in per_layer)
    assert [c.loops for c in looped] == [1, 12, 1]
    assert {s.config for s in looped[1].sections} == {"h.*.ln_1"}
    assert template_of("h.11.mlp.c_fc") == "h.*.mlp.c_fc"


def test_a_layer_that_overflows_the_pmus_splits_and_is_not_looped(graph):
    plan = plan_storage(graph, DType.bf16)
    calls = partition(graph, plan, "model", 1040, 8_000)        # a few 768-wide values
    layer0 = [c for c in calls if c.sections[0].group == "layer 0"]
    assert len(layer0) > 1 and all(c.loops == 1 for c in calls)
    assert layer0[1].sections[0].config.endswith(f"(2/{len(layer0)})")


def test_values_inside_a_fused_layer_stay_in_pmus_and_outputs_in_hbm(graph):
    plan = plan_storage(graph, DType.bf16)
    calls = partition(graph, plan, "layer", 1040, 1 << 27)
    where = place(graph, plan, calls, load_arch("sn40l"), 1 << 26, 1 << 28, 0).where
    assert where["h.0.mlp.c_fc"][0] == "sram" and where["h.0.attn.probs"][0] == "sram"
    assert where["h.0.mlp.residual"][0] == "hbm"             # read by the next layer
    assert where["lm_head"][0] == "hbm" and where["h.0.attn.k_all"][0] == "hbm"
    assert where["wte.weight"] == ("hbm", 0)                 # gather tables first
    per_op = place(graph, plan, partition(graph, plan, "operator", 1040, 1 << 27),
                   load_arch("sn40l"), 1 << 26, 1 << 28, 0).where
    assert all(space != "sram" for space, _ in per_op.values())


def test_program_has_one_section_and_run_per_call():
    arch = load_arch("dataflow-small", ["kernel_granularity=model"])
    program = unroll(compile_graph(PIPELINE, load_model("gpt2").graph(prefill(4)), arch).program)
    opcodes = [i.opcode for i in program.instructions]
    assert opcodes.count("df.section") == opcodes.count("df.run") == 3
    runs = [i for i in program.instructions if i.opcode == "df.run"]
    assert [r["loops"] for r in runs] == [1, 12, 1]


def test_granularity_is_validated():
    with pytest.raises(ArchError, match="field 'kernel_granularity' must be one of operator, layer, model, got 'op'"):
        load_arch("sn40l", ["kernel_granularity=op"])


def test_dumps_name_the_sections_and_where_each_buffer_lives(graph):
    arch = load_arch("sn40l")
    sections = dump_after(PIPELINE, graph, arch, None, "sections")
    assert sections.startswith("kernel granularity ") and "call 1: 12 loops" in sections
    assert "section 'h.*.ln_1' (layer 0): h.0.ln_1," in sections
    placement = dump_after(PIPELINE, graph, arch, None, "placement")
    assert "  mx_a: sram[0x0] 2 x " in placement and "agcu0 -> pcu0" in placement
    assert "  wte.weight: hbm[0x0]" in placement


@pytest.mark.parametrize("requests", [32, pytest.param(33, marks=pytest.mark.slow),
                                      pytest.param(37, marks=pytest.mark.slow)])
def test_a_fused_attention_chain_starts_a_new_section_rather_than_pass_its_stages(requests):
    """A serving step of many requests at their own contexts has one fused attention chain
    (scores, softmax, context) per request in a layer's section: a chain that would take the
    section past the 255 stages df.section encodes starts the next one (these counts reached
    256 and 257 before)."""
    from compiler.phase import Segment, Step
    from compiler.targets.dataflow.sections import STAGES_MAX
    from tests.conftest import FIXTURES

    model = load_model(str(FIXTURES / "tiny-qwen3"))
    step = Step(tuple(Segment(1, 3 + k) for k in range(requests)))
    program = compile_graph(PIPELINE, model.graph(step), load_arch("sn40l")).program
    stages = [ins["stages"] for ins in program.instructions if ins.opcode == "df.section"]
    assert max(stages) <= STAGES_MAX and max(stages) >= STAGES_MAX - 2
