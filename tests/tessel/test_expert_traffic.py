"""Only routed experts cost traffic and time. On the systolic and dataflow targets a decode
whose two tokens choose different experts reads, beyond one whose tokens share theirs, exactly
the extra experts' weights: the simulated memory traffic moves by the report's
`expert_weight_bytes`. PIM decodes one sequence and reads weights inside the banks, so there
the check is on the in-bank MACs and time: a model with twice the experts, routed the same
way, costs the same."""
from __future__ import annotations

import dataclasses
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
READS = {"systolic": ("dram_read",), "dataflow": ("hbm_read", "ddr_read")}


def _result(target: str, routing: dict, tmp_path, batch: int = 2, config=TINY["tiny-mixtral"]):
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(routing))
    arch = target_of(target).load_arch()
    request = make_request(Model(config.name, config), target, arch, decode(8, batch=batch),
                           numerics=False, routing=f"file:{path}")
    return run(request).result


@pytest.mark.parametrize("target", ["systolic", "dataflow"])
def test_spread_routing_reads_exactly_the_extra_experts_weights(target, tmp_path):
    shared, spread = _result(target, SHARED, tmp_path), _result(target, SPREAD, tmp_path)
    c = TINY["tiny-mixtral"]
    one_expert = 3 * c.hidden_size * c.moe_intermediate_size * 2
    assert shared.workload["experts_touched"] == [2, 2] and spread.workload["experts_touched"] == [4, 4]
    assert shared.workload["expert_weight_bytes"] == 2 * 2 * one_expert
    assert spread.workload["expert_weight_bytes"] == 2 * 4 * one_expert
    extra = spread.workload["expert_weight_bytes"] - shared.workload["expert_weight_bytes"]
    keys = READS[target]
    assert sum(spread.bytes[k] for k in keys) - sum(shared.bytes[k] for k in keys) == extra


def test_pim_unchosen_experts_cost_no_macs(tmp_path):
    four = TINY["tiny-mixtral"]
    eight = dataclasses.replace(four, name="tiny-mixtral-8", num_experts=8)
    routing = {"experts": [[[0, 1]], [[2, 3]]]}
    small, large = (_result("pim", routing, tmp_path, 1, c) for c in (four, eight))
    assert small.workload["expert_weight_bytes"] == large.workload["expert_weight_bytes"]
    # the router's 4 extra logits per layer ride in MAC lanes its 4 logits already occupy (16
    # lanes per bank access), so the extra experts, never chosen, change nothing at all
    assert (large.macs, large.cycles) == (small.macs, small.cycles)
