"""make_plan and ParallelPlan: what a model allows, refused in one line naming flag, value, field."""
import dataclasses

import pytest

from compiler.frontend import PRESETS
from compiler.ir import GraphError
from compiler.parallel.plan import ParallelPlan, PlanError, make_plan, stages
from compiler.parallel.shard import Shard
from tests.families.tiny import TINY


@pytest.mark.parametrize("preset, devices, tp, pp, ep", [
    ("gpt2", 4, 2, 2, 1),
    ("gpt2", 12, 12, 1, 1),
    ("llama-3.1-8b", 16, 8, 2, 1),
    ("mixtral-8x7b", 8, 8, 1, 8),
    ("qwen3-30b-a3b", 8, 4, 2, 4),
])
def test_plans_the_models_allow(preset, devices, tp, pp, ep):
    plan = make_plan(PRESETS[preset], devices, tp=tp, pp=pp, ep=ep)
    assert plan == ParallelPlan(devices, tp, pp, ep, "all_to_all" if ep > 1 else None)


@pytest.mark.parametrize("preset, devices, flags, message", [
    ("llama-3.1-8b", 3, dict(tp=3), "--tp 3: num_key_value_heads 8 of llama-3.1-8b is not divisible by 3"),
    ("qwen2.5-0.5b", 7, dict(tp=7), "--tp 7: num_key_value_heads 2 of qwen2.5-0.5b is not divisible by 7"),
    ("llama-3.2-3b", 16, dict(tp=16), "--tp 16: num_key_value_heads 8 of llama-3.2-3b is not divisible by 16"),
    ("gpt2", 5, dict(tp=5), "--tp 5: n_head 12 of gpt2 is not divisible by 5"),
    ("gpt2-xl", 2, dict(tp=2), "--tp 2: n_head 25 of gpt2-xl is not divisible by 2"),
    ("gpt2", 5, dict(pp=5), "--pp 5: n_layer 12 of gpt2 is not divisible by 5"),
    ("llama-3.2-1b", 3, dict(pp=3), "--pp 3: num_hidden_layers 16 of llama-3.2-1b is not divisible by 3"),
    ("llama-3.1-8b", 2, dict(tp=2, ep=2), "--ep 2: llama-3.1-8b is a dense model"),
    ("mixtral-8x7b", 6, dict(tp=2, pp=1, ep=3), r"--devices 6: --tp 2 x --pp 1 uses 2 devices"),
    ("mixtral-8x7b", 3, dict(pp=1, tp=1, ep=3), r"--devices 3: --tp 1 x --pp 1 uses 1 devices"),
    ("mixtral-8x7b", 4, dict(tp=4, ep=3), r"--ep 3: does not divide --devices 4"),
    ("qwen3-30b-a3b", 12, dict(tp=4, pp=3, ep=3), "--ep 3: num_experts 128 of qwen3-30b-a3b is not divisible by 3"),
    ("qwen3-30b-a3b", 8, dict(tp=4, pp=2, ep=8), r"--ep 8: a stage's experts are spread over its tensor-parallel ranks, so --ep must equal --tp \(4\)"),
    ("gpt2", 4, dict(tp=2, pp=3), r"--devices 4: --tp 2 x --pp 3 uses 6 devices"),
    ("gpt2", 0, dict(), r"--devices 0: must be a positive integer"),
    ("gpt2", 2, dict(tp=-2), r"--tp -2: must be a positive integer"),
    ("gpt2", 2, dict(pp=2.0), r"--pp 2.0: must be a positive integer"),
    ("gpt2", 1, dict(ep=0), r"--ep 0: must be a positive integer"),
    ("gpt2", True, dict(), r"--devices True: must be a positive integer"),
])
def test_plans_the_models_refuse(preset, devices, flags, message):
    with pytest.raises(PlanError, match=f"^{message}"):
        make_plan(PRESETS[preset], devices, **flags)


def test_mlp_widths_must_split_too():
    odd = dataclasses.replace(TINY["tiny-llama3"], name="odd-mlp", intermediate_size=91)
    with pytest.raises(PlanError, match="^--tp 2: intermediate_size 91 of odd-mlp is not divisible by 2$"):
        make_plan(odd, 2, tp=2)
    moe = dataclasses.replace(TINY["tiny-qwen3-moe"], name="odd-moe", moe_intermediate_size=31)
    with pytest.raises(PlanError, match="^--tp 2: moe_intermediate_size 31 of odd-moe"):
        make_plan(moe, 2, tp=2)
    # an all-MoE model never uses intermediate_size; a dense layer among MoE layers does
    assert make_plan(dataclasses.replace(moe, intermediate_size=7, moe_intermediate_size=32), 2, tp=2)
    with pytest.raises(PlanError, match="^--tp 2: intermediate_size 7 of odd-moe"):
        make_plan(dataclasses.replace(moe, intermediate_size=7, moe_intermediate_size=32,
                                      dense_layers=(1,)), 2, tp=2)
    gpt = dataclasses.replace(PRESETS["gpt2"], name="odd-gpt", n_inner=3071)
    with pytest.raises(PlanError, match="^--tp 2: n_inner 3071 of odd-gpt is not divisible by 2$"):
        make_plan(gpt, 2, tp=2)


def test_a_plan_error_is_a_user_error():
    assert issubclass(PlanError, GraphError)      # the CLI's exit status 2
    with pytest.raises(PlanError, match="has no config to partition"):
        make_plan(None, 1)


def test_devices_are_numbered_stage_major():
    plan = make_plan(PRESETS["gpt2"], 6, tp=3, pp=2)
    assert [plan.shard(d) for d in (0, 2, 3, 5)] == [
        Shard(3, 0, 2, 0), Shard(3, 2, 2, 0), Shard(3, 0, 2, 1), Shard(3, 2, 2, 1)]
    assert plan.device(stage=1, rank=2) == 5
    with pytest.raises(PlanError, match="device 6: the plan has devices 0 to 5"):
        plan.shard(6)


def test_stages_are_consecutive_equal_layer_ranges():
    assert stages(PRESETS["gpt2"], 3) == (range(0, 4), range(4, 8), range(8, 12))
    assert stages(PRESETS["llama-3.2-1b"], 1) == (range(16),)
    with pytest.raises(PlanError, match="--pp 5: n_layer 12 of gpt2"):
        stages(PRESETS["gpt2"], 5)


def test_a_shard_is_checked():
    with pytest.raises(GraphError, match="rank 2 of tp 2 must be an integer from 0 to tp - 1"):
        Shard(tp=2, rank=2)
    with pytest.raises(GraphError, match="stage -1 of pp 2"):
        Shard(pp=2, stage=-1)
