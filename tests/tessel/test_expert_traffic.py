"""Only routed experts cost traffic: a decode whose two tokens choose different experts reads,
beyond one whose tokens share theirs, exactly the extra experts' weights — the simulated
memory traffic moves by the report's `expert_weight_bytes`, on every target."""
from __future__ import annotations

import json

import pytest

from compiler.frontend import Model
from compiler.phase import decode
from tessel.driver import run
from tessel.request import make_request
from tessel.targets import target as target_of
from tests.families.tiny import TINY

pytestmark = pytest.mark.slow

SHARED = {"experts": [[[0, 1], [1, 0]], [[2, 3], [3, 2]]]}      # 2 experts per layer
SPREAD = {"experts": [[[0, 1], [2, 3]], [[2, 3], [0, 1]]]}      # all 4 per layer
READS = {"systolic": ("dram_read",), "dataflow": ("hbm_read", "ddr_read"), "pim": None}


def _result(target: str, routing: dict, tmp_path):
    path = tmp_path / f"{target}-{len(str(routing))}-{hash(str(routing))}.json"
    path.write_text(json.dumps(routing))
    model = Model("tiny-mixtral", TINY["tiny-mixtral"])
    arch = target_of(target).load_arch()
    request = make_request(model, target, arch, decode(8, batch=2), numerics=False,
                           routing=f"file:{path}")
    return run(request).result


@pytest.mark.parametrize("target", ["systolic", "dataflow", "pim"])
def test_spread_routing_reads_exactly_the_extra_experts_weights(target, tmp_path):
    shared, spread = _result(target, SHARED, tmp_path), _result(target, SPREAD, tmp_path)
    c = TINY["tiny-mixtral"]
    one_expert = 3 * c.hidden_size * c.moe_intermediate_size * 2
    assert shared.workload["experts_touched"] == [2, 2] and spread.workload["experts_touched"] == [4, 4]
    assert shared.workload["expert_weight_bytes"] == 2 * 2 * one_expert
    assert spread.workload["expert_weight_bytes"] == 2 * 4 * one_expert
    extra = spread.workload["expert_weight_bytes"] - shared.workload["expert_weight_bytes"]
    keys = READS[target] or [k for k in shared.bytes if "read" in k]
    assert sum(spread.bytes[k] for k in keys) - sum(shared.bytes[k] for k in keys) == extra
