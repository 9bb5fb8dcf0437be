"""Each target's compilation as named steps: every step's result is frozen and dumps as text."""
import dataclasses

import pytest

from arch import load_arch
from compiler.errors import CompileError
from compiler.frontend import load_model
from compiler.phase import decode
from compiler.pipeline import Pipeline, Step, compile_graph, dump_after
from compiler.targets import dataflow, pim, systolic

STEPS = {"systolic": ("precision", "storage", "attention", "dram", "floors", "sram", "emit"),
         "pim": ("precision", "storage", "placement", "emit"),
         "dataflow": ("precision", "storage", "attention", "sections", "placement", "emit")}


@pytest.fixture(scope="module")
def graph():
    return load_model("gpt2").graph(decode(8))


PIPELINES = {m.PIPELINE.target: m.PIPELINE for m in (systolic, pim, dataflow)}
PRESETS = {"systolic": "systolic-128", "pim": "pim-gpt", "dataflow": "sn40l"}


def test_each_target_has_its_named_steps():
    assert {t: p.names for t, p in PIPELINES.items()} == STEPS


@pytest.mark.slow
@pytest.mark.parametrize("target", STEPS)
def test_every_step_result_is_frozen_and_dumps_text(graph, target):
    state = PIPELINES[target].run(graph, load_arch(PRESETS[target]))
    for name in STEPS[target]:
        result = state[name]
        assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen, name
        text = result.dump()
        assert text.strip() and text == dump_after(PIPELINES[target], graph,
                                                    load_arch(PRESETS[target]), None, name)


def test_an_unknown_step_names_the_valid_ones(graph):
    with pytest.raises(CompileError, match=r"^unknown step 'lower' for target 'pim' "
                                           r"\(steps: precision, storage, placement, emit\)$"):
        dump_after(PIPELINES["pim"], graph, load_arch("pim-gpt"), None, "lower")


def test_steps_stop_after_the_one_asked_for(graph):
    ran = []
    pipeline = Pipeline("t", (Step("a", lambda c: ran.append("a")), Step("b", lambda c: ran.append("b"))))
    pipeline.run(graph, load_arch("systolic-128"), until="a")
    assert ran == ["a"]


def test_step_names_are_unique():
    with pytest.raises(ValueError, match="repeats a step name: a, a"):
        Pipeline("t", (Step("a", print), Step("a", print)))


def test_progress_is_told_each_step_before_it_runs(graph):
    told = []
    pipeline = Pipeline("t", (Step("a", lambda c: told.append("ran a")),
                              Step("b", lambda c: told.append("ran b"))))
    pipeline.run(graph, load_arch("systolic-128"), progress=lambda step, done: told.append((step, done)))
    assert told == [("a", 0), "ran a", ("b", 1), "ran b"]
